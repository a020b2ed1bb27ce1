//! [`Policy::ShortestResponse`](super::Policy::ShortestResponse): lowest EWMA of successful latency x
//! (in flight + 1), ties by weighted random (Dubbo's shortest-response).

use super::live::{LiveState, Slot};
use super::{lowest, CandidateSet, Rng};

/// Expected time to answer one more call.
fn estimate(s: &Slot) -> f64 {
    f64::from(s.ok_ns) * (f64::from(s.inflight) + 1.0)
}

/// The usable member with the shortest expected response (within one group on large sets).
pub(super) fn pick<R: Rng + ?Sized>(
    set: &CandidateSet,
    live: &LiveState,
    rng: &mut R,
    ex: &[usize],
) -> Option<usize> {
    lowest::grouped(set, live, rng, ex, estimate)
}

/// The exact fallback: the available member with the shortest expected response.
pub(super) fn exact<R: Rng + ?Sized>(
    set: &CandidateSet,
    live: &LiveState,
    rng: &mut R,
    ex: &[usize],
) -> Option<usize> {
    lowest::exact(set, live, rng, ex, estimate)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{counts, table};
    use super::super::Policy;
    use super::*;

    #[test]
    fn shortest_response_weighs_latency_by_load() {
        let mut t = table(&[100, 100, 100], &[None; 3]);
        let mut live = LiveState::new(&t);
        live.on_send(0, 0);
        live.on_send(2, 0);
        for (i, l) in [(0, 10), (1, 90), (2, 30)] {
            live.on_send(i, 0);
            live.on_answer(i, 1, l, true);
        }
        // estimates: 10*2, 90*1, 30*2
        assert_eq!(counts(&mut t, &live, Policy::ShortestResponse, 50), [50, 0, 0]);
    }
}
