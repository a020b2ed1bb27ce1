//! At most one log line per interval for an event that can repeat with every request (a call's retries
//! exhausted): the line that is written says how many were left out since the previous one. One per
//! shard thread (`thread_local!`), so no lock.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// One event's rate of log lines.
#[derive(Debug)]
pub(crate) struct LogEvery {
    interval: Duration,
    last: Cell<Option<Instant>>,
    left_out: Cell<u64>,
}

impl LogEvery {
    pub(crate) const fn new(interval: Duration) -> Self {
        LogEvery {
            interval,
            last: Cell::new(None),
            left_out: Cell::new(0),
        }
    }

    /// `Some(events left out since the last line)` when a line may be written at `now`; `None` (and the
    /// event counted as left out) otherwise.
    pub(crate) fn admit(&self, now: Instant) -> Option<u64> {
        match self.last.get() {
            Some(t) if now.saturating_duration_since(t) < self.interval => {
                self.left_out.set(self.left_out.get().saturating_add(1));
                None
            }
            _ => {
                self.last.set(Some(now));
                Some(self.left_out.replace(0))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_counting_the_rest() {
        let every = LogEvery::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(every.admit(t0), Some(0));
        assert_eq!(every.admit(t0 + Duration::from_millis(10)), None);
        assert_eq!(every.admit(t0 + Duration::from_millis(999)), None);
        assert_eq!(every.admit(t0 + Duration::from_secs(1)), Some(2));
        assert_eq!(every.admit(t0 + Duration::from_millis(1500)), None);
        assert_eq!(every.admit(t0 + Duration::from_secs(5)), Some(1));
    }
}
