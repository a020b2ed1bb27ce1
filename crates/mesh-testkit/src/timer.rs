//! A precise timer for async code: one OS thread that sleeps to the earliest due time and completes the
//! sleepers that are due, with tens of microseconds of lateness instead of tokio's millisecond wheel (which
//! rounds every deadline up to the next millisecond tick: a 50 ms sleep takes 50..52 ms).
//!
//! The thread keeps a binary heap of due times. It waits on a condition variable (a futex with a timeout)
//! until [`EARLY`] before the first due time, so that the kernel's timer slack (50 µs for ordinary threads)
//! cannot make it late, then spins the rest of the way (at most [`EARLY`], usually much less: the kernel
//! fires a slack-delayed timer near the end of its window). Every sleeper that is due when it wakes is
//! completed in the same pass: one wake-up per group of due times, not one per sleeper. A sleeper is never
//! completed before its due time.
//!
//! Registering costs a lock, a heap push and a `oneshot` channel; the thread is only woken when a new due
//! time is earlier than the one it sleeps to (with a constant latency, new due times are later, so a run of
//! calls costs one wake-up per distinct due time and none per registration).
//!
//! Cost: each wake-up of the thread (futex sleep and wake, the spin, completing the sleepers, and the wake-up
//! of the tokio worker that runs a completed sleeper) is paid per distinct due time. Measured on the 2-core
//! VM of the benchmarks: the simulator's timer thread used about 10% of a core at 5,000 and at 10,000 evenly
//! spread calls/s; loadgen's pacer at 5,000 calls/s about 20% of a core, plus about 15 points more in its
//! runtime workers than with tokio's timer (which wakes once per millisecond tick for all calls due in it).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How long before a due time the timer thread stops sleeping and spins (covers the kernel's default timer
/// slack of 50 µs and a little wake-up latency).
pub const EARLY: Duration = Duration::from_micros(60);

struct Entry {
    due: Instant,
    seq: u64,
    tx: oneshot::Sender<()>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

#[derive(Default)]
struct State {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    /// The thread is blocked on the condition variable until this time (`None` inside: until notified).
    sleeping: Option<Option<Instant>>,
    stop: bool,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    cvar: Condvar,
    /// Passes that completed at least one sleeper.
    wakes: AtomicU64,
    /// Sleepers completed.
    fired: AtomicU64,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The timer thread; stopped (and joined) when dropped, which completes every pending sleeper.
pub struct PreciseTimer {
    inner: Arc<Inner>,
    thread: Option<thread::JoinHandle<()>>,
}

impl fmt::Debug for PreciseTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreciseTimer")
            .field("pending", &self.inner.lock().heap.len())
            .field("wakes", &self.wakes())
            .field("fired", &self.fired())
            .finish()
    }
}

/// Completes at its due time (see [`PreciseTimer::sleep_until`]).
#[derive(Debug)]
pub struct Sleep(oneshot::Receiver<()>);

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // An error means the timer was dropped: nothing will complete it any more, so it ends now.
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl PreciseTimer {
    /// Starts the timer thread, named `name`.
    pub fn start(name: &str) -> io::Result<PreciseTimer> {
        let inner = Arc::new(Inner::default());
        let thread_inner = Arc::clone(&inner);
        let thread = thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || timer_thread(&thread_inner))?;
        Ok(PreciseTimer {
            inner,
            thread: Some(thread),
        })
    }

    /// A future that completes at `due` (at once if it is past), never before.
    pub fn sleep_until(&self, due: Instant) -> Sleep {
        let (tx, rx) = oneshot::channel();
        if due <= Instant::now() {
            let _ = tx.send(());
            return Sleep(rx);
        }
        let mut st = self.inner.lock();
        st.seq += 1;
        let seq = st.seq;
        st.heap.push(Reverse(Entry { due, seq, tx }));
        // Wake the thread only if it sleeps past this due time (or until notified).
        if let Some(until) = st.sleeping {
            if until.is_none_or(|u| due < u + EARLY) {
                st.sleeping = None;
                self.inner.cvar.notify_one();
            }
        }
        Sleep(rx)
    }

    /// Passes of the timer thread that completed at least one sleeper.
    pub fn wakes(&self) -> u64 {
        self.inner.wakes.load(Ordering::Relaxed)
    }

    /// Sleepers completed at their due time.
    pub fn fired(&self) -> u64 {
        self.inner.fired.load(Ordering::Relaxed)
    }
}

impl Drop for PreciseTimer {
    fn drop(&mut self) {
        {
            let mut st = self.inner.lock();
            st.stop = true;
            self.inner.cvar.notify_one();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn timer_thread(inner: &Inner) {
    let mut due_now: Vec<oneshot::Sender<()>> = Vec::with_capacity(256);
    let mut st = inner.lock();
    loop {
        if st.stop {
            // Dropping the senders completes the pending sleepers.
            st.heap.clear();
            return;
        }
        let now = Instant::now();
        while let Some(Reverse(first)) = st.heap.peek() {
            if first.due > now {
                break;
            }
            if let Some(Reverse(e)) = st.heap.pop() {
                due_now.push(e.tx);
            }
        }
        if !due_now.is_empty() {
            drop(st);
            inner.wakes.fetch_add(1, Ordering::Relaxed);
            inner.fired.fetch_add(due_now.len() as u64, Ordering::Relaxed);
            for tx in due_now.drain(..) {
                // A receiver that went away (a cancelled sleep) is fine.
                let _ = tx.send(());
            }
            st = inner.lock();
            continue;
        }
        let Some(next) = st.heap.peek().map(|Reverse(e)| e.due) else {
            st.sleeping = Some(None);
            st = inner.cvar.wait(st).unwrap_or_else(PoisonError::into_inner);
            st.sleeping = None;
            continue;
        };
        let left = next - now;
        if left > EARLY {
            st.sleeping = Some(Some(next - EARLY));
            st = inner
                .cvar
                .wait_timeout(st, left - EARLY)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            st.sleeping = None;
            continue;
        }
        // Less than EARLY to go: spin there without the lock (registrations go on meanwhile; an earlier
        // one is at most EARLY early, it is handled when the spin ends).
        drop(st);
        while Instant::now() < next {
            std::hint::spin_loop();
        }
        st = inner.lock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn never_early_and_in_order() {
        let timer = PreciseTimer::start("t-order").expect("timer");
        let start = Instant::now();
        let offsets_ms = [7u64, 3, 12, 1, 5, 5, 9];
        let done = rt().block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for (i, ms) in offsets_ms.iter().enumerate() {
                let due = start + Duration::from_millis(*ms);
                let sleep = timer.sleep_until(due);
                set.spawn(async move {
                    sleep.await;
                    (i, due, Instant::now())
                });
            }
            let mut done = Vec::new();
            while let Some(r) = set.join_next().await {
                done.push(r.expect("task"));
            }
            done
        });
        assert_eq!(done.len(), offsets_ms.len());
        for (i, due, at) in done {
            assert!(at >= due, "sleeper {i} completed {:?} early", due - at);
            assert!(
                at - due < Duration::from_secs(1),
                "sleeper {i} never completed on time"
            );
        }
        assert_eq!(timer.fired(), offsets_ms.len() as u64);
    }

    #[test]
    fn past_due_completes_at_once_without_the_thread() {
        let timer = PreciseTimer::start("t-past").expect("timer");
        rt().block_on(timer.sleep_until(Instant::now() - Duration::from_millis(1)));
        assert_eq!(timer.fired(), 0);
    }

    #[test]
    fn a_group_due_together_is_one_wake() {
        let timer = PreciseTimer::start("t-group").expect("timer");
        let due = Instant::now() + Duration::from_millis(20);
        let sleeps: Vec<Sleep> = (0..100).map(|_| timer.sleep_until(due)).collect();
        rt().block_on(async {
            for s in sleeps {
                s.await;
            }
        });
        assert!(Instant::now() >= due);
        assert_eq!(timer.fired(), 100);
        assert_eq!(timer.wakes(), 1, "100 sleepers due at one instant, one pass");
    }

    #[test]
    fn an_earlier_due_time_wakes_a_sleeping_thread() {
        let timer = PreciseTimer::start("t-earlier").expect("timer");
        let far = timer.sleep_until(Instant::now() + Duration::from_secs(3600));
        // Let the thread go to sleep until the far due time first.
        thread::sleep(Duration::from_millis(20));
        let start = Instant::now();
        rt().block_on(timer.sleep_until(start + Duration::from_millis(5)));
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(5));
        assert!(
            took < Duration::from_secs(2),
            "the earlier sleeper waited for the far one: {took:?}"
        );
        drop(far);
    }

    #[test]
    fn cancelled_sleepers_are_harmless_and_drop_releases_pending_ones() {
        let timer = PreciseTimer::start("t-drop").expect("timer");
        drop(timer.sleep_until(Instant::now() + Duration::from_millis(1)));
        let pending = timer.sleep_until(Instant::now() + Duration::from_secs(3600));
        thread::sleep(Duration::from_millis(10));
        assert_eq!(timer.fired(), 1, "the cancelled sleeper was still due and popped");
        let start = Instant::now();
        drop(timer);
        rt().block_on(pending);
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
