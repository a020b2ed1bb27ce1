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
    use super::super::testing::{picks, table_and_live};
    use super::super::Policy;

    #[test]
    fn round_robin_is_nginx_smooth_sequence() {
        let (mut t, live) = table_and_live(&[100, 200, 300], &[None; 3]);
        // nginx's smooth sequence for 1:2:3 is c b a c b c (indices 2 1 0 2 1 2); after it the state is
        // back to zero and the sequence repeats.
        let seq = [2, 1, 0, 2, 1, 2];
        assert_eq!(picks(&mut t, &live, Policy::RoundRobin, 12), [seq, seq].concat());
    }
}
