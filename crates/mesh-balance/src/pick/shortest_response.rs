//! [`Policy::ShortestResponse`](super::Policy::ShortestResponse): lowest EWMA of successful latency x
//! (in flight + 1), ties by weighted random (Dubbo's shortest-response); picked by the lowest-key scan of
//! [`lowest`](super::lowest).

use super::live::Slot;

/// What shortest-response minimises: the expected time to answer one more call.
pub(super) fn key(s: &Slot) -> f64 {
    f64::from(s.ok_ns) * (f64::from(s.inflight) + 1.0)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{counts, table_and_live};
    use super::super::Policy;

    #[test]
    fn shortest_response_weighs_latency_by_load() {
        let (mut t, mut live) = table_and_live(&[100, 100, 100], &[None; 3]);
        for (i, latency, inflight) in [(0, 10, 9), (1, 90, 0), (2, 30, 1)] {
            live.on_send(i, 0);
            live.on_answer(i, 1, latency, true);
            for _ in 0..inflight {
                live.on_send(i, 1);
            }
        }
        // estimates 10 x 10, 90 x 1, 30 x 2: neither the fastest nor the idle one
        assert_eq!(counts(&mut t, &live, Policy::ShortestResponse, 50), [0, 0, 50]);
    }
}
