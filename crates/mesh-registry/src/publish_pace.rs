//! When the watcher thread hands a snapshot to the shards: at most one publication per interval, like
//! Istio pilot's push debounce, but on the leading edge. Pure: the etcd loop tells it what happened and
//! when, it says whether to publish now or by when.
//!
//! * A change after a quiet period (the last publication is older than the interval, or there was none) is
//!   published at once: a lone change is never delayed.
//! * A change within the interval of the last publication is applied to the builder at once and held:
//!   the changes held go out together with the first change that comes once the interval is over (the
//!   thread is awake for it anyway), or, when none comes, by a timer half an interval later. Under a
//!   steady stream of changes the shards absorb one snapshot per interval or so and the thread never
//!   wakes for the timer; no change waits longer than 1.5 intervals (a stream of changes cannot postpone
//!   it, unlike a trailing-edge debounce).
//! * Interval zero: every batch of etcd events is published as it is applied.

use std::time::{Duration, Instant};

/// The publication schedule of one watcher.
#[derive(Debug, Clone)]
pub(crate) struct PublishPace {
    interval: Duration,
    /// When the last snapshot was published.
    last: Option<Instant>,
    /// When the changes held back may go out with the next change (`None`: nothing held back).
    due: Option<Instant>,
}

impl PublishPace {
    /// At most one publication per `interval` (zero: no limit).
    pub(crate) fn new(interval: Duration) -> Self {
        PublishPace {
            interval,
            last: None,
            due: None,
        }
    }

    /// Something changed at `now` (applied to the builder): whether to publish now; if not, it is held
    /// until the next change after the interval, or [`PublishPace::deadline`].
    pub(crate) fn changed(&mut self, now: Instant) -> bool {
        if let Some(due) = self.due {
            return now >= due;
        }
        match self.last {
            Some(last) if !self.interval.is_zero() && now < last + self.interval => {
                self.due = Some(last + self.interval);
                false
            }
            _ => true,
        }
    }

    /// When the changes held back are to be published if no other change comes first, if any are held.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.due.map(|due| due + self.interval / 2)
    }

    /// A snapshot was published at `now` (or there was nothing new to publish: `published` false).
    pub(crate) fn done(&mut self, now: Instant, published: bool) {
        self.due = None;
        if published {
            self.last = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_change_after_a_quiet_period_is_published_at_once() {
        let t0 = Instant::now();
        let mut pace = PublishPace::new(20 * MS);
        assert!(pace.changed(t0), "the first change ever");
        pace.done(t0, true);
        assert!(pace.changed(t0 + 20 * MS), "a full interval later");
        pace.done(t0 + 20 * MS, true);
        assert!(pace.changed(t0 + 500 * MS));
        assert_eq!(pace.deadline(), None);
    }

    #[test]
    fn changes_within_the_interval_go_out_with_the_next_one_after_it() {
        let t0 = Instant::now();
        let mut pace = PublishPace::new(20 * MS);
        assert!(pace.changed(t0));
        pace.done(t0, true);
        assert!(!pace.changed(t0 + 3 * MS));
        assert_eq!(pace.deadline(), Some(t0 + 30 * MS));
        // More changes within the interval: held with it, the deadline stays.
        assert!(!pace.changed(t0 + 10 * MS));
        assert!(!pace.changed(t0 + 19 * MS));
        assert_eq!(pace.deadline(), Some(t0 + 30 * MS));
        // The first change once the interval is over takes them all along.
        assert!(pace.changed(t0 + 21 * MS));
        pace.done(t0 + 21 * MS, true);
        assert_eq!(pace.deadline(), None);
        // The next interval starts at that publication.
        assert!(!pace.changed(t0 + 25 * MS));
        assert_eq!(pace.deadline(), Some(t0 + 51 * MS));
        // No other change: the timer publishes at the deadline.
        pace.done(t0 + 51 * MS, true);
        assert!(!pace.changed(t0 + 60 * MS));
        assert_eq!(pace.deadline(), Some(t0 + 81 * MS));
    }

    #[test]
    fn nothing_new_to_publish_keeps_the_last_publication() {
        let t0 = Instant::now();
        let mut pace = PublishPace::new(20 * MS);
        assert!(pace.changed(t0));
        pace.done(t0, true);
        assert!(!pace.changed(t0 + 5 * MS));
        // The changes cancelled out (a key put and deleted again): no snapshot at the deadline.
        pace.done(t0 + 30 * MS, false);
        assert_eq!(pace.deadline(), None);
        assert!(pace.changed(t0 + 31 * MS), "the last publication is still t0");
    }

    #[test]
    fn interval_zero_publishes_every_batch() {
        let t0 = Instant::now();
        let mut pace = PublishPace::new(Duration::ZERO);
        for i in 0..5 {
            assert!(pace.changed(t0 + i * MS / 10));
            pace.done(t0 + i * MS / 10, true);
        }
        assert_eq!(pace.deadline(), None);
    }
}
