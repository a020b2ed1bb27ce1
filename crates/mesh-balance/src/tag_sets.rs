//! Dubbo's tag router (semantics in the [`tag`](crate::tag) module) kept as a few base bitsets that a
//! provider joins or leaves on its own (untagged, failover, the no-tag result, and per tag name: the static
//! tag and the dynamic group), plus the choice among them per (request tag, force): the router's
//! fallbacks only depend on which base sets are empty. Adding or removing a provider costs
//! O(tag names + group patterns), not O(providers).

use crate::bitset::BitSet;
use crate::hash::FxMap;
use crate::table::Provider;
use crate::tag::TagRule;

/// Id of the always-empty base set.
pub(crate) const EMPTY: u32 = 0;
const UNTAGGED: u32 = 1;
const FAILOVER: u32 = 2;
const NO_TAG: u32 = 3;
const FIRST_CLASS: u32 = 4;

/// The request's tag as the router sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TagClass {
    /// A tag some provider or the rule names.
    Named(u32),
    /// No tag.
    None,
    /// A tag nobody names.
    Unknown,
}

/// The base sets of one table and the tag names they are kept for.
#[derive(Debug, Clone)]
pub(crate) struct TagSets {
    rule: Option<TagRule>,
    /// The rule names addresses for some group.
    any_addresses: bool,
    classes: FxMap<Box<str>, u32>,
    /// Per class: its group's address patterns are non-empty (Dubbo then routes by address, not tag).
    by_address: Vec<bool>,
    bases: Vec<BitSet>,
    counts: Vec<usize>,
}

impl TagSets {
    /// Empty sets over `0..universe` for `rule`; the rule's tag names are classes from the start.
    pub(crate) fn new(rule: Option<TagRule>, universe: usize) -> Self {
        let any_addresses = rule
            .as_ref()
            .is_some_and(|r| r.groups.iter().any(|(_, a)| !a.is_empty()));
        let mut s = TagSets {
            rule: None,
            any_addresses,
            classes: FxMap::default(),
            by_address: Vec::new(),
            bases: vec![BitSet::new(universe); FIRST_CLASS as usize],
            counts: vec![0; FIRST_CLASS as usize],
        };
        if let Some(r) = &rule {
            for (name, addrs) in &r.groups {
                let c = s.class_or_add(name);
                s.by_address[c as usize] = !addrs.is_empty();
            }
        }
        s.rule = rule;
        s
    }

    /// The class of a non-empty tag name, added when new (the caller must clear whatever cached the old
    /// answer, [`TagClass::Unknown`], for it).
    fn class_or_add(&mut self, name: &str) -> u32 {
        if let Some(&c) = self.classes.get(name) {
            return c;
        }
        let c = self.by_address.len() as u32;
        self.classes.insert(name.into(), c);
        self.by_address.push(false);
        let universe = self.bases[0].universe();
        self.bases.push(BitSet::new(universe));
        self.bases.push(BitSet::new(universe));
        self.counts.extend([0, 0]);
        c
    }

    /// Number of tag names known.
    fn names(&self) -> usize {
        self.by_address.len()
    }

    /// The class of a request tag.
    pub(crate) fn class(&self, tag: Option<&str>) -> TagClass {
        match tag {
            None => TagClass::None,
            Some(t) => self
                .classes
                .get(t)
                .map_or(TagClass::Unknown, |&c| TagClass::Named(c)),
        }
    }

    /// Widens every base set to `0..universe`.
    pub(crate) fn grow(&mut self, universe: usize) {
        for b in &mut self.bases {
            b.grow(universe);
        }
    }

    /// The base sets provider `p` belongs to, adding its tag's class when new.
    fn memberships(&mut self, p: &Provider, out: &mut Vec<u32>) {
        out.clear();
        let untagged = p.tag.as_deref().is_none_or(str::is_empty);
        let in_group = self.rule.as_ref().is_some_and(|r| r.in_any_group(p.addr));
        if untagged {
            out.push(UNTAGGED);
        }
        if untagged && !in_group {
            out.push(FAILOVER);
        }
        let no_tag = match &self.rule {
            None => untagged,
            Some(r) => {
                (!self.any_addresses || !in_group)
                    && (untagged || !r.groups.iter().any(|(n, _)| Some(n.as_str()) == p.tag.as_deref()))
            }
        };
        if no_tag {
            out.push(NO_TAG);
        }
        if let Some(t) = p.tag.as_deref().filter(|t| !t.is_empty()) {
            let c = self.class_or_add(t);
            out.push(FIRST_CLASS + 2 * c);
        }
        let mut groups: Vec<u32> = Vec::new();
        if let Some(r) = &self.rule {
            for (name, addrs) in &r.groups {
                if addrs.iter().any(|a| a.matches(p.addr)) {
                    if let Some(&c) = self.classes.get(name.as_str()) {
                        groups.push(FIRST_CLASS + 2 * c + 1);
                    }
                }
            }
        }
        out.extend(groups);
    }

    /// Adds provider `p` at index `idx`. True when a request tag's choice may have changed (a tag name is
    /// new, or a tag's or group's set stopped being empty).
    pub(crate) fn add(&mut self, idx: usize, p: &Provider) -> bool {
        let names = self.names();
        let mut m = Vec::new();
        self.memberships(p, &mut m);
        let mut moved = self.names() != names;
        for b in m {
            self.bases[b as usize].insert(idx);
            self.counts[b as usize] += 1;
            moved |= b >= FIRST_CLASS && self.counts[b as usize] == 1;
        }
        moved
    }

    /// Removes provider `p` (as it was added) from index `idx`. True when a request tag's choice may have
    /// changed (a tag's or group's set became empty).
    pub(crate) fn remove(&mut self, idx: usize, p: &Provider) -> bool {
        let mut m = Vec::new();
        self.memberships(p, &mut m);
        let mut moved = false;
        for b in m {
            if self.bases[b as usize].contains(idx) {
                self.bases[b as usize].remove(idx);
                self.counts[b as usize] -= 1;
                moved |= b >= FIRST_CLASS && self.counts[b as usize] == 0;
            }
        }
        moved
    }

    /// The base set a request of `class` starts from (Dubbo's tag router, fallbacks included).
    pub(crate) fn choice(&self, class: TagClass, force_tag: bool) -> u32 {
        let nonempty = |b: u32| self.counts[b as usize] > 0;
        let fallback = if self.rule.is_some() { FAILOVER } else { UNTAGGED };
        match class {
            TagClass::None => NO_TAG,
            TagClass::Unknown if force_tag => EMPTY,
            TagClass::Unknown => fallback,
            TagClass::Named(c) => {
                let stat = FIRST_CLASS + 2 * c;
                let group = stat + 1;
                let rule_force = self.rule.as_ref().is_some_and(|r| r.force);
                if self.by_address[c as usize] {
                    if nonempty(group) || rule_force || force_tag {
                        group
                    } else {
                        fallback
                    }
                } else if nonempty(stat) || force_tag {
                    stat
                } else {
                    fallback
                }
            }
        }
    }

    /// The members of base set `b`.
    pub(crate) fn base(&self, b: u32) -> &BitSet {
        &self.bases[b as usize]
    }
}
