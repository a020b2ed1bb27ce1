//! What happened over time during a run: calls by completion window, the longest gaps, when failures came.

use super::*;

/// Most windows a timeline may have.
pub const MAX_TIMELINE_WINDOWS: usize = 1_000_000;

/// Most gaps listed in [`Timeline::gaps`] (the longest ones).
pub const MAX_LISTED_GAPS: usize = 1000;

/// What happened over time during the measured period (`timeline_ms` > 0). Flattened into [`Summary`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TimelineReport {
    /// Calls by the window they completed in.
    pub timeline: Timeline,
    /// The longest interval of the measured period (from its start to the end of sending, or to the last
    /// answer if sending stopped earlier) without a single successful completion, over all connections.
    /// The first interval starts at the measured start, so it includes the first call's latency.
    pub longest_gap_ms: f64,
    /// When the first counted call failed, ms after the measured start (`null` if none did).
    pub first_failure_ms: Option<f64>,
    /// When the last counted call failed, ms after the measured start (`null` if none did).
    pub last_failure_ms: Option<f64>,
}

/// Counted calls by the window of `window_ms` in which they completed (window `i` covers
/// `[i * window_ms, (i + 1) * window_ms)` ms after the measured start), up to the last completion.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// Window width.
    pub window_ms: u64,
    /// Successful completions per window.
    pub ok: Vec<u64>,
    /// Failures per window.
    pub failed: Vec<u64>,
    /// Failures per window by kind (an empty object for a window without failures).
    pub failed_kinds: Vec<BTreeMap<String, u64>>,
    /// Intervals without a successful completion lasting at least `gap_min_ms`, as `[start_ms, length_ms]`
    /// in start order (the [`MAX_LISTED_GAPS`] longest), so that gaps can be attributed to parts of a run.
    pub gaps: Vec<[f64; 2]>,
    /// The shortest gap listed: a tenth of the window, at least 1 ms.
    pub gap_min_ms: f64,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Builds the timeline from completion times in µs after the measured start: `ok_us` (sorted here) and
/// `failures` (time, kind; any order). Gaps are measured over `[0, period_us]`: completions after it do not
/// shorten a gap. `window_ms` must be positive.
pub fn build_timeline(
    window_ms: u64,
    ok_us: &mut [u64],
    failures: &[(u64, Cow<'static, str>)],
    period_us: u64,
) -> TimelineReport {
    let window_us = window_ms.max(1) * 1000;
    let last = ok_us.iter().chain(failures.iter().map(|(t, _)| t)).copied().max();
    let windows = last.map_or(0, |t| {
        usize::try_from(t / window_us).unwrap_or(usize::MAX - 1) + 1
    });
    let windows = windows.min(MAX_TIMELINE_WINDOWS);
    let slot = |t: u64| usize::try_from(t / window_us).map_or(windows - 1, |i| i.min(windows - 1));
    let mut ok = vec![0u64; windows];
    let mut failed = vec![0u64; windows];
    let mut failed_kinds = vec![BTreeMap::<String, u64>::new(); windows];
    for &t in ok_us.iter() {
        ok[slot(t)] += 1;
    }
    for (t, kind) in failures {
        let i = slot(*t);
        failed[i] += 1;
        *failed_kinds[i].entry(kind.to_string()).or_insert(0) += 1;
    }

    ok_us.sort_unstable();
    let gap_min_us = (window_us / 10).max(1000);
    let mut longest = 0u64;
    let mut gaps: Vec<(u64, u64)> = Vec::new();
    let mut prev = 0u64;
    for &t in ok_us
        .iter()
        .take_while(|&&t| t <= period_us)
        .chain([period_us].iter())
    {
        let gap = t - prev;
        longest = longest.max(gap);
        if gap >= gap_min_us {
            gaps.push((prev, gap));
        }
        prev = t;
    }
    if gaps.len() > MAX_LISTED_GAPS {
        gaps.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        gaps.truncate(MAX_LISTED_GAPS);
        gaps.sort_unstable();
    }
    let first = failures.iter().map(|(t, _)| *t).min();
    let last_failure = failures.iter().map(|(t, _)| *t).max();
    TimelineReport {
        timeline: Timeline {
            window_ms,
            ok,
            failed,
            failed_kinds,
            gaps: gaps.into_iter().map(|(s, l)| [ms(s), ms(l)]).collect(),
            gap_min_ms: ms(gap_min_us),
        },
        longest_gap_ms: ms(longest),
        first_failure_ms: first.map(ms),
        last_failure_ms: last_failure.map(ms),
    }
}
