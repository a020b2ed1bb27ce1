//! [`Policy::RoundRobin`](super::Policy::RoundRobin): smooth weighted round robin (nginx / Dubbo),
//! two-level on large sets.

use super::live::LiveState;
use super::{usable, CandidateSet, DRAWS};

/// Smooth weighted round-robin state of one candidate set (built at its first round-robin pick, then
/// kept in step with the set's members and weights).
#[derive(Debug, Clone)]
pub(super) struct Swrr {
    /// Members per group (`usize::MAX`: one group).
    gs: usize,
    /// Total weight per group.
    gw: Vec<i64>,
    /// Current weight per group.
    gcur: Vec<i64>,
    /// Current weight per member.
    cur: Vec<i64>,
    /// Members when built: the grouping suits about that many.
    built_for: usize,
    /// The last member picked in turn while every member weighs 0.
    turn: usize,
}

impl Swrr {
    fn new(weights: &[u32], flat: bool) -> Self {
        let n = weights.len();
        let gs = if flat {
            usize::MAX
        } else {
            ((n as f64).sqrt().ceil() as usize).max(1)
        };
        let gw: Vec<i64> = weights
            .chunks(gs.min(n.max(1)))
            .map(|c| c.iter().map(|&w| i64::from(w)).sum())
            .collect();
        Swrr {
            gs,
            gcur: vec![0; gw.len()],
            gw,
            cur: vec![0; n],
            built_for: n,
            turn: n.saturating_sub(1),
        }
    }

    /// False once the set has grown or shrunk so much that the grouping should be redone.
    fn fits(&self, n: usize) -> bool {
        n <= self.built_for.saturating_mul(2).max(8) && n * 2 >= self.built_for
    }

    /// A member of weight `w` was appended.
    pub(super) fn push(&mut self, w: u32) {
        let g = self.cur.len() / self.gs;
        self.cur.push(0);
        if g == self.gw.len() {
            self.gw.push(0);
            self.gcur.push(0);
        }
        self.gw[g] += i64::from(w);
    }

    /// The member at `pos` changed weight.
    pub(super) fn reweigh(&mut self, pos: usize, old: u32, new: u32) {
        self.gw[pos / self.gs] += i64::from(new) - i64::from(old);
    }

    /// The member at `from` moved to `to` (its weight already moved by `reweigh`).
    pub(super) fn moved(&mut self, from: usize, to: usize) {
        self.cur[to] = self.cur[from];
    }

    /// The last member (weight 0 by now) was dropped.
    pub(super) fn pop(&mut self) {
        self.cur.pop();
        let groups = self.cur.len().div_ceil(self.gs.min(self.cur.len().max(1)));
        while self.gw.len() > groups.max(1) {
            self.gw.pop();
            self.gcur.pop();
        }
    }
}

/// Smooth weighted round robin, two-level on large sets: over groups of about sqrt(n) members by their
/// total weight, then within the chosen group.
pub(super) fn pick(set: &mut CandidateSet, live: &LiveState, ex: &[usize]) -> Option<usize> {
    let n = set.members.len();
    if set.swrr.as_ref().is_some_and(|s| !s.fits(n)) {
        set.swrr = None;
    }
    if set.swrr.is_none() {
        set.swrr = Some(Swrr::new(&set.weights, set.gs >= n));
    }
    let st = set.swrr.as_mut()?;
    let total: i64 = st.gw.iter().sum();
    if total == 0 {
        // Every member weighs 0: they take turns.
        for _ in 0..DRAWS {
            st.turn = (st.turn + 1) % n;
            let i = set.members[st.turn] as usize;
            if usable(live, ex, i) {
                return Some(i);
            }
        }
        return None;
    }
    for _ in 0..DRAWS {
        let mut g = 0;
        for k in 0..st.gw.len() {
            st.gcur[k] += st.gw[k];
            if st.gcur[k] > st.gcur[g] {
                g = k;
            }
        }
        st.gcur[g] -= total;
        let start = g.saturating_mul(st.gs);
        let end = start.saturating_add(st.gs).min(n);
        let mut best = start;
        for pos in start..end {
            st.cur[pos] += i64::from(set.weights[pos]);
            if st.cur[pos] > st.cur[best] {
                best = pos;
            }
        }
        st.cur[best] -= st.gw[g];
        let i = set.members[best] as usize;
        // (a member that weighs 0 wins only when the round-robin state was left uneven by changes)
        if set.weights[best] > 0 && usable(live, ex, i) {
            return Some(i);
        }
    }
    None
}

#[cfg(test)]
impl Swrr {
    /// Panics unless the group weights are the sums of `weights` per group.
    pub(super) fn check(&self, weights: &[u32]) {
        assert_eq!(self.cur.len(), weights.len());
        let gs = self.gs.min(weights.len().max(1));
        let sums: Vec<i64> = weights
            .chunks(gs)
            .map(|c| c.iter().map(|&w| i64::from(w)).sum())
            .collect();
        assert_eq!(&self.gw[..sums.len()], &sums[..]);
        assert!(self.gw[sums.len()..].iter().all(|&w| w == 0));
        assert!(self.gw.len() <= sums.len().max(1));
    }
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
