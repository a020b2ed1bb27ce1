//! [`Policy::ConsistentHash`](super::Policy::ConsistentHash): a Ketama-style ring over the members'
//! addresses; a call's hash key goes to the first usable owner clockwise.

use super::available::any_available;
use super::live::LiveState;
use super::{usable, CandidateSet, Pick};
use crate::hash::hash64;

/// The ring of one candidate set (built at its first hashed pick): sorted points and their members.
#[derive(Debug, Clone)]
pub(super) struct Ring {
    points: Vec<u64>,
    /// Member position owning each point.
    owners: Vec<u32>,
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
    let n = set.members.len();
    if set.ring.is_none() {
        let reps = u64::from(replicas.max(1)).min(((1usize << 20) / n).max(1) as u64);
        let mut pts: Vec<(u64, u32)> = Vec::with_capacity(n * reps as usize);
        for (pos, &m) in set.members.iter().enumerate() {
            for r in 0..reps {
                pts.push((hash64(addr_text[m as usize].as_bytes(), r), pos as u32));
            }
        }
        pts.sort_unstable();
        set.ring = Some(Ring {
            points: pts.iter().map(|p| p.0).collect(),
            owners: pts.iter().map(|p| p.1).collect(),
        });
    }
    let Some(ring) = set.ring.as_ref() else {
        return Pick::NoProvider;
    };
    let h = hash64(key, 0x6b65_7461_6d61);
    let start = ring.points.partition_point(|&p| p < h);
    let len = ring.points.len();
    // Walk clockwise to the first usable owner; after a short walk, make sure one exists at all.
    for step in 0..len {
        if step == 64 && !any_available(set, live, ex) {
            return Pick::AllBusy;
        }
        let i = set.members[ring.owners[(start + step) % len] as usize] as usize;
        if usable(live, ex, i) {
            return Pick::Provider(i);
        }
    }
    Pick::AllBusy
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
