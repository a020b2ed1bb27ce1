//! The HTTP targets: keep-alive form and JSON calls to the consumer agent, answers checked.

use super::*;

/// A parsed HTTP answer.
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) body: Bytes,
    pub(crate) close: bool,
}

pub(crate) struct HttpConn {
    pub(crate) stream: TcpStream,
    pub(crate) buf: BytesMut,
}

const MAX_HTTP_HEAD: usize = 64 * 1024;
const MAX_HTTP_BODY: usize = 1024 * 1024;

impl HttpConn {
    async fn fill(&mut self) -> io::Result<()> {
        self.buf.reserve(16 * 1024);
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        Ok(())
    }

    pub(crate) async fn exchange(&mut self, req: &[u8]) -> io::Result<HttpResponse> {
        self.stream.write_all(req).await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> io::Result<HttpResponse> {
        let head_len = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > MAX_HTTP_HEAD {
                return Err(invalid("response head too long"));
            }
            self.fill().await?;
        };
        let head = self.buf.split_to(head_len);
        let head = std::str::from_utf8(&head).map_err(|_| invalid("response head is not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") {
            return Err(invalid(format!("bad status line {status_line:?}")));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
        let mut close = version == "HTTP/1.0";
        let mut length = None;
        let mut chunked = false;
        for line in lines.filter(|l| !l.is_empty()) {
            let (name, value) = line.split_once(':').ok_or_else(|| invalid("bad header line"))?;
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                let n: usize = value.parse().map_err(|_| invalid("bad content-length"))?;
                length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                let v = value.to_ascii_lowercase();
                if v.contains("close") {
                    close = true;
                } else if v.contains("keep-alive") {
                    close = false;
                }
            }
        }
        if (100..200).contains(&status) {
            // An interim answer: the real one follows.
            return Box::pin(self.read_response()).await;
        }
        let body = if chunked {
            self.read_chunked().await?
        } else if let Some(n) = length {
            if n > MAX_HTTP_BODY {
                return Err(invalid("response body too large"));
            }
            while self.buf.len() < n {
                self.fill().await?;
            }
            self.buf.split_to(n).freeze()
        } else if status == 204 || status == 304 {
            Bytes::new()
        } else {
            // Delimited by the end of the connection.
            close = true;
            loop {
                if self.buf.len() > MAX_HTTP_BODY {
                    return Err(invalid("response body too large"));
                }
                self.buf.reserve(16 * 1024);
                if self.stream.read_buf(&mut self.buf).await? == 0 {
                    break;
                }
            }
            self.buf.split().freeze()
        };
        Ok(HttpResponse { status, body, close })
    }

    async fn read_line(&mut self) -> io::Result<BytesMut> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let mut line = self.buf.split_to(i + 2);
                line.truncate(i);
                return Ok(line);
            }
            if self.buf.len() > MAX_HTTP_HEAD {
                return Err(invalid("chunk line too long"));
            }
            self.fill().await?;
        }
    }

    async fn read_chunked(&mut self) -> io::Result<Bytes> {
        let mut body = BytesMut::new();
        loop {
            let line = self.read_line().await?;
            let size = std::str::from_utf8(&line)
                .ok()
                .and_then(|l| usize::from_str_radix(l.split(';').next().unwrap_or("").trim(), 16).ok())
                .ok_or_else(|| invalid("bad chunk size"))?;
            if size == 0 {
                // Trailers up to the empty line.
                while !self.read_line().await?.is_empty() {}
                return Ok(body.freeze());
            }
            if body.len() + size > MAX_HTTP_BODY {
                return Err(invalid("response body too large"));
            }
            while self.buf.len() < size + 2 {
                self.fill().await?;
            }
            body.extend_from_slice(&self.buf[..size]);
            self.buf.advance(size + 2);
        }
    }
}

pub(crate) fn http_request(out: &mut Vec<u8>, host: &str, path: &str, param: &str) {
    use std::io::Write as _;
    const PREFIX: &str = "interface=com.alibaba.dubbo.performance.demo.provider.IHelloService&method=hash\
                          &parameterTypesString=Ljava%2Flang%2FString%3B&parameter=";
    out.clear();
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{PREFIX}{param}",
        PREFIX.len() + param.len()
    );
}

/// The keep-alive `POST` of a [`Call::User`] call through the JSON API.
fn http_user_request(host: &str) -> Vec<u8> {
    format!(
        "POST {} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         x-dubbo-service-method-overloading: {USER_CLASS}\r\nContent-Length: {}\r\n\r\n{USER_JSON_BODY}",
        user_json_path(),
        USER_JSON_BODY.len()
    )
    .into_bytes()
}

/// Checks the answer of a [`Call::User`] call through the JSON API.
fn check_user_answer(resp: &HttpResponse, expected: &serde_json::Value) -> Outcome {
    if resp.status != 200 {
        return Err(format!("http_{}", resp.status).into());
    }
    match serde_json::from_slice::<serde_json::Value>(&resp.body) {
        Ok(v) if v == *expected => Ok(()),
        Ok(_) => Err("wrong_answer".into()),
        Err(_) => Err("bad_response".into()),
    }
}

pub(super) async fn http_conn(plan: Arc<Plan>, c: usize) {
    let Target::Http { addr, host, path } = plan.cfg.target.clone() else {
        return;
    };
    let mut rng = plan.rng(c);
    let mut conn: Option<HttpConn> = None;
    let mut backoff = Backoff::new();
    let mut param = String::with_capacity(plan.cfg.max_len);
    let mut req = Vec::with_capacity(plan.cfg.max_len + 512);
    let mut expected = String::with_capacity(12);
    let user = (plan.cfg.call == Call::User).then(|| (http_user_request(&host), user_answer_json()));
    let mut j = 0u64;
    while let Some(t) = plan.next(c, j).await {
        j += 1;
        let from = t.intended.unwrap_or_else(Instant::now);
        let conn_ref = match &mut conn {
            Some(cn) => cn,
            None => match connect(addr, plan.cfg.timeout).await {
                Ok(stream) => {
                    backoff.reset();
                    conn.insert(HttpConn {
                        stream,
                        buf: BytesMut::with_capacity(16 * 1024),
                    })
                }
                Err(_) => {
                    plan.record(c, t.counted, from, None, Err("connect".into()));
                    if !backoff.wait(&plan).await {
                        break;
                    }
                    continue;
                }
            },
        };
        if user.is_none() {
            random_param(&mut rng, plan.cfg.max_len, &mut param);
            expected.clear();
            {
                use std::fmt::Write as _;
                let _ = write!(expected, "{}", java_string_hash(&param));
            }
            http_request(&mut req, &host, &path, &param);
        }
        let wire: &[u8] = match &user {
            Some((fixed, _)) => fixed,
            None => &req,
        };
        let sent_at = Instant::now();
        let from = t.intended.unwrap_or(sent_at);
        plan.sent(c, t.counted, t.intended, sent_at);
        let outcome = match tokio::time::timeout(plan.cfg.timeout, conn_ref.exchange(wire)).await {
            Err(_) => {
                conn = None;
                Err("timeout".into())
            }
            Ok(Err(e)) => {
                conn = None;
                Err(io_kind(&e))
            }
            Ok(Ok(resp)) => {
                if resp.close {
                    conn = None;
                }
                if let Some((_, want)) = &user {
                    check_user_answer(&resp, want)
                } else if resp.status != 200 {
                    Err(format!("http_{}", resp.status).into())
                } else if resp.body == expected.as_bytes() {
                    Ok(())
                } else {
                    Err("wrong_answer".into())
                }
            }
        };
        plan.record(c, t.counted, from, Some(sent_at), outcome);
    }
}
