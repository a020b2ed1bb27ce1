//! [`Policy::LeastActive`](super::Policy::LeastActive): fewest calls in flight, ties by weighted random
//! (Dubbo's least-active); picked by the lowest-key scan of [`lowest`](super::lowest).

use super::live::Slot;

/// What least-active minimises: the calls in flight.
pub(super) fn key(s: &Slot) -> f64 {
    f64::from(s.inflight)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{counts, table_and_live};
    use super::super::Policy;

    #[test]
    fn least_active_picks_the_fewest_in_flight() {
        let (mut t, mut live) = table_and_live(&[100, 100, 100], &[None; 3]);
        live.on_send(0, 0);
        live.on_send(2, 0);
        assert_eq!(counts(&mut t, &live, Policy::LeastActive, 50), [0, 50, 0]);
    }
}
