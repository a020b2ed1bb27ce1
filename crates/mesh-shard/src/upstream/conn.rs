//! One multiplexed Dubbo client connection: its own request-id counter and request-id map (id -> waiting
//! call and its deadline), a reader task that matches answers by id and a writer task that batches queued
//! frames; the shard's heartbeat sweep (`heartbeat.rs`) pings it when idle and declares it dead when
//! silent, the shard's deadline sweep (`deadline.rs`) fails calls past their deadline. When the connection
//! dies, every call in flight on it fails at once (no waiting for a timeout).
//!
//! A call waits in one of two ways: a task awaits its [`PendingCall`] (the consumer's call loop), or the
//! reader hands the answer to a closure itself ([`UpstreamConn::send_relay`], the provider agent's
//! forwarding: no task, no channel, no timer per call).

use foldhash::HashMap;
use std::cell::{Cell, RefCell};
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

/// Who gets a call's answer (or why there is none).
enum Waiter {
    /// A task awaiting the call's [`PendingCall`].
    Task(Sender<Result<Frame, CallError>>),
    /// Called by whoever ends the call (the reader with the answer, the deadline sweep, a dying
    /// connection), exactly once.
    Relay(Box<dyn FnOnce(Result<Frame, CallError>)>),
}

impl Waiter {
    fn complete(self, r: Result<Frame, CallError>) {
        match self {
            Waiter::Task(tx) => tx.send(r),
            Waiter::Relay(f) => f(r),
        }
    }
}

/// A call in the request-id map.
struct Waiting {
    waiter: Waiter,
    /// Past it, the deadline sweep fails the call.
    deadline: Instant,
    /// The call's timeout, for the error.
    timeout: Duration,
}

pub(super) struct ConnInner {
    addr: SocketAddr,
    out: OutQueue,
    pending: RefCell<HashMap<u64, Waiting>>,
    /// On the shard's deadline sweep list (`deadline.rs`).
    swept: Cell<bool>,
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
    addr: SocketAddr,
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
            pending: RefCell::new(HashMap::default()),
            swept: Cell::new(false),
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
    /// The frame goes out with whatever else is queued when the writer next runs. The call fails with a
    /// timeout once `timeout` has passed from now without an answer.
    pub fn send(
        &self,
        timeout: Duration,
        encode: impl FnOnce(&mut BytesMut, u64) -> Result<(), CodecError>,
    ) -> Result<PendingCall, CallError> {
        let (tx, rx) = oneshot();
        let sent = self
            .register(timeout, encode, Waiter::Task(tx))
            .map_err(|(e, _)| e)?;
        Ok(PendingCall {
            addr: self.0.addr,
            sent,
            rx,
        })
    }

    /// Queues one request like [`UpstreamConn::send`], and hands its answer (or why there is none: the
    /// timeout, the connection's end) to `on_answer`, called exactly once: by the connection's reader
    /// when the answer arrives, by the deadline sweep, or at once when the request cannot be queued.
    /// No task waits for the call; the connection stays open until it is answered.
    pub fn send_relay(
        &self,
        timeout: Duration,
        encode: impl FnOnce(&mut BytesMut, u64) -> Result<(), CodecError>,
        on_answer: impl FnOnce(Result<Frame, CallError>) + 'static,
    ) {
        // The call holds its connection (the map entry holds the closure holds the connection) until the
        // entry leaves the map: a connection the pool lets go of, e.g. after a READONLY notice, still
        // delivers the answers of the calls on it.
        let keep = self.clone();
        let relay = Waiter::Relay(Box::new(move |r| {
            let _keep = keep;
            on_answer(r);
        }));
        if let Err((e, relay)) = self.register(timeout, encode, relay) {
            relay.complete(Err(e));
        }
    }

    /// Queues a request and puts `waiter` in the id map with its deadline; when it was queued. Not
    /// queued: why, and the waiter back.
    fn register(
        &self,
        timeout: Duration,
        encode: impl FnOnce(&mut BytesMut, u64) -> Result<(), CodecError>,
        waiter: Waiter,
    ) -> Result<Instant, (CallError, Waiter)> {
        if !self.is_alive() {
            return Err((CallError::Closed(self.0.addr), waiter));
        }
        let id = self.0.next_id.get();
        self.0.next_id.set(id.wrapping_add(1));
        match self.0.out.push(|buf| encode(buf, id)) {
            None => return Err((CallError::Closed(self.0.addr), waiter)),
            Some(Err(e)) => return Err((CallError::Encode(e), waiter)),
            Some(Ok(())) => {}
        }
        let sent = Instant::now();
        let deadline = sent + timeout;
        self.0.pending.borrow_mut().insert(
            id,
            Waiting {
                waiter,
                deadline,
                timeout,
            },
        );
        super::deadline::watch(&self.0, &self.0.swept, deadline);
        Ok(sent)
    }

    /// Fails the calls past their deadline at `now` (the deadline sweep); the earliest deadline left, or
    /// `None` (and off the sweep's list) when no call is in flight any more.
    pub(super) fn expire(&self, now: Instant) -> Option<Instant> {
        let expired: Vec<Waiting> = {
            let mut pending = self.0.pending.borrow_mut();
            let ids: Vec<u64> = pending
                .iter()
                .filter(|(_, w)| w.deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| pending.remove(id)).collect()
        };
        for w in expired {
            let ms = w.timeout.as_millis() as u64;
            w.waiter.complete(Err(CallError::Timeout {
                addr: self.0.addr,
                ms,
            }));
        }
        // After the completions, which may have queued new calls here.
        let earliest = self.0.pending.borrow().values().map(|w| w.deadline).min();
        if earliest.is_none() {
            self.0.swept.set(false);
        }
        earliest
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

    /// Declares the connection dead (tests).
    #[cfg(test)]
    pub(crate) fn kill_for_test(&self) {
        self.kill(CallError::Closed);
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
        let waiting = self.0.pending.borrow_mut().remove(&h.id);
        if let Some(w) = waiting {
            self.0.answers.set(self.0.answers.get() + 1);
            w.waiter.complete(Ok(f));
        }
    }

    fn fail_all(&self, err: impl Fn(SocketAddr) -> CallError) {
        let drained: Vec<Waiting> = self.0.pending.borrow_mut().drain().map(|(_, w)| w).collect();
        for w in drained {
            w.waiter.complete(Err(err(self.0.addr)));
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
    /// Waits for the answer frame, or the call's end without one: the timeout given to
    /// [`UpstreamConn::send`] (the deadline sweep then forgets the id, so a late answer is dropped instead
    /// of leaking an entry in the request-id map), the connection's end.
    pub async fn wait(self) -> Result<Frame, CallError> {
        let PendingCall { addr, rx, .. } = self;
        match rx.await {
            Some(r) => r,
            None => Err(CallError::Closed(addr)),
        }
    }

    /// When the call was queued for sending.
    pub fn sent(&self) -> Instant {
        self.sent
    }
}
