//! [`Policy::RoundRobin`](super::Policy::RoundRobin): smooth weighted round robin (nginx / Dubbo),
//! two-level on large sets.

use super::live::LiveState;
use super::{usable, CandidateSet, DRAWS};

/// Smooth weighted round-robin state of one candidate set (built at its first round-robin pick).
#[derive(Debug, Clone)]
pub(super) struct Swrr {
    /// Members per group.
    gs: usize,
    /// Total weight per group.
    gw: Vec<i64>,
    /// Current weight per group.
    gcur: Vec<i64>,
    /// Current weight per member.
    cur: Vec<i64>,
}

/// Smooth weighted round robin, two-level on large sets: over groups of about sqrt(n) members by their
/// total weight, then within the chosen group.
pub(super) fn pick(set: &mut CandidateSet, live: &LiveState, ex: &[usize]) -> Option<usize> {
    let n = set.members.len();
    if set.swrr.is_none() {
        let gs = if set.gs >= n {
            n
        } else {
            (n as f64).sqrt().ceil() as usize
        };
        let gw: Vec<i64> = set
            .weights
            .chunks(gs)
            .map(|c| c.iter().map(|&w| i64::from(w)).sum())
            .collect();
        set.swrr = Some(Swrr {
            gs,
            gcur: vec![0; gw.len()],
            gw,
            cur: vec![0; n],
        });
    }
    let st = set.swrr.as_mut()?;
    let total: i64 = st.gw.iter().sum();
    for _ in 0..DRAWS {
        let mut g = 0;
        for k in 0..st.gw.len() {
            st.gcur[k] += st.gw[k];
            if st.gcur[k] > st.gcur[g] {
                g = k;
            }
        }
        st.gcur[g] -= total;
        let start = g * st.gs;
        let end = (start + st.gs).min(n);
        let mut best = start;
        for pos in start..end {
            st.cur[pos] += i64::from(set.weights[pos]);
            if st.cur[pos] > st.cur[best] {
                best = pos;
            }
        }
        st.cur[best] -= st.gw[g];
        let i = set.members[best] as usize;
        if usable(live, ex, i) {
            return Some(i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::testing::{counts, opts, table};
    use super::super::{Pick, Policy, XorShift64};
    use super::*;
    use crate::table::Request;

    #[test]
    fn round_robin_is_nginx_smooth_sequence() {
        let mut t = table(&[100, 200, 300], &[None; 3]);
        let live = LiveState::new(&t);
        assert_eq!(counts(&mut t, &live, Policy::RoundRobin, 6), [1, 2, 3]);
        let mut rng = XorShift64::new(1);
        let r = t.route(&Request::new("m"));
        let seq: Vec<Pick> = (0..6)
            .map(|_| t.pick(r, &live, &mut rng, &opts(Policy::RoundRobin)))
            .collect();
        // nginx's smooth sequence for 1:2:3 is c b a c b c (as indices 2 1 0 2 1 2)... starting state
        // continues from the previous 6 picks, which returned the state to zero.
        let seq: Vec<usize> = seq
            .into_iter()
            .map(|p| match p {
                Pick::Provider(i) => i,
                _ => 9,
            })
            .collect();
        assert_eq!(seq, [2, 1, 0, 2, 1, 2]);
    }
}
