//! Responses, appended whole to a `BytesMut` (one `reserve`, no other allocation).

use std::fmt::{self, Write as _};

use bytes::BytesMut;

use crate::HttpError;

/// The interim response to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The `Connection` header a response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionHeader {
    /// None: the connection persists (HTTP/1.1 default).
    Omit,
    /// `Connection: keep-alive`: persists, said explicitly (HTTP/1.0 clients need it).
    KeepAlive,
    /// `Connection: close`: the server closes after this response.
    Close,
}

impl ConnectionHeader {
    fn line(self) -> &'static [u8] {
        match self {
            ConnectionHeader::Omit => b"",
            ConnectionHeader::KeepAlive => b"Connection: keep-alive\r\n",
            ConnectionHeader::Close => b"Connection: close\r\n",
        }
    }
}

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// Appends a whole response: status line with the standard reason phrase, `Content-Type`,
/// `Content-Length`, `Connection: close` when `keep_alive` is false, and the body.
///
/// `status` must be in `100..=999` (others are written as 500); a `content_type` containing control
/// characters is replaced by `application/octet-stream` (no header injection). For HTTP/1.0 keep-alive
/// clients use [`write_response_with`] and [`crate::HttpRequest::response_connection`].
pub fn write_response(buf: &mut BytesMut, status: u16, content_type: &str, body: &[u8], keep_alive: bool) {
    write_response_with(buf, status, content_type, body, connection(keep_alive));
}

/// [`write_response`] with an explicit `Connection` header.
pub fn write_response_with(
    buf: &mut BytesMut,
    status: u16,
    content_type: &str,
    body: &[u8],
    conn: ConnectionHeader,
) {
    write_head(buf, status, content_type, body.len(), conn);
    buf.extend_from_slice(body);
}

/// [`write_response_with`] with extra header fields. A field whose name is not an HTTP token or whose value
/// holds a control character (other than tab) is left out (no header injection).
pub fn write_response_headers(
    buf: &mut BytesMut,
    status: u16,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    conn: ConnectionHeader,
) {
    write_head(buf, status, content_type, body.len(), conn);
    // The head ends with the empty line: insert the fields before it.
    buf.truncate(buf.len() - 2);
    for (name, value) in headers {
        if is_token(name)
            && value
                .bytes()
                .all(|b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
        {
            buf.extend_from_slice(name.as_bytes());
            buf.extend_from_slice(b": ");
            buf.extend_from_slice(value.as_bytes());
            buf.extend_from_slice(b"\r\n");
        }
    }
    buf.extend_from_slice(b"\r\n");
    buf.extend_from_slice(body);
}

/// An HTTP token (RFC 9110 `tchar`s), not empty.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Appends the response for `err`: its status, a `text/plain` body holding its one-line reason and `"\n"`,
/// and `Connection: close` when `keep_alive` is false or the error [closes the
/// connection](HttpError::closes_connection).
pub fn write_error(buf: &mut BytesMut, err: &HttpError, keep_alive: bool) {
    let keep_alive = keep_alive && !err.closes_connection();
    let mut counter = Counter(0);
    // Counting never fails; a Display that did would only shorten the count, and the body with it.
    let _ = writeln!(counter, "{err}");
    let len = counter.0;
    write_head(buf, err.status(), TEXT_PLAIN, len, connection(keep_alive));
    let before = buf.len();
    let _ = writeln!(Limited { buf, left: len }, "{err}");
    // Keep the promised Content-Length even if Display was not deterministic.
    let written = buf.len() - before;
    if written < len {
        buf.resize(before + len, b' ');
    }
}

/// Appends a `text/plain` response for an error decided elsewhere (502, 503, 504, ...): the body is
/// `reason_body` and `"\n"`.
pub fn write_status(buf: &mut BytesMut, status: u16, reason_body: &str, keep_alive: bool) {
    write_status_with(buf, status, reason_body, connection(keep_alive));
}

/// [`write_status`] with an explicit `Connection` header (HTTP/1.0 keep-alive needs it said).
pub fn write_status_with(buf: &mut BytesMut, status: u16, reason_body: &str, conn: ConnectionHeader) {
    let len = reason_body.len() + 1;
    write_head(buf, status, TEXT_PLAIN, len, conn);
    buf.extend_from_slice(reason_body.as_bytes());
    buf.extend_from_slice(b"\n");
}

fn connection(keep_alive: bool) -> ConnectionHeader {
    if keep_alive {
        ConnectionHeader::Omit
    } else {
        ConnectionHeader::Close
    }
}

/// Writes the head and reserves room for it plus `body_len` more bytes.
fn write_head(buf: &mut BytesMut, status: u16, content_type: &str, body_len: usize, conn: ConnectionHeader) {
    let status = if (100..=999).contains(&status) {
        status
    } else {
        500
    };
    let reason = reason_phrase(status);
    let content_type = if content_type
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
    {
        content_type
    } else {
        "application/octet-stream"
    };
    let mut digits = [0u8; 20];
    let length = format_decimal(body_len, &mut digits);
    let conn = conn.line();
    let head_len = b"HTTP/1.1 200 ".len()
        + reason.len()
        + b"\r\nContent-Type: ".len()
        + content_type.len()
        + b"\r\nContent-Length: ".len()
        + length.len()
        + b"\r\n".len()
        + conn.len()
        + b"\r\n".len();
    buf.reserve(head_len + body_len);
    buf.extend_from_slice(b"HTTP/1.1 ");
    buf.extend_from_slice(&[
        b'0' + (status / 100) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
        b' ',
    ]);
    buf.extend_from_slice(reason.as_bytes());
    buf.extend_from_slice(b"\r\nContent-Type: ");
    buf.extend_from_slice(content_type.as_bytes());
    buf.extend_from_slice(b"\r\nContent-Length: ");
    buf.extend_from_slice(length);
    buf.extend_from_slice(b"\r\n");
    buf.extend_from_slice(conn);
    buf.extend_from_slice(b"\r\n");
}

/// The decimal digits of `n`, written at the end of `out`.
fn format_decimal(mut n: usize, out: &mut [u8; 20]) -> &[u8] {
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &out[i..];
        }
    }
}

/// Counts formatted bytes.
struct Counter(usize);

impl fmt::Write for Counter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

/// Appends to a buffer, at most `left` more bytes.
struct Limited<'a> {
    buf: &'a mut BytesMut,
    left: usize,
}

impl fmt::Write for Limited<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.left);
        self.buf.extend_from_slice(&s.as_bytes()[..n]);
        self.left -= n;
        Ok(())
    }
}

/// The standard reason phrase of `status` (RFC 9110 and the common extensions), `""` for others.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal() {
        let mut d = [0u8; 20];
        assert_eq!(format_decimal(0, &mut d), b"0");
        assert_eq!(format_decimal(1234567890, &mut d), b"1234567890");
        assert_eq!(
            format_decimal(usize::MAX, &mut d),
            usize::MAX.to_string().as_bytes()
        );
    }

    #[test]
    fn extra_headers_and_no_injection() {
        let mut buf = BytesMut::new();
        write_response_headers(
            &mut buf,
            200,
            "application/json",
            &[
                ("x-dubbo-attachment-a", "1"),
                ("bad name", "x"),
                ("x-b", "a\r\nSet-Cookie: c"),
                ("x-c", "é"),
            ],
            b"{}",
            ConnectionHeader::Close,
        );
        assert_eq!(
            std::str::from_utf8(&buf).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\
             x-dubbo-attachment-a: 1\r\nx-c: é\r\n\r\n{}"
        );
        assert!(is_token("x-Dubbo_1.~") && !is_token("") && !is_token("a:b") && !is_token("a b"));
    }

    #[test]
    fn odd_statuses() {
        let mut buf = BytesMut::new();
        write_response(&mut buf, 42, "text/plain", b"", true);
        assert!(buf.starts_with(b"HTTP/1.1 500 Internal Server Error\r\n"));
        buf.clear();
        write_response(&mut buf, 299, "x/y\r\nSet-Cookie: a", b"", true);
        assert_eq!(
            &buf[..],
            b"HTTP/1.1 299 \r\nContent-Type: application/octet-stream\r\nContent-Length: 0\r\n\r\n"
        );
    }
}
