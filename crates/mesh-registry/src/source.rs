//! Registry sources and the watcher thread that broadcasts their snapshots to the shards.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Sender, TrySendError};
use tokio::sync::{oneshot, Notify};

use crate::etcd::EtcdConfig;
use crate::watch_state::WatchState;
use crate::{Endpoint, RegistryError, Snapshot};

/// Where the providers come from.
// One value per watcher thread, moved into it once: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Source {
    /// A fixed list from the configuration (`--provider 127.0.0.1:30000` registers under the wildcard
    /// service [`crate::WILDCARD_SERVICE`]). Published once, as version 1.
    Static(Vec<(String, Endpoint)>),
    /// Every provider under the etcd registry root, kept up to date by a watch.
    Etcd(EtcdConfig),
}

/// The last snapshot the registry thread published and when, readable from any thread at any time: for the
/// admin side, health and tests (a lock taken once per publication and once per read), never the data path,
/// which gets every snapshot over its own channel.
#[derive(Debug, Clone, Default)]
pub struct LatestSnapshot(Arc<Mutex<Option<Published>>>);

/// A published snapshot and when it was published.
type Published = (Arc<Snapshot>, SystemTime);

impl LatestSnapshot {
    /// The last snapshot published and when, if any.
    pub fn get(&self) -> Option<(Arc<Snapshot>, SystemTime)> {
        self.0
            .lock()
            .map_or_else(|poisoned| poisoned.into_inner().clone(), |g| g.clone())
    }

    /// Records `snapshot` as published now (by the registry thread; by tests).
    pub fn set(&self, snapshot: Arc<Snapshot>) {
        let value = Some((snapshot, SystemTime::now()));
        match self.0.lock() {
            Ok(mut g) => *g = value,
            Err(poisoned) => *poisoned.into_inner() = value,
        }
    }
}

/// How long [`WatcherHandle::stop`] waits for the thread.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a snapshot that did not fit into a full subscriber channel is offered again.
const RETRY_FULL_SUBSCRIBER: Duration = Duration::from_millis(20);

/// Starts the registry thread (`mesh-registry-watch`) for `source`, which sends every new snapshot to each
/// subscriber.
///
/// * Snapshots are immutable (and cheap to clone: persistent maps); versions start at 1 and grow by one
///   per published snapshot. A snapshot is only published when the providers or rules changed (or for the
///   first time), so consecutive snapshots always differ; each changed service key's list says what changed
///   ([`crate::Providers::change`]) and each snapshot which addresses left ([`Snapshot::departed`]).
///   Etcd: at most one snapshot per [`EtcdConfig::publish_interval`]; a change within it of the last
///   publication is held (at most 1.5 intervals) and goes out with the changes after it.
/// * A subscriber only needs the newest snapshot (`rx.try_iter().last()`), but should look at the
///   `departed` addresses of every one it drains. Unbounded
///   channels are simplest; with a bounded channel that is full the newest snapshot is offered again every
///   20 ms (older undelivered ones are dropped) until it fits. A disconnected subscriber is forgotten.
/// * Etcd: nothing is published until the first successful read of the prefix. Errors never produce a
///   snapshot: the subscribers keep the last one while the thread retries with backoff.
///
/// Errors: the OS refused the thread or the runtime, or the etcd configuration is invalid
/// ([`std::io::ErrorKind::InvalidInput`] wrapping [`RegistryError::Config`]).
pub fn spawn_watcher(
    source: Source,
    subscribers: Vec<Sender<Arc<Snapshot>>>,
) -> std::io::Result<WatcherHandle> {
    if let Source::Etcd(cfg) = &source {
        cfg.validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    let latest = LatestSnapshot::default();
    let watch = match &source {
        Source::Etcd(cfg) => Some(WatchState::new(&cfg.endpoints)),
        Source::Static(_) => None,
    };
    let watch_state = watch.clone();
    let outbox = Outbox::new(subscribers, latest.clone());
    let thread = std::thread::Builder::new()
        .name("mesh-registry-watch".into())
        .spawn(move || {
            // The watch runs as a spawned task, not as the `block_on` future: an etcd event reaches it
            // through the HTTP/2 connection's task, and waking a spawned task from there queues it for the
            // same scheduler pass, where waking the `block_on` future costs one more (non-blocking) poll of
            // the IO and time drivers per event (tokio's current-thread scheduler, `park_yield`).
            let work = runtime.spawn(async move {
                let work = async {
                    match source {
                        Source::Static(entries) => {
                            outbox.publish(Snapshot::new(1, entries));
                            std::future::pending::<()>().await;
                        }
                        Source::Etcd(cfg) => {
                            let state = watch_state.unwrap_or_else(|| WatchState::new(&[]));
                            crate::etcd::watch_forever(&cfg, &outbox, &state).await
                        }
                    }
                };
                tokio::select! {
                    biased;
                    () = work => {}
                    () = outbox.retry_full_subscribers() => {}
                }
            });
            runtime.block_on(async move {
                tokio::select! {
                    biased;
                    // Sent by `stop` or dropped with the handle: either way, stop.
                    _ = stop_rx => {}
                    _ = work => {}
                }
            });
            drop(runtime);
            let _ = done_tx.send(());
        })?;
    Ok(WatcherHandle {
        stop: Some(stop_tx),
        done: done_rx,
        thread: Some(thread),
        latest,
        watch,
    })
}

/// The running registry thread. Dropping it stops the thread without waiting; [`WatcherHandle::stop`] waits.
#[derive(Debug)]
#[must_use = "dropping the handle stops the watcher"]
pub struct WatcherHandle {
    stop: Option<oneshot::Sender<()>>,
    done: crossbeam_channel::Receiver<()>,
    thread: Option<JoinHandle<()>>,
    latest: LatestSnapshot,
    watch: Option<WatchState>,
}

impl WatcherHandle {
    /// The etcd watch's state (connected, member, restarts), for another thread; `None` for a static list.
    pub fn watch_state(&self) -> Option<WatchState> {
        self.watch.clone()
    }

    /// The last snapshot published, if any (for tests, health and debugging, not for the data path).
    pub fn latest(&self) -> Option<Arc<Snapshot>> {
        self.latest.get().map(|(snapshot, _)| snapshot)
    }

    /// A handle on the last snapshot published and its time, for another thread (the admin side).
    pub fn latest_snapshot(&self) -> LatestSnapshot {
        self.latest.clone()
    }

    /// Stops the thread and joins it, waiting at most [`STOP_TIMEOUT`] (then the thread is left to finish
    /// on its own and [`RegistryError::Timeout`] is returned).
    pub fn stop(mut self) -> Result<(), RegistryError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        join_bounded(&self.done, self.thread.take(), STOP_TIMEOUT, "watcher stop")
    }
}

impl Drop for WatcherHandle {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread, which then stops on its own.
        self.stop.take();
    }
}

/// Waits for a registry thread's `done` signal (sent after its runtime is dropped), then joins it.
pub(crate) fn join_bounded(
    done: &crossbeam_channel::Receiver<()>,
    thread: Option<JoinHandle<()>>,
    timeout: Duration,
    op: &'static str,
) -> Result<(), RegistryError> {
    match done.recv_timeout(timeout) {
        Ok(()) => match thread.map(JoinHandle::join) {
            Some(Err(_)) => Err(RegistryError::ThreadGone),
            _ => Ok(()),
        },
        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
            Err(RegistryError::Timeout { op, after: timeout })
        }
        // The thread dropped its sender without sending: it panicked.
        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
            if let Some(t) = thread {
                let _ = t.join();
            }
            Err(RegistryError::ThreadGone)
        }
    }
}

/// Hands snapshots to the subscribers from inside the registry thread's runtime (single-threaded: the
/// lock is never held across an await, and never contended: only the registry thread takes it; a `Mutex`
/// rather than a `RefCell` because the watch runs as a spawned task, which must be `Send`).
#[derive(Debug)]
pub(crate) struct Outbox {
    inner: Mutex<Publisher>,
    wake: Notify,
}

#[derive(Debug)]
struct Publisher {
    subscribers: Vec<Subscriber>,
    version: u64,
    latest: LatestSnapshot,
}

#[derive(Debug)]
struct Subscriber {
    tx: Sender<Arc<Snapshot>>,
    /// The newest snapshot this subscriber has not taken yet because its channel was full.
    pending: Option<Arc<Snapshot>>,
}

impl Outbox {
    pub(crate) fn new(subscribers: Vec<Sender<Arc<Snapshot>>>, latest: LatestSnapshot) -> Self {
        let subscribers = subscribers
            .into_iter()
            .map(|tx| Subscriber { tx, pending: None })
            .collect();
        Outbox {
            inner: Mutex::new(Publisher {
                subscribers,
                version: 0,
                latest,
            }),
            wake: Notify::new(),
        }
    }

    /// The publisher (a poisoned lock is taken over: the registry thread is the only user).
    fn publisher(&self) -> std::sync::MutexGuard<'_, Publisher> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The version of the last published snapshot (0 before the first).
    pub(crate) fn version(&self) -> u64 {
        self.publisher().version
    }

    /// Publishes `snapshot` (built by a [`crate::SnapshotBuilder`], whose versions grow by one and which
    /// publishes only changes) to every subscriber. Returns its version.
    pub(crate) fn publish(&self, snapshot: Snapshot) -> u64 {
        let mut p = self.publisher();
        p.version = snapshot.version;
        let snapshot = Arc::new(snapshot);
        p.latest.set(Arc::clone(&snapshot));
        for s in &mut p.subscribers {
            s.pending = Some(Arc::clone(&snapshot));
        }
        let version = p.version;
        if p.deliver() {
            self.wake.notify_one();
        }
        version
    }

    /// Runs forever, offering snapshots again to subscribers whose channel was full.
    pub(crate) async fn retry_full_subscribers(&self) {
        loop {
            let pending = self.publisher().subscribers.iter().any(|s| s.pending.is_some());
            if pending {
                tokio::time::sleep(RETRY_FULL_SUBSCRIBER).await;
                self.publisher().deliver();
            } else {
                self.wake.notified().await;
            }
        }
    }
}

impl Publisher {
    /// Tries to hand every pending snapshot over; returns whether some are still pending.
    fn deliver(&mut self) -> bool {
        let before = self.subscribers.len();
        let mut still_pending = false;
        self.subscribers.retain_mut(|s| {
            let Some(snapshot) = s.pending.take() else {
                return true;
            };
            match s.tx.try_send(snapshot) {
                Ok(()) => true,
                Err(TrySendError::Full(snapshot)) => {
                    s.pending = Some(snapshot);
                    still_pending = true;
                    true
                }
                Err(TrySendError::Disconnected(_)) => false,
            }
        });
        let gone = before - self.subscribers.len();
        // When none is left the agent is stopping (or failed to start): its own error says why, and a line
        // here would only race with it.
        if gone > 0 && !self.subscribers.is_empty() {
            tracing::warn!(
                "{gone} snapshot subscriber(s) went away; {} left",
                self.subscribers.len()
            );
        }
        still_pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn ep(s: &str) -> Endpoint {
        Endpoint::new(s.parse().unwrap())
    }

    #[test]
    fn static_source_publishes_once_to_every_subscriber() {
        let (tx1, rx1) = crossbeam_channel::unbounded();
        let (tx2, rx2) = crossbeam_channel::bounded(1);
        let list = vec![
            ("*".to_string(), ep("127.0.0.1:30000")),
            ("*".to_string(), ep("127.0.0.1:30000")),
        ];
        let handle = spawn_watcher(Source::Static(list), vec![tx1, tx2]).unwrap();
        for rx in [&rx1, &rx2] {
            let snap = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(snap.version, 1);
            assert_eq!(snap.endpoints("any.Service").len(), 1);
        }
        assert!(rx1.recv_timeout(Duration::from_millis(200)).is_err());
        assert_eq!(handle.latest().unwrap().version, 1);
        let t = Instant::now();
        handle.stop().unwrap();
        assert!(t.elapsed() < Duration::from_secs(1));
        // The thread is gone: its senders are dropped.
        assert!(rx1.recv_timeout(Duration::from_secs(1)).is_err());
        assert!(matches!(
            rx1.try_recv(),
            Err(crossbeam_channel::TryRecvError::Disconnected)
        ));
    }

    #[test]
    fn dropping_the_handle_stops_the_thread() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let handle = spawn_watcher(Source::Static(vec![]), vec![tx]).unwrap();
        let snap = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(snap.is_empty());
        drop(handle);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match rx.try_recv() {
                Err(crossbeam_channel::TryRecvError::Disconnected) => break,
                _ if Instant::now() > deadline => panic!("thread still running"),
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    #[test]
    fn outbox_retries_full_channels_with_the_newest_snapshot() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (full_tx, full_rx) = crossbeam_channel::bounded(1);
        let (gone_tx, gone_rx) = crossbeam_channel::unbounded();
        drop(gone_rx);
        let latest = LatestSnapshot::default();
        let outbox = Outbox::new(vec![full_tx, gone_tx], latest.clone());
        let mut builder = crate::SnapshotBuilder::new();
        builder.upsert("a", ep("1.1.1.1:1"));
        assert_eq!(outbox.publish(builder.publish(1).unwrap()), 1);
        assert_eq!(
            outbox.publisher().subscribers.len(),
            1,
            "the disconnected one is forgotten"
        );
        // The channel holds v1; v2 and v3 wait; only v3 (the newest) is delivered later.
        builder.upsert("a", ep("1.1.1.2:1"));
        assert_eq!(outbox.publish(builder.publish(2).unwrap()), 2);
        builder.remove("a", "1.1.1.1:1".parse().unwrap());
        builder.remove("a", "1.1.1.2:1".parse().unwrap());
        assert_eq!(outbox.publish(builder.publish(3).unwrap()), 3);
        assert_eq!(outbox.version(), 3);
        assert_eq!(latest.get().unwrap().0.version, 3);
        rt.block_on(async {
            let retry = outbox.retry_full_subscribers();
            let consume = async {
                assert_eq!(full_rx.try_recv().unwrap().version, 1);
                let deadline = Instant::now() + Duration::from_secs(5);
                loop {
                    if let Ok(s) = full_rx.try_recv() {
                        assert_eq!(s.version, 3);
                        assert!(s.is_empty());
                        break;
                    }
                    assert!(Instant::now() < deadline);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            };
            tokio::select! {
                () = retry => unreachable!(),
                () = consume => {}
            }
        });
        assert!(full_rx.try_recv().is_err());
    }
}
