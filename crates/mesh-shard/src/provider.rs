//! The provider agent's shard: Dubbo frames in from consumer agents, forwarded to the local Dubbo provider
//! over a few persistent multiplexed connections with request ids rewritten, answers routed back.
//!
//! When the local provider speaks hessian2 (the agent link's serialization) frames are forwarded as bytes
//! with only the id changed; for a fastjson provider each request and answer is transcoded.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use glommio::net::TcpStream;
use mesh_dubbo::{Body, Codec, CodecError, Frame, Header, Response, Serialization, Status};

use crate::error::CallError;
use crate::io::{read_into, split, OutQueue, Stream};

/// Longest TLS handshake a consumer agent gets.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
use crate::runtime::ShardControl;
use crate::sync::WaitQueue;
use crate::upstream::{Pool, UpstreamConfig};

/// Settings of one provider-agent shard.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub listen: SocketAddr,
    /// The local Dubbo provider.
    pub dubbo: SocketAddr,
    /// What the local provider speaks.
    pub serialization: Serialization,
    pub upstream: UpstreamConfig,
    pub max_connections: usize,
    pub read_buffer: usize,
    /// The local provider's thread cap, shared by every shard of this agent; `None`: no limit here.
    pub limit: Option<Arc<ConcurrencyLimit>>,
    /// Calls waiting (per shard) for the local provider while it is at its cap; beyond it, status 100.
    pub queue_limit: usize,
    /// Longest wait in that queue; then status 100.
    pub queue_timeout: Duration,
    /// Calls in flight per consumer connection before the agent stops reading from it.
    pub max_inflight_per_connection: usize,
    /// Calls must carry this Dubbo `token` attachment.
    pub token: Option<String>,
    /// Shards of this provider agent (they share `limit`).
    pub shards: usize,
    /// TLS on the agent-to-agent port, when configured.
    pub tls: Option<crate::tls::ServerTls>,
}

/// The local provider's concurrency cap, shared by the agent's shards: one atomic counter (a control
/// value touched once per call, not a lock), so the cap holds however consumer connections are spread
/// over shards.
#[derive(Debug)]
pub struct ConcurrencyLimit {
    cap: usize,
    used: AtomicUsize,
}

impl ConcurrencyLimit {
    pub fn new(cap: usize) -> Self {
        ConcurrencyLimit {
            cap: cap.max(1),
            used: AtomicUsize::new(0),
        }
    }

    fn try_acquire(&self) -> bool {
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            if cur >= self.cap {
                return false;
            }
            match self
                .used
                .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    fn release(&self) {
        self.used.fetch_sub(1, Ordering::AcqRel);
    }

    /// Calls holding a slot now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

struct Ctx {
    settings: ProviderSettings,
    control: ShardControl,
    pool: Rc<Pool>,
    connections: Cell<usize>,
    inflight: Cell<usize>,
    /// Calls of this shard waiting for a slot of the shared limit.
    waiting: WaitQueue,
    /// Every open connection's write queue, to flush and close them after a drain.
    outs: RefCell<HashMap<u64, OutQueue>>,
    next_conn: Cell<u64>,
}

/// A slot of the shared limit, given back on drop (and the next waiter of this shard woken).
struct Slot<'a>(&'a Ctx);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(l) = &self.0.settings.limit {
            l.release();
            self.0.waiting.wake_one();
        }
    }
}

impl Ctx {
    /// Waits for a slot of the local provider's cap, FIFO within this shard. `None`: the queue is full or
    /// the wait timed out (the caller answers status 100: the call never ran, the consumer may go
    /// elsewhere).
    async fn acquire(&self) -> Option<Option<Slot<'_>>> {
        let Some(limit) = &self.settings.limit else {
            return Some(None);
        };
        if self.waiting.is_empty() && limit.try_acquire() {
            return Some(Some(Slot(self)));
        }
        if self.waiting.len() >= self.settings.queue_limit {
            return None;
        }
        let deadline = Instant::now() + self.settings.queue_timeout;
        let mut front = false;
        loop {
            let ticket = self.waiting.wait(front);
            let left = deadline.saturating_duration_since(Instant::now());
            // Slots freed by another shard wake nobody here: with several shards, look again every
            // millisecond while waiting.
            let nap = if self.settings.shards > 1 {
                left.min(Duration::from_millis(1))
            } else {
                left
            };
            let woken = glommio::timer::timeout(nap, async move {
                ticket.await;
                Ok(())
            })
            .await
            .is_ok();
            if limit.try_acquire() {
                return Some(Some(Slot(self)));
            }
            if woken {
                // Lost the slot to a call that did not queue: keep the place at the head.
                front = true;
            }
            if Instant::now() >= deadline {
                return None;
            }
        }
    }
}

/// Runs one provider-agent shard until `control` says stop; then stops accepting and drains. `ready` is
/// called once the listener is bound.
pub async fn run(
    settings: ProviderSettings,
    control: ShardControl,
    ready: impl FnOnce(),
) -> std::io::Result<()> {
    let listener = crate::io::listen(settings.listen)?;
    ready();
    let pool = Rc::new(Pool::new(settings.dubbo, settings.upstream.clone(), None));
    let ctx = Rc::new(Ctx {
        settings,
        control: control.clone(),
        pool,
        connections: Cell::new(0),
        inflight: Cell::new(0),
        waiting: WaitQueue::new(),
        outs: RefCell::new(HashMap::new()),
        next_conn: Cell::new(0),
    });
    let accept = {
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            loop {
                let Ok(stream) = listener.accept().await else {
                    // Out of descriptors or similar: do not spin on the error.
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                if ctx.connections.get() >= ctx.settings.max_connections {
                    drop(stream);
                    continue;
                }
                let ctx = ctx.clone();
                glommio::spawn_local(async move {
                    ctx.connections.set(ctx.connections.get() + 1);
                    serve_connection(stream, &ctx).await;
                    ctx.connections.set(ctx.connections.get() - 1);
                })
                .detach();
            }
        })
    };
    control.stopped().await;
    drop(accept);
    control.drained(|| ctx.inflight.get() == 0).await;
    // Every answer is queued: let the writers flush them, then close the connections.
    let outs: Vec<OutQueue> = ctx.outs.borrow().values().cloned().collect();
    for out in outs {
        out.close();
    }
    control.drained(|| ctx.connections.get() == 0).await;
    Ok(())
}

async fn serve_connection(stream: TcpStream, ctx: &Rc<Ctx>) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    let stream: Stream = match &ctx.settings.tls {
        None => stream.into(),
        Some(tls) => {
            // A peer that does not finish its handshake in time is dropped.
            let handshake = tls.acceptor().accept(stream);
            match glommio::timer::timeout(TLS_HANDSHAKE_TIMEOUT, async { Ok(handshake.await) }).await {
                Ok(Ok(s)) => Stream::TlsServer(Box::new(s)),
                Ok(Err(_)) | Err(_) => return,
            }
        }
    };
    let (mut r, w) = split(stream);
    let out = OutQueue::new();
    let writer = {
        let out = out.clone();
        glommio::spawn_local(async move {
            let _ = out.run_writer(w).await;
        })
    };
    let key = ctx.next_conn.get();
    ctx.next_conn.set(key + 1);
    ctx.outs.borrow_mut().insert(key, out.clone());
    let conn = Rc::new(ConnState {
        peer,
        inflight: Cell::new(0),
        room: WaitQueue::new(),
        limit: ctx.settings.max_inflight_per_connection,
    });
    let codec = ctx.settings.upstream.codec;
    let mut scratch = vec![0u8; ctx.settings.read_buffer];
    let mut buf = BytesMut::with_capacity(ctx.settings.read_buffer);
    'conn: loop {
        match read_into(&mut r, &mut scratch, &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        loop {
            // Back-pressure: with too many of its calls outstanding, a consumer's next frame waits (and,
            // as nothing more is read, TCP slows the consumer down) until some finish.
            while conn.inflight.get() >= conn.limit && !out.is_closed() {
                conn.room.wait(false).await;
            }
            if out.is_closed() {
                break 'conn;
            }
            match codec.decode_frame(&mut buf) {
                Ok(mesh_dubbo::Decoded::Frame(f)) => handle_frame(ctx, &conn, &out, f),
                Ok(mesh_dubbo::Decoded::NeedMore(_)) => break,
                Err(e) => {
                    // Framing lost: tell the peer why (best effort, with the id from the header) and close.
                    if let Some(head) = buf.first_chunk::<16>() {
                        let id = u64::from_be_bytes([
                            head[4], head[5], head[6], head[7], head[8], head[9], head[10], head[11],
                        ]);
                        out.push(|b| {
                            let resp = Response::Error {
                                status: Status::BAD_REQUEST,
                                message: e.to_string().into(),
                            };
                            let _ = codec.encode_response(b, id, Serialization::Hessian2, &resp);
                        });
                    }
                    break 'conn;
                }
            }
        }
    }
    out.close();
    let _ = writer.await;
    ctx.outs.borrow_mut().remove(&key);
}

/// One consumer connection's accounting.
struct ConnState {
    peer: Option<SocketAddr>,
    inflight: Cell<usize>,
    /// Woken when the connection drops below its in-flight limit.
    room: WaitQueue,
    limit: usize,
}

fn refuse(codec: &Codec, out: &OutQueue, h: Header, status: Status, message: String) {
    if h.is_two_way() {
        let e = Response::Error {
            status,
            message: message.into(),
        };
        out.push(|b| {
            codec.encode_response(b, h.id, h.serialization().unwrap_or(Serialization::Hessian2), &e)
        });
    }
}

/// What the provider agent reads from a request's attachments: the token, and the consumer's timeout.
fn check_request(ctx: &Ctx, conn: &ConnState, f: &Frame) -> Result<Option<Duration>, (Status, String)> {
    let codec = ctx.settings.upstream.codec;
    let req = match codec.decode_body(&f.header, &f.body) {
        Ok(Body::Request(req)) => req,
        Ok(_) => return Err((Status::BAD_REQUEST, "not a request body".to_owned())),
        Err(e) => return Err((Status::BAD_REQUEST, format!("undecodable request: {e}"))),
    };
    if let Some(want) = &ctx.settings.token {
        let got = req.attachment("token").and_then(|v| v.as_str());
        if got != Some(want.as_str()) {
            let from = conn.peer.map_or_else(|| "?".to_owned(), |p| p.to_string());
            return Err((
                Status::BAD_REQUEST,
                format!(
                    "Invalid token! Forbid invoke remote service {} method {}() from consumer {from} to \
                     provider agent {}",
                    req.service, req.method, ctx.settings.listen
                ),
            ));
        }
    }
    let timeout = req.attachment("timeout").and_then(|v| match v {
        mesh_dubbo::Value::Int(i) => u64::try_from(*i).ok(),
        mesh_dubbo::Value::Long(l) => u64::try_from(*l).ok(),
        other => other.as_str().and_then(|s| s.trim().parse::<u64>().ok()),
    });
    Ok(timeout.filter(|&ms| ms > 0).map(Duration::from_millis))
}

fn handle_frame(ctx: &Rc<Ctx>, conn: &Rc<ConnState>, out: &OutQueue, f: Frame) {
    let h = f.header;
    let codec = ctx.settings.upstream.codec;
    if !h.is_request() {
        return; // consumer agents send requests only
    }
    if h.is_event() {
        if h.is_two_way() {
            let ser = h.serialization().unwrap_or(Serialization::Hessian2);
            out.push(|b| codec.encode_heartbeat(b, h.id, ser, false));
        }
        return;
    }
    if ctx.control.is_stopping() {
        // Draining: new calls go elsewhere. 60 tells the consumer agent the call never ran here.
        refuse(
            &codec,
            out,
            h,
            Status::SERVICE_NOT_FOUND,
            "provider agent is draining".to_owned(),
        );
        return;
    }
    let timeout = match check_request(ctx, conn, &f) {
        Ok(t) => t,
        Err((status, message)) => return refuse(&codec, out, h, status, message),
    };
    let ctx = ctx.clone();
    let conn = conn.clone();
    let out = out.clone();
    ctx.inflight.set(ctx.inflight.get() + 1);
    conn.inflight.set(conn.inflight.get() + 1);
    glommio::spawn_local(async move {
        let slot = ctx.acquire().await;
        let answer = match &slot {
            Some(_) => Some(forward(&ctx, &f, timeout).await),
            None => None,
        };
        drop(slot);
        if h.is_two_way() {
            out.push(|b| match answer {
                Some(Ok(Some(resp))) => write_answer(&codec, b, h, resp),
                Some(Ok(None)) => {}
                Some(Err(e)) => write_error(&codec, b, h, &e),
                None => {
                    let e = Response::Error {
                        status: Status::SERVER_THREADPOOL_EXHAUSTED,
                        message: format!(
                            "provider agent {}: the local provider is at its cap and {} calls wait",
                            ctx.settings.listen,
                            ctx.waiting.len()
                        )
                        .into(),
                    };
                    let ser = h.serialization().unwrap_or(Serialization::Hessian2);
                    let _ = codec.encode_response(b, h.id, ser, &e);
                }
            });
        }
        ctx.inflight.set(ctx.inflight.get() - 1);
        conn.inflight.set(conn.inflight.get() - 1);
        if conn.inflight.get() < conn.limit {
            conn.room.wake_one();
        }
    })
    .detach();
}

/// Sends the call to the local provider and returns its answer frame (`None` for a one-way call, which
/// gets no answer and so takes no place in the request-id map).
async fn forward(ctx: &Ctx, f: &Frame, timeout: Option<Duration>) -> Result<Option<Frame>, CallError> {
    let codec = ctx.settings.upstream.codec;
    let down_ser = f.header.serialization().map_err(CallError::Encode)?;
    let up_ser = ctx.settings.serialization;
    let conn = ctx.pool.get().await?;
    let two_way = f.header.is_two_way();
    let transcoded = if down_ser == up_ser {
        None
    } else {
        let Body::Request(req) = codec.decode_body(&f.header, &f.body).map_err(CallError::Encode)? else {
            return Err(CallError::Encode(CodecError::Unencodable("a non-request frame")));
        };
        Some(req)
    };
    let encode = |buf: &mut BytesMut, id: u64| match &transcoded {
        None => {
            Header { id, ..f.header }.write(buf);
            buf.put_slice(&f.body);
            Ok(())
        }
        Some(req) => codec.encode_request_message(buf, Header::request(id, up_ser, two_way), req),
    };
    if !two_way {
        conn.send_noreply(encode)?;
        return Ok(None);
    }
    // The consumer's own timeout (Dubbo's `timeout` attachment) when shorter: nobody waits for the answer
    // after it.
    let limit = ctx.settings.upstream.request_timeout;
    let t = timeout.map_or(limit, |t| t.min(limit));
    conn.send(encode)?.wait(t).await.map(Some)
}

/// Writes the provider's answer back with the consumer's id (transcoding when serializations differ).
fn write_answer(codec: &Codec, buf: &mut BytesMut, req: Header, resp: Frame) {
    let down_ser = req.serialization().unwrap_or(Serialization::Hessian2);
    if resp.header.serialization().ok() == Some(down_ser) {
        Header {
            id: req.id,
            ..resp.header
        }
        .write(buf);
        buf.put_slice(&resp.body);
        return;
    }
    match codec.decode_body(&resp.header, &resp.body) {
        Ok(Body::Response(r)) => {
            if codec.encode_response(buf, req.id, down_ser, &r).is_err() {
                let e = Response::Error {
                    status: Status::BAD_RESPONSE,
                    message: "answer cannot be re-encoded".into(),
                };
                let _ = codec.encode_response(buf, req.id, down_ser, &e);
            }
        }
        Ok(_) | Err(_) => {
            let e = Response::Error {
                status: Status::BAD_RESPONSE,
                message: "undecodable answer from the provider".into(),
            };
            let _ = codec.encode_response(buf, req.id, down_ser, &e);
        }
    }
}

/// Maps a forwarding failure onto a Dubbo status the consumer agent understands: 60 means the call never
/// reached the provider (safe to retry elsewhere), 31 a timeout, 80 a lost connection, 40 a bad request.
fn write_error(codec: &Codec, buf: &mut BytesMut, req: Header, e: &CallError) {
    let status = match e {
        CallError::Connect { .. } | CallError::BackingOff(_) => Status::SERVICE_NOT_FOUND,
        CallError::Timeout { .. } => Status::SERVER_TIMEOUT,
        CallError::Closed(_) => Status::SERVER_ERROR,
        CallError::BadAnswer { .. } => Status::BAD_RESPONSE,
        CallError::Encode(_) => Status::BAD_REQUEST,
    };
    let ser = req.serialization().unwrap_or(Serialization::Hessian2);
    let resp = Response::Error {
        status,
        message: format!("provider agent: {e}").into(),
    };
    let _ = codec.encode_response(buf, req.id, ser, &resp);
}
