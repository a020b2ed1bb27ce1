//! Prefix sums of a candidate set's weights that take a change in O(log n): a Fenwick tree. Weighted
//! draws search it in O(log n) (as a binary search over plain prefix sums did), and a member joining,
//! leaving or changing weight no longer costs recomputing every sum.

/// Fenwick tree over `u64` weights at positions `0..len`.
#[derive(Debug, Clone, Default)]
pub(super) struct WeightTree {
    /// 1-based: `tree[i]` = sum of the weights at positions `i - lowbit(i) .. i` (0-based, half-open).
    tree: Vec<u64>,
    total: u64,
}

impl WeightTree {
    /// The tree of `weights`, in O(n).
    pub(super) fn new(weights: impl IntoIterator<Item = u64>) -> Self {
        let mut tree = vec![0u64];
        tree.extend(weights);
        let total = tree.iter().sum();
        let n = tree.len() - 1;
        for i in 1..=n {
            let parent = i + (i & i.wrapping_neg());
            if parent <= n {
                tree[parent] += tree[i];
            }
        }
        WeightTree { tree, total }
    }

    /// Number of positions.
    pub(super) fn len(&self) -> usize {
        self.tree.len().saturating_sub(1)
    }

    /// Sum of all weights.
    pub(super) fn total(&self) -> u64 {
        self.total
    }

    /// Sum of the weights at positions `0..end`.
    fn prefix(&self, end: usize) -> u64 {
        let mut i = end;
        let mut s = 0u64;
        while i > 0 {
            s += self.tree[i];
            i &= i - 1;
        }
        s
    }

    /// Adds `delta` (which must not take a weight below 0) to the weight at `pos`.
    pub(super) fn add(&mut self, pos: usize, delta: i64) {
        let n = self.len();
        let mut i = pos + 1;
        while i <= n {
            self.tree[i] = self.tree[i].wrapping_add_signed(delta);
            i += i & i.wrapping_neg();
        }
        self.total = self.total.wrapping_add_signed(delta);
    }

    /// Appends a position of weight `w`, in O(log n).
    pub(super) fn push(&mut self, w: u64) {
        let i = self.tree.len();
        let low = i & i.wrapping_neg();
        // tree[i] covers positions i - low .. i: the new weight plus the ones before it in that range.
        let covered = self.prefix(i - 1) - self.prefix(i - low);
        self.tree.push(w + covered);
        self.total += w;
    }

    /// Drops the last position, whose weight must be 0 by now.
    pub(super) fn pop(&mut self) {
        self.tree.pop();
    }

    /// The position `p` with `prefix(p) <= r < prefix(p + 1)`, for `r < total()`.
    pub(super) fn find(&self, r: u64) -> usize {
        let n = self.len();
        let mut pos = 0usize;
        let mut rem = r;
        let mut step = if n == 0 {
            0
        } else {
            1usize << (usize::BITS - 1 - n.leading_zeros())
        };
        while step > 0 {
            let next = pos + step;
            if next <= n && self.tree[next] <= rem {
                pos = next;
                rem -= self.tree[next];
            }
            step >>= 1;
        }
        pos.min(n.saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_find(w: &[u64], r: u64) -> usize {
        let mut acc = 0;
        for (i, &x) in w.iter().enumerate() {
            acc += x;
            if r < acc {
                return i;
            }
        }
        w.len() - 1
    }

    #[test]
    fn matches_plain_prefix_sums_through_pushes_changes_and_pops() {
        let mut w: Vec<u64> = vec![3, 0, 5, 1, 7, 2, 2, 9, 4];
        let mut t = WeightTree::new(w.iter().copied());
        let check = |t: &WeightTree, w: &[u64]| {
            assert_eq!(t.total(), w.iter().sum::<u64>());
            assert_eq!(t.len(), w.len());
            for r in 0..t.total() {
                assert_eq!(t.find(r), naive_find(w, r), "r={r} w={w:?}");
            }
        };
        check(&t, &w);
        for k in 0..40u64 {
            match k % 3 {
                0 => {
                    t.push(k % 5);
                    w.push(k % 5);
                }
                1 => {
                    let pos = (k as usize * 7) % w.len();
                    let d = (k % 4) as i64 - 1;
                    if w[pos] as i64 + d >= 0 {
                        t.add(pos, d);
                        w[pos] = (w[pos] as i64 + d) as u64;
                    }
                }
                _ => {
                    let last = w.len() - 1;
                    t.add(last, -(w[last] as i64));
                    t.pop();
                    w.pop();
                }
            }
            if w.iter().sum::<u64>() > 0 {
                check(&t, &w);
            }
        }
    }
}
