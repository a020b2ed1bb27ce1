//! [`Policy::LeastActive`](super::Policy::LeastActive): fewest calls in flight, ties by weighted random
//! (Dubbo's least-active).

use super::live::{LiveState, Slot};
use super::{lowest, CandidateSet, Rng};

/// Calls in flight.
fn active(s: &Slot) -> f64 {
    f64::from(s.inflight)
}

/// The least active usable member (within one group on large sets).
pub(super) fn pick<R: Rng + ?Sized>(
    set: &CandidateSet,
    live: &LiveState,
    rng: &mut R,
    ex: &[usize],
) -> Option<usize> {
    lowest::grouped(set, live, rng, ex, active)
}

/// The exact fallback: the least active available member.
pub(super) fn exact<R: Rng + ?Sized>(
    set: &CandidateSet,
    live: &LiveState,
    rng: &mut R,
    ex: &[usize],
) -> Option<usize> {
    lowest::exact(set, live, rng, ex, active)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{counts, table};
    use super::super::Policy;
    use super::*;

    #[test]
    fn least_active_picks_the_fewest_in_flight() {
        let mut t = table(&[100, 100, 100], &[None; 3]);
        let mut live = LiveState::new(&t);
        live.on_send(0, 0);
        live.on_send(2, 0);
        assert_eq!(counts(&mut t, &live, Policy::LeastActive, 50), [0, 50, 0]);
    }
}
