//! Multiplexed Dubbo client connections and a per-endpoint pool, owned by one shard.
//!
//! Each connection has its own request-id counter and request-id map (id -> waiting call), a reader task
//! that matches answers by id, and a writer task that batches queued frames. When the connection dies,
//! every call in flight on it fails at once (no waiting for a timeout) and the pool re-dials with back-off.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use glommio::net::TcpStream;
use mesh_dubbo::{Body, Codec, CodecError, Decoded, Event, Frame};

use crate::error::CallError;
use crate::health::{AdaptiveLimit, EjectionConfig, Outlier, State as HealthState};
use crate::io::{read_into, split, OutQueue, ReadHalf, Stream};
use crate::sync::{oneshot, Event as Signal, Receiver, Sender, WaitQueue};

/// Settings of the connections to one kind of upstream.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Connections per endpoint (per shard).
    pub connections: usize,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub codec: Codec,
    pub read_buffer: usize,
    /// First back-off after a failed dial; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// A connection with nothing read for this long gets a heartbeat; with nothing read for three times
    /// this long it is declared dead (its calls fail at once). `None`: no heartbeats.
    pub heartbeat: Option<Duration>,
    /// TLS towards the upstream (consumer agent -> provider agent), when configured.
    pub tls: Option<crate::tls::ClientTls>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            connections: 2,
            connect_timeout: Duration::from_millis(1000),
            request_timeout: Duration::from_millis(5000),
            codec: Codec::default(),
            read_buffer: 64 * 1024,
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(2000),
            heartbeat: Some(Duration::from_secs(5)),
            tls: None,
        }
    }
}

type Waiter = Sender<Result<Frame, CallError>>;

struct ConnInner {
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
    /// Woken once for every call that leaves `pending` (answered, failed or timed out): its slot at the
    /// provider is free again, so the oldest call waiting for capacity may go.
    released: Option<Rc<WaitQueue>>,
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
    /// Dials `addr` and starts the reader and writer tasks on the current shard. `released` is woken once
    /// per call that completes on this connection.
    pub async fn connect(
        addr: SocketAddr,
        cfg: &UpstreamConfig,
        released: Option<Rc<WaitQueue>>,
    ) -> Result<UpstreamConn, CallError> {
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
            released,
        }));
        let out = conn.0.out.clone();
        glommio::spawn_local(async move {
            let _ = out.run_writer(w).await;
        })
        .detach();
        let reader = conn.clone();
        let (codec, read_buffer) = (cfg.codec, cfg.read_buffer);
        glommio::spawn_local(async move { reader.read_loop(r, codec, read_buffer).await }).detach();
        if let Some(every) = cfg.heartbeat {
            // Holds only a weak reference: a connection nobody uses any more is not kept alive by it.
            let weak = Rc::downgrade(&conn.0);
            glommio::spawn_local(async move { heartbeat_loop(weak, codec, every).await }).detach();
        }
        Ok(conn)
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

    /// Declares the connection dead: in-flight calls fail now, the socket is closed.
    fn kill(&self, why: impl Fn(SocketAddr) -> CallError) {
        self.0.alive.set(false);
        self.0.out.close();
        self.0.kill.set();
        self.fail_all(why);
    }

    fn release(&self) {
        if let Some(q) = &self.0.released {
            q.wake_one();
        }
    }

    /// Queues a frame that expects no answer (heartbeat replies, one-way calls).
    pub fn send_oneway(&self, f: impl FnOnce(&mut BytesMut)) {
        self.0.out.push(f);
    }

    async fn read_loop(self, mut r: ReadHalf, codec: Codec, read_buffer: usize) {
        let mut scratch = vec![0u8; read_buffer];
        let mut buf = BytesMut::with_capacity(read_buffer);
        let reason = loop {
            let read = read_into(&mut r, &mut scratch, &mut buf);
            let killed = async {
                self.0.kill.wait().await;
                Ok(0)
            };
            match futures_lite::future::or(read, killed).await {
                Ok(0) => break None,
                Ok(_) => self.0.last_read.set(Instant::now()),
                Err(e) => break Some(e.to_string()),
            }
            loop {
                match codec.decode_frame(&mut buf) {
                    Ok(Decoded::Frame(f)) => self.dispatch(f, &codec),
                    Ok(Decoded::NeedMore(_)) => break,
                    Err(e) => {
                        // A framing error leaves no way to find the next frame: close.
                        self.fail_all(|addr| CallError::BadAnswer {
                            addr,
                            source: e.clone(),
                        });
                        self.0.alive.set(false);
                        self.0.out.close();
                        return;
                    }
                }
            }
        };
        let _ = reason;
        self.0.alive.set(false);
        self.0.out.close();
        self.fail_all(CallError::Closed);
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
            self.release();
        }
    }

    fn fail_all(&self, err: impl Fn(SocketAddr) -> CallError) {
        let drained: Vec<Waiter> = self.0.pending.borrow_mut().drain().map(|(_, w)| w).collect();
        for w in drained {
            w.send(Err(err(self.0.addr)));
            self.release();
        }
    }
}

/// Sends a heartbeat on a connection that has read nothing for `every`, and kills it when nothing at all
/// (answers, heartbeat replies) has arrived for three times that: a half-open peer is found without waiting
/// for every call's timeout.
async fn heartbeat_loop(conn: std::rc::Weak<ConnInner>, codec: Codec, every: Duration) {
    loop {
        glommio::timer::sleep(every).await;
        let Some(inner) = conn.upgrade() else { return };
        let c = UpstreamConn(inner);
        if !c.is_alive() {
            return;
        }
        let silent = c.0.last_read.get().elapsed();
        if silent >= every * 3 {
            c.kill(CallError::Closed);
            return;
        }
        if silent >= every {
            let id = c.0.next_id.get();
            c.0.next_id.set(id.wrapping_add(1));
            c.send_oneway(|buf| codec.encode_heartbeat(buf, id, mesh_dubbo::Serialization::Hessian2, true));
        }
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
                if conn.0.pending.borrow_mut().remove(&id).is_some() {
                    conn.release();
                }
                Err(CallError::Timeout {
                    addr,
                    ms: timeout.as_millis() as u64,
                })
            }
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// When the call was queued for sending.
    pub fn sent(&self) -> Instant {
        self.sent
    }
}

enum Slot {
    Empty,
    Dialing(Signal),
    Ready(UpstreamConn),
}

/// The connections of one shard to one endpoint.
pub struct Pool {
    addr: SocketAddr,
    cfg: UpstreamConfig,
    released: Option<Rc<WaitQueue>>,
    slots: RefCell<Vec<Slot>>,
    backoff: Cell<Duration>,
    retry_at: Cell<Option<Instant>>,
    next: Cell<usize>,
    outlier: RefCell<Outlier>,
    /// Learnt when the provider does not announce its cap.
    limit: RefCell<AdaptiveLimit>,
    /// Why the last dial failed (reported to the calls that waited for it).
    dial_error: RefCell<Option<String>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool({}, inflight {})", self.addr, self.inflight())
    }
}

impl Pool {
    /// `released` (if any) is woken once per call completing on any of the pool's connections.
    pub fn new(addr: SocketAddr, cfg: UpstreamConfig, released: Option<Rc<WaitQueue>>) -> Self {
        Self::with_health(
            addr,
            cfg,
            released,
            EjectionConfig::default(),
            AdaptiveLimit::new(16, 10_000),
        )
    }

    /// A pool with its outlier-ejection settings and the starting point of its adaptive limit.
    pub fn with_health(
        addr: SocketAddr,
        cfg: UpstreamConfig,
        released: Option<Rc<WaitQueue>>,
        ejection: EjectionConfig,
        limit: AdaptiveLimit,
    ) -> Self {
        let slots = (0..cfg.connections.max(1)).map(|_| Slot::Empty).collect();
        Pool {
            addr,
            backoff: Cell::new(cfg.min_backoff),
            cfg,
            released,
            slots: RefCell::new(slots),
            retry_at: Cell::new(None),
            next: Cell::new(0),
            outlier: RefCell::new(Outlier::new(ejection)),
            limit: RefCell::new(limit),
            dial_error: RefCell::new(None),
        }
    }

    /// Outlier state now.
    pub fn health(&self, now: Instant) -> HealthState {
        self.outlier.borrow().state(now)
    }

    /// A call through this pool answered normally after `rtt`.
    pub fn on_success(&self, rtt: Duration) {
        self.backoff.set(self.cfg.min_backoff);
        self.outlier.borrow_mut().on_success();
        let inflight = self.inflight() as u32 + 1;
        self.limit.borrow_mut().on_answer(rtt, inflight);
    }

    /// A call failed in a way that points at the provider (lost connection, timeout, its agent's error).
    /// Returns true when this ejected the provider.
    pub fn on_failure(&self) -> bool {
        self.outlier.borrow_mut().on_failure(Instant::now())
    }

    /// The provider said it is full (status 100).
    pub fn on_overload(&self) {
        let inflight = self.inflight() as u32 + 1;
        self.limit.borrow_mut().on_overload(inflight);
    }

    /// The concurrency limit learnt for a provider that does not announce a cap.
    pub fn adaptive_limit(&self) -> u32 {
        self.limit.borrow().get()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn config(&self) -> &UpstreamConfig {
        &self.cfg
    }

    /// Calls in flight over all connections of this pool.
    pub fn inflight(&self) -> usize {
        self.slots
            .borrow()
            .iter()
            .map(|s| match s {
                Slot::Ready(c) => c.inflight(),
                _ => 0,
            })
            .sum()
    }

    /// When the back-off after a failed dial ends, if the pool is in one (and has no live connection).
    pub fn backoff_until(&self, now: Instant) -> Option<Instant> {
        self.retry_at.get().filter(|t| now < *t && self.live_count() == 0)
    }

    fn live_count(&self) -> usize {
        self.slots
            .borrow()
            .iter()
            .filter(|s| matches!(s, Slot::Ready(c) if c.is_alive()))
            .count()
    }

    /// A live connection, dialling one when the pool has fewer than configured. Concurrent callers share a
    /// dial in progress instead of opening extra connections.
    pub async fn get(self: &Rc<Self>) -> Result<UpstreamConn, CallError> {
        for _ in 0..3 {
            // Forget dead connections; one that died young without an answer counts as a failed dial, so
            // a peer that accepts and drops connections is not re-dialled in a tight loop.
            let mut young = false;
            for s in self.slots.borrow_mut().iter_mut() {
                if let Slot::Ready(c) = s {
                    if !c.is_alive() {
                        young |= c.died_young(Duration::from_secs(1));
                        *s = Slot::Empty;
                    }
                }
            }
            if young {
                self.back_off();
            }
            let (best, empty, dialing) = {
                let slots = self.slots.borrow();
                let start = self.next.get();
                self.next.set(start.wrapping_add(1));
                let mut best: Option<UpstreamConn> = None;
                let mut empty = None;
                let mut dialing = None;
                for k in 0..slots.len() {
                    let i = (start + k) % slots.len();
                    match &slots[i] {
                        Slot::Ready(c) => {
                            if best.as_ref().is_none_or(|b| c.inflight() < b.inflight()) {
                                best = Some(c.clone());
                            }
                        }
                        Slot::Empty => empty = empty.or(Some(i)),
                        Slot::Dialing(sig) => dialing = dialing.or(Some(sig.clone())),
                    }
                }
                (best, empty, dialing)
            };
            let may_dial = self.retry_at.get().is_none_or(|t| Instant::now() >= t);
            match (best, empty) {
                // Grow the pool in the background while a live connection serves this call.
                (Some(c), Some(i)) if may_dial && c.inflight() > 0 => {
                    self.start_dial(i);
                    return Ok(c);
                }
                (Some(c), _) => return Ok(c),
                (None, Some(i)) if may_dial => {
                    let sig = self.start_dial(i);
                    sig.wait().await;
                }
                (None, _) => match dialing {
                    Some(sig) => sig.wait().await,
                    None => return Err(CallError::BackingOff(self.addr)),
                },
            }
            if self.live_count() == 0 && self.retry_at.get().is_some_and(|t| Instant::now() < t) {
                let why = self.dial_error.borrow().clone();
                return Err(CallError::Connect {
                    addr: self.addr,
                    source: std::io::Error::new(
                        std::io::ErrorKind::ConnectionRefused,
                        why.unwrap_or_else(|| "dial failed".to_owned()),
                    ),
                });
            }
        }
        Err(CallError::BackingOff(self.addr))
    }

    fn start_dial(self: &Rc<Self>, slot: usize) -> Signal {
        let sig = Signal::new();
        self.slots.borrow_mut()[slot] = Slot::Dialing(sig.clone());
        let pool = self.clone();
        let done = sig.clone();
        // The dial runs as its own task so that a caller which gives up does not abandon it half-way.
        glommio::spawn_local(async move {
            let res = UpstreamConn::connect(pool.addr, &pool.cfg, pool.released.clone()).await;
            pool.finish_dial(slot, res);
            done.set();
        })
        .detach();
        sig
    }

    fn finish_dial(&self, slot: usize, res: Result<UpstreamConn, CallError>) {
        let mut slots = self.slots.borrow_mut();
        match res {
            Ok(conn) => {
                slots[slot] = Slot::Ready(conn);
                // The back-off itself is reset by the first answer (`on_success`), not by the dial: a
                // peer that accepts and then drops connections keeps backing off.
                self.retry_at.set(None);
            }
            Err(e) => {
                slots[slot] = Slot::Empty;
                drop(slots);
                *self.dial_error.borrow_mut() = Some(match e {
                    CallError::Connect { source, .. } => source.to_string(),
                    other => other.to_string(),
                });
                self.back_off();
            }
        }
    }

    fn back_off(&self) {
        let b = self.backoff.get();
        self.retry_at.set(Some(Instant::now() + b));
        self.backoff.set((b * 2).min(self.cfg.max_backoff));
    }
}
