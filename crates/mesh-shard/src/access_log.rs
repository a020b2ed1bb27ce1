//! The optional access log (`log.access_every`, off by default): one `tracing` line per call at target
//! [`TARGET`] (so `MESH_LOG` routes or silences it like any other target), sampled one call in N per shard
//! by a shard-local counter: deterministic, no random number per call, and nothing but a branch on an
//! `Option` when off.

use std::cell::Cell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::consumer::CallOutcome;
use crate::metrics::ERROR_REASONS;

/// The `tracing` target of access lines (`MESH_LOG=info,mesh_access=off` silences them).
pub const TARGET: &str = "mesh_access";

/// The largest `N` of "one call in N".
pub const MAX_EVERY: u64 = 1_000_000;

/// Whether the call numbered `n` (0, 1, 2, ... per shard) is logged when one call in `every` is: the
/// first and then every `every`-th; never when `every` is 0.
pub fn sampled(n: u64, every: u64) -> bool {
    every != 0 && n.is_multiple_of(every)
}

/// One shard's access log: the sampling rate and how many calls it has seen.
#[derive(Debug)]
pub struct AccessLog {
    every: u64,
    seen: Cell<u64>,
}

/// What a line says of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry<'a> {
    /// The service key asked for (`group/interface:version`).
    pub service: &'a str,
    pub method: &'a str,
    /// The provider agent of the last attempt (none when no attempt was sent).
    pub provider: Option<SocketAddr>,
    /// `ok`, or the error reason (one of [`crate::metrics::ERROR_REASONS`]).
    pub outcome: &'static str,
    /// The provider's Dubbo status, when it answered.
    pub status: Option<u8>,
    /// From admission to outcome (retries and queueing included).
    pub duration: Duration,
    /// Attempts that went on to another provider.
    pub retries: usize,
    /// The request's size on the agent-to-agent link (its last attempt's frame; 0 when never sent).
    pub request_bytes: usize,
}

impl<'a> AccessEntry<'a> {
    /// The entry of a call to `service`'s `method` admitted at `begun` that ended with `outcome` (no
    /// provider, retries or size: the call loop fills them in).
    pub fn of_call(service: &'a str, method: &'a str, outcome: &CallOutcome, begun: Instant) -> Self {
        AccessEntry {
            service,
            method,
            provider: None,
            outcome: outcome
                .error_reason()
                .and_then(|r| ERROR_REASONS.get(r).copied())
                .unwrap_or("ok"),
            status: match outcome {
                CallOutcome::Answered(frame) => Some(frame.header.status.0),
                CallOutcome::Failed(_) => None,
            },
            duration: begun.elapsed(),
            retries: 0,
            request_bytes: 0,
        }
    }
}

impl AccessLog {
    /// The log of one call in `every` (capped at [`MAX_EVERY`]); `None` (off) when `every` is 0.
    pub fn new(every: u64) -> Option<Self> {
        (every != 0).then(|| AccessLog {
            every: every.min(MAX_EVERY),
            seen: Cell::new(0),
        })
    }

    /// Counts a call and says whether it is logged.
    pub fn sample(&self) -> bool {
        let n = self.seen.get();
        self.seen.set(n.wrapping_add(1));
        sampled(n, self.every)
    }

    /// Counts a call and writes its line if it is sampled; `entry` is only built then.
    pub fn record<'a>(&self, entry: impl FnOnce() -> AccessEntry<'a>) {
        if self.sample() {
            write(&entry());
        }
    }
}

/// Writes `e` at info level, target [`TARGET`], its facts as fields.
pub fn write(e: &AccessEntry<'_>) {
    let provider = e.provider.map(tracing::field::display);
    tracing::info!(
        target: TARGET,
        service = e.service,
        method = e.method,
        provider,
        outcome = e.outcome,
        status = e.status,
        duration_us = e.duration.as_micros() as u64,
        retries = e.retries,
        request_bytes = e.request_bytes,
        "call"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_call_in_n_starting_with_the_first() {
        assert!((0..100).all(|n| !sampled(n, 0)), "0 is off");
        assert!((0..100).all(|n| sampled(n, 1)), "1 is every call");
        let picked: Vec<u64> = (0..10).filter(|&n| sampled(n, 4)).collect();
        assert_eq!(picked, [0, 4, 8]);
        assert_eq!((0..10_000).filter(|&n| sampled(n, 100)).count(), 100);
    }

    #[test]
    fn the_log_counts_every_call_and_logs_the_sampled_ones() {
        assert!(AccessLog::new(0).is_none(), "off");
        let log = AccessLog::new(3).unwrap();
        let logged: Vec<bool> = (0..7).map(|_| log.sample()).collect();
        assert_eq!(logged, [true, false, false, true, false, false, true]);
        assert_eq!(AccessLog::new(u64::MAX).unwrap().every, MAX_EVERY);
        let built = Cell::new(0);
        let log = AccessLog::new(2).unwrap();
        for _ in 0..5 {
            log.record(|| {
                built.set(built.get() + 1);
                AccessEntry {
                    service: "g/S:1",
                    method: "m",
                    provider: None,
                    outcome: "ok",
                    status: Some(20),
                    duration: Duration::from_micros(5),
                    retries: 0,
                    request_bytes: 10,
                }
            });
        }
        assert_eq!(built.get(), 3, "entries are built for sampled calls only");
    }

    #[test]
    fn a_call_entry_names_its_outcome() {
        use crate::consumer::{Failure, FailureKind};
        let failed = CallOutcome::Failed(Failure::new(FailureKind::Timeout, "slow"));
        let e = AccessEntry::of_call("g/S:1", "m", &failed, Instant::now());
        assert_eq!((e.outcome, e.status), ("timeout", None));
        let limited = CallOutcome::Failed(Failure::new(FailureKind::RateLimited, "limit"));
        let e = AccessEntry::of_call("g/S:1", "m", &limited, Instant::now());
        assert_eq!(e.outcome, "rate_limited");
        assert_eq!(
            (e.service, e.method, e.provider, e.retries),
            ("g/S:1", "m", None, 0)
        );
    }
}
