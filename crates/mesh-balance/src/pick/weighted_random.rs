//! [`Policy::WeightedRandom`](super::Policy::WeightedRandom): random in proportion to the (warm-up
//! adjusted) weights. Also the consistent-hash balancer's choice when a call has no hash key, and the exact
//! fallback of round robin and consistent hashing.

use super::available::available;
use super::live::LiveState;
use super::{below, usable, CandidateSet, Rng, DRAWS};

/// A few weighted draws; the first usable one.
pub(super) fn pick<R: Rng + ?Sized>(
    set: &CandidateSet,
    live: &LiveState,
    rng: &mut R,
    ex: &[usize],
) -> Option<usize> {
    (0..DRAWS)
        .map(|_| set.members[set.weighted_pos(rng)] as usize)
        .find(|&i| usable(live, ex, i))
}

/// The exact fallback: weighted random among the available members.
pub(super) fn exact<R: Rng + ?Sized>(
    set: &CandidateSet,
    live: &LiveState,
    rng: &mut R,
    ex: &[usize],
) -> Option<usize> {
    let total: u64 = available(set, live, ex)
        .map(|(pos, _)| u64::from(set.weights[pos]))
        .sum();
    // Only members that weigh 0 are left: equal shares (Dubbo's random over equal weights).
    let flat = total == 0;
    let total = if flat {
        available(set, live, ex).count() as u64
    } else {
        total
    };
    if total == 0 {
        return None;
    }
    let mut r = below(rng, total);
    for (pos, i) in available(set, live, ex) {
        let w = if flat { 1 } else { u64::from(set.weights[pos]) };
        if r < w {
            return Some(i);
        }
        r -= w;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::testing::{counts, table_and_live};
    use super::super::Policy;

    #[test]
    fn weighted_random_follows_weights() {
        let (mut t, live) = table_and_live(&[100, 200, 300], &[None; 3]);
        let c = counts(&mut t, &live, Policy::WeightedRandom, 60_000);
        for (got, want) in c.iter().zip([10_000, 20_000, 30_000]) {
            assert!((*got as f64 - want as f64).abs() < want as f64 * 0.05, "{c:?}");
        }
    }
}
