//! [`CandidateSet`]: one cached route result and everything the balancers precompute over it (effective
//! weights, prefix sums, groups, the round-robin state, the hash ring).

use super::consistent_hash::Ring;
use super::round_robin::Swrr;
use super::warmup::warm_weight;
use super::{below, Rng};
use crate::bitset::BitSet;
use crate::table::RouteTable;

/// One cached route result and everything the balancers precompute over it.
#[derive(Debug, Clone)]
pub(crate) struct CandidateSet {
    pub(crate) bits: BitSet,
    /// Provider indices of the candidates, ascending.
    pub(super) members: Vec<u32>,
    /// Effective (warm-up adjusted) weight per member.
    pub(super) weights: Vec<u32>,
    /// Prefix sums of `weights`.
    cum: Vec<u64>,
    total: u64,
    /// All weights equal: draws need no binary search.
    uniform: bool,
    /// Members per group of the grouped picks (all members when the set is small).
    pub(super) gs: usize,
    /// Prefix sums of `weights` at the end of each group.
    group_cum: Vec<u64>,
    /// When to recompute warm-up weights (ms); `u64::MAX` once every member is warm.
    pub(crate) next_refresh_ms: u64,
    pub(super) swrr: Option<Swrr>,
    pub(super) ring: Option<Ring>,
}

impl CandidateSet {
    pub(crate) fn new(bits: BitSet, table: &RouteTable) -> Self {
        let members: Vec<u32> = bits.iter().map(|i| i as u32).collect();
        let warming = members.iter().any(|&m| table.warm[m as usize].is_some());
        let gs = if members.len() > table.opts.group_threshold {
            table.opts.group_size.max(1)
        } else {
            members.len().max(1)
        };
        let mut s = CandidateSet {
            next_refresh_ms: if warming { 0 } else { u64::MAX },
            gs,
            members,
            ..CandidateSet::empty_with(bits)
        };
        s.compute_weights(table, None);
        s
    }

    /// A set with no members (a placeholder while a set is taken out of its table to be refreshed).
    pub(super) fn empty() -> Self {
        CandidateSet::empty_with(BitSet::new(0))
    }

    fn empty_with(bits: BitSet) -> Self {
        CandidateSet {
            bits,
            members: Vec::new(),
            weights: Vec::new(),
            cum: Vec::new(),
            total: 0,
            uniform: true,
            gs: 1,
            group_cum: Vec::new(),
            next_refresh_ms: u64::MAX,
            swrr: None,
            ring: None,
        }
    }

    /// Recomputes effective weights (at `now_ms`, or ignoring warm-up when `None`) and everything derived.
    pub(super) fn compute_weights(&mut self, table: &RouteTable, now_ms: Option<u64>) {
        let mut still_warming = false;
        self.weights.clear();
        for &m in &self.members {
            let p = &table.providers[m as usize];
            let (w, warming) = match now_ms {
                Some(now) => warm_weight(p.weight, table.warm[m as usize], now),
                None => (p.weight, false),
            };
            still_warming |= warming;
            self.weights.push(w);
        }
        self.cum.clear();
        let mut acc = 0u64;
        for &w in &self.weights {
            acc += u64::from(w);
            self.cum.push(acc);
        }
        self.total = acc;
        self.uniform = self.weights.windows(2).all(|w| w[0] == w[1]);
        self.group_cum = self
            .cum
            .chunks(self.gs)
            .map(|c| c.last().copied().unwrap_or(0))
            .collect();
        self.swrr = None;
        if let Some(now) = now_ms {
            self.next_refresh_ms = if still_warming {
                now.saturating_add(table.opts.warmup_refresh_ms)
            } else {
                u64::MAX
            };
        }
    }

    /// A member position drawn in proportion to the weights.
    #[inline]
    pub(super) fn weighted_pos<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        self.draw(rng, &self.cum)
    }

    /// A group drawn in proportion to its total weight.
    #[inline]
    pub(super) fn weighted_group<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        self.draw(rng, &self.group_cum)
    }

    /// An index into `cum` (prefix sums of the weights, ending at `total`) drawn in proportion to the
    /// weights; uniform without a search when all weights are equal.
    #[inline]
    fn draw<R: Rng + ?Sized>(&self, rng: &mut R, cum: &[u64]) -> usize {
        if self.uniform {
            below(rng, cum.len() as u64) as usize
        } else {
            let r = below(rng, self.total);
            cum.partition_point(|&c| c <= r)
        }
    }
}
