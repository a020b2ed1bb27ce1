//! The connections of one shard to one endpoint: dialled on demand, re-dialled with back-off, and the
//! endpoint's health as this shard sees it (outlier ejection, adaptive concurrency limit).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{UpstreamConfig, UpstreamConn};
use crate::error::CallError;
use crate::health::{AdaptiveLimit, EjectionConfig, Outlier, State as HealthState};
use crate::sync::Event as Signal;

/// One of the pool's connection places.
enum Entry {
    Empty,
    Dialing(Signal),
    Ready(UpstreamConn),
}

/// How long a connection that dies without an answer counts as a failed dial.
const DIED_YOUNG: Duration = Duration::from_secs(1);

/// The connections of one shard to one endpoint.
pub struct Pool {
    addr: SocketAddr,
    cfg: UpstreamConfig,
    entries: RefCell<Vec<Entry>>,
    dial: RefCell<DialBackoff>,
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
    pub fn new(addr: SocketAddr, cfg: UpstreamConfig) -> Self {
        Self::with_health(
            addr,
            cfg,
            EjectionConfig::default(),
            AdaptiveLimit::new(16, 10_000),
        )
    }

    /// A pool with its outlier-ejection settings and the starting point of its adaptive limit.
    pub fn with_health(
        addr: SocketAddr,
        cfg: UpstreamConfig,
        ejection: EjectionConfig,
        limit: AdaptiveLimit,
    ) -> Self {
        let entries = (0..cfg.connections.max(1)).map(|_| Entry::Empty).collect();
        Pool {
            addr,
            dial: RefCell::new(DialBackoff::new(cfg.min_backoff, cfg.max_backoff)),
            cfg,
            entries: RefCell::new(entries),
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
        if self.outlier.borrow_mut().on_success() {
            tracing::info!(
                provider = %self.addr,
                shard = std::thread::current().name().unwrap_or("?"),
                "provider {} restored: a probe call succeeded after its ejection",
                self.addr
            );
        }
        let inflight = self.inflight() as u32 + 1;
        self.limit.borrow_mut().on_answer(rtt, inflight);
    }

    /// A call failed in a way that points at the provider (lost connection, timeout, its agent's error).
    /// Returns true when this ejected the provider.
    pub fn on_failure(&self) -> bool {
        let now = Instant::now();
        let ejected = self.outlier.borrow_mut().on_failure(now);
        if ejected {
            if let HealthState::Ejected(until) = self.health(now) {
                let for_ms = until.saturating_duration_since(now).as_millis() as u64;
                tracing::warn!(
                    provider = %self.addr,
                    shard = std::thread::current().name().unwrap_or("?"),
                    for_ms,
                    "provider {} ejected for {for_ms} ms after consecutive failures",
                    self.addr
                );
            }
        }
        ejected
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

    /// Calls in flight over all connections of this pool.
    pub fn inflight(&self) -> usize {
        self.entries
            .borrow()
            .iter()
            .map(|s| match s {
                Entry::Ready(c) => c.inflight(),
                _ => 0,
            })
            .sum()
    }

    /// When the back-off after a failed dial ends, if the pool is in one (and has no live connection).
    pub fn backoff_until(&self, now: Instant) -> Option<Instant> {
        self.dial.borrow().until(now).filter(|_| self.live_count() == 0)
    }

    fn live_count(&self) -> usize {
        self.entries
            .borrow()
            .iter()
            .filter(|s| matches!(s, Entry::Ready(c) if c.is_alive()))
            .count()
    }

    /// A live connection if the pool has one now (the least busy; like [`Pool::get`] it starts growing the
    /// pool in the background when that one is busy and a place is free); `None` when getting one would
    /// mean waiting for a dial.
    pub fn try_get(self: &Rc<Self>) -> Option<UpstreamConn> {
        self.review_connections();
        let (best, empty) = {
            let slots = self.entries.borrow();
            let start = self.next.get();
            self.next.set(start.wrapping_add(1));
            let mut best: Option<&UpstreamConn> = None;
            let mut empty = None;
            for k in 0..slots.len() {
                let i = (start + k) % slots.len();
                match &slots[i] {
                    Entry::Ready(c) => {
                        if best.is_none_or(|b| c.inflight() < b.inflight()) {
                            best = Some(c);
                        }
                    }
                    Entry::Empty => empty = empty.or(Some(i)),
                    Entry::Dialing(_) => {}
                }
            }
            (best.cloned()?, empty)
        };
        if let Some(i) = empty {
            if best.inflight() > 0 && self.dial.borrow().may_dial(Instant::now()) {
                self.start_dial(i);
            }
        }
        Some(best)
    }

    /// A live connection, dialling one when the pool has fewer than configured. Concurrent callers share a
    /// dial in progress instead of opening extra connections.
    pub async fn get(self: &Rc<Self>) -> Result<UpstreamConn, CallError> {
        if let Some(c) = self.try_get() {
            return Ok(c);
        }
        for _ in 0..3 {
            self.review_connections();
            let (best, empty, dialing) = {
                let slots = self.entries.borrow();
                let start = self.next.get();
                self.next.set(start.wrapping_add(1));
                let mut best: Option<UpstreamConn> = None;
                let mut empty = None;
                let mut dialing = None;
                for k in 0..slots.len() {
                    let i = (start + k) % slots.len();
                    match &slots[i] {
                        Entry::Ready(c) => {
                            if best.as_ref().is_none_or(|b| c.inflight() < b.inflight()) {
                                best = Some(c.clone());
                            }
                        }
                        Entry::Empty => empty = empty.or(Some(i)),
                        Entry::Dialing(sig) => dialing = dialing.or(Some(sig.clone())),
                    }
                }
                (best, empty, dialing)
            };
            let may_dial = self.dial.borrow().may_dial(Instant::now());
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
            if self.live_count() == 0 && !self.dial.borrow().may_dial(Instant::now()) {
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
        self.entries.borrow_mut()[slot] = Entry::Dialing(sig.clone());
        let pool = self.clone();
        let done = sig.clone();
        // The dial runs as its own task so that a caller which gives up does not abandon it half-way.
        glommio::spawn_local(async move {
            let res = UpstreamConn::connect(pool.addr, &pool.cfg).await;
            pool.finish_dial(slot, res);
            done.set();
        })
        .detach();
        sig
    }

    fn finish_dial(&self, slot: usize, res: Result<UpstreamConn, CallError>) {
        let mut entries = self.entries.borrow_mut();
        match res {
            Ok(conn) => {
                entries[slot] = Entry::Ready(conn);
                self.dial.borrow_mut().on_connected();
            }
            Err(e) => {
                entries[slot] = Entry::Empty;
                drop(entries);
                *self.dial_error.borrow_mut() = Some(match e {
                    CallError::Connect { source, .. } => source.to_string(),
                    other => other.to_string(),
                });
                self.dial.borrow_mut().on_failure(Instant::now());
            }
        }
    }

    /// Forgets dead connections and tells the dial back-off what the connections showed: one that died
    /// young without an answer counts as a failed dial (a peer that accepts and drops connections is not
    /// re-dialled in a tight loop); one that has been answered ends the back-off, whoever uses the pool.
    fn review_connections(&self) {
        let (mut died_young, mut answered) = (false, false);
        for e in self.entries.borrow_mut().iter_mut() {
            if let Entry::Ready(c) = e {
                answered |= c.has_answered();
                if !c.is_alive() {
                    died_young |= c.died_young(DIED_YOUNG);
                    *e = Entry::Empty;
                }
            }
        }
        let mut dial = self.dial.borrow_mut();
        if answered {
            dial.on_answered();
        }
        if died_young {
            dial.on_failure(Instant::now());
        }
    }
}

/// When the pool may dial again after failed dials: the wait starts at `min` and doubles up to `max` with
/// each failure in a row; a connection that is answered resets it.
#[derive(Debug, Clone)]
struct DialBackoff {
    min: Duration,
    max: Duration,
    /// The wait after the next failure.
    next: Duration,
    until: Option<Instant>,
}

impl DialBackoff {
    fn new(min: Duration, max: Duration) -> Self {
        DialBackoff {
            min,
            max: max.max(min),
            next: min,
            until: None,
        }
    }

    fn on_failure(&mut self, now: Instant) {
        self.until = Some(now + self.next);
        self.next = (self.next * 2).min(self.max);
    }

    /// A dial succeeded: dialling is allowed again, but the wait after the next failure stays long until
    /// a connection is answered (a peer that accepts and then drops connections keeps backing off).
    fn on_connected(&mut self) {
        self.until = None;
    }

    fn on_answered(&mut self) {
        self.next = self.min;
    }

    fn may_dial(&self, now: Instant) -> bool {
        self.until.is_none_or(|t| now >= t)
    }

    /// The end of the wait, while in one.
    fn until(&self, now: Instant) -> Option<Instant> {
        self.until.filter(|t| now < *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use futures_lite::AsyncWriteExt;
    use glommio::net::TcpListener;
    use mesh_dubbo::{Header, Serialization, Status};

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn dial_waits_double_with_each_failure_up_to_the_maximum() {
        let t = Instant::now();
        let mut b = DialBackoff::new(10 * MS, 50 * MS);
        assert!(b.may_dial(t));
        assert_eq!(b.until(t), None);
        let waits: Vec<Duration> = (0..5)
            .map(|_| {
                b.on_failure(t);
                b.until(t).unwrap() - t
            })
            .collect();
        assert_eq!(waits, [10 * MS, 20 * MS, 40 * MS, 50 * MS, 50 * MS]);
        assert!(!b.may_dial(t + 49 * MS));
        assert!(b.may_dial(t + 50 * MS));
        assert_eq!(b.until(t + 50 * MS), None);
    }

    #[test]
    fn a_dial_that_connects_allows_dialling_but_only_an_answer_shortens_the_next_wait() {
        let t = Instant::now();
        let mut b = DialBackoff::new(10 * MS, 1000 * MS);
        for _ in 0..3 {
            b.on_failure(t);
        }
        b.on_connected();
        assert!(b.may_dial(t));
        // The peer accepted and dropped the connection: the wait keeps growing.
        b.on_failure(t);
        assert_eq!(b.until(t), Some(t + 80 * MS));
        b.on_connected();
        b.on_answered();
        b.on_failure(t);
        assert_eq!(b.until(t), Some(t + 10 * MS));
    }

    /// Accepts one connection on `listener` and answers every request on it with an empty OK answer.
    async fn answer_one_connection(listener: TcpListener) {
        let Ok(stream) = listener.accept().await else {
            return;
        };
        let (r, mut w) = crate::io::split(stream);
        let mut frames = crate::frames::FrameReader::new(r, mesh_dubbo::Codec::default(), 4096);
        while let Ok(f) = frames.next(|| ()).await {
            let mut out = BytesMut::new();
            Header::response(f.header.id, Serialization::Hessian2, Status::OK).write(&mut out);
            if w.write_all(&out).await.is_err() {
                return;
            }
        }
    }

    #[test]
    fn an_answered_connection_resets_the_dial_backoff_without_anyone_reporting_success() {
        // Regression: only the consumer's `on_success` reset the back-off, so the provider agent's pool
        // (which never calls it) kept the longest wait after its first failures, for the process's life.
        crate::runtime::run_on_test_shard(async {
            let closed = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = closed.local_addr().unwrap();
            drop(closed);
            let cfg = UpstreamConfig {
                connections: 1,
                min_backoff: MS,
                max_backoff: Duration::from_secs(10),
                heartbeat: None,
                ..UpstreamConfig::default()
            };
            let pool = Rc::new(Pool::new(addr, cfg));
            // Six refused dials: the next wait would be 64 ms.
            let mut refused = 0;
            while refused < 6 {
                match pool.get().await {
                    Err(CallError::Connect { .. }) => refused += 1,
                    Err(CallError::BackingOff(_)) => {}
                    other => panic!("{other:?}"),
                }
                if let Some(until) = pool.backoff_until(Instant::now()) {
                    glommio::timer::sleep(until.saturating_duration_since(Instant::now())).await;
                }
            }
            // The endpoint comes up and answers a call.
            let server = glommio::spawn_local(answer_one_connection(TcpListener::bind(addr).unwrap()));
            let conn = pool.get().await.expect("dialled");
            let call = conn
                .send(Duration::from_secs(5), |buf, id| {
                    Header::request(id, Serialization::Hessian2, true).write(buf);
                    Ok(())
                })
                .unwrap();
            call.wait().await.expect("answered");
            // It goes away again: the next refused dial waits the shortest time.
            drop(server);
            while conn.is_alive() {
                glommio::timer::sleep(MS).await;
            }
            let before = Instant::now();
            assert!(matches!(pool.get().await, Err(CallError::Connect { .. })));
            let wait = pool.backoff_until(before).map(|u| u - before);
            assert!(wait.is_some_and(|w| w < 20 * MS), "waits {wait:?}");
        });
    }

    #[test]
    fn a_dropped_pool_closes_its_idle_connections() {
        // Regression (scale benchmark, 5,000 providers under churn): the connection's reader task held it
        // alive, so every pool dropped for a provider that left the registry leaked an open connection that
        // kept heartbeating: the consumer's sockets grew by two per departure (one per shard).
        crate::runtime::run_on_test_shard(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = glommio::spawn_local(answer_one_connection(listener));
            let cfg = UpstreamConfig {
                connections: 1,
                ..UpstreamConfig::default()
            };
            let pool = Rc::new(Pool::new(addr, cfg));
            let conn = pool.get().await.expect("dialled");
            let call = conn
                .send(Duration::from_secs(5), |buf, id| {
                    Header::request(id, Serialization::Hessian2, true).write(buf);
                    Ok(())
                })
                .unwrap();
            call.wait().await.expect("answered");
            drop(conn);
            drop(pool);
            // The server's read ends (EOF) once the consumer side closed the socket.
            let closed = glommio::timer::timeout(Duration::from_secs(5), async {
                server.await;
                Ok(())
            })
            .await;
            assert!(closed.is_ok(), "the connection of a dropped pool stayed open");
        });
    }
}
