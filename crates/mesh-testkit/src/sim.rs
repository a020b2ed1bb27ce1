//! A Dubbo 2 provider simulator for the 2018 challenge's `IHelloService.hash(String)`.
//!
//! It answers `hash(s)` with `Int(java_string_hash(s))` after a configurable latency, in hessian2 or fastjson,
//! and `echoUser(User)` (a POJO argument, see [`USER_CLASS`]) with a map built from the POJO ([`user_answer`]:
//! the cost benchmark of the JSON API), and reproduces the provider behaviours the agent has to cope with:
//!
//! * **thread cap** `T` (Dubbo's fixed `DubboServerHandler` pool with no queue): while `T` calls are in flight
//!   across all connections, a new two-way request is answered at once with status 100
//!   (`SERVER_THREADPOOL_EXHAUSTED_ERROR`) and Java's "thread pool is exhausted" message;
//! * **capacity knee** `K`: the latency of a call is `base * max(1, inflight / K)`, `inflight` counted when the
//!   call starts (a CPU-bound provider slows down past its knee);
//! * status 40 for undecodable requests (or, with a fixed serialization, frames of another one), status 70
//!   for unknown services / methods / arguments and (with a `token`) calls without the right `token`
//!   attachment, heartbeats answered, connections closed on bad magic or
//!   oversize frames;
//! * result flag 4 (`RESPONSE_VALUE_WITH_ATTACHMENTS`, `{"dubbo":"2.0.2"}`) when the request's protocol version is
//!   in 2.0.2..=2.0.99, flag 1 otherwise, as Java 2.7/3.x providers do.
//!
//! Each connection has a reader (decodes frames, answers errors at once, schedules answers) and a writer that
//! keeps the scheduled answers in a timer heap and writes every answer that is due in one `write` call: no
//! task per request, so a couple of cores sustain tens of thousands of calls per second.
//!
//! **Timing.** A call is answered at `start + latency_for(inflight)`, never before. With the default
//! [`TimerMode::Precise`] each writer arms one alarm (its heap's earliest due time) on the simulator's
//! [`PreciseTimer`] thread, which wakes it within tens of microseconds of that time, like Java's
//! `Thread.sleep(50)` (~50.1 ms). [`TimerMode::Coarse`] uses tokio's timer instead, as before: it rounds
//! every deadline up to its millisecond wheel, so 50 ms calls took 51.9 ms on average.
//!
//! **Capacity drift.** With a [`schedule::Schedule`] ([`SimConfig::schedule`]) the thread cap, base latency
//! and knee change over time: each step is applied when its time comes (one task sleeping to the next step,
//! one line on stderr per step), new calls see it at once, calls in flight keep their due time.
//!
//! Use [`spawn`] to run it on its own thread and runtime (tests), or [`run`] inside a runtime of your own;
//! the `provider-sim` binary wraps [`run`].

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use mesh_dubbo::frame::{DEFAULT_MAX_BODY, HEADER_LEN};
use mesh_dubbo::message::DUBBO_VERSION;
use mesh_dubbo::{
    java_string_hash, Body, Codec, Decoded, Event, Frame, Request, Response, RpcResult, Serialization,
    Status, Value,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use crate::timer::{PreciseTimer, Sleep};

mod answer;
pub mod metadata_service;
pub mod schedule;
mod service_calls;

use answer::handle_frame;

use metadata_service::{MetadataAnswer, SimMetadata};
use schedule::{Capacity, Schedule};
pub use service_calls::{
    encode_hash_request, encode_user_request, user_answer, User, METHOD, PARAM_TYPES, SERVICE, USER_CLASS,
    USER_METHOD, USER_PARAM_TYPES,
};

/// Which serializations the simulator accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SerializationMode {
    /// Answer every request in its own serialization (hessian2 or fastjson).
    #[default]
    Any,
    /// Like a provider configured with `serialization="..."`: frames of any other serialization are answered
    /// with status 40 (BAD_REQUEST).
    Only(Serialization),
}

impl FromStr for SerializationMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "any" => Ok(SerializationMode::Any),
            "hessian2" | "hessian" => Ok(SerializationMode::Only(Serialization::Hessian2)),
            "fastjson" | "json" => Ok(SerializationMode::Only(Serialization::FastJson)),
            other => Err(format!(
                "unknown serialization {other:?} (expected hessian2, fastjson or any)"
            )),
        }
    }
}

impl fmt::Display for SerializationMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SerializationMode::Any => f.write_str("any"),
            SerializationMode::Only(s) => f.write_str(s.name()),
        }
    }
}

/// How answers are timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimerMode {
    /// A dedicated timer thread (see [`crate::timer`]): answers leave within tens of microseconds of their
    /// due time.
    #[default]
    Precise,
    /// tokio's millisecond timer wheel: due times are rounded up to the next tick (about +1.9 ms on 50 ms).
    Coarse,
}

impl FromStr for TimerMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "precise" => Ok(TimerMode::Precise),
            "coarse" => Ok(TimerMode::Coarse),
            other => Err(format!("unknown timer {other:?} (expected precise or coarse)")),
        }
    }
}

impl fmt::Display for TimerMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimerMode::Precise => "precise",
            TimerMode::Coarse => "coarse",
        })
    }
}

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// A name for logs and the stats line (e.g. `small`).
    pub name: String,
    /// Base latency of every call.
    pub latency: Duration,
    /// Thread cap: the most calls in flight at once; 0 = no cap.
    pub threads: usize,
    /// Capacity knee: latency grows as `inflight / knee` past it; 0 = none.
    pub knee: usize,
    /// Accepted serializations.
    pub serialization: SerializationMode,
    /// Largest request body accepted; larger frames close the connection.
    pub max_body: usize,
    /// How answers are timed.
    pub timer: TimerMode,
    /// A provider `token` (Dubbo's `TokenFilter`): when set, a call whose `token` attachment differs is
    /// answered with status 70 and Java's "Invalid token!" message.
    pub token: Option<String>,
    /// A Dubbo 3 MetadataService to serve next to the hash service (see [`metadata_service`]), shared by
    /// every listener of the simulator.
    pub metadata: Option<Arc<SimMetadata>>,
    /// Capacity drift: `threads`, `latency` and `knee` change over time by these steps (`None`: fixed).
    pub schedule: Option<Schedule>,
    /// When the schedule's time 0 is (`None`: when the simulator starts serving). Simulators and tools
    /// that must change at the same moments share one start.
    pub schedule_start: Option<SystemTime>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            name: "sim".to_owned(),
            latency: Duration::from_millis(50),
            threads: 200,
            knee: 0,
            serialization: SerializationMode::Any,
            max_body: DEFAULT_MAX_BODY,
            timer: TimerMode::Precise,
            token: None,
            metadata: None,
            schedule: None,
            schedule_start: None,
        }
    }
}

impl SimConfig {
    /// The latency of a call that starts with `inflight` calls in flight (itself included).
    pub fn latency_for(&self, inflight: usize) -> Duration {
        latency_for(self.latency, self.knee, inflight)
    }

    /// The settings the schedule starts from.
    pub fn capacity(&self) -> Capacity {
        Capacity {
            threads: self.threads,
            latency: self.latency,
            knee: self.knee,
        }
    }
}

/// `base * max(1, inflight / knee)` (`knee` 0: `base`).
fn latency_for(base: Duration, knee: usize, inflight: usize) -> Duration {
    if knee == 0 || inflight <= knee {
        return base;
    }
    base.mul_f64(inflight as f64 / knee as f64)
}

/// Counters of a simulator run (the `provider-sim` stats line).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// [`SimConfig::name`].
    pub name: String,
    /// Calls answered with the hash (one-way calls included).
    pub served: u64,
    /// Two-way calls answered with status 100, and one-way calls dropped, because the thread cap was reached.
    pub rejected: u64,
    /// Error answers (status 40 / 70) and connections closed on protocol errors.
    pub errors: u64,
    /// The most calls in flight at once.
    pub max_inflight: u64,
}

/// State shared by all connections of one simulator.
struct Shared {
    cfg: SimConfig,
    codec: Codec,
    local: SocketAddr,
    inflight: AtomicUsize,
    max_inflight: AtomicUsize,
    accepted: AtomicU64,
    served: AtomicU64,
    rejected: AtomicU64,
    errors: AtomicU64,
    /// The thread cap, base latency (ns) and knee in force (the configuration's, or the schedule's step).
    threads: AtomicUsize,
    latency_ns: AtomicU64,
    knee: AtomicUsize,
    /// The timer thread ([`TimerMode::Precise`]).
    timer: Option<PreciseTimer>,
}

impl Shared {
    fn new(cfg: SimConfig, local: SocketAddr) -> io::Result<Self> {
        let codec = Codec {
            max_body: cfg.max_body,
            ..Codec::default()
        };
        let timer = match cfg.timer {
            TimerMode::Precise => Some(PreciseTimer::start(&format!("sim-timer-{}", cfg.name))?),
            TimerMode::Coarse => None,
        };
        Ok(Shared {
            threads: AtomicUsize::new(cfg.threads),
            latency_ns: AtomicU64::new(u64::try_from(cfg.latency.as_nanos()).unwrap_or(u64::MAX)),
            knee: AtomicUsize::new(cfg.knee),
            cfg,
            codec,
            local,
            inflight: AtomicUsize::new(0),
            max_inflight: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            served: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            timer,
        })
    }

    /// Puts `c` in force for calls from now on.
    fn set_capacity(&self, c: Capacity) {
        self.threads.store(c.threads, Ordering::Relaxed);
        self.latency_ns.store(
            u64::try_from(c.latency.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.knee.store(c.knee, Ordering::Relaxed);
    }

    /// The latency of a call starting now with `inflight` calls in flight (itself included).
    fn latency_now(&self, inflight: usize) -> Duration {
        latency_for(
            Duration::from_nanos(self.latency_ns.load(Ordering::Relaxed)),
            self.knee.load(Ordering::Relaxed),
            inflight,
        )
    }

    fn stats(&self) -> Stats {
        Stats {
            name: self.cfg.name.clone(),
            served: self.served.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            max_inflight: self.max_inflight.load(Ordering::Relaxed) as u64,
        }
    }

    /// Takes a "thread" for a call: `Some(inflight including this call)`, or `None` when the cap is reached.
    fn try_acquire(self: &Arc<Self>) -> Option<(Slot, usize)> {
        let cap = self.threads.load(Ordering::Relaxed);
        let mut cur = self.inflight.load(Ordering::Relaxed);
        loop {
            if cap > 0 && cur >= cap {
                return None;
            }
            match self
                .inflight
                .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        self.max_inflight.fetch_max(cur + 1, Ordering::Relaxed);
        self.accepted.fetch_add(1, Ordering::Relaxed);
        Some((Slot(Arc::clone(self)), cur + 1))
    }

    /// Java's `AbortPolicyWithReport` message, as wrapped by `WrappedChannelHandler`.
    fn exhausted_message(&self) -> String {
        let t = self.threads.load(Ordering::Relaxed);
        let ip = self.local.ip();
        let port = self.local.port();
        let completed = self.served.load(Ordering::Relaxed);
        let tasks = self.accepted.load(Ordering::Relaxed);
        format!(
            "Server side({ip},{port}) thread pool is exhausted, detail msg:Thread pool is EXHAUSTED! \
             Thread Name: DubboServerHandler-{ip}:{port}, Pool Size: {t} (active: {t}, core: {t}, max: {t}, \
             largest: {t}), Task: {tasks} (completed: {completed}), Executor status:(isShutdown:false, \
             isTerminated:false, isTerminating:false), in dubbo://{ip}:{port}!"
        )
    }
}

/// One occupied "thread": released (inflight decremented) when dropped, whether the answer was sent or the
/// connection went away first.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An answer on its way to the writer.
struct Outgoing {
    /// When to send it; `None` = at once.
    due: Option<Instant>,
    /// The encoded frame; empty for one-way calls (nothing to send, only the slot to release).
    bytes: Bytes,
    /// The occupied thread of a hash call, released when the answer is due.
    slot: Option<Slot>,
}

/// A scheduled answer in the writer's heap (ordered by due time, then arrival).
struct Scheduled {
    due: Instant,
    seq: u64,
    bytes: Bytes,
    slot: Option<Slot>,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// Runs the simulator on `listener` until `shutdown` completes, then closes every connection and returns the
/// counters. Answers that were scheduled but not yet sent are dropped.
pub async fn run<F>(cfg: SimConfig, listener: TcpListener, shutdown: F) -> io::Result<Stats>
where
    F: Future<Output = ()>,
{
    let local = listener.local_addr()?;
    let shared = Arc::new(Shared::new(cfg, local)?);
    serve(Arc::clone(&shared), listener, shutdown).await;
    Ok(shared.stats())
}

async fn serve<F>(shared: Arc<Shared>, listener: TcpListener, shutdown: F)
where
    F: Future<Output = ()>,
{
    // The schedule's steps, applied as their time comes (aborted with the simulator).
    let _drift = shared
        .cfg
        .schedule
        .is_some()
        .then(|| AbortOnDrop(tokio::spawn(follow_schedule(Arc::clone(&shared)))));
    let mut conns = JoinSet::new();
    let mut failed_accepts = 0u64;
    let mut last_report = None;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    conns.spawn(connection(Arc::clone(&shared), stream));
                }
                // Out of file descriptors and the like: say so (at most once a second) and wait a little
                // instead of spinning.
                Err(e) => {
                    failed_accepts += 1;
                    if last_report.is_none_or(|t: std::time::Instant| t.elapsed() >= Duration::from_secs(1)) {
                        eprintln!("provider-sim: accept failed ({failed_accepts} so far): {e}");
                        last_report = Some(std::time::Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

/// Applies each step of the schedule at its time, one sleep per step (steps whose time has passed are
/// applied at once, in order); says so on stderr once per step.
async fn follow_schedule(shared: Arc<Shared>) {
    let Some(schedule) = &shared.cfg.schedule else {
        return;
    };
    let now = Instant::now();
    // Time 0 as an Instant: the configured wall-clock start (past or future), else now.
    let start = match shared.cfg.schedule_start {
        None => now,
        Some(at) => match at.duration_since(SystemTime::now()) {
            Ok(ahead) => now + ahead,
            Err(behind) => now.checked_sub(behind.duration()).unwrap_or(now),
        },
    };
    let caps = schedule.capacities(shared.cfg.capacity());
    for (i, (step, cap)) in schedule.steps().iter().zip(caps).enumerate() {
        tokio::time::sleep_until(tokio::time::Instant::from_std(start + step.at)).await;
        shared.set_capacity(cap);
        eprintln!(
            "provider-sim {} {}: schedule step {}/{} at {:?}: threads {}, latency {:?}, knee {}",
            shared.cfg.name,
            shared.local,
            i + 1,
            schedule.steps().len(),
            step.at,
            cap.threads,
            cap.latency,
            cap.knee
        );
    }
}

/// Aborts the task when dropped (the writer of a connection whose reader went away).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn connection(shared: Arc<Shared>, stream: TcpStream) {
    let (rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = AbortOnDrop(tokio::spawn(writer(Arc::clone(&shared), wr, rx)));
    let clean = reader(&shared, rd, tx).await;
    if clean {
        // The peer stopped sending: let the writer deliver what is scheduled, then it ends by itself
        // (channel closed, heap empty) or on the first failed write.
        let mut writer = writer;
        let _ = (&mut writer.0).await;
    }
    // Otherwise (protocol error) dropping the writer aborts it: the connection closes at once.
}

/// Reads and handles frames; `true` on a clean end of stream, `false` when the connection must be dropped.
async fn reader(shared: &Arc<Shared>, mut rd: OwnedReadHalf, tx: mpsc::UnboundedSender<Outgoing>) -> bool {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut scratch = BytesMut::with_capacity(16 * 1024);
    loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => return buf.is_empty(),
            Ok(_) => {}
            Err(_) => return false,
        }
        loop {
            match shared.codec.decode_frame(&mut buf) {
                Ok(Decoded::Frame(frame)) => {
                    if let Some(out) = handle_frame(shared, &frame, &mut scratch) {
                        if tx.send(out).is_err() {
                            return false;
                        }
                    }
                }
                Ok(Decoded::NeedMore(n)) => {
                    buf.reserve(n.min(shared.cfg.max_body + HEADER_LEN));
                    break;
                }
                Err(_) => {
                    // Bad magic or oversize: Java's decoder throws and the channel is closed.
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
            }
        }
    }
}

/// A writer's wake-up for the earliest answer in its heap: one alarm armed at a time.
struct Alarm<'a> {
    timer: Option<&'a PreciseTimer>,
    /// The due time the alarm is armed for.
    armed: Option<Instant>,
    precise: Option<Sleep>,
    coarse: Pin<Box<tokio::time::Sleep>>,
}

impl<'a> Alarm<'a> {
    fn new(timer: Option<&'a PreciseTimer>) -> Self {
        Alarm {
            timer,
            armed: None,
            precise: None,
            coarse: Box::pin(tokio::time::sleep(Duration::from_secs(3600))),
        }
    }

    /// Arms the alarm for `due` (the heap's earliest). An alarm armed for another time is replaced: it is
    /// either later (an earlier answer came in) or already due (its answers were written meanwhile).
    fn arm(&mut self, due: Instant) {
        if self.armed == Some(due) {
            return;
        }
        self.armed = Some(due);
        match self.timer {
            Some(t) => self.precise = Some(t.sleep_until(due)),
            None => self.coarse.as_mut().reset(tokio::time::Instant::from_std(due)),
        }
    }

    fn is_armed(&self) -> bool {
        self.armed.is_some()
    }

    /// Completes at the armed time (never before it); then the alarm is disarmed.
    async fn ring(&mut self) {
        match &mut self.precise {
            Some(s) => s.await,
            None => (&mut self.coarse).await,
        }
        self.armed = None;
        self.precise = None;
    }
}

/// The writer: keeps scheduled answers in a heap and writes every due one in a single batch.
async fn writer(shared: Arc<Shared>, mut wr: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    let mut heap: BinaryHeap<Reverse<Scheduled>> = BinaryHeap::new();
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut incoming = Vec::with_capacity(256);
    let mut seq = 0u64;
    let mut open = true;
    let mut alarm = Alarm::new(shared.timer.as_ref());
    while open || !heap.is_empty() {
        if let Some(Reverse(first)) = heap.peek() {
            alarm.arm(first.due);
        }
        tokio::select! {
            n = rx.recv_many(&mut incoming, 1024), if open => {
                if n == 0 {
                    open = false;
                }
            }
            () = alarm.ring(), if alarm.is_armed() && !heap.is_empty() => {}
        }
        for o in incoming.drain(..) {
            match o.due {
                None => out.extend_from_slice(&o.bytes),
                Some(due) => {
                    seq += 1;
                    heap.push(Reverse(Scheduled {
                        due,
                        seq,
                        bytes: o.bytes,
                        slot: o.slot,
                    }));
                }
            }
        }
        let now = Instant::now();
        while let Some(Reverse(first)) = heap.peek() {
            if first.due > now || out.len() >= 256 * 1024 {
                break;
            }
            let Some(Reverse(s)) = heap.pop() else { break };
            out.extend_from_slice(&s.bytes);
            if s.slot.is_some() {
                shared.served.fetch_add(1, Ordering::Relaxed);
            }
            drop(s.slot);
        }
        if !out.is_empty() {
            if wr.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
    }
    let _ = wr.shutdown().await;
}

/// A simulator running on its own thread and runtime; stopped (and its thread joined) on [`SimHandle::stop`]
/// or when dropped.
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    shared: SharedStats,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

/// The counters of a spawned simulator, readable while it runs.
struct SharedStats(Arc<Shared>);

impl fmt::Debug for SharedStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedStats").field(&self.0.stats()).finish()
    }
}

impl SimHandle {
    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        self.shared.0.stats()
    }

    /// Calls in flight right now.
    pub fn inflight(&self) -> usize {
        self.shared.0.inflight.load(Ordering::Relaxed)
    }

    /// Stops it (closing every connection), joins its thread and returns the final counters.
    pub fn stop(mut self) -> Stats {
        self.shutdown();
        self.shared.0.stats()
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Listen backlog of the simulator's sockets: a load generator opening thousands of connections at once
/// must not see SYNs dropped (the kernel caps it at `net.core.somaxconn`).
pub const BACKLOG: u32 = 4096;

/// Binds a listener on `addr` (loopback only) with [`BACKLOG`] and `SO_REUSEADDR`. Needs a runtime.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    require_loopback(addr.ip())?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Starts a simulator on `127.0.0.1:port` (0 = any free port) on its own thread, with a runtime of
/// `workers` threads (0 = a current-thread runtime).
pub fn spawn_on(cfg: SimConfig, port: u16, workers: usize) -> io::Result<SimHandle> {
    let rt = crate::runtime(workers, &format!("sim-{}", cfg.name))?;
    let listener = {
        let _guard = rt.enter();
        bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?
    };
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared::new(cfg, addr)?);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task_shared = Arc::clone(&shared);
    let thread = thread::Builder::new()
        .name(format!("sim-{}", shared.cfg.name))
        .spawn(move || {
            rt.block_on(serve(task_shared, listener, async {
                let _ = stop_rx.await;
            }));
            // Dropping the runtime cancels whatever is left.
            rt.shutdown_timeout(Duration::from_secs(1));
        })?;
    Ok(SimHandle {
        addr,
        shared: SharedStats(shared),
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

/// [`spawn_on`] with any free port and a current-thread runtime: enough for tests.
pub fn spawn(cfg: SimConfig) -> io::Result<SimHandle> {
    spawn_on(cfg, 0, 0)
}

/// Checks that an address to bind or target is on loopback (this kit never leaves the machine).
pub fn require_loopback(ip: IpAddr) -> io::Result<()> {
    if ip.is_loopback() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{ip} is not a loopback address: the test kit only binds and targets loopback"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> User {
        User {
            id: 42,
            name: "hello".into(),
            age: 30,
            vip: true,
        }
    }

    #[test]
    fn user_round_trips_through_its_value() {
        assert_eq!(User::from_value(&alice().to_value()), Ok(alice()));
    }

    #[test]
    fn user_id_may_be_an_int() {
        let mut v = alice().to_value();
        if let Value::Object(o) = &mut v {
            o.fields[0].1 = Value::Int(42);
        }
        assert_eq!(User::from_value(&v), Ok(alice()));
    }

    #[test]
    fn user_refuses_other_shapes() {
        assert!(User::from_value(&Value::str("x"))
            .unwrap_err()
            .contains("got a string"));
        let mut wrong_class = alice().to_value();
        if let Value::Object(o) = &mut wrong_class {
            o.class = "a.B".into();
        }
        assert!(User::from_value(&wrong_class).unwrap_err().contains("got a a.B"));
        let mut no_name = alice().to_value();
        if let Value::Object(o) = &mut no_name {
            o.fields.retain(|(k, _)| k != "name");
        }
        assert!(User::from_value(&no_name).unwrap_err().starts_with("field name"));
        let mut bad_age = alice().to_value();
        if let Value::Object(o) = &mut bad_age {
            o.fields[2].1 = Value::Long(30);
        }
        assert!(User::from_value(&bad_age).unwrap_err().starts_with("field age"));
    }

    #[test]
    fn user_answer_is_a_map_of_the_fields_and_the_name_hash() {
        let Value::Map(m) = user_answer(&alice()) else {
            panic!("not a map");
        };
        assert_eq!(m.type_name, None);
        let get = |k: &str| {
            m.entries
                .iter()
                .find(|(key, _)| key.as_str() == Some(k))
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("id"), Some(Value::Long(42)));
        assert_eq!(get("name"), Some(Value::str("hello")));
        assert_eq!(get("age"), Some(Value::Int(30)));
        assert_eq!(get("vip"), Some(Value::Bool(true)));
        assert_eq!(get("nameHash"), Some(Value::Int(99_162_322)));
        assert_eq!(m.entries.len(), 5);
    }

    #[test]
    fn knee_latency() {
        let cfg = SimConfig {
            latency: Duration::from_millis(100),
            knee: 10,
            ..SimConfig::default()
        };
        assert_eq!(cfg.latency_for(1), Duration::from_millis(100));
        assert_eq!(cfg.latency_for(10), Duration::from_millis(100));
        assert_eq!(cfg.latency_for(40), Duration::from_millis(400));
        let flat = SimConfig::default();
        assert_eq!(flat.latency_for(10_000), Duration::from_millis(50));
    }

    #[test]
    fn serialization_mode_parses() {
        assert_eq!("any".parse(), Ok(SerializationMode::Any));
        assert_eq!(
            "hessian2".parse(),
            Ok(SerializationMode::Only(Serialization::Hessian2))
        );
        assert_eq!(
            "fastjson".parse(),
            Ok(SerializationMode::Only(Serialization::FastJson))
        );
        assert!("kryo".parse::<SerializationMode>().is_err());
    }
}
