//! Request framing: the head on `httparse`, the body by `Content-Length` or chunked.

use std::borrow::Cow;

use crate::chunked;
use crate::response::ConnectionHeader;
use crate::HttpError;

/// Size limits, checked before anything is allocated or waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request head (request line + header lines + the empty line). Default 8 KiB. Over it: 431.
    pub max_head_bytes: usize,
    /// Most header fields. Default 64, capped at [`Limits::HEADERS_CAP`]. Over it: 431.
    pub max_headers: usize,
    /// Largest body, after de-chunking. Default 1 MiB. Over it: 413, decided from `Content-Length` before
    /// the body arrives, or while de-chunking.
    pub max_body_bytes: usize,
    /// Most fields in a form body (unknown ones included). Default 64. Over it: 400.
    pub max_form_fields: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 8 * 1024,
            max_headers: 64,
            max_body_bytes: 1024 * 1024,
            max_form_fields: 64,
        }
    }
}

impl Limits {
    /// Hard cap on [`max_headers`](Limits::max_headers) (the header table is sized from it).
    pub const HEADERS_CAP: usize = 1024;

    /// The most bytes one request may occupy before [`parse_request`] returns `Complete` or an error:
    /// `max_head_bytes + 2 * max_body_bytes` (saturating). A `Content-Length` request needs at most
    /// `max_head_bytes + max_body_bytes`; a chunked one may use the rest for its framing (size lines,
    /// extensions, trailers), and is refused with 413 past it. A caller that never lets its read buffer grow
    /// beyond this (plus one read) is safe from slow-drip memory growth.
    pub fn max_request_bytes(&self) -> usize {
        self.max_head_bytes
            .saturating_add(self.max_body_bytes)
            .saturating_add(self.max_body_bytes)
    }
}

/// The result of parsing something that may not have fully arrived yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse<T> {
    /// Everything is there.
    Complete(T),
    /// More bytes are needed; call again on the same (grown) buffer.
    Partial {
        /// The head is complete, carries `Expect: 100-continue` (HTTP/1.1) and the body is not all there:
        /// the client may be waiting for `HTTP/1.1 100 Continue` ([`crate::CONTINUE`]) before sending it.
        /// Answer it once per request (this stays `true` on every later call until the body is complete).
        send_continue: bool,
    },
}

/// One framed request, borrowing from the buffer it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest<'a> {
    /// The method token, as sent (`"POST"`).
    pub method: &'a str,
    /// The request target, as sent (`"/"`, `"/path?q=1"`, `"*"`, or absolute form).
    pub path: &'a str,
    /// `0` for HTTP/1.0, `1` for HTTP/1.1.
    pub minor_version: u8,
    /// Whether the connection stays open after the response: HTTP/1.1 unless `Connection: close`,
    /// HTTP/1.0 only with `Connection: keep-alive` (`close` wins when both are listed).
    pub keep_alive: bool,
    /// The first `Content-Type` value, trimmed.
    pub content_type: Option<&'a str>,
    /// The body: borrowed for `Content-Length` bodies and single-chunk chunked bodies, owned (de-chunked)
    /// otherwise; empty when the request has no body.
    pub body: Cow<'a, [u8]>,
    /// Bytes of the buffer this request used (head + encoded body): the next pipelined request starts at
    /// `buf[consumed..]`. Always `> 0`.
    pub consumed: usize,
    /// The whole head as received (request line, header lines, the empty line), already checked by
    /// `httparse`: [`HttpRequest::headers`] reads it again only when asked, so the form path pays nothing.
    pub head: &'a [u8],
}

impl<'a> HttpRequest<'a> {
    /// The header fields, in order, as (name, value) with the value's surrounding whitespace trimmed.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> {
        let head: &'a [u8] = self.head;
        head.split(|&b| b == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
            // Empty lines before the request line (skipped by httparse), then the request line itself.
            .skip_while(|line| line.is_empty())
            .skip(1)
            .take_while(|line| !line.is_empty())
            .filter_map(|line| {
                let colon = line.iter().position(|&b| b == b':')?;
                let name = std::str::from_utf8(&line[..colon]).ok()?;
                Some((name, line[colon + 1..].trim_ascii()))
            })
    }

    /// The first header field named `name` (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

impl HttpRequest<'_> {
    /// The `Connection` header the response should carry: `Close` when not keeping the connection alive,
    /// `KeepAlive` for an HTTP/1.0 client that asked for it (it would close otherwise), `Omit` for HTTP/1.1.
    pub fn response_connection(&self) -> ConnectionHeader {
        match (self.keep_alive, self.minor_version) {
            (false, _) => ConnectionHeader::Close,
            (true, 0) => ConnectionHeader::KeepAlive,
            (true, _) => ConnectionHeader::Omit,
        }
    }

    /// Whether the `Content-Type` is `application/x-www-form-urlencoded` (parameters such as `charset`
    /// allowed, case-insensitive). A missing `Content-Type` is not a form.
    pub fn is_form(&self) -> bool {
        self.content_type.is_some_and(|ct| {
            let mime = ct.split(';').next().unwrap_or_default().trim();
            mime.eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
    }
}

/// Header tables up to this size live on the stack.
const STACK_HEADERS: usize = 64;

/// Frames the request at the start of `buf`.
///
/// Returns `Partial` until the head and the whole body are there, then `Complete` with
/// [`HttpRequest::consumed`] telling where the next pipelined request starts. Errors are final for the
/// connection ([`HttpError::closes_connection`] is true for all of them): answer with
/// [`crate::write_error`] and close. Calling again with more bytes appended gives the same answer or a
/// more complete one: a prefix of a buffer is never `Complete` or an error unless the whole buffer gives
/// the same.
///
/// Never allocates except for a de-chunked body of more than one chunk (exactly its size, within
/// `max_body_bytes`), and a header table when `max_headers` is over 64.
pub fn parse_request<'a>(buf: &'a [u8], limits: &Limits) -> Result<Parse<HttpRequest<'a>>, HttpError> {
    let max_headers = limits.max_headers.min(Limits::HEADERS_CAP);
    if max_headers <= STACK_HEADERS {
        let mut headers = [httparse::EMPTY_HEADER; STACK_HEADERS];
        parse_with(buf, limits, &mut headers[..max_headers])
    } else {
        let mut headers = vec![httparse::EMPTY_HEADER; max_headers];
        parse_with(buf, limits, &mut headers)
    }
}

fn parse_with<'a>(
    buf: &'a [u8],
    limits: &Limits,
    headers: &mut [httparse::Header<'a>],
) -> Result<Parse<HttpRequest<'a>>, HttpError> {
    let max_headers = headers.len();
    // httparse never looks past the head limit, however much is buffered behind it.
    let window = &buf[..buf.len().min(limits.max_head_bytes)];
    let mut req = httparse::Request::new(headers);
    let head_len = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_head_bytes => {
            return Err(HttpError::HeadTooLarge {
                max: limits.max_head_bytes,
            })
        }
        Ok(httparse::Status::Partial) => return Ok(Parse::Partial { send_continue: false }),
        Err(e) => return Err(map_httparse(e, max_headers)),
    };
    let (Some(method), Some(path), Some(minor_version)) = (req.method, req.path, req.version) else {
        return Err(HttpError::RequestLine("incomplete"));
    };

    let head = scan_headers(req.headers)?;
    if head.transfer_encoding && head.content_length.is_some() {
        return Err(HttpError::ContentLengthAndTransferEncoding);
    }
    if head.transfer_encoding && minor_version == 0 {
        // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing.
        return Err(HttpError::InvalidTransferEncoding);
    }
    if head.unknown_coding {
        return Err(HttpError::UnsupportedTransferEncoding);
    }
    let keep_alive = !head.close && (minor_version >= 1 || head.keep_alive);
    // RFC 9110 §10.1.1: a 100-continue expectation in an HTTP/1.0 request is ignored.
    let send_continue = head.expect_continue && minor_version >= 1;

    let (body, consumed) = if head.chunked {
        match chunked::decode(buf, head_len, limits)? {
            Some(done) => done,
            None => return Ok(Parse::Partial { send_continue }),
        }
    } else if let Some(len) = head.content_length {
        let too_large = HttpError::BodyTooLarge {
            max: limits.max_body_bytes,
        };
        let len = usize::try_from(len).map_err(|_| too_large.clone())?;
        if len > limits.max_body_bytes {
            return Err(too_large);
        }
        match buf[head_len..].get(..len) {
            Some(body) => (Cow::Borrowed(body), head_len + len),
            None => return Ok(Parse::Partial { send_continue }),
        }
    } else {
        (Cow::Borrowed(&[][..]), head_len)
    };

    Ok(Parse::Complete(HttpRequest {
        method,
        path,
        minor_version,
        keep_alive,
        content_type: head.content_type,
        body,
        consumed,
        head: &buf[..head_len],
    }))
}

fn map_httparse(e: httparse::Error, max_headers: usize) -> HttpError {
    match e {
        httparse::Error::TooManyHeaders => HttpError::TooManyHeaders { max: max_headers },
        httparse::Error::HeaderName => HttpError::Header("invalid name"),
        httparse::Error::HeaderValue => HttpError::Header("invalid value"),
        httparse::Error::NewLine => HttpError::RequestLine("invalid line ending"),
        httparse::Error::Version => HttpError::RequestLine("invalid HTTP version"),
        httparse::Error::Token | httparse::Error::Status => {
            HttpError::RequestLine("invalid method or target")
        }
    }
}

/// What the framing cares about in the header fields.
#[derive(Debug, Default)]
struct Head<'a> {
    content_length: Option<u64>,
    transfer_encoding: bool,
    chunked: bool,
    unknown_coding: bool,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
    content_type: Option<&'a str>,
}

fn scan_headers<'a>(headers: &[httparse::Header<'a>]) -> Result<Head<'a>, HttpError> {
    let mut head = Head::default();
    for h in headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            // Several values (in one list or several fields) are fine only if they are all the same.
            for item in h.value.split(|&b| b == b',') {
                let len = parse_content_length(trim(item))?;
                match head.content_length {
                    Some(old) if old != len => return Err(HttpError::InvalidContentLength),
                    _ => head.content_length = Some(len),
                }
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.transfer_encoding = true;
            for item in h.value.split(|&b| b == b',') {
                let coding = trim(item);
                if coding.is_empty() {
                    return Err(HttpError::InvalidTransferEncoding);
                } else if coding.eq_ignore_ascii_case(b"chunked") {
                    if head.chunked {
                        return Err(HttpError::InvalidTransferEncoding);
                    }
                    head.chunked = true;
                } else {
                    head.unknown_coding = true;
                }
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for item in h.value.split(|&b| b == b',') {
                let option = trim(item);
                if option.eq_ignore_ascii_case(b"close") {
                    head.close = true;
                } else if option.eq_ignore_ascii_case(b"keep-alive") {
                    head.keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if trim(h.value).eq_ignore_ascii_case(b"100-continue") {
                head.expect_continue = true;
            }
        } else if name.eq_ignore_ascii_case("content-type") && head.content_type.is_none() {
            let value =
                std::str::from_utf8(trim(h.value)).map_err(|_| HttpError::InvalidHeader("Content-Type"))?;
            head.content_type = Some(value);
        }
    }
    Ok(head)
}

/// `1*DIGIT`; values too large for a u64 saturate (they are over any body limit anyway).
fn parse_content_length(digits: &[u8]) -> Result<u64, HttpError> {
    if digits.is_empty() {
        return Err(HttpError::InvalidContentLength);
    }
    digits.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            Ok(n.saturating_mul(10).saturating_add(u64::from(b - b'0')))
        } else {
            Err(HttpError::InvalidContentLength)
        }
    })
}

/// Strips optional whitespace (SP / HTAB) from both ends.
fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn headers_are_read_back_from_the_head() {
        let raw = b"\r\nPOST /a/b/c HTTP/1.1\r\nHost: h\r\nX-Dubbo-Service-Group:  g \r\nx-empty:\r\nContent-Length: 2\r\n\r\n[]";
        let Ok(Parse::Complete(req)) = parse_request(raw, &Limits::default()) else {
            panic!("complete request expected");
        };
        let all: Vec<(&str, &[u8])> = req.headers().collect();
        assert_eq!(
            all,
            [
                ("Host", &b"h"[..]),
                ("X-Dubbo-Service-Group", b"g"),
                ("x-empty", b""),
                ("Content-Length", b"2")
            ]
        );
        assert_eq!(req.header("x-dubbo-service-group"), Some(&b"g"[..]));
        assert_eq!(req.header("absent"), None);
        // bare LF line ends too
        let raw = b"GET / HTTP/1.1\nA: 1\n\n";
        let Ok(Parse::Complete(req)) = parse_request(raw, &Limits::default()) else {
            panic!("complete request expected");
        };
        assert_eq!(req.header("a"), Some(&b"1"[..]));
    }

    #[test]
    fn content_length_grammar() {
        assert_eq!(parse_content_length(b"0").unwrap(), 0);
        assert_eq!(parse_content_length(b"0012").unwrap(), 12);
        assert_eq!(
            parse_content_length(b"99999999999999999999999").unwrap(),
            u64::MAX
        );
        for bad in [&b""[..], b"+1", b"-1", b"1 2", b"0x10", b"1.0", b"\xff"] {
            assert_eq!(parse_content_length(bad), Err(HttpError::InvalidContentLength));
        }
    }

    #[test]
    fn trims_optional_whitespace() {
        assert_eq!(trim(b" \t a b\t "), b"a b");
        assert_eq!(trim(b"   "), b"");
        assert_eq!(trim(b""), b"");
    }

    #[test]
    fn max_request_bytes_saturates() {
        let l = Limits {
            max_body_bytes: usize::MAX,
            ..Limits::default()
        };
        assert_eq!(l.max_request_bytes(), usize::MAX);
        assert_eq!(Limits::default().max_request_bytes(), 8 * 1024 + 2 * 1024 * 1024);
    }
}
