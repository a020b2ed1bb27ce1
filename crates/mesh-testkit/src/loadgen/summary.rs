//! What a run reports: the [`Summary`] the binary prints as one JSON line, and its latency percentiles.

use super::*;

/// Latency percentiles of the successful calls, in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

/// The result of a run (the binary prints it as one JSON line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The target as given.
    pub target: String,
    /// Connections used.
    pub connections: usize,
    /// From the end of the warm-up until the last counted call finished.
    pub duration_s: f64,
    /// Counted calls written to the target.
    pub sent: u64,
    /// Counted calls answered correctly.
    pub ok: u64,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
    /// `ok / duration_s`.
    pub qps: f64,
    /// Latency of the successful calls: from the intended send time in open loop (so it includes the pacing
    /// lateness, `pacing_late_us`), from the actual send time in closed loop.
    pub latency_us: Latency,
    /// Latency of the successful calls from the moment they were actually sent (written): the server's and
    /// the network's part only. Equal to `latency_us` in closed loop.
    #[serde(default)]
    pub sent_latency_us: Latency,
    /// Open loop: how late the counted calls were sent after their intended time (the pacer's lateness plus,
    /// on a Dubbo target, any wait for a free in-flight slot on the connection). All 0 in closed loop.
    #[serde(default)]
    pub pacing_late_us: Latency,
    /// `precise`, `coarse` (open loop) or `closed` (closed loop).
    #[serde(default)]
    pub pacing: String,
    /// With a timeline (`timeline_ms` > 0): `timeline`, `longest_gap_ms`, `first_failure_ms` and
    /// `last_failure_ms`, at the top level of the JSON summary. Absent without one.
    #[serde(flatten, default)]
    pub timeline: Option<TimelineReport>,
}

impl Summary {
    /// All failures, of every kind.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Failures of one kind.
    pub fn errors_of(&self, kind: &str) -> u64 {
        self.errors.get(kind).copied().unwrap_or(0)
    }
}

pub(super) fn percentiles(hist: &Histogram<u64>) -> Latency {
    if hist.is_empty() {
        return Latency::default();
    }
    Latency {
        p50: hist.value_at_quantile(0.50),
        p90: hist.value_at_quantile(0.90),
        p99: hist.value_at_quantile(0.99),
        p999: hist.value_at_quantile(0.999),
        max: hist.max(),
        mean: (hist.mean() * 10.0).round() / 10.0,
    }
}
