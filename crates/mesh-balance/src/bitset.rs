//! A fixed-length bitset over a route table's provider list, with the word-wise operations the route
//! cache needs (AND, AND-NOT, OR, population count) and rank/select for sampling set bits.

/// A set of provider indices `0..len`, stored as 64-bit words (bit `i % 64` of word `i / 64`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BitSet {
    words: Vec<u64>,
    len: usize,
}

impl BitSet {
    /// The empty set over `len` indices.
    pub fn new(len: usize) -> Self {
        BitSet {
            words: vec![0; len.div_ceil(64)],
            len,
        }
    }

    /// The full set `0..len`.
    pub fn full(len: usize) -> Self {
        let mut s = BitSet {
            words: vec![u64::MAX; len.div_ceil(64)],
            len,
        };
        s.clear_tail();
        s
    }

    /// The set of indices for which `f` is true.
    pub fn from_fn(len: usize, mut f: impl FnMut(usize) -> bool) -> Self {
        let mut s = BitSet::new(len);
        for i in 0..len {
            if f(i) {
                s.insert(i);
            }
        }
        s
    }

    fn clear_tail(&mut self) {
        let rem = self.len % 64;
        if rem != 0 {
            if let Some(last) = self.words.last_mut() {
                *last &= (1u64 << rem) - 1;
            }
        }
    }

    /// Widens the range to `0..len` (`len >= universe()`); the new indices are not members. Amortized O(1)
    /// per added index (the words grow like a `Vec`).
    pub fn grow(&mut self, len: usize) {
        debug_assert!(len >= self.len);
        self.words.resize(len.div_ceil(64), 0);
        self.len = len;
    }

    /// Number of indices the set ranges over (`0..universe()`), not the number of members.
    pub fn universe(&self) -> usize {
        self.len
    }

    /// The words, lowest indices first; bits past `len` are always zero.
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Adds `i`. Panics if `i >= len` (a caller bug).
    pub fn insert(&mut self, i: usize) {
        assert!(i < self.len, "bit {i} out of range {}", self.len);
        self.words[i / 64] |= 1 << (i % 64);
    }

    /// Removes `i` (no-op when out of range).
    pub fn remove(&mut self, i: usize) {
        if i < self.len {
            self.words[i / 64] &= !(1 << (i % 64));
        }
    }

    /// Sets or clears `i`.
    pub fn set(&mut self, i: usize, on: bool) {
        if on {
            self.insert(i)
        } else {
            self.remove(i)
        }
    }

    /// True when `i` is a member.
    pub fn contains(&self, i: usize) -> bool {
        i < self.len && self.words[i / 64] & (1 << (i % 64)) != 0
    }

    /// Number of members.
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// True when there is no member.
    pub fn none(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// `self &= other`. Both must range over the same `len`.
    pub fn and_with(&mut self, other: &BitSet) {
        debug_assert_eq!(self.len, other.len);
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= b;
        }
    }

    /// `self |= other`.
    pub fn or_with(&mut self, other: &BitSet) {
        debug_assert_eq!(self.len, other.len);
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }

    /// `self &= !other`.
    pub fn and_not_with(&mut self, other: &BitSet) {
        debug_assert_eq!(self.len, other.len);
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= !b;
        }
    }

    /// `self & other` as a new set.
    pub fn and(&self, other: &BitSet) -> BitSet {
        let mut r = self.clone();
        r.and_with(other);
        r
    }

    /// `!self` (within `0..len`).
    pub fn not(&self) -> BitSet {
        let mut r = BitSet {
            words: self.words.iter().map(|w| !w).collect(),
            len: self.len,
        };
        r.clear_tail();
        r
    }

    /// True when `self & other` has a member, without building it.
    pub fn intersects(&self, other: &BitSet) -> bool {
        self.words.iter().zip(&other.words).any(|(a, b)| a & b != 0)
    }

    /// Members in increasing order.
    pub fn iter(&self) -> Ones<'_> {
        Ones {
            words: &self.words,
            word: 0,
            cur: self.words.first().copied().unwrap_or(0),
        }
    }

    /// Number of members below `i` (`rank(len)` = `count()`).
    pub fn rank(&self, i: usize) -> usize {
        let i = i.min(self.len);
        let full: usize = self.words[..i / 64].iter().map(|w| w.count_ones() as usize).sum();
        let rem = i % 64;
        if rem == 0 {
            full
        } else {
            full + (self.words[i / 64] & ((1u64 << rem) - 1)).count_ones() as usize
        }
    }

    /// The `k`-th member (0-based) by a linear pass over the words; [`RankIndex`] does it in O(log words).
    pub fn select(&self, k: usize) -> Option<usize> {
        let mut k = k;
        for (wi, &w) in self.words.iter().enumerate() {
            let c = w.count_ones() as usize;
            if k < c {
                return Some(wi * 64 + select_in_word(w, k as u32) as usize);
            }
            k -= c;
        }
        None
    }
}

/// Position of the `k`-th set bit of `w` (`k < w.count_ones()`).
pub fn select_in_word(mut w: u64, k: u32) -> u32 {
    for _ in 0..k {
        w &= w - 1;
    }
    w.trailing_zeros()
}

/// Iterator over the members of a [`BitSet`].
#[derive(Debug, Clone)]
pub struct Ones<'a> {
    words: &'a [u64],
    word: usize,
    cur: u64,
}

impl Iterator for Ones<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        loop {
            if self.cur != 0 {
                let b = self.cur.trailing_zeros() as usize;
                self.cur &= self.cur - 1;
                return Some(self.word * 64 + b);
            }
            self.word += 1;
            self.cur = *self.words.get(self.word)?;
        }
    }
}

/// Popcount prefix sums over a bitset's words: `select(k)` by binary search over the words, then within one.
#[derive(Debug, Clone)]
pub struct RankIndex {
    /// `prefix[w]` = members in words `0..w`; one more entry than words.
    prefix: Vec<u32>,
}

impl RankIndex {
    /// Indexes `set` (which must not change while the index is used with it).
    pub fn new(set: &BitSet) -> Self {
        let mut prefix = Vec::with_capacity(set.words.len() + 1);
        let mut acc = 0u32;
        prefix.push(0);
        for w in &set.words {
            acc += w.count_ones();
            prefix.push(acc);
        }
        RankIndex { prefix }
    }

    /// Members in the indexed set.
    pub fn count(&self) -> usize {
        self.prefix.last().copied().unwrap_or(0) as usize
    }

    /// The `k`-th member of `set` (the set this index was built from).
    pub fn select(&self, set: &BitSet, k: usize) -> Option<usize> {
        if k >= self.count() {
            return None;
        }
        let k = k as u32;
        // Last word whose prefix is <= k.
        let wi = self.prefix.partition_point(|&p| p <= k) - 1;
        Some(wi * 64 + select_in_word(set.words[wi], k - self.prefix[wi]) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_ops() {
        let mut a = BitSet::new(130);
        for i in [0, 5, 63, 64, 100, 129] {
            a.insert(i);
        }
        assert_eq!(a.count(), 6);
        assert!(a.contains(129) && !a.contains(128) && !a.contains(500));
        assert_eq!(a.iter().collect::<Vec<_>>(), [0, 5, 63, 64, 100, 129]);
        let b = BitSet::from_fn(130, |i| i % 2 == 0);
        assert_eq!(a.and(&b).iter().collect::<Vec<_>>(), [0, 64, 100]);
        let mut c = a.clone();
        c.and_not_with(&b);
        assert_eq!(c.iter().collect::<Vec<_>>(), [5, 63, 129]);
        assert_eq!(BitSet::full(130).count(), 130);
        assert_eq!(BitSet::full(130).not().count(), 0);
        assert_eq!(a.not().count(), 124);
        assert_eq!(a.rank(64), 3);
        assert_eq!(a.rank(130), 6);
        assert_eq!(a.select(3), Some(64));
        assert_eq!(a.select(6), None);
        let idx = RankIndex::new(&a);
        for k in 0..6 {
            assert_eq!(idx.select(&a, k), a.select(k));
        }
        assert_eq!(idx.select(&a, 6), None);
        assert!(BitSet::new(0).none() && BitSet::new(0).iter().next().is_none());
        let mut g = BitSet::full(63);
        g.grow(64);
        assert!(!g.contains(63) && g.count() == 63);
        g.grow(200);
        g.insert(199);
        assert_eq!((g.count(), g.universe(), g.words().len()), (64, 200, 4));
    }
}
