//! Request framing: bodies, pipelining, splits, keep-alive, 100-continue, limits and every error path.
#![allow(clippy::unwrap_used)]

use std::borrow::Cow;

use mesh_http::{parse_request, ConnectionHeader, HttpError, HttpRequest, Limits, Parse};

fn complete(buf: &[u8]) -> HttpRequest<'_> {
    complete_with(buf, &Limits::default())
}

fn complete_with<'a>(buf: &'a [u8], limits: &Limits) -> HttpRequest<'a> {
    match parse_request(buf, limits) {
        Ok(Parse::Complete(r)) => r,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn error(buf: &[u8]) -> HttpError {
    error_with(buf, &Limits::default())
}

fn error_with(buf: &[u8], limits: &Limits) -> HttpError {
    match parse_request(buf, limits) {
        Err(e) => e,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn partial(buf: &[u8]) -> bool {
    match parse_request(buf, &Limits::default()) {
        Ok(Parse::Partial { send_continue }) => send_continue,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

const CHALLENGE: &[u8] = b"POST / HTTP/1.1\r\nHost: 127.0.0.1:20000\r\nContent-Type: application/x-www-form-urlencoded\r\n\
Content-Length: 139\r\n\r\n\
interface=com.alibaba.dubbo.performance.demo.provider.IHelloService&method=hash&parameterTypesString=Ljava%2Flang%2FString%3B&parameter=abc";

#[test]
fn challenge_request() {
    assert_eq!(
        CHALLENGE.len() - CHALLENGE.windows(4).position(|w| w == b"\r\n\r\n").unwrap() - 4,
        139
    );
    let r = complete(CHALLENGE);
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/");
    assert_eq!(r.minor_version, 1);
    assert!(r.keep_alive);
    assert_eq!(r.content_type, Some("application/x-www-form-urlencoded"));
    assert!(r.is_form());
    assert!(matches!(r.body, Cow::Borrowed(_)));
    assert!(r.body.starts_with(b"interface=") && r.body.ends_with(b"parameter=abc"));
    assert_eq!(r.consumed, CHALLENGE.len());
    assert_eq!(r.response_connection(), ConnectionHeader::Omit);
    let form = mesh_http::parse_form(&r.body, &Limits::default()).unwrap();
    assert_eq!(form.args, [mesh_dubbo::Value::str("abc")]);
}

#[test]
fn no_body_is_empty_body() {
    let r = complete(b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\n\r\nGARBAGE");
    assert_eq!(r.path, "/x?y=1");
    assert!(r.body.is_empty());
    assert_eq!(r.consumed, 32);
    assert_eq!(r.content_type, None);
    assert!(!r.is_form());
    // Leading empty lines before a request line are skipped (and counted in `consumed`).
    let r = complete(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n");
    assert_eq!(r.consumed, 22);
}

#[test]
fn content_type_variants() {
    let r = complete(b"POST / HTTP/1.1\r\ncontent-type:  Application/X-WWW-Form-Urlencoded ; charset=UTF-8 \r\ncontent-type: text/plain\r\n\r\n");
    assert_eq!(
        r.content_type,
        Some("Application/X-WWW-Form-Urlencoded ; charset=UTF-8")
    );
    assert!(r.is_form());
    let r = complete(b"POST / HTTP/1.1\r\nContent-Type: application/json\r\n\r\n");
    assert!(!r.is_form());
}

#[test]
fn chunked_body() {
    let wire = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;name=val\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\n\r\nNEXT";
    let r = complete(wire);
    assert_eq!(&r.body[..], b"Wikipedia in\r\n\r\nchunks.");
    assert!(matches!(r.body, Cow::Owned(_)));
    assert_eq!(&wire[r.consumed..], b"NEXT");
    // One chunk: borrowed.
    let r = complete(b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    assert!(matches!(r.body, Cow::Borrowed(b"abc")));
    // Only the last chunk: empty.
    let r = complete(b"POST / HTTP/1.1\r\ntransfer-encoding:  chunked \r\n\r\n0\r\n\r\n");
    assert!(r.body.is_empty());
}

#[test]
fn pipelined_requests_in_order() {
    let mut buf = Vec::new();
    buf.extend_from_slice(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n");
    buf.extend_from_slice(b"POST /2 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
    buf.extend_from_slice(
        b"POST /3 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n",
    );
    buf.extend_from_slice(CHALLENGE);
    buf.extend_from_slice(b"GET /5 HTTP/1.1\r\nConnection: close\r\n\r\n");
    buf.extend_from_slice(b"POST /6 HTTP/1.1\r\nContent-Length: 10\r\n\r\npart");

    let mut off = 0;
    let mut seen = Vec::new();
    loop {
        match parse_request(&buf[off..], &Limits::default()).unwrap() {
            Parse::Complete(r) => {
                seen.push((r.path.to_owned(), r.body.into_owned(), r.keep_alive));
                off += r.consumed;
            }
            Parse::Partial { send_continue } => {
                assert!(!send_continue);
                break;
            }
        }
    }
    let paths: Vec<_> = seen.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(paths, ["/1", "/2", "/3", "/", "/5"]);
    assert_eq!(seen[1].1, b"hello");
    assert_eq!(seen[2].1, b"abc");
    assert_eq!(
        seen.iter().map(|s| s.2).collect::<Vec<_>>(),
        [true, true, true, true, false]
    );
    assert_eq!(&buf[off..], b"POST /6 HTTP/1.1\r\nContent-Length: 10\r\n\r\npart");
}

/// Every prefix of a request is Partial; `send_continue` turns on exactly when the head is complete.
fn check_every_split(wire: &[u8], head_len: usize, expect: bool) {
    let full = complete(wire);
    assert_eq!(full.consumed, wire.len());
    for k in 0..wire.len() {
        let send_continue = partial(&wire[..k]);
        assert_eq!(send_continue, expect && k >= head_len, "split at {k}");
    }
    // Bytes after the request do not change it.
    let mut longer = wire.to_vec();
    longer.extend_from_slice(b"GET / HTTP/1.1\r\n");
    assert_eq!(complete(&longer), full);
}

#[test]
fn split_at_every_byte() {
    let head = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n";
    check_every_split(&[&head[..], b"hello"].concat(), head.len(), false);
    let head = b"POST /c HTTP/1.1\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n";
    let body = b"3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: v\r\n\r\n";
    check_every_split(&[&head[..], body].concat(), head.len(), true);
    check_every_split(CHALLENGE, CHALLENGE.len() - 139, false);
    check_every_split(b"\r\nGET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 0, false);
}

#[test]
fn expect_100_continue() {
    let head = b"POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 2000\r\n\r\n";
    assert!(!partial(&head[..head.len() - 1]));
    assert!(partial(head));
    assert!(partial(&[&head[..], &[b'x'; 1999]].concat()));
    assert_eq!(complete(&[&head[..], &[b'x'; 2000]].concat()).body.len(), 2000);
    // Nothing to wait for: no Partial at all.
    complete(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n");
    complete(b"GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n");
    // Ignored in HTTP/1.0 (RFC 9110), and for other expectations.
    assert!(!partial(
        b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    ));
    assert!(!partial(
        b"POST / HTTP/1.1\r\nExpect: 200-ok\r\nContent-Length: 5\r\n\r\n"
    ));
    // The body is refused before the client sends it when too large.
    let e = error(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1048577\r\n\r\n");
    assert_eq!(
        (e.status(), e.to_string().as_str()),
        (413, "request body larger than 1048576 bytes")
    );
}

#[test]
fn keep_alive_rules() {
    for (request, keep_alive, conn) in [
        (&b"GET / HTTP/1.1\r\n\r\n"[..], true, ConnectionHeader::Omit),
        (
            b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
            false,
            ConnectionHeader::Close,
        ),
        (
            b"GET / HTTP/1.1\r\nConnection: Keep-Alive\r\n\r\n",
            true,
            ConnectionHeader::Omit,
        ),
        (
            b"GET / HTTP/1.1\r\nConnection: upgrade, CLOSE\r\n\r\n",
            false,
            ConnectionHeader::Close,
        ),
        (
            b"GET / HTTP/1.1\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
            false,
            ConnectionHeader::Close,
        ),
        (
            b"GET / HTTP/1.1\r\nConnection: closed\r\n\r\n",
            true,
            ConnectionHeader::Omit,
        ),
        (b"GET / HTTP/1.0\r\n\r\n", false, ConnectionHeader::Close),
        (
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            true,
            ConnectionHeader::KeepAlive,
        ),
        (
            b"GET / HTTP/1.0\r\nconnection: TE, Keep-Alive \r\n\r\n",
            true,
            ConnectionHeader::KeepAlive,
        ),
        (
            b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
            false,
            ConnectionHeader::Close,
        ),
        (
            b"GET / HTTP/1.0\r\nConnection: close\r\n\r\n",
            false,
            ConnectionHeader::Close,
        ),
    ] {
        let r = complete(request);
        assert_eq!(r.keep_alive, keep_alive, "{:?}", String::from_utf8_lossy(request));
        assert_eq!(
            r.response_connection(),
            conn,
            "{:?}",
            String::from_utf8_lossy(request)
        );
    }
    assert_eq!(complete(b"GET / HTTP/1.0\r\n\r\n").minor_version, 0);
}

#[test]
fn content_length_rules() {
    assert_eq!(
        &complete(b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc").body[..],
        b"abc"
    );
    assert_eq!(
        &complete(b"POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 003\r\n\r\nabc").body[..],
        b"abc"
    );
    for bad in [
        &b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1 1\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 3,\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
    ] {
        let e = error(bad);
        assert_eq!(
            (e.status(), e.to_string().as_str()),
            (400, "invalid Content-Length"),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn transfer_encoding_rules() {
    for (bad, status, reason) in [
        (
            &b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            400,
            "both Content-Length and Transfer-Encoding",
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\n",
            400,
            "both Content-Length and Transfer-Encoding",
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            501,
            "unsupported Transfer-Encoding",
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            501,
            "unsupported Transfer-Encoding",
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            501,
            "unsupported Transfer-Encoding",
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            400,
            "invalid Transfer-Encoding",
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
            "invalid Transfer-Encoding",
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n",
            400,
            "invalid Transfer-Encoding",
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked,\r\n\r\n",
            400,
            "invalid Transfer-Encoding",
        ),
        (
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
            "invalid Transfer-Encoding",
        ),
    ] {
        let e = error(bad);
        assert_eq!(
            (e.status(), e.to_string().as_str()),
            (status, reason),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn chunked_errors_through_the_request() {
    let head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (body, reason) in [
        (&b"g\r\n"[..], "bad chunk size"),
        (b" 5\r\nhello\r\n0\r\n\r\n", "bad chunk size"),
        (b"5\nhello\r\n0\r\n\r\n", "bad line ending in chunked body"),
        (b"5;\x01\r\nhello\r\n0\r\n\r\n", "bad chunk extension"),
        (b"5\r\nhelloX\r\n0\r\n\r\n", "missing CRLF after chunk data"),
        (b"0\r\nno colon\r\n\r\n", "bad trailer"),
    ] {
        let e = error(&[&head[..], body].concat());
        assert_eq!(
            (e.status(), e.to_string().as_str()),
            (400, reason),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn request_line_and_header_errors() {
    for (bad, reason) in [
        (&b"GET\r\n\r\n"[..], "request line: invalid method or target"),
        (
            b"GET  / HTTP/1.1\r\n\r\n",
            "request line: invalid method or target",
        ),
        (
            b"G(T / HTTP/1.1\r\n\r\n",
            "request line: invalid method or target",
        ),
        (
            b"GET /\x7f HTTP/1.1\r\n\r\n",
            "request line: invalid method or target",
        ),
        (b"GET / HTTP/2.0\r\n\r\n", "request line: invalid HTTP version"),
        (b"GET / HTTP/1.1 \r\n\r\n", "request line: invalid line ending"),
        (b"GET / FTP/1.1\r\n\r\n", "request line: invalid HTTP version"),
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            "request line: invalid method or target",
        ),
        (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", "header: invalid name"),
        (b"GET / HTTP/1.1\r\n: x\r\n\r\n", "header: invalid name"),
        (b"GET / HTTP/1.1\r\nName: a\x00b\r\n\r\n", "header: invalid value"),
        (
            b"GET / HTTP/1.1\r\nContent-Type: \xff\xfe\r\n\r\n",
            "invalid Content-Type",
        ),
    ] {
        let e = error(bad);
        assert_eq!(
            (e.status(), e.to_string().as_str()),
            (400, reason),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
        assert!(e.closes_connection());
    }
}

#[test]
fn head_limits_431() {
    let limits = Limits {
        max_head_bytes: 64,
        max_headers: 3,
        ..Limits::default()
    };
    // Incomplete and over the limit: refused without waiting for the end of the head.
    let e = error_with(&[b'G'; 65], &limits);
    assert_eq!(
        (e.status(), e.to_string().as_str()),
        (431, "request head larger than 64 bytes")
    );
    assert!(matches!(
        parse_request(&[b'G'; 64], &limits),
        Ok(Parse::Partial { send_continue: false })
    ));
    // Complete but over the limit.
    let long = [&b"GET / HTTP/1.1\r\nX: "[..], &[b'v'; 60], b"\r\n\r\n"].concat();
    assert_eq!(error_with(&long, &limits).status(), 431);
    // Exactly at the limit.
    let exact = [&b"GET / HTTP/1.1\r\nX: "[..], &[b'v'; 64 - 23], b"\r\n\r\n"].concat();
    assert_eq!(exact.len(), 64);
    assert_eq!(complete_with(&exact, &limits).consumed, 64);
    // Only newlines, forever.
    assert_eq!(error_with(&[b'\n'; 65], &limits).status(), 431);
    // Header count.
    let e = error_with(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", &limits);
    assert_eq!(
        (e.status(), e.to_string().as_str()),
        (431, "more than 3 header fields")
    );
    complete_with(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", &limits);
    // A large header table (heap) works the same.
    let many = Limits {
        max_headers: 200,
        max_head_bytes: 64 * 1024,
        ..Limits::default()
    };
    let mut req = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..200 {
        req.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    complete_with(&req, &many);
    let too_many = [&req[..req.len() - 2], b"X: y\r\n\r\n"].concat();
    assert_eq!(
        error_with(&too_many, &many),
        HttpError::TooManyHeaders { max: 200 }
    );
    // max_headers is capped.
    let capped = Limits {
        max_headers: usize::MAX,
        ..Limits::default()
    };
    complete_with(b"GET / HTTP/1.1\r\nA: 1\r\n\r\n", &capped);
}

#[test]
fn body_limits_413() {
    let limits = Limits {
        max_body_bytes: 10,
        ..Limits::default()
    };
    let too_large = HttpError::BodyTooLarge { max: 10 };
    // Decided from the head alone, before any body byte is there.
    assert_eq!(
        error_with(b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n", &limits),
        too_large
    );
    assert_eq!(
        error_with(
            b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n",
            &limits
        ),
        too_large
    );
    assert_eq!(
        complete_with(
            b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789",
            &limits
        )
        .body
        .len(),
        10
    );
    // While de-chunking: from the size line, and from the running total.
    let head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(error_with(&[&head[..], b"b"].concat(), &limits), too_large);
    assert_eq!(
        error_with(&[&head[..], b"fffffffffffffffffffffffffff"].concat(), &limits),
        too_large
    );
    assert_eq!(
        error_with(&[&head[..], b"6\r\nabcdef\r\n5\r\n"].concat(), &limits),
        too_large
    );
    assert_eq!(
        complete_with(
            &[&head[..], b"6\r\nabcdef\r\n4\r\nabcd\r\n0\r\n\r\n"].concat(),
            &limits
        )
        .body
        .len(),
        10
    );
    // Endless chunk extensions: refused past max_request_bytes.
    let ext = [&head[..], b"1;", &vec![b'e'; limits.max_request_bytes()]].concat();
    assert_eq!(error_with(&ext, &limits), too_large);
    assert!(matches!(
        parse_request(&ext[..limits.max_request_bytes() - 1], &limits),
        Ok(Parse::Partial { .. })
    ));
}

#[test]
fn every_framing_error_closes_and_reads_as_one_line() {
    let errors = [
        error(b"GET\r\n\r\n"),
        error(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n"),
        error_with(&[b'G'; 9000], &Limits::default()),
        error(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
        error(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
        error(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
        error(b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"),
    ];
    for e in errors {
        assert!(e.closes_connection(), "{e}");
        assert!(!e.to_string().contains('\n'));
    }
}
