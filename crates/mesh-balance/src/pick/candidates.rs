//! [`CandidateSet`]: one cached route result and everything the balancers keep over it (effective
//! weights and their Fenwick tree, the warming members, the round-robin state, the hash ring). A provider
//! joining or leaving the set ([`CandidateSet::insert`], [`CandidateSet::remove`]) or changing weight
//! updates all of it in O(log n) (the ring: O(replicas x log n)), so a registry change does not cost a
//! rebuild of every route.

use super::consistent_hash::Ring;
use super::round_robin::Swrr;
use super::warmup::warm_weight;
use super::weight_tree::WeightTree;
use super::{below, Rng};
use crate::bitset::BitSet;
use crate::hash::FxMap;
use crate::table::RouteTable;

/// `pos_of` of a provider that is not a member.
const NOT_MEMBER: u32 = u32::MAX;

/// One cached route result and everything the balancers precompute over it.
#[derive(Debug, Clone)]
pub(crate) struct CandidateSet {
    pub(crate) bits: BitSet,
    /// Provider indices of the candidates (ascending when built; a joining provider is appended, a leaving
    /// one replaced by the last).
    pub(crate) members: Vec<u32>,
    /// Member position of each provider index of the table (`NOT_MEMBER` for the others).
    pub(super) pos_of: Vec<u32>,
    /// Effective (warm-up adjusted) weight per member position.
    pub(crate) weights: Vec<u32>,
    tree: WeightTree,
    /// How many members have each effective weight (one key: all equal, draws need no search).
    weight_counts: FxMap<u32, u32>,
    /// Members per group of the grouped picks (all members when the set is small).
    pub(super) gs: usize,
    /// Members with a warm-up period (provider indices), whose weights the refresh recomputes.
    warming: BitSet,
    /// When to recompute warm-up weights (ms); `u64::MAX` once every member is warm.
    pub(crate) next_refresh_ms: u64,
    pub(super) swrr: Option<Swrr>,
    pub(super) ring: Option<Ring>,
}

impl CandidateSet {
    /// The set of `bits` (over `table`'s indices), weights ignoring warm-up until the first refresh.
    pub(crate) fn new(bits: BitSet, table: &RouteTable) -> Self {
        let universe = bits.universe();
        let members: Vec<u32> = bits.iter().map(|i| i as u32).collect();
        let mut pos_of = vec![NOT_MEMBER; universe];
        let mut warming = BitSet::new(universe);
        let mut weights = Vec::with_capacity(members.len());
        let mut weight_counts = FxMap::default();
        for (pos, &m) in members.iter().enumerate() {
            pos_of[m as usize] = pos as u32;
            let w = table.weight_at(m as usize);
            weights.push(w);
            *weight_counts.entry(w).or_insert(0) += 1;
            if table.warm[m as usize].is_some() {
                warming.insert(m as usize);
            }
        }
        let mut s = CandidateSet {
            bits,
            tree: WeightTree::new(weights.iter().map(|&w| u64::from(w))),
            members,
            pos_of,
            weights,
            weight_counts,
            gs: 1,
            next_refresh_ms: if warming.none() { u64::MAX } else { 0 },
            warming,
            swrr: None,
            ring: None,
        };
        s.regroup(table);
        s
    }

    /// A set with no members (a placeholder while a set is taken out of its table to be refreshed).
    pub(super) fn empty() -> Self {
        CandidateSet {
            bits: BitSet::new(0),
            members: Vec::new(),
            pos_of: Vec::new(),
            weights: Vec::new(),
            tree: WeightTree::default(),
            weight_counts: FxMap::default(),
            gs: 1,
            warming: BitSet::new(0),
            next_refresh_ms: u64::MAX,
            swrr: None,
            ring: None,
        }
    }

    fn regroup(&mut self, table: &RouteTable) {
        let n = self.members.len();
        self.gs = if n > table.opts.group_threshold {
            table.opts.group_size.max(1)
        } else {
            n.max(1)
        };
    }

    /// Widens the set's index range to `0..universe` (the table appended a provider).
    pub(crate) fn grow(&mut self, universe: usize) {
        self.bits.grow(universe);
        self.warming.grow(universe);
        self.pos_of.resize(universe, NOT_MEMBER);
    }

    /// Provider `idx` joins the set, with its warm-up weight at the table's clock (the time of the latest
    /// pick): O(log n), the other warming members keep their weights until the next periodic refresh.
    pub(crate) fn insert(&mut self, idx: usize, table: &RouteTable) {
        if self.bits.contains(idx) {
            return;
        }
        let (w, warming) = self.joining_weight(idx, table);
        let pos = self.members.len();
        self.bits.insert(idx);
        self.members.push(idx as u32);
        self.pos_of[idx] = pos as u32;
        self.weights.push(w);
        self.tree.push(u64::from(w));
        *self.weight_counts.entry(w).or_insert(0) += 1;
        if warming {
            self.warming.insert(idx);
            self.refresh_due_by(table);
        }
        if let Some(s) = &mut self.swrr {
            s.push(w);
        }
        if self.ring.as_ref().is_some_and(|r| !r.fits(self.members.len())) {
            self.ring = None;
        }
        if let Some(r) = &mut self.ring {
            r.insert(idx, &table.addr_text[idx]);
        }
        self.regroup(table);
    }

    /// Provider `idx` leaves the set; the last member takes its position.
    pub(crate) fn remove(&mut self, idx: usize, table: &RouteTable) {
        if !self.bits.contains(idx) {
            return;
        }
        let pos = self.pos_of[idx] as usize;
        let last = self.members.len() - 1;
        let w = self.weights[pos];
        dec(&mut self.weight_counts, w);
        self.zero_weight(pos);
        if pos != last {
            // The last member moves into the freed position.
            let moved = self.members[last];
            let wl = self.weights[last];
            self.zero_weight(last);
            self.members[pos] = moved;
            self.pos_of[moved as usize] = pos as u32;
            self.weights[pos] = wl;
            self.tree.add(pos, i64::from(wl));
            if let Some(s) = &mut self.swrr {
                s.reweigh(pos, 0, wl);
                s.moved(last, pos);
            }
        }
        self.tree.pop();
        self.members.pop();
        self.weights.pop();
        if let Some(s) = &mut self.swrr {
            s.pop();
        }
        self.pos_of[idx] = NOT_MEMBER;
        self.bits.remove(idx);
        self.warming.remove(idx);
        if self.ring.as_ref().is_some_and(|r| !r.fits(self.members.len())) {
            self.ring = None;
        }
        if let Some(r) = &mut self.ring {
            r.remove(idx, &table.addr_text[idx]);
        }
        self.regroup(table);
    }

    /// Provider `idx` (a member) has a new registered weight (or registration time).
    pub(crate) fn reweigh(&mut self, idx: usize, table: &RouteTable) {
        if let Some(&pos) = self.pos_of.get(idx).filter(|&&p| p != NOT_MEMBER) {
            let (w, warming) = self.joining_weight(idx, table);
            self.set_weight(pos as usize, w);
            if warming {
                self.warming.insert(idx);
                self.refresh_due_by(table);
            } else {
                self.warming.remove(idx);
            }
        }
    }

    /// The effective weight of `idx` at the table's clock, and whether it is still warming up. Before the
    /// first pick (clock 0) the registered weight, with the refresh due at the first pick.
    fn joining_weight(&self, idx: usize, table: &RouteTable) -> (u32, bool) {
        let weight = table.weight_at(idx);
        match table.warm[idx] {
            None => (weight, false),
            Some(_) if table.clock_ms == 0 => (weight, true),
            warm => warm_weight(weight, warm, table.clock_ms),
        }
    }

    /// A warming member joined: the periodic refresh must come (at once before the first pick).
    fn refresh_due_by(&mut self, table: &RouteTable) {
        let due = if table.clock_ms == 0 {
            0
        } else {
            table.clock_ms.saturating_add(table.opts.warmup_refresh_ms)
        };
        self.next_refresh_ms = self.next_refresh_ms.min(due);
    }

    /// Takes the weight at `pos` out of the tree and the round-robin totals (not out of the counts).
    fn zero_weight(&mut self, pos: usize) {
        let w = self.weights[pos];
        self.tree.add(pos, -i64::from(w));
        if let Some(s) = &mut self.swrr {
            s.reweigh(pos, w, 0);
        }
        self.weights[pos] = 0;
    }

    /// True when member position `pos` may take a share: it weighs more than 0, or every member weighs 0.
    #[inline]
    pub(super) fn has_share(&self, pos: usize) -> bool {
        self.weights[pos] > 0 || self.tree.total() == 0
    }

    /// Sets the effective weight at member position `pos`.
    fn set_weight(&mut self, pos: usize, w: u32) {
        let old = self.weights[pos];
        if old == w {
            return;
        }
        self.weights[pos] = w;
        self.tree.add(pos, i64::from(w) - i64::from(old));
        dec(&mut self.weight_counts, old);
        *self.weight_counts.entry(w).or_insert(0) += 1;
        if let Some(s) = &mut self.swrr {
            s.reweigh(pos, old, w);
        }
    }

    /// Recomputes the warming members' weights at `now_ms` (O(warming x log n)).
    pub(super) fn refresh_warm_up(&mut self, table: &RouteTable, now_ms: u64) {
        let warming: Vec<usize> = self.warming.iter().collect();
        for idx in warming {
            let (w, still) = warm_weight(table.weight_at(idx), table.warm[idx], now_ms);
            let pos = self.pos_of[idx] as usize;
            self.set_weight(pos, w);
            if !still {
                self.warming.remove(idx);
            }
        }
        self.next_refresh_ms = if self.warming.none() {
            u64::MAX
        } else {
            now_ms.saturating_add(table.opts.warmup_refresh_ms)
        };
    }

    /// All members have the same weight.
    fn uniform(&self) -> bool {
        self.weight_counts.len() <= 1
    }

    /// A member position drawn in proportion to the weights.
    #[inline]
    pub(super) fn weighted_pos<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        if self.uniform() || self.tree.total() == 0 {
            below(rng, self.members.len() as u64) as usize
        } else {
            self.tree.find(below(rng, self.tree.total()))
        }
    }

    /// A group (of `gs` member positions) drawn in proportion to its total weight.
    #[inline]
    pub(super) fn weighted_group<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        self.weighted_pos(rng) / self.gs
    }
}

fn dec(counts: &mut FxMap<u32, u32>, w: u32) {
    if let Some(c) = counts.get_mut(&w) {
        *c -= 1;
        if *c == 0 {
            counts.remove(&w);
        }
    }
}

#[cfg(test)]
impl CandidateSet {
    /// Panics unless every structure agrees with `bits` and `table` (weights ignoring warm-up, as no test
    /// of changes warms up).
    pub(crate) fn check(&self, table: &RouteTable) {
        assert_eq!(self.bits.universe(), table.slots());
        assert_eq!(self.pos_of.len(), table.slots());
        assert_eq!(self.members.len(), self.bits.count());
        assert_eq!(self.weights.len(), self.members.len());
        assert_eq!(self.tree.len(), self.members.len());
        let mut counts: FxMap<u32, u32> = FxMap::default();
        for (pos, &m) in self.members.iter().enumerate() {
            let m = m as usize;
            assert!(self.bits.contains(m) && table.provider(m).is_some());
            assert_eq!(self.pos_of[m] as usize, pos);
            assert_eq!(self.weights[pos], table.weight_at(m));
            *counts.entry(self.weights[pos]).or_insert(0) += 1;
        }
        assert_eq!(counts, self.weight_counts);
        let total: u64 = self.weights.iter().map(|&w| u64::from(w)).sum();
        assert_eq!(self.tree.total(), total);
        let mut acc = 0u64;
        for (pos, &w) in self.weights.iter().enumerate() {
            if w > 0 {
                assert_eq!(self.tree.find(acc), pos);
            }
            acc += u64::from(w);
        }
        if let Some(s) = &self.swrr {
            s.check(&self.weights);
        }
        if let Some(r) = &self.ring {
            r.check(&self.members);
        }
    }
}
