//! The admin HTTP/1.1 listener: one std thread, blocking sockets, one request per connection (answered
//! with `Connection: close`). Admin traffic is a scrape every few seconds and an operator's curl, so a
//! thread and no runtime; every read is bounded in size ([`MAX_HEAD`], [`MAX_BODY`]) and in time
//! ([`IO_TIMEOUT`]), so a slow or hostile client holds the listener for at most that long.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::router::{route, Refusal, Route};
use crate::AdminError;

/// Longest request head (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
/// Longest request body (a `POST /drain` carries none; a little is tolerated and discarded).
pub const MAX_BODY: usize = 1024;
/// Most headers in a request.
pub const MAX_HEADERS: usize = 32;
/// Longest wait for a read or a write on an admin connection.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// An answer to an admin request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Answer {
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }

    pub fn json(status: u16, body: impl Into<String>) -> Self {
        Answer {
            status,
            content_type: "application/json",
            body: body.into(),
        }
    }

    /// Prometheus' text exposition format, version 0.0.4.
    pub fn metrics(body: String) -> Self {
        Answer {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body,
        }
    }
}

/// The admin listener, bound and not yet serving.
#[derive(Debug)]
pub struct AdminServer {
    listener: TcpListener,
    addr: SocketAddr,
}

/// The serving admin thread; [`AdminHandle::stop`] ends it.
#[derive(Debug)]
pub struct AdminHandle {
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl AdminServer {
    pub fn bind(addr: SocketAddr) -> Result<Self, AdminError> {
        let listener = TcpListener::bind(addr).map_err(|source| AdminError::Bind { addr, source })?;
        let addr = listener.local_addr()?;
        Ok(AdminServer { listener, addr })
    }

    /// Where it listens (the port chosen when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves on a thread of its own (`mesh-admin`), answering each routed request with `handler`.
    pub fn spawn(
        self,
        handler: impl Fn(Route) -> Answer + Send + 'static,
    ) -> Result<AdminHandle, AdminError> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("mesh-admin".into())
            .spawn(move || {
                for conn in self.listener.incoming() {
                    if stopping.load(Ordering::Acquire) {
                        break;
                    }
                    // A failed accept (the peer gave up, out of descriptors) costs that connection only.
                    if let Ok(stream) = conn {
                        let _ = serve(stream, &handler);
                    }
                }
            })?;
        Ok(AdminHandle {
            stop,
            addr: self.addr,
            thread: Some(thread),
        })
    }
}

impl AdminHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting (a connection of our own wakes the blocked accept) and joins the thread.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        let wake = match self.addr {
            SocketAddr::V4(a) if a.ip().is_unspecified() => SocketAddr::from(([127, 0, 0, 1], a.port())),
            SocketAddr::V6(a) if a.ip().is_unspecified() => {
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
            }
            a => a,
        };
        if TcpStream::connect_timeout(&wake, IO_TIMEOUT).is_ok() {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// One connection: read one request (bounded), answer it, close.
fn serve(mut stream: TcpStream, handler: &impl Fn(Route) -> Answer) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let (answer, head_only) = match read_request(&mut stream) {
        Ok(Some(Request { method, path, .. })) => {
            let head_only = method == "HEAD";
            let answer = match route(&method, &path) {
                Ok(r) => handler(r),
                Err(refusal) => refusal_answer(refusal),
            };
            (answer, head_only)
        }
        // Closed before a whole request: nothing to answer.
        Ok(None) => return Ok(()),
        Err(bad) => (bad, false),
    };
    write_answer(&mut stream, &answer, head_only)
}

#[derive(Debug)]
struct Request {
    method: String,
    path: String,
}

/// Reads one request head (and discards a small body). `Ok(None)`: the peer closed first. `Err`: the answer
/// to a request that cannot be served (400, 408, 411, 413, 431).
fn read_request(stream: &mut impl Read) -> Result<Option<Request>, Answer> {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut filled = 0;
    loop {
        let n = match stream.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(Answer::text(400, "request ended inside its head\n")),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Answer::text(408, "request head not received in time\n"))
            }
            Err(_) => return Ok(None),
        };
        filled += n;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..filled]) {
            Ok(httparse::Status::Complete(head_len)) => {
                let mut length = 0usize;
                for h in req.headers.iter() {
                    if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        return Err(Answer::text(411, "send a Content-Length, not a chunked body\n"));
                    }
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse().ok())
                            .ok_or_else(|| Answer::text(400, "bad Content-Length\n"))?;
                    }
                }
                if length > MAX_BODY {
                    return Err(Answer::text(
                        413,
                        format!("admin request bodies are limited to {MAX_BODY} bytes\n"),
                    ));
                }
                let request = Request {
                    method: req.method.unwrap_or_default().to_owned(),
                    path: req.path.unwrap_or_default().to_owned(),
                };
                // The body's bytes already read, then the rest (bounded by MAX_BODY), discarded.
                let mut left = length.saturating_sub(filled - head_len);
                let mut sink = [0u8; MAX_BODY];
                while left > 0 {
                    match stream.read(&mut sink[..left]) {
                        Ok(0) => return Err(Answer::text(400, "request ended inside its body\n")),
                        Ok(n) => left -= n,
                        Err(_) => return Err(Answer::text(408, "request body not received in time\n")),
                    }
                }
                return Ok(Some(request));
            }
            Ok(httparse::Status::Partial) if filled == buf.len() => {
                return Err(Answer::text(431, format!("request head over {MAX_HEAD} bytes\n")))
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Answer::text(431, format!("more than {MAX_HEADERS} headers\n")))
            }
            Err(e) => return Err(Answer::text(400, format!("bad request: {e}\n"))),
        }
    }
}

fn refusal_answer(refusal: Refusal) -> Answer {
    match refusal {
        Refusal::NotFound => {
            let paths: Vec<&str> = Route::ALL.iter().map(|(_, p)| *p).collect();
            Answer::text(
                404,
                format!("not found; the admin paths are {}\n", paths.join(" ")),
            )
        }
        Refusal::MethodNotAllowed { allow } => {
            Answer::text(405, format!("method not allowed; use {allow}\n"))
        }
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

fn write_answer(stream: &mut impl Write, a: &Answer, head_only: bool) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        a.status,
        reason_phrase(a.status),
        a.content_type,
        a.body.len()
    );
    if a.status == 405 {
        // The body says which method; the header is what clients read.
        let allow = a.body.rsplit("use ").next().unwrap_or("").trim();
        head.push_str(&format!("Allow: {allow}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(a.body.as_bytes())?;
    }
    stream.flush()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    fn serving() -> AdminHandle {
        let server = AdminServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        server
            .spawn(|r| match r {
                Route::Metrics => Answer::metrics("m_total 1\n".into()),
                Route::Drain => Answer::text(202, "draining\n"),
                other => Answer::text(200, format!("{other:?}\n")),
            })
            .unwrap()
    }

    #[test]
    fn answers_routes_and_refusals_with_reasons() {
        let h = serving();
        let addr = h.local_addr();
        let ok = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Content-Type: text/plain; version=0.0.4"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nm_total 1\n"), "{ok}");
        let head = exchange(addr, b"HEAD /live HTTP/1.1\r\n\r\n");
        assert!(
            head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"),
            "{head}"
        );
        let drain = exchange(addr, b"POST /drain HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}");
        assert!(drain.starts_with("HTTP/1.1 202 Accepted\r\n"), "{drain}");
        let nf = exchange(addr, b"GET /nope HTTP/1.1\r\n\r\n");
        assert!(
            nf.starts_with("HTTP/1.1 404 Not Found\r\n") && nf.contains("/metrics"),
            "{nf}"
        );
        let na = exchange(addr, b"GET /drain HTTP/1.1\r\n\r\n");
        assert!(
            na.starts_with("HTTP/1.1 405 ") && na.contains("Allow: POST\r\n"),
            "{na}"
        );
        let big = exchange(addr, b"POST /drain HTTP/1.1\r\nContent-Length: 100000\r\n\r\n");
        assert!(big.starts_with("HTTP/1.1 413 "), "{big}");
        let chunked = exchange(
            addr,
            b"POST /drain HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert!(chunked.starts_with("HTTP/1.1 411 "), "{chunked}");
        let bad = exchange(addr, b"GET\x01 / HTTP/1.1\r\n\r\n");
        assert!(bad.starts_with("HTTP/1.1 400 "), "{bad}");
        let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        let long = exchange(addr, &huge);
        assert!(long.starts_with("HTTP/1.1 431 "), "{long}");
        h.stop();
    }

    #[test]
    fn a_client_that_sends_nothing_is_cut_off() {
        let h = serving();
        let addr = h.local_addr();
        let started = std::time::Instant::now();
        let slow = exchange(addr, b"GET /met");
        assert!(slow.starts_with("HTTP/1.1 408 "), "{slow}");
        assert!(started.elapsed() < IO_TIMEOUT * 3);
        // And the listener serves the next one.
        assert!(exchange(addr, b"GET /live HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200"));
        h.stop();
    }
}
