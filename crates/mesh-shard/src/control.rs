//! Stop and drain, from the main thread to every shard.
//!
//! The main thread holds a [`Controller`]; each shard holds a [`ShardControl`]. A stop sets one atomic flag
//! and fixes one drain deadline for the whole process, then wakes one task per shard: the shard's bridge,
//! which turns the cross-thread stop into a shard-local [`Event`] (glommio accepts a wake-up from any
//! thread and forwards it to the task's executor). Connections wait on that local event; nothing polls
//! the flag with a timer.

use std::cell::RefCell;
use std::future::Future;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::sync::Event;

/// How often [`ShardControl::drained`] looks at its idleness condition while draining.
const DRAIN_CHECK: Duration = Duration::from_millis(5);

/// What the main thread and the shards share: control values only, never touched per request.
#[derive(Debug)]
struct Shared {
    /// Tells this controller's shard-local events apart on a thread.
    id: u64,
    stopping: AtomicBool,
    /// The drain deadline, as nanoseconds after `epoch`; fixed once, by the stop.
    deadline_ns: AtomicU64,
    epoch: Instant,
    /// The wakers of the shards' bridge tasks (one per shard), woken by the stop.
    bridges: crossbeam_channel::Sender<Waker>,
    bridges_rx: crossbeam_channel::Receiver<Waker>,
}

impl Shared {
    fn new() -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let (bridges, bridges_rx) = crossbeam_channel::unbounded();
        Shared {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            stopping: AtomicBool::new(false),
            deadline_ns: AtomicU64::new(0),
            epoch: Instant::now(),
            bridges,
            bridges_rx,
        }
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Sets the stop (the first call fixes the drain deadline) and wakes every bridge registered so far.
    fn stop(&self, drain: Duration) {
        let deadline = (Instant::now() + drain).saturating_duration_since(self.epoch);
        let ns = u64::try_from(deadline.as_nanos()).unwrap_or(u64::MAX);
        // The deadline is written before the flag and read after it.
        if !self.stopping.load(Ordering::Acquire) {
            self.deadline_ns.store(ns, Ordering::Relaxed);
        }
        self.stopping.store(true, Ordering::SeqCst);
        // Pairs with the fence in `register`: a bridge either sees the flag or has its waker here.
        fence(Ordering::SeqCst);
        while let Ok(w) = self.bridges_rx.try_recv() {
            w.wake();
        }
    }

    /// Registers a bridge's waker; true when the stop has come already (the waker may then never be woken).
    fn register(&self, waker: Waker) -> bool {
        let _ = self.bridges.send(waker);
        fence(Ordering::SeqCst);
        self.stopping.load(Ordering::SeqCst)
    }

    /// The drain deadline; `None` before the stop.
    fn deadline(&self) -> Option<Instant> {
        self.is_stopping()
            .then(|| self.epoch + Duration::from_nanos(self.deadline_ns.load(Ordering::Relaxed)))
    }

    /// Bridges waiting for the stop.
    #[cfg(test)]
    fn bridges(&self) -> usize {
        self.bridges_rx.len()
    }
}

/// Held by the main thread: tells every shard to stop accepting and drain.
#[derive(Debug, Clone)]
pub struct Controller(Arc<Shared>);

impl Default for Controller {
    fn default() -> Self {
        Controller(Arc::new(Shared::new()))
    }
}

/// Held by each shard (created on the main thread, moved into the shard).
#[derive(Debug, Clone)]
pub struct ShardControl(Arc<Shared>);

impl Controller {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn shard(&self) -> ShardControl {
        ShardControl(self.0.clone())
    }

    /// Stop accepting; finish what is in flight within `drain` from now, then let the shards exit. Only
    /// the first stop counts.
    pub fn stop(&self, drain: Duration) {
        self.0.stop(drain);
    }
}

thread_local! {
    /// The shard-local stop events on this thread, by controller id and executor id (a thread runs one
    /// executor in the agent; a test may run several in turn).
    static STOP_EVENTS: RefCell<Vec<((u64, usize), Event)>> = const { RefCell::new(Vec::new()) };
}

impl ShardControl {
    pub fn is_stopping(&self) -> bool {
        self.0.is_stopping()
    }

    /// Resolves once a stop has been requested. Any number of tasks may wait: they wait on this shard's
    /// local event, which one bridge task per shard sets when the stop arrives.
    pub fn stopped(&self) -> impl Future<Output = ()> + 'static {
        let event = self.local_event();
        async move { event.wait().await }
    }

    /// This shard's stop event, created (with its bridge task) on first use. Must be called on a shard.
    fn local_event(&self) -> Event {
        let key = (self.0.id, glommio::executor().id());
        STOP_EVENTS.with(|events| {
            let mut events = events.borrow_mut();
            if let Some((_, e)) = events.iter().find(|(k, _)| *k == key) {
                return e.clone();
            }
            let event = Event::new();
            events.push((key, event.clone()));
            glommio::spawn_local(bridge(self.0.clone(), event.clone())).detach();
            event
        })
    }

    /// After a stop: waits until `idle()` holds or the drain deadline (fixed by the stop) has passed.
    /// Calls in a row share that one deadline.
    pub async fn drained(&self, idle: impl Fn() -> bool) {
        let Some(deadline) = self.0.deadline() else {
            return;
        };
        while !idle() && Instant::now() < deadline {
            glommio::timer::sleep(DRAIN_CHECK.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }
}

/// The shard's one task that waits for the cross-thread stop and sets the shard-local event.
async fn bridge(shared: Arc<Shared>, event: Event) {
    let mut registered = false;
    std::future::poll_fn(|cx| {
        if shared.is_stopping() {
            return Poll::Ready(());
        }
        if !registered {
            registered = true;
            if shared.register(cx.waker().clone()) {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await;
    event.set();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::run_on_test_shard;
    use std::cell::Cell;
    use std::rc::Rc;

    #[test]
    fn a_stop_from_another_thread_wakes_every_waiter_through_one_bridge() {
        let controller = Controller::new();
        let control = controller.shard();
        let shared = controller.0.clone();
        run_on_test_shard(async move {
            let woken = Rc::new(Cell::new(0));
            for _ in 0..50 {
                let (c, woken) = (control.clone(), woken.clone());
                glommio::spawn_local(async move {
                    c.stopped().await;
                    woken.set(woken.get() + 1);
                })
                .detach();
            }
            glommio::executor().yield_task_queue_now().await;
            glommio::timer::sleep(Duration::from_millis(20)).await;
            // Fifty waiters, one waker handed to the main thread.
            assert_eq!(shared.bridges(), 1);
            assert_eq!(woken.get(), 0);
            assert!(!control.is_stopping());
            std::thread::spawn(move || controller.stop(Duration::from_millis(10)))
                .join()
                .unwrap();
            control.stopped().await;
            glommio::timer::sleep(Duration::from_millis(10)).await;
            assert_eq!(woken.get(), 50);
        });
    }

    #[test]
    fn waiting_after_the_stop_resolves_at_once() {
        let controller = Controller::new();
        controller.stop(Duration::ZERO);
        let control = controller.shard();
        run_on_test_shard(async move {
            control.stopped().await;
            assert!(control.is_stopping());
        });
    }

    #[test]
    fn drain_has_one_deadline_however_many_times_it_is_awaited() {
        // Regression: each `drained()` computed its own deadline, so two drains in a row took twice the
        // drain time.
        let controller = Controller::new();
        let control = controller.shard();
        let drain = Duration::from_millis(150);
        controller.stop(drain);
        let took = run_on_test_shard(async move {
            let t0 = Instant::now();
            control.drained(|| false).await;
            control.drained(|| false).await;
            t0.elapsed()
        });
        assert!(took >= Duration::from_millis(140), "{took:?}");
        assert!(took < Duration::from_millis(280), "two drains took {took:?}");
    }

    #[test]
    fn only_the_first_stop_fixes_the_deadline() {
        let controller = Controller::new();
        controller.stop(Duration::from_millis(100));
        let first = controller.0.deadline().unwrap();
        controller.stop(Duration::from_secs(60));
        assert_eq!(controller.0.deadline(), Some(first));
        assert!(Controller::new().0.deadline().is_none());
    }

    #[test]
    fn drain_ends_as_soon_as_idle() {
        let controller = Controller::new();
        let control = controller.shard();
        controller.stop(Duration::from_secs(10));
        let took = run_on_test_shard(async move {
            let t0 = Instant::now();
            control.drained(|| true).await;
            t0.elapsed()
        });
        assert!(took < Duration::from_millis(100), "{took:?}");
    }
}
