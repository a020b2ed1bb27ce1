//! Pure load balancing over a service's providers: no IO, no clock, no RNG of its own (callers pass a
//! rotating start offset), so every decision is reproducible in tests.
//!
//! Today: weighted least-active (the provider with the lowest `(inflight + 1) / weight` that is below its
//! concurrency cap). Routing caches and the adaptive balancer are built on top of this crate later.

/// What the balancer knows about one candidate at the moment of a pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Capacity weight (e.g. small:medium:large = 100:200:300). Zero means "do not send here".
    pub weight: u32,
    /// Calls sent and not yet answered.
    pub inflight: u32,
    /// The provider's thread cap, if known: a candidate at its cap would reject the call.
    pub max_concurrency: Option<u32>,
}

impl Load {
    fn available(&self) -> bool {
        self.weight > 0 && self.max_concurrency.is_none_or(|cap| self.inflight < cap)
    }
}

/// Weighted least-active pick: the available candidate minimising `(inflight + 1) / weight`; ties go to the
/// first one at or after `start` (pass a rotating counter so equal candidates share the load).
///
/// Returns `None` when no candidate is available (all at their cap, or none at all): the caller queues or
/// fails fast, it never sends a call that is known to be rejected.
pub fn least_loaded(loads: &[Load], start: usize) -> Option<usize> {
    let n = loads.len();
    let mut best: Option<usize> = None;
    for k in 0..n {
        let i = (start + k) % n;
        let c = &loads[i];
        if !c.available() {
            continue;
        }
        best = match best {
            Some(b) if !lighter(c, &loads[b]) => Some(b),
            _ => Some(i),
        };
    }
    best
}

/// `(a.inflight + 1) / a.weight < (b.inflight + 1) / b.weight`, in integers.
fn lighter(a: &Load, b: &Load) -> bool {
    (u64::from(a.inflight) + 1) * u64::from(b.weight) < (u64::from(b.inflight) + 1) * u64::from(a.weight)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(weight: u32, inflight: u32, cap: Option<u32>) -> Load {
        Load {
            weight,
            inflight,
            max_concurrency: cap,
        }
    }

    #[test]
    fn prefers_least_loaded_relative_to_weight() {
        // 1:2:3 weights with 0/1/2 in flight: the next call would load each equally, so `start` decides.
        let loads = [l(100, 0, None), l(200, 1, None), l(300, 2, None)];
        assert_eq!(least_loaded(&loads, 0), Some(0));
        assert_eq!(least_loaded(&loads, 1), Some(1));
        assert_eq!(least_loaded(&loads, 2), Some(2));
        let loads = [l(100, 10, None), l(200, 10, None), l(300, 30, None)];
        assert_eq!(least_loaded(&loads, 0), Some(1));
    }

    #[test]
    fn never_picks_a_full_or_zero_weight_candidate() {
        let loads = [l(100, 200, Some(200)), l(0, 0, None), l(300, 5, Some(6))];
        assert_eq!(least_loaded(&loads, 0), Some(2));
        let full = [l(100, 200, Some(200)), l(300, 6, Some(6))];
        assert_eq!(least_loaded(&full, 0), None);
        assert_eq!(least_loaded(&[], 3), None);
    }

    #[test]
    fn shares_follow_weights_when_filling_up() {
        // Simulate picks that never complete: the in-flight counts end up proportional to the weights.
        let mut loads = [l(100, 0, None), l(200, 0, None), l(300, 0, None)];
        for k in 0..600 {
            let i = least_loaded(&loads, k).unwrap();
            loads[i].inflight += 1;
        }
        let got: Vec<u32> = loads.iter().map(|c| c.inflight).collect();
        assert_eq!(got, [100, 200, 300]);
    }
}
