//! `Transfer-Encoding: chunked` bodies (RFC 9112 §7.1), strictly: hex sizes, CRLF line ends, extensions and
//! trailer fields checked for shape and ignored.
//!
//! The body is walked twice: once to validate it and learn its size (nothing allocated, so a `Partial`
//! costs nothing but the scan), then, only when it has more than one data chunk, again to copy the data
//! into a buffer of exactly that size. A single-chunk body is borrowed.
//!
//! Every decision depends only on bytes already seen, so a prefix of a body gives `Partial` or the same
//! answer as the whole.

use std::borrow::Cow;

use crate::{HttpError, Limits};

const BAD_SIZE: HttpError = HttpError::Chunked("bad chunk size");
const BAD_EXT: HttpError = HttpError::Chunked("bad chunk extension");
const BAD_EOL: HttpError = HttpError::Chunked("bad line ending in chunked body");
const BAD_DATA_END: HttpError = HttpError::Chunked("missing CRLF after chunk data");
const BAD_TRAILER: HttpError = HttpError::Chunked("bad trailer");

/// A de-chunked body and the offset just past its encoding.
pub(crate) type Body<'a> = (Cow<'a, [u8]>, usize);

/// What a complete walk found.
#[derive(Debug)]
struct Summary {
    /// Offset just past the final CRLF.
    end: usize,
    /// Total data bytes.
    total: usize,
    /// Number of non-empty data chunks.
    chunks: usize,
    /// Where the first data chunk is (empty range if none).
    first: (usize, usize),
}

/// De-chunks the body starting at `buf[start..]`: `Some((body, end))` when it is complete (`end` is the
/// offset just past it), `None` when more bytes are needed.
pub(crate) fn decode<'a>(
    buf: &'a [u8],
    start: usize,
    limits: &Limits,
) -> Result<Option<Body<'a>>, HttpError> {
    let Some(s) = walk(buf, start, limits, |_| {})? else {
        return Ok(None);
    };
    if s.chunks <= 1 {
        return Ok(Some((Cow::Borrowed(&buf[s.first.0..s.first.1]), s.end)));
    }
    // `total` was checked against `max_body_bytes` before it was counted.
    let mut body = Vec::with_capacity(s.total);
    walk(buf, start, limits, |data| body.extend_from_slice(data))?;
    Ok(Some((Cow::Owned(body), s.end)))
}

fn walk<'a>(
    buf: &'a [u8],
    start: usize,
    limits: &Limits,
    mut on_data: impl FnMut(&'a [u8]),
) -> Result<Option<Summary>, HttpError> {
    let max_body = limits.max_body_bytes;
    let too_large = || HttpError::BodyTooLarge { max: max_body };
    // The whole request (head, framing, data, trailers) must end before `budget`.
    let budget = limits.max_request_bytes();
    // The byte at `i`: an error past the budget, `None` (return Partial) past the end of the buffer.
    let at = |i: usize| -> Result<Option<u8>, HttpError> {
        if i >= budget {
            Err(too_large())
        } else {
            Ok(buf.get(i).copied())
        }
    };
    macro_rules! byte {
        ($i:expr) => {
            match at($i)? {
                Some(b) => b,
                None => return Ok(None),
            }
        };
    }

    let mut i = start;
    let mut total = 0usize;
    let mut chunks = 0usize;
    let mut first = (start, start);
    loop {
        // chunk-size = 1*HEXDIG
        let mut size = 0usize;
        let mut digits = 0usize;
        let mut b = byte!(i);
        while let Some(d) = hex_value(b) {
            size = size
                .checked_mul(16)
                .and_then(|s| s.checked_add(usize::from(d)))
                .filter(|&s| s <= max_body - total)
                .ok_or_else(too_large)?;
            digits += 1;
            i += 1;
            b = byte!(i);
        }
        if digits == 0 {
            return Err(BAD_SIZE);
        }
        // [ BWS ";" chunk-ext ] CRLF
        while b == b' ' || b == b'\t' {
            i += 1;
            b = byte!(i);
        }
        if b == b';' {
            loop {
                i += 1;
                b = byte!(i);
                if b == b'\r' {
                    break;
                }
                if is_ctl(b) {
                    return Err(BAD_EXT);
                }
            }
        }
        if b != b'\r' {
            return Err(if b == b'\n' { BAD_EOL } else { BAD_SIZE });
        }
        if byte!(i + 1) != b'\n' {
            return Err(BAD_EOL);
        }
        i += 2;

        if size == 0 {
            break;
        }
        // chunk-data CRLF
        let data_end = i.checked_add(size).ok_or_else(too_large)?;
        match data_end.checked_add(2) {
            Some(e) if e <= budget => {}
            _ => return Err(too_large()),
        }
        let Some(data) = buf.get(i..data_end) else {
            return Ok(None);
        };
        if byte!(data_end) != b'\r' || byte!(data_end + 1) != b'\n' {
            return Err(BAD_DATA_END);
        }
        if chunks == 0 {
            first = (i, data_end);
        }
        on_data(data);
        chunks += 1;
        total += size;
        i = data_end + 2;
    }

    // trailer-section = *( field-line CRLF ) CRLF
    loop {
        let b = byte!(i);
        if b == b'\r' {
            if byte!(i + 1) != b'\n' {
                return Err(BAD_EOL);
            }
            return Ok(Some(Summary {
                end: i + 2,
                total,
                chunks,
                first,
            }));
        }
        // field-name ":" field-value
        let mut b = b;
        let name_start = i;
        while is_token(b) {
            i += 1;
            b = byte!(i);
        }
        if i == name_start || b != b':' {
            return Err(BAD_TRAILER);
        }
        loop {
            i += 1;
            b = byte!(i);
            if b == b'\r' {
                break;
            }
            if is_ctl(b) {
                return Err(BAD_TRAILER);
            }
        }
        if byte!(i + 1) != b'\n' {
            return Err(BAD_EOL);
        }
        i += 2;
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Control characters other than HTAB (CR is checked before this).
fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// RFC 9110 `tchar`.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn dechunk(body: &[u8]) -> Result<Option<Body<'_>>, HttpError> {
        decode(body, 0, &Limits::default())
    }

    #[test]
    fn single_chunk_is_borrowed() {
        let (body, end) = dechunk(b"5\r\nhello\r\n0\r\n\r\n").unwrap().unwrap();
        assert!(matches!(body, Cow::Borrowed(b"hello")));
        assert_eq!(end, 15);
        let (body, end) = dechunk(b"0\r\n\r\n").unwrap().unwrap();
        assert!(matches!(body, Cow::Borrowed(b"")));
        assert_eq!(end, 5);
    }

    #[test]
    fn several_chunks_are_joined() {
        let wire = b"3;ext=1\r\nabc\r\nA \t; x=\"y\"\r\n0123456789\r\n000\r\nX-T: 1\r\nY:\r\n\r\nNEXT";
        let (body, end) = dechunk(wire).unwrap().unwrap();
        assert!(matches!(body, Cow::Owned(_)));
        assert_eq!(&body[..], b"abc0123456789");
        assert_eq!(&wire[end..], b"NEXT");
    }

    #[test]
    fn strict_grammar() {
        for (wire, err) in [
            (&b"\r\n"[..], BAD_SIZE),
            (b"x\r\n", BAD_SIZE),
            (b"0x5\r\n", BAD_SIZE),
            (b"-1\r\n", BAD_SIZE),
            (b"5 x\r\n", BAD_SIZE),
            (b"5\n", BAD_EOL),
            (b"5\rx", BAD_EOL),
            (b"5;a\x00\r\n", BAD_EXT),
            (b"5;a\nb\r\n", BAD_EXT),
            (b"2\r\nabc\r\n", BAD_DATA_END),
            (b"2\r\nab\n", BAD_DATA_END),
            (b"0\r\n: v\r\n\r\n", BAD_TRAILER),
            (b"0\r\nbad name: v\r\n\r\n", BAD_TRAILER),
            (b"0\r\nname\r\n\r\n", BAD_TRAILER),
            (b"0\r\nn: a\x01\r\n\r\n", BAD_TRAILER),
            (b"0\r\nn: a\r\r\n", BAD_EOL),
            (b"0\r\n\rx", BAD_EOL),
        ] {
            assert_eq!(
                dechunk(wire).unwrap_err(),
                err,
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn incomplete_is_partial() {
        for wire in [
            &b""[..],
            b"5",
            b"5\r",
            b"5\r\nhel",
            b"5\r\nhello",
            b"5\r\nhello\r",
            b"5\r\nhello\r\n0\r\n",
        ] {
            assert!(
                dechunk(wire).unwrap().is_none(),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn limits() {
        // max_request_bytes = 10 + 2 * 10 = 30.
        let limits = Limits {
            max_body_bytes: 10,
            max_head_bytes: 10,
            ..Limits::default()
        };
        let too_large = HttpError::BodyTooLarge { max: 10 };
        let run = |wire: &[u8]| decode(wire, 0, &limits).map(|o| o.map(|(b, end)| (b.into_owned(), end)));
        // Size over the limit: refused from the size line alone.
        assert_eq!(run(b"b").unwrap_err(), too_large);
        assert_eq!(run(b"ffffffffffffffffffffffff").unwrap_err(), too_large);
        // Running total over the limit.
        assert_eq!(run(b"6\r\nabcdef\r\n5").unwrap_err(), too_large);
        assert!(run(b"6\r\nabcdef\r\n4\r\nabcd\r\n0\r\n\r\n").unwrap().is_some());
        // Framing past max_request_bytes: endless extensions, zero padding, trailers.
        let ext = |n: usize| [&b"1;"[..], &vec![b'a'; n]].concat();
        assert!(run(&ext(27)).unwrap().is_none());
        assert_eq!(run(&ext(28)).unwrap_err(), too_large);
        assert_eq!(run(&[b'0'; 31]).unwrap_err(), too_large);
        let trailer = [&b"0\r\na: "[..], &[b'b'; 40]].concat();
        assert_eq!(run(&trailer).unwrap_err(), too_large);
        // Data that would end past the budget is refused before it arrives.
        assert_eq!(
            run(b"1\r\na\r\n1\r\nb\r\n1\r\nc\r\n1\r\nd\r\n2\r\n").unwrap_err(),
            too_large
        );
        assert!(run(b"1\r\na\r\n1\r\nb\r\n1\r\nc\r\n1\r\nd\r\n1\r\n")
            .unwrap()
            .is_none());
    }
}
