//! One multiplexed Dubbo client connection: its own request-id counter and request-id map (id -> waiting
//! call), a reader task that matches answers by id and a writer task that batches queued frames; the
//! shard's heartbeat sweep (`heartbeat.rs`) pings it when idle and declares it dead when silent. When the connection dies, every call in flight on it fails at once (no waiting for a
//! timeout).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use glommio::net::TcpStream;
use mesh_dubbo::{Body, Codec, CodecError, Event, Frame};

use super::heartbeat::Beat;
use super::UpstreamConfig;
use crate::error::CallError;
use crate::frames::{FrameEnd, FrameReader};
use crate::io::{split, OutQueue, ReadHalf, Stream};
use crate::sync::{oneshot, Event as Signal, Receiver, Sender};

type Waiter = Sender<Result<Frame, CallError>>;

pub(super) struct ConnInner {
    addr: SocketAddr,
    out: OutQueue,
    pending: RefCell<HashMap<u64, Waiter>>,
    next_id: Cell<u64>,
    alive: Cell<bool>,
    born: Instant,
    /// When the reader last got bytes: heartbeats keep it fresh on an idle but healthy connection.
    last_read: Cell<Instant>,
    /// Answers received: a connection that dies young without any is a failed dial, for the back-off.
    answers: Cell<u64>,
    /// Set to stop the reader of a connection declared dead (a half-open peer never ends the read).
    kill: Signal,
}

/// One multiplexed connection.
#[derive(Clone)]
pub struct UpstreamConn(Rc<ConnInner>);

impl std::fmt::Debug for UpstreamConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "UpstreamConn({}, inflight {}, alive {})",
            self.0.addr,
            self.inflight(),
            self.0.alive.get()
        )
    }
}

/// A call sent and not answered yet.
#[derive(Debug)]
pub struct PendingCall {
    conn: UpstreamConn,
    id: u64,
    /// When the call was queued for sending: its timeout counts from here, not from when someone
    /// starts waiting (pipelined calls are waited for one after another).
    sent: Instant,
    rx: Receiver<Result<Frame, CallError>>,
}

impl UpstreamConn {
    /// Dials `addr`, starts the reader and writer tasks on the current shard and puts the connection under
    /// the shard's heartbeat sweep.
    pub async fn connect(addr: SocketAddr, cfg: &UpstreamConfig) -> Result<UpstreamConn, CallError> {
        let stream = TcpStream::connect_timeout(addr, cfg.connect_timeout)
            .await
            .map_err(|e| CallError::Connect {
                addr,
                source: std::io::Error::other(e.to_string()),
            })?;
        let _ = stream.set_nodelay(true);
        let stream: Stream = match &cfg.tls {
            None => stream.into(),
            Some(tls) => {
                let handshake = tls.connector().connect(tls.name_for(addr), stream);
                match glommio::timer::timeout(cfg.connect_timeout, async { Ok(handshake.await) }).await {
                    Ok(Ok(s)) => Stream::TlsClient(Box::new(s)),
                    Ok(Err(e)) => {
                        return Err(CallError::Connect {
                            addr,
                            source: std::io::Error::other(format!("TLS handshake: {e}")),
                        })
                    }
                    Err(_) => {
                        return Err(CallError::Connect {
                            addr,
                            source: std::io::Error::other("TLS handshake timed out"),
                        })
                    }
                }
            }
        };
        let (r, w) = split(stream);
        let now = Instant::now();
        let conn = UpstreamConn(Rc::new(ConnInner {
            addr,
            out: OutQueue::new(),
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(1),
            alive: Cell::new(true),
            born: now,
            last_read: Cell::new(now),
            answers: Cell::new(0),
            kill: Signal::new(),
        }));
        let out = conn.0.out.clone();
        glommio::spawn_local(async move {
            let _ = out.run_writer(w).await;
        })
        .detach();
        // The reader holds only a weak reference too: once the pool and every call in flight let go of the
        // connection, it is dropped and closed (see `Drop for ConnInner`) instead of living on, heartbeats
        // and all, for as long as the peer keeps it open.
        let (reader, kill) = (Rc::downgrade(&conn.0), conn.0.kill.clone());
        let (codec, read_buffer) = (cfg.codec, cfg.read_buffer);
        glommio::spawn_local(async move { read_loop(reader, kill, r, codec, read_buffer).await }).detach();
        if let Some(every) = cfg.heartbeat {
            // The sweep holds only a weak reference: a connection nobody uses any more is not kept alive.
            super::heartbeat::watch(&conn, codec, every);
        }
        Ok(conn)
    }

    pub(super) fn downgrade(&self) -> std::rc::Weak<ConnInner> {
        Rc::downgrade(&self.0)
    }

    pub(super) fn from_inner(inner: Rc<ConnInner>) -> Self {
        UpstreamConn(inner)
    }

    /// The heartbeat sweep's check at `now` (interval `every`): pings a connection silent for an interval,
    /// kills one silent for three. False when the connection is dead (the sweep forgets it).
    pub(super) fn beat(&self, now: Instant, every: Duration, codec: &Codec) -> bool {
        if !self.is_alive() {
            return false;
        }
        match super::heartbeat::beat_for(now.saturating_duration_since(self.0.last_read.get()), every) {
            Beat::Fresh => true,
            Beat::Ping => {
                let id = self.0.next_id.get();
                self.0.next_id.set(id.wrapping_add(1));
                self.send_oneway(|buf| {
                    codec.encode_heartbeat(buf, id, mesh_dubbo::Serialization::Hessian2, true)
                });
                true
            }
            Beat::Dead => {
                self.kill(CallError::Closed);
                false
            }
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.0.addr
    }

    /// False once the reader saw the end, the writer failed, or the provider said it is going read-only.
    pub fn is_alive(&self) -> bool {
        self.0.alive.get() && !self.0.out.is_closed()
    }

    /// Calls sent on this connection and not answered yet.
    pub fn inflight(&self) -> usize {
        self.0.pending.borrow().len()
    }

    /// Queues one request: `encode` writes a whole frame for the given request id into the write buffer.
    /// The frame goes out with whatever else is queued when the writer next runs.
    pub fn send(
        &self,
        encode: impl FnOnce(&mut BytesMut, u64) -> Result<(), CodecError>,
    ) -> Result<PendingCall, CallError> {
        if !self.is_alive() {
            return Err(CallError::Closed(self.0.addr));
        }
        let id = self.0.next_id.get();
        self.0.next_id.set(id.wrapping_add(1));
        match self.0.out.push(|buf| encode(buf, id)) {
            None => return Err(CallError::Closed(self.0.addr)),
            Some(Err(e)) => return Err(CallError::Encode(e)),
            Some(Ok(())) => {}
        }
        let (tx, rx) = oneshot();
        self.0.pending.borrow_mut().insert(id, tx);
        Ok(PendingCall {
            conn: self.clone(),
            id,
            sent: Instant::now(),
            rx,
        })
    }

    /// Queues a request that gets no answer (one-way): a fresh id, nothing registered in the id map.
    pub fn send_noreply(
        &self,
        encode: impl FnOnce(&mut BytesMut, u64) -> Result<(), CodecError>,
    ) -> Result<(), CallError> {
        if !self.is_alive() {
            return Err(CallError::Closed(self.0.addr));
        }
        let id = self.0.next_id.get();
        self.0.next_id.set(id.wrapping_add(1));
        match self.0.out.push(|buf| encode(buf, id)) {
            None => Err(CallError::Closed(self.0.addr)),
            Some(r) => r.map_err(CallError::Encode),
        }
    }

    /// True when the connection died within `window` of being dialled without a single answer: the peer
    /// accepts and drops connections (e.g. its connection limit), which must back off like a failed dial.
    pub fn died_young(&self, window: Duration) -> bool {
        !self.is_alive() && self.0.answers.get() == 0 && self.0.born.elapsed() < window
    }

    /// True once the connection has had an answer to a call: the endpoint serves, whatever came before.
    pub fn has_answered(&self) -> bool {
        self.0.answers.get() > 0
    }

    /// Declares the connection dead: in-flight calls fail now, the socket is closed.
    fn kill(&self, why: impl Fn(SocketAddr) -> CallError) {
        self.0.alive.set(false);
        self.0.out.close();
        self.0.kill.set();
        self.fail_all(why);
    }

    /// Queues a frame that expects no answer (heartbeat replies, one-way calls).
    pub fn send_oneway(&self, f: impl FnOnce(&mut BytesMut)) {
        self.0.out.push(f);
    }

    fn dispatch(&self, f: Frame, codec: &Codec) {
        let h = f.header;
        if h.is_request() {
            if h.is_event() {
                // Dubbo announces a graceful shutdown with a one-way READONLY event request: stop using
                // this connection for new calls (calls in flight still complete; the pool re-dials).
                if let Ok(Body::Event(Event::ReadOnly)) = codec.decode_body(&h, &f.body) {
                    self.0.alive.set(false);
                } else if h.is_two_way() {
                    // The server pinging us.
                    if let Ok(ser) = h.serialization() {
                        self.send_oneway(|buf| codec.encode_heartbeat(buf, h.id, ser, false));
                    }
                }
            }
            return;
        }
        if h.is_event() {
            // Heartbeat answers and read-only notices are handled by the pool's health view, not by calls.
            if let Ok(Body::Event(Event::ReadOnly)) = codec.decode_body(&h, &f.body) {
                self.0.alive.set(false);
            }
            return;
        }
        let waiter = self.0.pending.borrow_mut().remove(&h.id);
        if let Some(w) = waiter {
            self.0.answers.set(self.0.answers.get() + 1);
            w.send(Ok(f));
        }
    }

    fn fail_all(&self, err: impl Fn(SocketAddr) -> CallError) {
        let drained: Vec<Waiter> = self.0.pending.borrow_mut().drain().map(|(_, w)| w).collect();
        for w in drained {
            w.send(Err(err(self.0.addr)));
        }
    }
}

/// Reads answers until the connection dies or nobody holds it any more (it is dropped: `kill` is set).
async fn read_loop(
    conn: std::rc::Weak<ConnInner>,
    kill: Signal,
    r: ReadHalf,
    codec: Codec,
    read_buffer: usize,
) {
    let mut frames = FrameReader::new(r, codec, read_buffer);
    loop {
        let next = frames.next(|| {
            if let Some(c) = conn.upgrade() {
                c.last_read.set(Instant::now());
            }
        });
        let killed = async {
            kill.wait().await;
            Err(FrameEnd::Closed)
        };
        let res = futures_lite::future::or(next, killed).await;
        let Some(inner) = conn.upgrade() else { return };
        let c = UpstreamConn(inner);
        match res {
            Ok(f) => c.dispatch(f, &codec),
            // A framing error leaves no way to find the next frame: close.
            Err(FrameEnd::Broken { error, .. }) => {
                return c.kill(|addr| CallError::BadAnswer {
                    addr,
                    source: error.clone(),
                })
            }
            Err(FrameEnd::Closed | FrameEnd::Io(_)) => return c.kill(CallError::Closed),
        }
    }
}

impl Drop for ConnInner {
    /// The last holder let go (its pool was dropped, e.g. the provider left the registry, and no call is in
    /// flight on it): stop the reader and let the writer close the socket.
    fn drop(&mut self) {
        self.out.close();
        self.kill.set();
    }
}

impl PendingCall {
    /// Waits for the answer frame, at most `timeout`. On timeout the id is forgotten, so a late answer is
    /// dropped instead of leaking an entry in the request-id map.
    pub async fn wait(self, timeout: Duration) -> Result<Frame, CallError> {
        let PendingCall { conn, id, sent, rx } = self;
        let addr = conn.addr();
        // glommio polls the call before its timer, so an answer already here wins even at zero.
        let left = timeout.saturating_sub(sent.elapsed());
        let res = glommio::timer::timeout(left, async move { Ok(rx.await) }).await;
        match res {
            Ok(Some(r)) => r,
            Ok(None) => Err(CallError::Closed(addr)),
            Err(_) => {
                conn.0.pending.borrow_mut().remove(&id);
                Err(CallError::Timeout {
                    addr,
                    ms: timeout.as_millis() as u64,
                })
            }
        }
    }

    /// When the call was queued for sending.
    pub fn sent(&self) -> Instant {
        self.sent
    }
}
