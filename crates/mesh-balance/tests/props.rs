//! Property tests: routes equal a naive per-provider model of Dubbo's routers; picks are routed, available
//! candidates; weights give their shares; P2C starves nobody; the rule parser never panics and round-trips
//! its Display form; bitset operations equal a `Vec<bool>` model.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns

use std::net::SocketAddr;

use mesh_balance::bitset::{BitSet, RankIndex};
use mesh_balance::rule::{ConditionRule, Key};
use mesh_balance::{
    ConsumerInfo, LiveState, Pick, PickOptions, Policy, Provider, Request, RouteTable, RuleSet, TableOptions,
    XorShift64,
};
use proptest::prelude::*;

const TAGS: [&str; 3] = ["gray", "blue", "red"];
const RULE_POOL: [&str; 8] = [
    "method = find* => version = 2.*",
    "method = get,set => zone != z0",
    "method = find* & arguments[0] = 0~50 => zone = z1,z2",
    "=> host != 10.0.0.3",
    "method = del* => false",
    "method = get => version = 9.*",
    "application = app & method = *User => group = g0",
    "arguments[0] = 10~ => host = 10.0.0.1*",
];
const METHODS: [&str; 6] = ["findUser", "get", "set", "delete", "ping", "getUser"];

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250 + 1) as u8], 20880))
}

#[derive(Debug, Clone)]
struct Setup {
    providers: Vec<Provider>,
    rules: Vec<(usize, bool, i32)>,
}

fn setup(max: usize) -> impl Strategy<Value = Setup> {
    let provider = (
        1u32..5,
        0usize..5,
        0usize..3,
        0usize..4,
        0usize..3,
        prop::option::of(1u32..4),
    );
    (
        prop::collection::vec(provider, 1..max),
        prop::collection::vec((0..RULE_POOL.len(), any::<bool>(), -1i32..2), 0..5),
    )
        .prop_map(|(ps, rules)| Setup {
            providers: ps
                .into_iter()
                .enumerate()
                .map(|(i, (w, tag, version, zone, group, cap))| {
                    let mut p = Provider::new(addr(i))
                        .with_weight(w * 100)
                        .with_param("version", ["1.0", "2.0", "2.5"][version])
                        .with_param("zone", format!("z{zone}"))
                        .with_param("group", format!("g{group}"));
                    p.max_concurrency = cap;
                    if tag < TAGS.len() {
                        p = p.with_tag(TAGS[tag]);
                    }
                    p
                })
                .collect(),
            rules,
        })
}

fn rule_set(s: &Setup) -> RuleSet {
    let conds: Vec<String> = s
        .rules
        .iter()
        .map(|&(r, force, prio)| {
            format!(
                r#"{{"rule":"{}","force":{force},"priority":{prio}}}"#,
                RULE_POOL[r]
            )
        })
        .collect();
    RuleSet::from_json(&format!(r#"{{"conditions":[{}]}}"#, conds.join(","))).unwrap()
}

fn consumer() -> ConsumerInfo {
    ConsumerInfo {
        host: "10.9.9.9".into(),
        params: [("application".to_string(), "app".to_string())].into(),
        ..Default::default()
    }
}

/// Dubbo's routers applied per provider, per call (static tags only).
fn model_route(ps: &[Provider], rules: &RuleSet, req: &Request<'_>) -> Vec<usize> {
    let untagged: Vec<usize> = (0..ps.len()).filter(|&i| ps[i].tag.is_none()).collect();
    let mut cur = match req.tag {
        Some(t) => {
            let tagged: Vec<usize> = (0..ps.len())
                .filter(|&i| ps[i].tag.as_deref() == Some(t))
                .collect();
            if tagged.is_empty() && !req.force_tag {
                untagged
            } else {
                tagged
            }
        }
        None => untagged,
    };
    let consumer = consumer();
    for c in &rules.conditions {
        let applies = c.rule.when.iter().all(|cond| {
            let v = match &cond.key {
                Key::Method => Some(req.method.to_string()),
                Key::Argument(i) => req.arguments.get(*i).map(|s| s.to_string()),
                Key::Host => Some(consumer.host.clone()),
                Key::Param(k) => consumer.params.get(k).cloned(),
                _ => None,
            };
            cond.test(v.as_deref())
        });
        if !applies {
            continue;
        }
        let Some(then) = &c.rule.then else {
            cur.clear();
            continue;
        };
        let next: Vec<usize> = cur
            .iter()
            .copied()
            .filter(|&i| {
                then.iter().all(|cond| {
                    let v = match &cond.key {
                        Key::Host => Some(ps[i].addr.ip().to_string()),
                        Key::Param(k) => ps[i].params.get(k).cloned(),
                        _ => None,
                    };
                    cond.test(v.as_deref())
                })
            })
            .collect();
        if !next.is_empty() || c.force {
            cur = next;
        }
    }
    cur
}

const POLICIES: [Policy; 6] = [
    Policy::Adaptive,
    Policy::WeightedRandom,
    Policy::RoundRobin,
    Policy::LeastActive,
    Policy::ShortestResponse,
    Policy::ConsistentHash,
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn routes_match_the_model_and_picks_are_available_candidates(
        s in setup(150),
        reqs in prop::collection::vec((0..METHODS.len(), 0usize..5, any::<bool>(), 0u32..100), 1..12),
        load in prop::collection::vec((0u32..4, any::<bool>()), 150),
        group_threshold in prop::sample::select(vec![4usize, 64]),
        seed in any::<u64>(),
    ) {
        let rules = rule_set(&s);
        let opts = TableOptions { group_threshold, group_size: 3, ..TableOptions::default() };
        let mut t = RouteTable::build(1, s.providers.clone(), &rules, &consumer(), opts);
        let mut live = LiveState::new(&t);
        for (i, &(inflight, down)) in load.iter().enumerate().take(t.len()) {
            for _ in 0..inflight {
                live.on_send(i, 0);
            }
            live.set_down(i, down && i % 3 == 0);
        }
        let mut rng = XorShift64::new(seed);
        for (m, tag, force_tag, arg) in reqs {
            let arg = arg.to_string();
            let args = [arg.as_str()];
            let req = Request {
                tag: [Some("gray"), Some("blue"), Some("green"), None, Some("")][tag].filter(|t| !t.is_empty()),
                force_tag,
                arguments: &args,
                ..Request::new(METHODS[m])
            };
            let route = t.route(&req);
            let got: Vec<usize> = t.candidates(route).iter().collect();
            prop_assert_eq!(&got, &model_route(&s.providers, &rules, &req));
            let exclude = [seed as usize % t.len()];
            for policy in POLICIES {
                let o = PickOptions { policy, now_ns: 5_000_000, hash_key: Some(arg.as_bytes()), exclude: &exclude };
                let route = t.route(&req);
                match t.pick(route, &live, &mut rng, &o) {
                    Pick::Provider(i) => {
                        prop_assert!(got.contains(&i), "{:?} picked {} outside {:?}", policy, i, got);
                        prop_assert!(live.is_available(i) && i != exclude[0], "{:?} picked busy {}", policy, i);
                    }
                    Pick::AllBusy => prop_assert!(
                        !got.is_empty() && got.iter().all(|&i| !live.is_available(i) || i == exclude[0]),
                        "{:?} said all busy", policy
                    ),
                    Pick::NoProvider => prop_assert!(got.is_empty()),
                }
            }
        }
    }

    #[test]
    fn weighted_random_gives_the_shares(weights in prop::collection::vec(1u32..10, 2..8), seed in any::<u64>()) {
        let ps: Vec<Provider> = weights.iter().enumerate().map(|(i, &w)| Provider::new(addr(i)).with_weight(w)).collect();
        let mut t = RouteTable::build(1, ps, &RuleSet::default(), &ConsumerInfo::default(), TableOptions::default());
        let live = LiveState::new(&t);
        let route = t.route(&Request::new("m"));
        let mut rng = XorShift64::new(seed);
        let n = 40_000;
        let mut counts = vec![0usize; weights.len()];
        let o = PickOptions { policy: Policy::WeightedRandom, ..Default::default() };
        for _ in 0..n {
            let Pick::Provider(i) = t.pick(route, &live, &mut rng, &o) else { panic!("no pick") };
            counts[i] += 1;
        }
        let total: u32 = weights.iter().sum();
        for (c, &w) in counts.iter().zip(&weights) {
            let p = f64::from(w) / f64::from(total);
            let sd = (p * (1.0 - p) / n as f64).sqrt();
            let got = *c as f64 / n as f64;
            prop_assert!((got - p).abs() < 5.0 * sd + 0.002, "share {} want {} ({:?})", got, p, counts);
        }
    }

    #[test]
    fn round_robin_is_exact_over_a_cycle(weights in prop::collection::vec(1u32..6, 1..120), grouped in any::<bool>()) {
        let ps: Vec<Provider> = weights.iter().enumerate().map(|(i, &w)| Provider::new(addr(i)).with_weight(w)).collect();
        let opts = TableOptions { group_threshold: if grouped { 2 } else { usize::MAX }, ..TableOptions::default() };
        let mut t = RouteTable::build(1, ps, &RuleSet::default(), &ConsumerInfo::default(), opts);
        let live = LiveState::new(&t);
        let route = t.route(&Request::new("m"));
        let mut rng = XorShift64::new(1);
        let total: u32 = weights.iter().sum();
        let mut counts = vec![0u32; weights.len()];
        let o = PickOptions { policy: Policy::RoundRobin, ..Default::default() };
        for _ in 0..total {
            let Pick::Provider(i) = t.pick(route, &live, &mut rng, &o) else { panic!("no pick") };
            counts[i] += 1;
        }
        prop_assert_eq!(counts, weights);
    }

    #[test]
    fn p2c_starves_nobody_under_equal_load(n in 2usize..60, seed in any::<u64>()) {
        let ps: Vec<Provider> = (0..n).map(|i| Provider::new(addr(i))).collect();
        let mut t = RouteTable::build(1, ps, &RuleSet::default(), &ConsumerInfo::default(), TableOptions::default());
        let mut live = LiveState::new(&t);
        for i in 0..n {
            live.on_send(i, 0);
            live.on_answer(i, 0, 1_000_000, true);
        }
        let route = t.route(&Request::new("m"));
        let mut rng = XorShift64::new(seed);
        let picks = 200 * n;
        let mut counts = vec![0usize; n];
        let o = PickOptions { policy: Policy::Adaptive, ..Default::default() };
        for _ in 0..picks {
            let Pick::Provider(i) = t.pick(route, &live, &mut rng, &o) else { panic!("no pick") };
            counts[i] += 1;
        }
        prop_assert!(counts.iter().all(|&c| c >= 100), "{:?}", counts);
    }

    #[test]
    fn adaptive_with_answers_keeps_everyone_busy(n in 2usize..30, seed in any::<u64>()) {
        // Calls complete after a latency that depends on the provider; every provider keeps getting calls.
        let ps: Vec<Provider> = (0..n).map(|i| Provider::new(addr(i)).with_max_concurrency(4)).collect();
        let mut t = RouteTable::build(1, ps, &RuleSet::default(), &ConsumerInfo::default(), TableOptions::default());
        let mut live = LiveState::new(&t);
        let route = t.route(&Request::new("m"));
        let mut rng = XorShift64::new(seed);
        let mut counts = vec![0usize; n];
        let mut pending: Vec<(u64, usize)> = Vec::new();
        let mut now = 0u64;
        for _ in 0..100 * n {
            now += 100_000;
            pending.retain(|&(done, i)| {
                if done <= now {
                    live.on_answer(i, now, 1_000_000 * (1 + i as u64 % 3), true);
                    false
                } else {
                    true
                }
            });
            let o = PickOptions { policy: Policy::Adaptive, now_ns: now, ..Default::default() };
            if let Pick::Provider(i) = t.pick(route, &live, &mut rng, &o) {
                prop_assert!(live.inflight(i) < 4);
                live.on_send(i, now);
                pending.push((now + 1_000_000 * (1 + i as u64 % 3), i));
                counts[i] += 1;
            }
        }
        prop_assert!(counts.iter().all(|&c| c > 0), "{:?}", counts);
    }

    #[test]
    fn parser_never_panics_and_round_trips(s in "[ a-z0-9=!&,>*$~.\\[\\]_-]{0,40}") {
        if let Ok(r) = ConditionRule::parse(&s) {
            let shown = r.to_string();
            prop_assert_eq!(ConditionRule::parse(&shown), Ok(r), "via {:?}", shown);
        }
    }

    #[test]
    fn structured_rules_round_trip(
        when in prop::collection::vec((0usize..5, any::<bool>(), prop::collection::vec(0usize..7, 1..3)), 0..3),
        then in prop::option::of(prop::collection::vec((0usize..3, any::<bool>(), prop::collection::vec(0usize..7, 1..3)), 1..3)),
    ) {
        const WK: [&str; 5] = ["method", "arguments[1]", "attachments[zone]", "consumer.application", "host"];
        const TK: [&str; 3] = ["host", "provider.version", "port"];
        const V: [&str; 7] = ["a", "b*", "*c", "d*e", "1~5", "$host", "*"];
        let part = |cs: &[(usize, bool, Vec<usize>)], keys: &[&str]| -> String {
            cs.iter()
                .map(|(k, ne, vs)| {
                    let vals: Vec<&str> = vs.iter().map(|&v| V[v]).collect();
                    format!("{} {} {}", keys[*k], if *ne { "!=" } else { "=" }, vals.join(","))
                })
                .collect::<Vec<_>>()
                .join(" & ")
        };
        let text = format!("{} => {}", part(&when, &WK), then.as_ref().map_or("false".to_string(), |t| part(t, &TK)));
        let r = ConditionRule::parse(&text);
        prop_assert!(r.is_ok(), "{} -> {:?}", text, r);
        let r = r.unwrap();
        prop_assert_eq!(ConditionRule::parse(&r.to_string()), Ok(r));
    }

    #[test]
    fn bitset_matches_a_vec_bool_model(
        len in 0usize..300,
        a in prop::collection::vec(any::<bool>(), 300),
        b in prop::collection::vec(any::<bool>(), 300),
        k in 0usize..300,
    ) {
        let ma: Vec<bool> = a[..len].to_vec();
        let mb: Vec<bool> = b[..len].to_vec();
        let sa = BitSet::from_fn(len, |i| ma[i]);
        let sb = BitSet::from_fn(len, |i| mb[i]);
        let model = |f: &dyn Fn(bool, bool) -> bool| -> Vec<usize> { (0..len).filter(|&i| f(ma[i], mb[i])).collect() };
        prop_assert_eq!(sa.iter().collect::<Vec<_>>(), model(&|x, _| x));
        prop_assert_eq!(sa.and(&sb).iter().collect::<Vec<_>>(), model(&|x, y| x && y));
        let mut o = sa.clone();
        o.or_with(&sb);
        prop_assert_eq!(o.iter().collect::<Vec<_>>(), model(&|x, y| x || y));
        let mut d = sa.clone();
        d.and_not_with(&sb);
        prop_assert_eq!(d.iter().collect::<Vec<_>>(), model(&|x, y| x && !y));
        prop_assert_eq!(sa.not().iter().collect::<Vec<_>>(), model(&|x, _| !x));
        prop_assert_eq!(sa.count(), ma.iter().filter(|&&x| x).count());
        prop_assert_eq!(sa.intersects(&sb), (0..len).any(|i| ma[i] && mb[i]));
        prop_assert_eq!(sa.none(), !ma.contains(&true));
        prop_assert_eq!(sa.rank(k), ma.iter().take(k).filter(|&&x| x).count());
        let members = model(&|x, _| x);
        prop_assert_eq!(sa.select(k), members.get(k).copied());
        prop_assert_eq!(RankIndex::new(&sa).select(&sa, k), members.get(k).copied());
        for (i, &x) in ma.iter().enumerate() {
            prop_assert_eq!(sa.contains(i), x);
        }
    }
}
