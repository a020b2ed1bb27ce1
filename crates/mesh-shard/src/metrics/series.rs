//! The counters themselves: plain atomics, each written by ONE shard (a relaxed load and store, no
//! read-modify-write, no lock) and read by the admin thread when scraped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Adds `n` to a counter only its own shard writes: a relaxed load and store (a plain `mov` on x86; a
/// `fetch_add` would be a locked instruction for nothing, since nobody else writes it).
pub(super) fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

pub(super) fn set(gauge: &AtomicU64, v: u64) {
    gauge.store(v, Ordering::Relaxed);
}

pub(super) fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// Upper bounds of the latency buckets, in microseconds (0.5 ms to 10 s; the last bucket is above).
pub const LATENCY_BOUNDS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];

/// A latency histogram: a count per bucket (not cumulative), the sum in microseconds.
#[derive(Debug, Default)]
pub(super) struct Latency {
    buckets: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Latency {
    pub(super) fn observe(&self, micros: u64) {
        let i = LATENCY_BOUNDS_US
            .iter()
            .position(|b| micros <= *b)
            .unwrap_or(LATENCY_BOUNDS_US.len());
        bump(&self.buckets[i], 1);
        bump(&self.sum_us, micros);
    }

    /// Counts per bucket and the sum in seconds, as read now.
    pub(super) fn read(&self) -> ([u64; LATENCY_BOUNDS_US.len() + 1], f64) {
        let counts = std::array::from_fn(|i| get(&self.buckets[i]));
        (counts, get(&self.sum_us) as f64 / 1e6)
    }
}

/// Why a call did not end in a provider's OK answer: the agent's own failures (as
/// [`crate::consumer::FailureKind`]) and the provider's non-OK Dubbo statuses. A fixed set: the `reason`
/// label cannot grow.
pub const ERROR_REASONS: [&str; 22] = [
    "rate_limited",
    "no_provider",
    "unavailable",
    "overloaded",
    "timeout",
    "connection_lost",
    "bad_answer",
    "bad_request",
    "too_large",
    "provider_serialization_error",
    "provider_client_timeout",
    "provider_server_timeout",
    "provider_channel_inactive",
    "provider_bad_request",
    "provider_bad_response",
    "provider_service_not_found",
    "provider_service_error",
    "provider_server_error",
    "provider_client_error",
    "provider_threadpool_exhausted",
    "provider_unknown_status",
    // The provider agent's forwarding failures (no answer from the local provider).
    "forward_failed",
];

/// The index in [`ERROR_REASONS`] of a provider's Dubbo status (`None` for OK).
pub fn provider_status_reason(status: u8) -> Option<usize> {
    Some(match status {
        20 => return None,
        25 => 9,
        30 => 10,
        31 => 11,
        35 => 12,
        40 => 13,
        50 => 14,
        60 => 15,
        70 => 16,
        80 => 17,
        90 => 18,
        100 => 19,
        _ => 20,
    })
}

/// One (service key, method) of one shard.
#[derive(Debug, Default)]
pub(super) struct CallSeries {
    /// Set once by the shard when it takes the slot, before counting in it.
    pub(super) labels: OnceLock<(Box<str>, Box<str>)>,
    pub(super) requests: AtomicU64,
    pub(super) errors: [AtomicU64; ERROR_REASONS.len()],
    pub(super) latency: Latency,
}

/// How an attempt at a provider went, for its health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    Success,
    Failure,
    /// The provider said it is full (status 100).
    Overload,
    /// Says nothing about the provider (e.g. the call's own fault).
    Neutral,
}

impl AttemptResult {
    pub const NAMES: [&'static str; 4] = ["success", "failure", "overload", "neutral"];

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// One provider (by address) of one shard.
#[derive(Debug, Default)]
pub(super) struct ProviderSeries {
    pub(super) label: OnceLock<Box<str>>,
    pub(super) attempts: [AtomicU64; AttemptResult::NAMES.len()],
    pub(super) retries: AtomicU64,
    pub(super) ejections: AtomicU64,
    /// Milliseconds since the shard metrics' epoch until which the provider is ejected (0: not ejected).
    pub(super) ejected_until_ms: AtomicU64,
    pub(super) inflight: AtomicU64,
    pub(super) learnt_limit: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_lands_in_its_bucket() {
        let l = Latency::default();
        l.observe(400);
        l.observe(500);
        l.observe(501);
        l.observe(20_000_000);
        let (counts, sum) = l.read();
        assert_eq!(counts[0], 2);
        assert_eq!(counts[1], 1);
        assert_eq!(counts[LATENCY_BOUNDS_US.len()], 1);
        assert_eq!(counts.iter().sum::<u64>(), 4);
        assert!((sum - 20.001401).abs() < 1e-9);
    }

    #[test]
    fn provider_statuses_have_reasons() {
        assert_eq!(provider_status_reason(20), None);
        assert_eq!(
            ERROR_REASONS[provider_status_reason(100).unwrap()],
            "provider_threadpool_exhausted"
        );
        assert_eq!(
            ERROR_REASONS[provider_status_reason(31).unwrap()],
            "provider_server_timeout"
        );
        assert_eq!(
            ERROR_REASONS[provider_status_reason(7).unwrap()],
            "provider_unknown_status"
        );
        let known = [25u8, 30, 31, 35, 40, 50, 60, 70, 80, 90, 100];
        for s in known {
            let name = mesh_dubbo::Status(s).name().to_ascii_lowercase();
            let name = name.replace("server_threadpool_exhausted_error", "threadpool_exhausted");
            assert_eq!(
                ERROR_REASONS[provider_status_reason(s).unwrap()],
                format!("provider_{name}"),
                "{s}"
            );
        }
    }
}
