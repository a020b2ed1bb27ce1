//! Idle keep-alive connections to the consumer agent's HTTP front: `connections` sockets, each sending one
//! `hash(s)` call (answer checked as [`crate::loadgen`] checks it) and then staying open without sending
//! anything, as the clients of a sidecar do between bursts. The memory benchmark holds thousands of them
//! (`loadgen --idle-connections N`) and reads the agent's RSS.
//!
//! Connections are opened `opening` at a time (a burst of thousands of SYNs would overflow the listen
//! backlog); a connection whose call fails is counted by kind and closed, the others are handed back open.

use std::collections::BTreeMap;
use std::io;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mesh_dubbo::java_string_hash;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::loadgen::{connect, http_request, HttpConn, Target};

/// What to open.
#[derive(Debug, Clone)]
pub struct IdleConfig {
    pub target: Target,
    pub connections: usize,
    /// Connections being opened (connect + first call) at the same time.
    pub opening: usize,
    /// Longest wait for a connect, and for the first call's answer.
    pub timeout: Duration,
}

/// How the opening went.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct IdleReport {
    /// Connections open, their first call answered correctly.
    pub open: usize,
    /// Failed connections by kind (`connect`, `timeout`, `io`, `http_<status>`, `wrong_answer`).
    pub errors: BTreeMap<String, u64>,
    /// Milliseconds from the first connect to the last connection opened.
    pub open_ms: u64,
}

/// Opens the connections; returns the open ones (to hold) and the report.
pub async fn open_idle(cfg: &IdleConfig) -> io::Result<(Vec<TcpStream>, IdleReport)> {
    let Target::Http { addr, host, path } = cfg.target.clone() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "idle connections need an http:// target",
        ));
    };
    let t0 = Instant::now();
    let mut report = IdleReport::default();
    let mut open = Vec::with_capacity(cfg.connections);
    let mut tasks = JoinSet::new();
    let mut next = 0usize;
    loop {
        while next < cfg.connections && tasks.len() < cfg.opening.max(1) {
            let (host, path, timeout) = (host.clone(), path.clone(), cfg.timeout);
            // A different parameter per connection: each answer is checked against its own hash.
            let param = format!("idle{next}");
            tasks.spawn(async move { one_call(addr, &host, &path, &param, timeout).await });
            next += 1;
        }
        let Some(done) = tasks.join_next().await else {
            break;
        };
        match done {
            Ok(Ok(stream)) => open.push(stream),
            Ok(Err(kind)) => *report.errors.entry(kind).or_insert(0) += 1,
            Err(e) => return Err(io::Error::other(e)),
        }
    }
    report.open = open.len();
    report.open_ms = t0.elapsed().as_millis() as u64;
    Ok((open, report))
}

/// Connects and makes one call; the stream back when it was answered correctly and stays open.
async fn one_call(
    addr: std::net::SocketAddr,
    host: &str,
    path: &str,
    param: &str,
    timeout: Duration,
) -> Result<TcpStream, String> {
    let stream = connect(addr, timeout).await.map_err(|_| "connect".to_owned())?;
    let mut conn = HttpConn {
        stream,
        buf: BytesMut::with_capacity(1024),
    };
    let mut req = Vec::with_capacity(512);
    http_request(&mut req, host, path, param);
    let resp = match tokio::time::timeout(timeout, conn.exchange(&req)).await {
        Err(_) => return Err("timeout".to_owned()),
        Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidData => return Err("bad_response".to_owned()),
        Ok(Err(_)) => return Err("io".to_owned()),
        Ok(Ok(resp)) => resp,
    };
    if resp.status != 200 {
        return Err(format!("http_{}", resp.status));
    }
    if resp.body != java_string_hash(param).to_string().as_bytes() {
        return Err("wrong_answer".to_owned());
    }
    if resp.close {
        return Err("closed".to_owned());
    }
    Ok(conn.stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A keep-alive HTTP server answering the form's `hash(parameter)` (or a wrong answer for parameters
    /// ending in `wrong`); counts connections open now.
    async fn server(open_now: Arc<AtomicUsize>) -> std::net::SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let open_now = open_now.clone();
                tokio::spawn(async move {
                    open_now.fetch_add(1, Ordering::SeqCst);
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // One request (head + Content-Length body), then wait for the client to close.
                    loop {
                        let n = s.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).to_string();
                        let Some((head, body)) = text.split_once("\r\n\r\n") else {
                            continue;
                        };
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap();
                        if body.len() < len {
                            continue;
                        }
                        let param = body.rsplit_once("parameter=").unwrap().1.to_owned();
                        let answer = if param.ends_with("7") {
                            "0".to_owned()
                        } else {
                            java_string_hash(&param).to_string()
                        };
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{answer}",
                            answer.len()
                        );
                        s.write_all(resp.as_bytes()).await.unwrap();
                        buf.clear();
                    }
                    open_now.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn opens_checks_and_holds_the_connections() {
        let open_now = Arc::new(AtomicUsize::new(0));
        let addr = server(open_now.clone()).await;
        let cfg = IdleConfig {
            target: format!("http://{addr}/").parse().unwrap(),
            connections: 30,
            opening: 4,
            timeout: Duration::from_secs(5),
        };
        let (held, report) = open_idle(&cfg).await.unwrap();
        // Parameters idle7, idle17 and idle27 get a wrong answer from this server.
        assert_eq!(report.open, 27);
        assert_eq!(report.errors.get("wrong_answer"), Some(&3));
        assert_eq!(held.len(), 27);
        // The held ones are still open on the server's side (bounded wait for the failed ones to close).
        for _ in 0..200 {
            if open_now.load(Ordering::SeqCst) == 27 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(open_now.load(Ordering::SeqCst), 27);
        drop(held);
    }

    #[tokio::test]
    async fn a_dubbo_target_is_refused() {
        let cfg = IdleConfig {
            target: "dubbo://127.0.0.1:1".parse().unwrap(),
            connections: 1,
            opening: 1,
            timeout: Duration::from_secs(1),
        };
        assert_eq!(
            open_idle(&cfg).await.unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
