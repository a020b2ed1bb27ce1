//! The exact pass behind every balancer's fallback: a route's candidates that may take a call right now
//! (`candidates AND NOT busy`, word by word, minus the excluded ones).

use super::live::LiveState;
use super::CandidateSet;

/// Usable members by a word-wise `candidates AND NOT busy` pass, as (member position, provider index).
pub(super) fn available<'a>(set: &'a CandidateSet, live: &'a LiveState, ex: &'a [usize]) -> Available<'a> {
    Available {
        cand: set.bits.words(),
        busy: live.busy.words(),
        pos_of: &set.pos_of,
        ex,
        wi: 0,
        word: set.bits.words().first().copied().unwrap_or(0)
            & !live.busy.words().first().copied().unwrap_or(0),
    }
}

/// True when at least one member is usable.
pub(super) fn any_available(set: &CandidateSet, live: &LiveState, ex: &[usize]) -> bool {
    available(set, live, ex).next().is_some()
}

/// The iterator of [`available`].
pub(super) struct Available<'a> {
    cand: &'a [u64],
    busy: &'a [u64],
    pos_of: &'a [u32],
    ex: &'a [usize],
    wi: usize,
    /// Remaining usable bits of word `wi`.
    word: u64,
}

impl Iterator for Available<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        loop {
            while self.word == 0 {
                self.wi += 1;
                self.word = self.cand.get(self.wi)? & !self.busy.get(self.wi).copied().unwrap_or(0);
            }
            let bit = self.word.trailing_zeros();
            self.word &= self.word - 1;
            let i = self.wi * 64 + bit as usize;
            if self.ex.contains(&i) {
                continue;
            }
            return Some((self.pos_of[i] as usize, i));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::RuleSet;
    use crate::table::{ConsumerInfo, Provider, Request, RouteTable, TableOptions};

    #[test]
    fn yields_the_usable_candidates_with_their_member_positions() {
        // 200 providers over four bitset words; the rule keeps the ones on port 1 (even indices), so
        // member position = index / 2.
        let ps = (0..200)
            .map(|i| {
                Provider::new(
                    format!("10.0.{}.{}:{}", i / 100, i % 100, 1 + i % 2)
                        .parse()
                        .unwrap(),
                )
            })
            .collect();
        let rules = RuleSet::from_json(r#"{"conditions":["=> port = 1"]}"#).unwrap();
        let mut t = RouteTable::build(1, ps, &rules, &ConsumerInfo::default(), TableOptions::default());
        let mut live = LiveState::new(&t);
        for i in [0, 2, 62, 64, 100, 101, 198] {
            live.set_down(i, true);
        }
        let ex = [4, 5, 128];
        let r = t.route(&Request::new("m"));
        let set = &t.sets[r.0 as usize];
        let got: Vec<(usize, usize)> = available(set, &live, &ex).collect();
        let want: Vec<(usize, usize)> = (0..200)
            .filter(|i| i % 2 == 0 && live.is_available(*i) && !ex.contains(i))
            .map(|i| (i / 2, i))
            .collect();
        assert_eq!(got, want);
        assert!(any_available(set, &live, &ex));
        for i in 0..200 {
            live.set_down(i, true);
        }
        assert!(!any_available(set, &live, &ex));
    }
}
