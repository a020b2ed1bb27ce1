//! The local provider's thread cap: one counter shared by the agent's shards, and each shard's FIFO of
//! calls waiting for room under it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::{Rejection, ShardMetrics};
use crate::sync::WaitQueue;

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

    /// The cap (the local provider's threads).
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Calls holding room under the cap now, over every shard.
    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Relaxed)
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
}

/// One shard's way in under the shared cap: calls that find it full wait in line, within limits.
#[derive(Debug)]
pub(super) struct Admission {
    /// `None`: no cap, every call goes at once.
    limit: Option<Arc<ConcurrencyLimit>>,
    /// Calls of this shard waiting for room.
    waiting: WaitQueue,
    /// Longest line; a call beyond it is refused at once.
    queue_limit: usize,
    /// Longest wait in line; then the call is refused.
    queue_timeout: Duration,
    /// Room freed by another shard wakes nobody here: with several shards, waiters look again every
    /// millisecond.
    shared_by_shards: bool,
    /// Where refusals are counted (this shard's metrics).
    metrics: Arc<ShardMetrics>,
}

/// Room under the cap for one call, given back on drop (and the next waiter of this shard woken).
#[derive(Debug)]
pub(super) struct CapPermit<'a>(Option<&'a Admission>);

impl Drop for CapPermit<'_> {
    fn drop(&mut self) {
        if let Some(a) = self.0 {
            if let Some(l) = &a.limit {
                l.release();
            }
            a.waiting.wake_one();
        }
    }
}

impl Admission {
    pub(super) fn new(
        limit: Option<Arc<ConcurrencyLimit>>,
        queue_limit: usize,
        queue_timeout: Duration,
        shards: usize,
        metrics: Arc<ShardMetrics>,
    ) -> Self {
        Admission {
            limit,
            waiting: WaitQueue::new(),
            queue_limit,
            queue_timeout,
            shared_by_shards: shards > 1,
            metrics,
        }
    }

    /// Calls waiting in line now.
    pub(super) fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Waits for room under the cap, FIFO within this shard. `None`: the line is full or the wait timed
    /// out (the caller answers status 100: the call never ran, the consumer may go elsewhere).
    pub(super) async fn acquire(&self) -> Option<CapPermit<'_>> {
        let Some(limit) = &self.limit else {
            return Some(CapPermit(None));
        };
        if self.waiting.is_empty() && limit.try_acquire() {
            return Some(CapPermit(Some(self)));
        }
        if self.waiting.len() >= self.queue_limit {
            self.metrics.rejected(Rejection::QueueFull);
            return None;
        }
        let deadline = Instant::now() + self.queue_timeout;
        let mut front = false;
        loop {
            let ticket = self.waiting.wait(front);
            let left = deadline.saturating_duration_since(Instant::now());
            let nap = if self.shared_by_shards {
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
                return Some(CapPermit(Some(self)));
            }
            if woken {
                // Lost the room to a call that did not queue: keep the place at the head.
                front = true;
            }
            if Instant::now() >= deadline {
                self.metrics.rejected(Rejection::QueueTimeout);
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_holds_and_frees() {
        let l = ConcurrencyLimit::new(2);
        assert!(l.try_acquire());
        assert!(l.try_acquire());
        assert!(!l.try_acquire());
        l.release();
        assert!(l.try_acquire());
        assert!(
            ConcurrencyLimit::new(0).try_acquire(),
            "a cap is at least one call"
        );
    }

    #[test]
    fn calls_wait_in_line_and_are_refused_when_it_is_full_or_too_slow() {
        let admission = Admission::new(
            Some(Arc::new(ConcurrencyLimit::new(1))),
            1,
            Duration::from_millis(50),
            1,
            ShardMetrics::new(0),
        );
        let metrics = admission.metrics.clone();
        crate::runtime::run_on_test_shard(async move {
            let a = std::rc::Rc::new(admission);
            let first = a.acquire().await.expect("room");
            // The second waits in line; the third finds the line full.
            let waiter = {
                let a = a.clone();
                glommio::spawn_local(async move { a.acquire().await.is_some() })
            };
            glommio::executor().yield_task_queue_now().await;
            assert_eq!(a.waiting(), 1);
            assert!(a.acquire().await.is_none(), "line full");
            // Room freed wakes the waiter.
            drop(first);
            assert!(waiter.await);
            // With the cap taken and nobody freeing it, a wait ends at the queue timeout.
            let held = a.acquire().await.expect("room again");
            let t0 = Instant::now();
            assert!(a.acquire().await.is_none());
            assert!(t0.elapsed() >= Duration::from_millis(45));
            drop(held);
        });
        let mut e = mesh_admin::Exposition::new();
        metrics.export(&mut e, Instant::now()).unwrap();
        for reason in ["queue_full", "queue_timeout"] {
            assert_eq!(
                e.value("mesh_rejections_total", &[("reason", reason)]),
                Some(1.0),
                "{reason}"
            );
        }
    }
}
