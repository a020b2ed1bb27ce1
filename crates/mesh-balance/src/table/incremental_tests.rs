//! Changes applied to a table equal a table built over the resulting providers, and both equal the routers
//! computed naively per call (the tag router as the table computed it before it was kept incrementally).
use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::pick::{LiveState, Pick, PickOptions, Policy, XorShift64};
use crate::tag::TagRule;

mod tag_model {
    use super::*;
    pub(super) fn untagged(p: &Provider) -> bool {
        p.tag.as_deref().is_none_or(str::is_empty)
    }

    /// Providers in no dynamic group and without a static tag (the tag router's failover set).
    pub(super) fn failover(providers: &[Provider], rule: Option<&TagRule>) -> BitSet {
        BitSet::from_fn(providers.len(), |i| {
            let p = &providers[i];
            untagged(p) && !rule.is_some_and(|r| r.in_any_group(p.addr))
        })
    }

    /// Dubbo's tag router over the whole provider list (see the `tag` module docs).
    pub(super) fn tag_result(
        providers: &[Provider],
        rule: Option<&TagRule>,
        tag: Option<&str>,
        force_tag: bool,
    ) -> BitSet {
        let n = providers.len();
        let static_tag = |t: &str| BitSet::from_fn(n, |i| providers[i].tag.as_deref() == Some(t));
        let Some(rule) = rule else {
            return match tag {
                Some(t) => {
                    let r = static_tag(t);
                    if r.none() && !force_tag {
                        BitSet::from_fn(n, |i| untagged(&providers[i]))
                    } else {
                        r
                    }
                }
                None => BitSet::from_fn(n, |i| untagged(&providers[i])),
            };
        };
        match tag {
            Some(t) => {
                let r = match rule.group(t) {
                    Some(addrs) if !addrs.is_empty() => {
                        let r = BitSet::from_fn(n, |i| addrs.iter().any(|a| a.matches(providers[i].addr)));
                        if !r.none() || rule.force {
                            return r;
                        }
                        r
                    }
                    _ => static_tag(t),
                };
                if !r.none() || force_tag {
                    r
                } else {
                    failover(providers, Some(rule))
                }
            }
            None => {
                let any_addresses = rule.groups.iter().any(|(_, a)| !a.is_empty());
                let r = if any_addresses {
                    let r = BitSet::from_fn(n, |i| !rule.in_any_group(providers[i].addr));
                    if r.none() {
                        return r;
                    }
                    r
                } else {
                    BitSet::full(n)
                };
                let keep = BitSet::from_fn(n, |i| {
                    let p = &providers[i];
                    untagged(p)
                        || !rule
                            .groups
                            .iter()
                            .any(|(name, _)| Some(name.as_str()) == p.tag.as_deref())
                });
                r.and(&keep)
            }
        }
    }
}

const RULES: [&str; 7] = [
    "method = find* => version = 2.*",
    "method = get => zone != z0",
    "method = find* & arguments[0] = 0~50 => zone = z1,z2",
    "=> host != 10.0.0.3",
    "method = del* => false",
    "method = get => version = 9.*",
    "application = app & method = *User => zone = z3",
];
const METHODS: [&str; 5] = ["findUser", "get", "delete", "ping", "getUser"];
const TAGS: [Option<&str>; 5] = [Some("gray"), Some("blue"), Some("red"), Some("green"), None];

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, (i + 1) as u8], 20880))
}

fn provider(i: usize, (w, tag, version, zone, cap): (u32, usize, usize, usize, Option<u32>)) -> Provider {
    let mut p = Provider::new(addr(i))
        .with_weight(w)
        .with_param("version", ["1.0", "2.0", "2.5"][version])
        .with_param("zone", format!("z{zone}"));
    p.max_concurrency = cap;
    if let Some(t) = TAGS[tag] {
        p = p.with_tag(t);
    }
    p
}

fn consumer() -> ConsumerInfo {
    ConsumerInfo {
        host: "10.9.9.9".into(),
        params: [("application".to_string(), "app".to_string())].into(),
        ..Default::default()
    }
}

fn rule_set(rules: &[(usize, bool)], tag_rule: u8) -> RuleSet {
    let conds: Vec<String> = rules
        .iter()
        .map(|&(r, force)| format!(r#"{{"rule":"{}","force":{force}}}"#, RULES[r]))
        .collect();
    let tag = match tag_rule {
        0 => String::new(),
        k => format!(
            r#""tag":{{"force":{},"tags":[{{"name":"gray","addresses":["10.0.0.1-6"]}},{{"name":"blue"}},{{"name":"green","addresses":["10.0.0.40"]}}]}},"#,
            k == 2
        ),
    };
    RuleSet::from_json(&format!(r#"{{{tag}"conditions":[{}]}}"#, conds.join(","))).unwrap()
}

/// The routers per call over `ps`, as addresses.
fn model(ps: &[Provider], rules: &RuleSet, req: &Request<'_>) -> BTreeSet<SocketAddr> {
    let c = consumer();
    let tag = req.tag.filter(|t| !t.is_empty());
    let mut cur = tag_model::tag_result(ps, rules.tag.as_ref(), tag, req.force_tag);
    let lookup = |k: &str| c.lookup(k);
    for rule in &rules.conditions {
        let applies = rule.rule.when.iter().all(|cond| {
            let cond = cond.resolve(&lookup);
            if cond.key.is_request_side() {
                cond.test(req.value(&cond.key))
            } else {
                cond.test(c.value(&cond.key).as_deref())
            }
        });
        if !applies {
            continue;
        }
        let Some(then) = &rule.rule.then else {
            cur = BitSet::new(ps.len());
            continue;
        };
        let keep = BitSet::from_fn(ps.len(), |i| {
            then.iter()
                .all(|x| x.test(provider_value(&ps[i], &x.key).as_deref()))
        });
        let next = cur.and(&keep);
        if !next.none() || rule.force {
            cur = next;
        }
    }
    cur.iter().map(|i| ps[i].addr).collect()
}

fn requests() -> Vec<(usize, usize, bool, &'static str)> {
    let mut v = Vec::new();
    for m in 0..METHODS.len() {
        for t in 0..TAGS.len() {
            for force in [false, true] {
                v.push((m, t, force, if (m + t) % 2 == 0 { "7" } else { "70" }));
            }
        }
    }
    v
}

fn routed(t: &mut RouteTable, req: &Request<'_>) -> BTreeSet<SocketAddr> {
    let r = t.route(req);
    t.candidates(r)
        .iter()
        .map(|i| t.provider(i).expect("a candidate is a provider").addr)
        .collect()
}

type Attrs = (u32, usize, usize, usize, Option<u32>);

fn attrs() -> impl Strategy<Value = Attrs> {
    (
        0u32..4,
        0usize..5,
        0usize..3,
        0usize..4,
        prop::option::of(1u32..4),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn changes_equal_a_rebuild_and_the_model(
        initial in prop::collection::vec((0usize..150, attrs()), 0..120),
        ops in prop::collection::vec((0u8..4, 0usize..150, attrs(), 1usize..6), 1..50),
        rules in prop::collection::vec((0..RULES.len(), any::<bool>()), 0..5),
        tag_rule in 0u8..3,
        group_threshold in prop::sample::select(vec![3usize, 64]),
        seed in any::<u64>(),
    ) {
        let rules = rule_set(&rules, tag_rule);
        let opts = TableOptions { group_threshold, group_size: 2, hash_replicas: 8, ..TableOptions::default() };
        let mut ps: Vec<Provider> = Vec::new();
        let upsert = |ps: &mut Vec<Provider>, p: Provider| match ps.iter().position(|q| q.addr == p.addr) {
            Some(k) => ps[k] = p,
            None => ps.push(p),
        };
        for (i, a) in initial {
            upsert(&mut ps, provider(i, a));
        }
        let mut t = RouteTable::build(1, ps.clone(), &rules, &consumer(), opts);
        let mut live = LiveState::new(&t);
        let reqs = requests();
        let mut rng = XorShift64::new(seed);
        let mut batch = Vec::new();
        let last = ops.len() - 1;
        for (step, (kind, i, a, batch_len)) in ops.into_iter().enumerate() {
            let change = match kind {
                0 => Change::Remove(addr(i)),
                3 => match ps.iter().find(|p| p.addr == addr(i)) {
                    // weight or cap only
                    Some(p) => Change::Upsert(Provider { max_concurrency: a.4, ..p.clone().with_weight(a.0) }),
                    None => Change::Upsert(provider(i, a)),
                },
                _ => Change::Upsert(provider(i, a)),
            };
            match &change {
                Change::Remove(x) => ps.retain(|p| p.addr != *x),
                Change::Upsert(p) => upsert(&mut ps, p.clone()),
            }
            batch.push(change);
            if batch.len() < batch_len && step < last {
                continue;
            }
            let applied = t.apply(step as u64 + 2, batch.drain(..));
            live.apply(&t, &applied);
            prop_assert_eq!(live.len(), t.slots());
            prop_assert_eq!(t.len(), ps.len());
            let mut fresh = RouteTable::build(0, ps.clone(), &rules, &consumer(), opts);
            let fresh_live = LiveState::new(&fresh);
            for &(m, tg, force_tag, arg) in &reqs {
                let args = [arg];
                let req = Request { tag: TAGS[tg], force_tag, arguments: &args, ..Request::new(METHODS[m]) };
                let got = routed(&mut t, &req);
                prop_assert_eq!(&got, &routed(&mut fresh, &req), "{:?} vs rebuild", req);
                prop_assert_eq!(&got, &model(&ps, &rules, &req), "{:?} vs model", req);
                for policy in [Policy::Adaptive, Policy::WeightedRandom, Policy::RoundRobin,
                               Policy::LeastActive, Policy::ShortestResponse, Policy::ConsistentHash] {
                    let o = PickOptions { policy, now_ns: 1, hash_key: Some(arg.as_bytes()), exclude: &[] };
                    let r = t.route(&req);
                    match t.pick(r, &live, &mut rng, &o) {
                        Pick::Provider(i) => {
                            let a = t.provider(i).map(|p| p.addr);
                            prop_assert!(a.is_some_and(|a| got.contains(&a)), "{:?} picked {:?}", policy, a);
                            if policy == Policy::ConsistentHash {
                                let fr = fresh.route(&req);
                                let same = match fresh.pick(fr, &fresh_live, &mut rng, &o) {
                                    Pick::Provider(j) => fresh.provider(j).map(|p| p.addr),
                                    _ => None,
                                };
                                prop_assert_eq!(a, same, "hash ring differs from a rebuilt one");
                            }
                        }
                        other => prop_assert!(got.is_empty(), "{:?}: {:?} with candidates", policy, other),
                    }
                }
            }
            for s in &t.sets {
                s.check(&t);
            }
        }
        let c = t.compacted();
        prop_assert_eq!(c.slots(), ps.len());
        prop_assert_eq!(c.len(), t.len());
    }
}
