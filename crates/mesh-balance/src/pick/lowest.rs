//! The pick shared by least-active and shortest-response: the usable member with the lowest key, ties by
//! weighted random; on large sets within one weighted-random group (vivo's grouped pick), so a pick costs
//! O(group size) instead of O(n).

use super::live::{LiveState, Slot};
use super::{below, usable, CandidateSet, Rng, DRAWS};

/// Exact scan on small sets; on large ones, the members of a weighted-random group of `gs` (a few groups
/// tried before giving up).
pub(super) fn grouped<R: Rng + ?Sized>(
    set: &CandidateSet,
    live: &LiveState,
    rng: &mut R,
    ex: &[usize],
    key: impl Fn(&Slot) -> f64 + Copy,
) -> Option<usize> {
    let n = set.members.len();
    if set.gs >= n {
        return in_range(set, 0..n, live, rng, ex, key);
    }
    for _ in 0..DRAWS {
        let g = set.weighted_group(rng);
        let start = g * set.gs;
        if let Some(i) = in_range(set, start..(start + set.gs).min(n), live, rng, ex, key) {
            return Some(i);
        }
    }
    None
}

/// The usable member of `range` (member positions) with the lowest key, if any.
fn in_range<R: Rng + ?Sized>(
    set: &CandidateSet,
    range: std::ops::Range<usize>,
    live: &LiveState,
    rng: &mut R,
    ex: &[usize],
    key: impl Fn(&Slot) -> f64 + Copy,
) -> Option<usize> {
    let usable_members = range
        .map(|pos| (pos, set.members[pos] as usize))
        .filter(|&(_, i)| usable(live, ex, i));
    lowest(set, live, rng, usable_members, key)
}

/// Among `members` (member position, provider index), the one with the lowest key; ties by weighted
/// random, reservoir style. The exact fallback passes all available members.
pub(super) fn lowest<R: Rng + ?Sized>(
    set: &CandidateSet,
    live: &LiveState,
    rng: &mut R,
    members: impl Iterator<Item = (usize, usize)>,
    key: impl Fn(&Slot) -> f64 + Copy,
) -> Option<usize> {
    let mut best: Option<(f64, usize)> = None;
    let mut tie_weight = 0u64;
    for (pos, i) in members {
        // A member that weighs 0 (being drained) only when no member that weighs more is usable.
        let k = if set.has_share(pos) {
            key(&live.slots[i])
        } else {
            f64::MAX
        };
        let w = u64::from(set.weights[pos]).max(1);
        match best {
            Some((bk, _)) if k > bk => {}
            Some((bk, _)) if k == bk => {
                tie_weight += w;
                if below(rng, tie_weight) < w {
                    best = Some((k, i));
                }
            }
            _ => {
                best = Some((k, i));
                tie_weight = w;
            }
        }
    }
    best.map(|(_, i)| i)
}
