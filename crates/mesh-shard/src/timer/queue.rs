//! The shard's pending timers (pure): deadlines in order, the waker of each, and the one alarm time the
//! shard asked for. The alarm only ever moves earlier while it is armed: a timer removed before its
//! deadline leaves the alarm where it was (it then rings for nothing and is set to the earliest left),
//! so a steady flow of later deadlines (idle timeouts renewed on every read, calls' deadlines) never
//! re-arms it.

use std::collections::BTreeMap;
use std::task::Waker;
use std::time::Instant;

/// One pending timer in a [`TimerQueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TimerKey {
    at: Instant,
    id: u64,
}

/// Pending timers by deadline, and the alarm time last asked for.
#[derive(Debug, Default)]
pub(crate) struct TimerQueue {
    entries: BTreeMap<TimerKey, Waker>,
    next_id: u64,
    /// The time the alarm is set to ring at, as far as this queue knows (`None`: not armed).
    armed: Option<Instant>,
}

impl TimerQueue {
    /// Adds a timer for `at`. Returns its key, and the time to set the alarm to when `at` is earlier
    /// than the alarm armed now (or none is).
    pub(crate) fn insert(&mut self, at: Instant, waker: Waker) -> (TimerKey, Option<Instant>) {
        let key = TimerKey { at, id: self.next_id };
        self.next_id += 1;
        self.entries.insert(key, waker);
        let arm = self.armed.is_none_or(|armed| at < armed).then_some(at);
        if arm.is_some() {
            self.armed = arm;
        }
        (key, arm)
    }

    /// True while the timer has neither fired nor been removed.
    pub(crate) fn is_pending(&self, key: TimerKey) -> bool {
        self.entries.contains_key(&key)
    }

    /// Replaces the waker of a pending timer (a future polled from another task).
    pub(crate) fn set_waker(&mut self, key: TimerKey, waker: &Waker) {
        if let Some(w) = self.entries.get_mut(&key) {
            if !w.will_wake(waker) {
                w.clone_from(waker);
            }
        }
    }

    /// Forgets a timer (its future was dropped or completed otherwise). The alarm stays armed.
    pub(crate) fn remove(&mut self, key: TimerKey) {
        self.entries.remove(&key);
    }

    /// The alarm rang at `now`: takes the wakers of every timer due, and returns the time to set the
    /// alarm to next (the earliest deadline left), if any.
    pub(crate) fn ring(&mut self, now: Instant) -> (Vec<Waker>, Option<Instant>) {
        let mut due = Vec::new();
        while let Some(entry) = self.entries.first_entry() {
            if entry.key().at > now {
                break;
            }
            due.push(entry.remove());
        }
        self.armed = self.entries.first_key_value().map(|(k, _)| k.at);
        (due, self.armed)
    }

    /// Pending timers.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;
    use std::time::Duration;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn waker() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    #[test]
    fn the_alarm_moves_only_earlier_while_armed() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut q = TimerQueue::default();
        let (_, w) = waker();
        assert_eq!(q.insert(t0 + 10 * s, w.clone()).1, Some(t0 + 10 * s));
        // Later deadlines (an idle timeout renewed by every read) leave the alarm alone.
        assert_eq!(q.insert(t0 + 11 * s, w.clone()).1, None);
        assert_eq!(q.insert(t0 + 12 * s, w.clone()).1, None);
        // An earlier one moves it.
        assert_eq!(q.insert(t0 + 5 * s, w.clone()).1, Some(t0 + 5 * s));
        assert_eq!(q.len(), 4);
    }

    #[test]
    fn a_removed_timer_leaves_the_alarm_which_then_rings_for_nothing_and_moves_to_the_earliest_left() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut q = TimerQueue::default();
        let (count, w) = waker();
        let (first, _) = q.insert(t0 + s, w.clone());
        q.insert(t0 + 3 * s, w.clone());
        q.remove(first);
        assert!(!q.is_pending(first));
        // Removing did not re-arm: a new deadline between the two still moves the alarm only if earlier
        // than the one armed (t0 + 1 s).
        assert_eq!(q.insert(t0 + 2 * s, w.clone()).1, None);
        let (due, next) = q.ring(t0 + s);
        assert!(due.is_empty());
        assert_eq!(next, Some(t0 + 2 * s));
        assert_eq!(count.0.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn ringing_takes_every_timer_due_in_order_and_disarms_when_none_is_left() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let mut q = TimerQueue::default();
        let (count, w) = waker();
        let a = q.insert(t0 + ms, w.clone()).0;
        let b = q.insert(t0 + ms, w.clone()).0; // same deadline: both kept
        let c = q.insert(t0 + 5 * ms, w.clone()).0;
        let (due, next) = q.ring(t0 + 2 * ms);
        assert_eq!(due.len(), 2);
        for w in due {
            w.wake();
        }
        assert_eq!(count.0.load(Ordering::Relaxed), 2);
        assert!(!q.is_pending(a) && !q.is_pending(b) && q.is_pending(c));
        assert_eq!(next, Some(t0 + 5 * ms));
        // Armed for c now: an earlier deadline moves it, a later one does not.
        assert_eq!(q.insert(t0 + 6 * ms, w.clone()).1, None);
        let (due, next) = q.ring(t0 + 10 * ms);
        assert_eq!(due.len(), 2);
        assert_eq!(next, None);
        // Disarmed: the next timer arms it whatever its deadline.
        assert_eq!(q.insert(t0 + 60 * ms, w).1, Some(t0 + 60 * ms));
    }

    #[test]
    fn set_waker_replaces_the_waker_of_a_pending_timer_only() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        let (old, w_old) = waker();
        let (new, w_new) = waker();
        let k = q.insert(t0, w_old).0;
        q.set_waker(k, &w_new);
        for w in q.ring(t0).0 {
            w.wake();
        }
        assert_eq!(old.0.load(Ordering::Relaxed), 0);
        assert_eq!(new.0.load(Ordering::Relaxed), 1);
        q.set_waker(k, &w_new); // gone: nothing to replace
        assert_eq!(q.len(), 0);
    }
}
