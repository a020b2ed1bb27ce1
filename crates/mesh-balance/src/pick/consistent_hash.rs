//! [`Policy::ConsistentHash`](super::Policy::ConsistentHash): a Ketama-style ring over the members'
//! addresses; a call's hash key goes to the first usable owner clockwise.

use std::collections::BTreeSet;

use super::available::any_available;
use super::live::LiveState;
use super::{usable, CandidateSet, Pick};
use crate::hash::hash64;

/// Most points on one ring (fewer replicas per member on very large sets).
const MAX_POINTS: usize = 1 << 20;

/// The ring of one candidate set (built at its first hashed pick, then kept in step with the members):
/// (point, provider index), ordered. A member joining or leaving moves only its own points.
#[derive(Debug, Clone)]
pub(super) struct Ring {
    points: BTreeSet<(u64, u32)>,
    replicas: u64,
    /// Members when built: the replica count suits about that many.
    built_for: usize,
}

impl Ring {
    fn new(set: &CandidateSet, addr_text: &[String], replicas: u32) -> Self {
        let n = set.members.len().max(1);
        let mut ring = Ring {
            points: BTreeSet::new(),
            replicas: u64::from(replicas.max(1)).min((MAX_POINTS / n).max(1) as u64),
            built_for: n,
        };
        for &m in &set.members {
            ring.insert(m as usize, &addr_text[m as usize]);
        }
        ring
    }

    /// False once the set has grown or shrunk so much that the replica count should be redone.
    pub(super) fn fits(&self, n: usize) -> bool {
        n <= self.built_for.saturating_mul(2) && n * 2 >= self.built_for
    }

    /// Adds the points of provider `idx` at `addr`.
    pub(super) fn insert(&mut self, idx: usize, addr: &str) {
        for r in 0..self.replicas {
            self.points.insert((hash64(addr.as_bytes(), r), idx as u32));
        }
    }

    /// Removes the points of provider `idx` at `addr`.
    pub(super) fn remove(&mut self, idx: usize, addr: &str) {
        for r in 0..self.replicas {
            self.points.remove(&(hash64(addr.as_bytes(), r), idx as u32));
        }
    }
}

/// The first usable member clockwise from `key`'s hash; `replicas` points per member (fewer on very large
/// sets, at most about a million points in all).
pub(super) fn pick(
    set: &mut CandidateSet,
    addr_text: &[String],
    replicas: u32,
    live: &LiveState,
    ex: &[usize],
    key: &[u8],
) -> Pick {
    if set.ring.is_none() {
        set.ring = Some(Ring::new(set, addr_text, replicas));
    }
    let Some(ring) = set.ring.as_ref() else {
        return Pick::NoProvider;
    };
    let h = hash64(key, 0x6b65_7461_6d61);
    // Walk clockwise to the first usable owner; after a short walk, make sure one exists at all.
    let clockwise = ring.points.range((h, 0)..).chain(ring.points.iter());
    for (step, &(_, i)) in clockwise.take(ring.points.len()).enumerate() {
        if step == 64 && !any_available(set, live, ex) {
            return Pick::AllBusy;
        }
        if usable(live, ex, i as usize) {
            return Pick::Provider(i as usize);
        }
    }
    Pick::AllBusy
}

#[cfg(test)]
impl Ring {
    /// Panics unless the ring holds exactly `replicas` points of each member.
    pub(super) fn check(&self, members: &[u32]) {
        let mut per: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
        for &(_, i) in &self.points {
            *per.entry(i).or_insert(0) += 1;
        }
        assert_eq!(per.len(), members.len());
        for m in members {
            assert_eq!(per.get(m).copied(), Some(self.replicas));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{opts, table_and_live};
    use super::super::{PickOptions, Policy, XorShift64};
    use crate::table::{Request, RouteTable};

    use super::*;

    #[test]
    fn consistent_hash_is_sticky_and_moves_on_when_busy() {
        let (mut t, mut live) = table_and_live(&[100; 10], &[Some(1); 10]);
        let r = t.route(&Request::new("m"));
        let mut rng = XorShift64::new(1);
        let pick = |t: &mut RouteTable, live: &LiveState, rng: &mut XorShift64, k: &[u8]| {
            let o = PickOptions {
                hash_key: Some(k),
                ..opts(Policy::ConsistentHash)
            };
            t.pick(r, live, rng, &o)
        };
        let a = pick(&mut t, &live, &mut rng, b"user-1");
        assert_eq!(pick(&mut t, &live, &mut rng, b"user-1"), a);
        let spread: std::collections::HashSet<_> = (0..200)
            .map(|k| pick(&mut t, &live, &mut rng, format!("k{k}").as_bytes()))
            .collect();
        assert!(spread.len() >= 8, "{spread:?}");
        let Pick::Provider(i) = a else { panic!() };
        live.on_send(i, 0);
        let b = pick(&mut t, &live, &mut rng, b"user-1");
        assert!(matches!(b, Pick::Provider(j) if j != i));
    }
}
