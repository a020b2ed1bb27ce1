//! Response writing: exact bytes, Connection handling, errors, and no reallocation.
#![allow(clippy::unwrap_used)]

use bytes::BytesMut;
use mesh_http::{
    parse_request, reason_phrase, write_error, write_response, write_response_with, write_status,
    ConnectionHeader, HttpError, Limits, Parse, CONTINUE,
};

fn text(buf: &BytesMut) -> &str {
    std::str::from_utf8(buf).unwrap()
}

#[test]
fn ok_response_bytes() {
    let mut buf = BytesMut::new();
    write_response(&mut buf, 200, "text/plain", b"99162322", true);
    assert_eq!(
        text(&buf),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 8\r\n\r\n99162322"
    );
    buf.clear();
    write_response(&mut buf, 200, "text/plain", b"", false);
    assert_eq!(
        text(&buf),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    buf.clear();
    write_response_with(&mut buf, 200, "text/plain", b"1", ConnectionHeader::KeepAlive);
    assert_eq!(
        text(&buf),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n1"
    );
    assert_eq!(CONTINUE, b"HTTP/1.1 100 Continue\r\n\r\n");
}

#[test]
fn responses_append_and_parse_back() {
    let mut buf = BytesMut::new();
    let big = vec![b'z'; 123_456];
    write_response(&mut buf, 200, "application/octet-stream", &big, true);
    write_status(&mut buf, 504, "upstream timed out", true);
    write_response(&mut buf, 204, "text/plain", b"", false);
    let mut off = 0;
    let mut seen = Vec::new();
    while off < buf.len() {
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut resp = httparse::Response::new(&mut headers);
        let head = match resp.parse(&buf[off..]).unwrap() {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => panic!("partial response"),
        };
        let len: usize = resp
            .headers
            .iter()
            .find(|h| h.name == "Content-Length")
            .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
            .unwrap();
        seen.push((
            resp.code.unwrap(),
            resp.reason.unwrap().to_owned(),
            buf[off + head..off + head + len].to_vec(),
        ));
        off += head + len;
    }
    assert_eq!(off, buf.len());
    assert_eq!(seen[0].0, 200);
    assert_eq!(seen[0].2, big);
    assert_eq!(
        seen[1],
        (
            504,
            "Gateway Timeout".to_owned(),
            b"upstream timed out\n".to_vec()
        )
    );
    assert_eq!(seen[2].0, 204);
}

#[test]
fn small_response_does_not_reallocate() {
    let mut buf = BytesMut::with_capacity(4096);
    let ptr = buf.as_ptr();
    for _ in 0..20 {
        write_response(&mut buf, 200, "text/plain", b"-1234567890", true);
    }
    assert_eq!(buf.as_ptr(), ptr);
    // An empty buffer grows exactly once, to at least the response's size.
    let mut buf = BytesMut::new();
    write_response(&mut buf, 200, "text/plain", b"42", true);
    assert!(buf.capacity() >= buf.len());
}

#[test]
fn error_responses() {
    let mut buf = BytesMut::new();
    write_error(&mut buf, &HttpError::ParameterCount { args: 3, types: 1 }, true);
    assert_eq!(
        text(&buf),
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 35\r\n\r\n3 parameters for 1 parameter types\n"
    );
    // A framing error closes the connection even if the request wanted to keep it.
    buf.clear();
    write_error(&mut buf, &HttpError::BodyTooLarge { max: 1024 }, true);
    assert_eq!(
        text(&buf),
        "HTTP/1.1 413 Content Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 36\r\nConnection: close\r\n\r\nrequest body larger than 1024 bytes\n"
    );
    for (e, status) in [
        (
            HttpError::HeadTooLarge { max: 1 },
            "431 Request Header Fields Too Large",
        ),
        (HttpError::UnsupportedTransferEncoding, "501 Not Implemented"),
        (HttpError::UnsupportedMediaType, "415 Unsupported Media Type"),
        (HttpError::MissingField("method"), "400 Bad Request"),
    ] {
        buf.clear();
        write_error(&mut buf, &e, false);
        let s = text(&buf);
        assert!(s.starts_with(&format!("HTTP/1.1 {status}\r\n")), "{s}");
        assert!(s.contains("Connection: close\r\n"));
        assert!(s.ends_with(&format!("\r\n\r\n{e}\n")));
        let len = s
            .split("Content-Length: ")
            .nth(1)
            .unwrap()
            .split("\r\n")
            .next()
            .unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), e.to_string().len() + 1);
    }
}

#[test]
fn status_responses() {
    let mut buf = BytesMut::new();
    write_status(&mut buf, 503, "no provider available", false);
    assert_eq!(
        text(&buf),
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 22\r\nConnection: close\r\n\r\nno provider available\n"
    );
    assert_eq!(reason_phrase(502), "Bad Gateway");
    assert_eq!(reason_phrase(599), "");
}

#[test]
fn answers_a_parsed_request() {
    // The loop a shard runs: parse, answer in order with the right Connection header.
    let input = b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\nConnection: close\r\n\r\nGET /d HTTP/1.1\r\n\r\n";
    let mut out = BytesMut::new();
    let mut off = 0;
    while let Parse::Complete(r) = parse_request(&input[off..], &Limits::default()).unwrap() {
        write_response_with(
            &mut out,
            200,
            "text/plain",
            r.path.as_bytes(),
            r.response_connection(),
        );
        off += r.consumed;
        if !r.keep_alive {
            break;
        }
    }
    let s = text(&out);
    assert_eq!(
        s.matches("HTTP/1.1 200 OK").count(),
        3,
        "nothing after Connection: close is answered"
    );
    assert!(s.contains("Connection: keep-alive\r\n\r\n/a"));
    assert!(s.contains("Content-Length: 2\r\n\r\n/b"));
    assert!(s.ends_with("Connection: close\r\n\r\n/c"));
}
