//! Route table tests.

use super::*;

fn addr(i: usize) -> SocketAddr {
    format!("10.0.{}.{}:20880", i / 250, i % 250 + 1).parse().unwrap()
}

fn members(t: &mut RouteTable, req: &Request<'_>) -> Vec<usize> {
    let r = t.route(req);
    t.candidates(r).iter().collect()
}

fn table(ps: Vec<Provider>, rules: &str) -> RouteTable {
    let rs = RuleSet::from_json(rules).unwrap();
    let consumer = ConsumerInfo {
        host: "192.168.0.7".into(),
        params: [("application".to_string(), "web".to_string())].into(),
        ..Default::default()
    };
    RouteTable::build(1, ps, &rs, &consumer, TableOptions::default())
}

#[test]
fn static_tags_follow_dubbo() {
    let ps = vec![
        Provider::new(addr(0)),
        Provider::new(addr(1)).with_tag("gray"),
        Provider::new(addr(2)).with_tag("blue"),
        Provider::new(addr(3)),
    ];
    let mut t = table(ps, "{}");
    assert_eq!(t.len(), 4);
    let req = |tag| Request {
        tag,
        ..Request::new("m")
    };
    assert_eq!(members(&mut t, &req(None)), [0, 3]);
    assert_eq!(members(&mut t, &req(Some(""))), [0, 3]);
    assert_eq!(members(&mut t, &req(Some("gray"))), [1]);
    assert_eq!(
        members(&mut t, &req(Some("red"))),
        [0, 3],
        "unknown tag falls back to untagged"
    );
    let forced = Request {
        force_tag: true,
        ..req(Some("red"))
    };
    assert_eq!(members(&mut t, &forced), Vec::<usize>::new());
    // all tagged: an untagged request gets nothing (Dubbo has no fallback to tagged providers)
    let mut t = table(vec![Provider::new(addr(0)).with_tag("a")], "{}");
    assert_eq!(members(&mut t, &req(None)), Vec::<usize>::new());
}

#[test]
fn dynamic_tag_rule_follows_dubbo() {
    let ps = vec![
        Provider::new(addr(0)),
        Provider::new(addr(1)),
        Provider::new(addr(2)).with_tag("blue"),
        Provider::new(addr(3)).with_tag("gray"),
    ];
    let rule = format!(
        r#"{{"tag":{{"tags":[{{"name":"gray","addresses":["{}"]}},{{"name":"none","addresses":["1.1.1.1"]}},{{"name":"empty"}}]}}}}"#,
        addr(1)
    );
    let mut t = table(ps.clone(), &rule);
    let req = |tag| Request {
        tag,
        ..Request::new("m")
    };
    assert_eq!(
        members(&mut t, &req(Some("gray"))),
        [1],
        "group by address, not the static tag"
    );
    // group matches nothing, rule not forced: static tag "none" -> nobody -> failover (untagged, not in a group)
    assert_eq!(members(&mut t, &req(Some("none"))), [0]);
    assert_eq!(members(&mut t, &req(Some("blue"))), [2], "no group: static tag");
    assert_eq!(
        members(&mut t, &req(Some("empty"))),
        [0],
        "empty group: static tag, then failover"
    );
    // no tag: not in a group, and static tag not one of the rule's names (blue is not a rule name)
    assert_eq!(members(&mut t, &req(None)), [0, 2]);
    let forced = rule.replace(r#""tag":{"#, r#""tag":{"force":true,"#);
    let mut t = table(ps, &forced);
    assert_eq!(members(&mut t, &req(Some("none"))), Vec::<usize>::new());
}

#[test]
fn condition_rules_follow_dubbo() {
    let ps: Vec<Provider> = (0..6)
        .map(|i| Provider::new(addr(i)).with_param("version", if i < 3 { "1.0" } else { "2.0" }))
        .collect();
    let rules = r#"{"conditions":[
        {"rule":"method = find* => version = 2.*", "priority": 1},
        {"rule":"method = get => host = 10.0.0.1,10.0.0.2"},
        {"rule":"method = none => host = 9.9.9.9"},
        {"rule":"method = forced => host = 9.9.9.9", "force": true},
        {"rule":"method = black => false"},
        {"rule":"application = other & method = get => false"},
        {"rule":"application = web & arguments[0] = 1~10 => version = 1.0"}
    ]}"#;
    let mut t = table(ps, rules);
    assert_eq!(t.active_rules(), 6, "rule for another application folded away");
    assert_eq!(members(&mut t, &Request::new("findAll")), [3, 4, 5]);
    assert_eq!(members(&mut t, &Request::new("get")), [0, 1]);
    assert_eq!(
        members(&mut t, &Request::new("none")),
        [0, 1, 2, 3, 4, 5],
        "empty, not forced: ignored"
    );
    assert_eq!(members(&mut t, &Request::new("forced")), Vec::<usize>::new());
    assert_eq!(members(&mut t, &Request::new("black")), Vec::<usize>::new());
    let args = ["5"];
    let req = Request {
        arguments: &args,
        ..Request::new("findX")
    };
    // priority 0 rule (arguments) runs first -> {0,1,2}; then find* -> {} -> not forced, ignored
    assert_eq!(members(&mut t, &req), [0, 1, 2]);
    let args = ["50"];
    let req = Request {
        arguments: &args,
        ..Request::new("findX")
    };
    assert_eq!(members(&mut t, &req), [3, 4, 5]);
    let before = t.cached_sets();
    for _ in 0..10 {
        members(&mut t, &Request::new("findAll"));
        members(&mut t, &Request::new("findOther"));
    }
    assert_eq!(t.cached_sets(), before, "repeat requests hit the cache");
}

#[test]
fn caches_start_over_without_changing_results() {
    let ps: Vec<Provider> = (0..40)
        .map(|i| {
            let p = Provider::new(addr(i)).with_param("version", format!("{}.0", i % 4));
            if i % 5 == 0 {
                p.with_tag("gray")
            } else {
                p
            }
        })
        .collect();
    let rules = r#"{"conditions":["method = a* => version = 1.*","method = *b => version != 2.0",
        "arguments[0] = 1 => version = 3.*,1.*"]}"#;
    let mut reference = table(ps.clone(), rules);
    let rs = RuleSet::from_json(rules).unwrap();
    let tiny = TableOptions {
        max_cached_routes: 1,
        ..TableOptions::default()
    };
    let mut t = RouteTable::build(1, ps, &rs, &ConsumerInfo::default(), tiny);
    let long = "a".repeat(300);
    let methods = ["ab", "a", "b", "zz", long.as_str()];
    for round in 0..3 {
        for (k, m) in methods.iter().enumerate() {
            for tag in [None, Some("gray"), Some("nope")] {
                let args = [if (k + round) % 2 == 0 { "1" } else { "2" }];
                let req = Request {
                    tag,
                    arguments: &args,
                    ..Request::new(m)
                };
                assert_eq!(
                    members(&mut t, &req),
                    members(&mut reference, &req),
                    "{m} {tag:?}"
                );
                assert_eq!(t.cached_sets(), 1);
            }
        }
    }
    // 2,000 distinct methods overflow the front map: it starts over and stays correct
    for k in 0..2000 {
        let m = format!("a{k}");
        assert_eq!(
            members(&mut t, &Request::new(&m)),
            members(&mut reference, &Request::new(&m))
        );
    }
}

#[test]
fn changes_keep_indices_and_live_state_where_they_can() {
    use crate::pick::{LiveState, Pick, PickOptions, Policy, XorShift64};
    let ps: Vec<Provider> = (0..4).map(|i| Provider::new(addr(i))).collect();
    let mut t = table(ps, "{}");
    let mut live = LiveState::new(&t);
    let all = |t: &mut RouteTable| members(t, &Request::new("m"));
    assert_eq!(all(&mut t), [0, 1, 2, 3]);
    live.on_send(2, 0);
    // weight and cap only: same index, in-flight kept, new cap in force
    let applied = t.apply(
        2,
        [Change::Upsert(
            Provider::new(addr(2)).with_weight(300).with_max_concurrency(1),
        )],
    );
    assert_eq!(applied, [Applied::Updated(2)]);
    live.apply(&t, &applied);
    assert_eq!((live.inflight(2), live.is_available(2), t.epoch()), (1, false, 2));
    // a tag change moves it out of the untagged route, at the same index
    let applied = t.apply(3, [Change::Upsert(Provider::new(addr(2)).with_tag("gray"))]);
    live.apply(&t, &applied);
    assert_eq!(
        (applied.as_slice(), live.inflight(2)),
        ([Applied::Updated(2)].as_slice(), 1)
    );
    assert_eq!(all(&mut t), [0, 1, 3]);
    // a removed index is never picked; the next provider takes it with fresh state
    let applied = t.apply(4, [Change::Remove(addr(1)), Change::Remove(addr(9))]);
    assert_eq!(applied, [Applied::Removed(1)]);
    live.apply(&t, &applied);
    assert_eq!(
        (t.len(), t.slots(), t.provider(1), t.index_of(addr(1))),
        (3, 4, None, None)
    );
    let mut rng = XorShift64::new(1);
    let opts = PickOptions {
        policy: Policy::WeightedRandom,
        ..Default::default()
    };
    for _ in 0..200 {
        assert!(matches!(
            t.route_and_pick(&Request::new("m"), &live, &mut rng, &opts),
            Pick::Provider(0 | 3)
        ));
    }
    let applied = t.apply(5, [Change::Upsert(Provider::new(addr(8)))]);
    assert_eq!(applied, [Applied::Added(1)], "the free index is reused");
    live.apply(&t, &applied);
    assert_eq!((live.inflight(1), t.index_of(addr(8))), (0, Some(1)));
    assert_eq!(all(&mut t), [0, 1, 3]);
    assert_eq!(
        t.apply(6, [Change::Upsert(Provider::new(addr(8)))]),
        [],
        "no change"
    );
}

/// Dubbo's weight 0 (a provider being drained): no share while any candidate weighs more, equal
/// shares (round robin: in turn) when every candidate weighs 0; also through changes.
#[test]
fn weight_zero_takes_no_share_while_any_candidate_weighs_more() {
    use crate::pick::{LiveState, Pick, PickOptions, Policy, XorShift64};
    let ps: Vec<Provider> = (0..4)
        .map(|i| Provider::new(addr(i)).with_weight(if i == 1 { 0 } else { 100 }))
        .collect();
    let mut t = table(ps, "{}");
    let mut live = LiveState::new(&t);
    let mut rng = XorShift64::new(9);
    let policies = [
        Policy::Adaptive,
        Policy::WeightedRandom,
        Policy::RoundRobin,
        Policy::LeastActive,
        Policy::ShortestResponse,
    ];
    let mut counts = |t: &mut RouteTable, live: &LiveState, policy: Policy, n: usize| {
        let o = PickOptions {
            policy,
            ..Default::default()
        };
        let mut c = vec![0usize; t.slots()];
        for _ in 0..n {
            match t.route_and_pick(&Request::new("m"), live, &mut rng, &o) {
                Pick::Provider(i) => c[i] += 1,
                other => panic!("{policy:?}: {other:?}"),
            }
        }
        c
    };
    assert_eq!(t.len(), 4, "weight 0 stays in the table");
    for p in policies {
        assert_eq!(counts(&mut t, &live, p, 300)[1], 0, "{p:?}");
    }
    // the others busy or down: the drained one is still better than nobody
    live.set_down(0, true);
    live.set_down(2, true);
    live.set_down(3, true);
    for p in policies {
        assert_eq!(counts(&mut t, &live, p, 20)[1], 20, "{p:?}");
    }
    // every candidate at 0: equal shares, round robin in turn
    let applied = t.apply(
        2,
        [0, 2, 3].map(|i| Change::Upsert(Provider::new(addr(i)).with_weight(0))),
    );
    assert_eq!(applied.len(), 3);
    live.apply(&t, &applied);
    for i in 0..4 {
        live.set_down(i, false);
    }
    assert_eq!(counts(&mut t, &live, Policy::RoundRobin, 8), [2, 2, 2, 2]);
    for p in [Policy::WeightedRandom, Policy::Adaptive] {
        let c = counts(&mut t, &live, p, 4000);
        assert!(c.iter().all(|&k| k > 850), "{p:?}: {c:?}");
    }
    // one weighs again: it takes everything
    t.apply(3, [Change::Upsert(Provider::new(addr(2)).with_weight(5))]);
    assert_eq!(counts(&mut t, &live, Policy::WeightedRandom, 100), [0, 0, 100, 0]);
    assert_eq!(counts(&mut t, &live, Policy::RoundRobin, 100), [0, 0, 100, 0]);
}

#[test]
fn compaction_is_due_when_most_indices_are_free() {
    let ps: Vec<Provider> = (0..200).map(|i| Provider::new(addr(i))).collect();
    let mut t = table(ps, r#"{"conditions":["method = a => host != 10.0.0.1"]}"#);
    members(&mut t, &Request::new("a"));
    t.apply(2, (0..60).map(|i| Change::Remove(addr(i))));
    assert!(!t.needs_compaction(), "60 free of 200");
    t.apply(3, (60..80).map(|i| Change::Remove(addr(i))));
    assert!(t.needs_compaction(), "80 free of 200");
    let mut c = t.compacted();
    assert_eq!((c.len(), c.slots(), c.epoch()), (120, 120, 3));
    let addrs = |t: &mut RouteTable| -> Vec<SocketAddr> {
        let r = t.route(&Request::new("a"));
        let mut v: Vec<SocketAddr> = t
            .candidates(r)
            .iter()
            .filter_map(|i| t.provider(i))
            .map(|p| p.addr)
            .collect();
        v.sort();
        v
    };
    assert_eq!(addrs(&mut c), addrs(&mut t));
}

#[test]
fn a_provider_that_joins_a_warm_route_warms_up_there() {
    use crate::pick::{LiveState, Pick, PickOptions, Policy, XorShift64};
    let ps: Vec<Provider> = (0..2).map(|i| Provider::new(addr(i))).collect();
    let mut t = table(ps, "{}");
    let mut live = LiveState::new(&t);
    let mut rng = XorShift64::new(3);
    let share_of_new = |t: &mut RouteTable, live: &LiveState, rng: &mut XorShift64, now_ms: u64| {
        let opts = PickOptions {
            policy: Policy::WeightedRandom,
            now_ns: now_ms * 1_000_000,
            ..Default::default()
        };
        let n = 30_000;
        let hits = (0..n)
            .filter(|_| t.route_and_pick(&Request::new("m"), live, rng, &opts) == Pick::Provider(2))
            .count();
        hits as f64 / n as f64
    };
    assert_eq!(share_of_new(&mut t, &live, &mut rng, 1_000), 0.0);
    let young = Provider::new(addr(2))
        .with_registered_at_ms(0)
        .with_param("warmup", "100000");
    let applied = t.apply(2, [Change::Upsert(young)]);
    live.apply(&t, &applied);
    // 25 s of 100 s: weight 25 against 100 + 100
    let s = share_of_new(&mut t, &live, &mut rng, 25_000);
    assert!((s - 25.0 / 225.0).abs() < 0.015, "{s}");
    let s = share_of_new(&mut t, &live, &mut rng, 200_000);
    assert!((s - 1.0 / 3.0).abs() < 0.015, "{s}");
}

#[test]
fn a_join_costs_its_own_warm_up_weight_not_a_refresh_of_every_warming_member() {
    use crate::pick::{LiveState, PickOptions, Policy, XorShift64};
    let warming = |i: usize| {
        Provider::new(addr(i))
            .with_registered_at_ms(0)
            .with_param("warmup", "100000")
    };
    let mut t = table((0..3).map(warming).collect(), "{}");
    let mut live = LiveState::new(&t);
    let mut rng = XorShift64::new(3);
    let at = |now_ms: u64| PickOptions {
        policy: Policy::WeightedRandom,
        now_ns: now_ms * 1_000_000,
        ..Default::default()
    };
    t.route_and_pick(&Request::new("m"), &live, &mut rng, &at(10_000));
    let set = |t: &RouteTable| t.sets.iter().find(|s| !s.members.is_empty()).unwrap().clone();
    assert_eq!(set(&t).weights, [10, 10, 10]);
    assert_eq!(set(&t).next_refresh_ms, 11_000);
    // A provider joins 500 ms later (the clock is the latest pick's): its weight is computed for the
    // clock at once; the others keep theirs and the refresh stays where it was.
    let young = Provider::new(addr(3))
        .with_registered_at_ms(5_000)
        .with_param("warmup", "100000");
    let applied = t.apply(2, [Change::Upsert(young)]);
    live.apply(&t, &applied);
    let s = set(&t);
    assert_eq!(s.weights, [10, 10, 10, 5]);
    assert_eq!(s.next_refresh_ms, 11_000);
    // The periodic refresh brings everyone to the pick's time.
    t.route_and_pick(&Request::new("m"), &live, &mut rng, &at(20_000));
    assert_eq!(set(&t).weights, [20, 20, 20, 15]);
    assert_eq!(set(&t).next_refresh_ms, 21_000);
}

#[test]
fn round_robin_keeps_the_weights_through_changes() {
    use crate::pick::{LiveState, Pick, PickOptions, Policy, XorShift64};
    for group_threshold in [2, 64] {
        let ps: Vec<Provider> = (0..12)
            .map(|i| Provider::new(addr(i)).with_weight(1 + i as u32 % 3))
            .collect();
        let rs = RuleSet::default();
        let opts = TableOptions {
            group_threshold,
            ..TableOptions::default()
        };
        let mut t = RouteTable::build(1, ps, &rs, &ConsumerInfo::default(), opts);
        let mut live = LiveState::new(&t);
        let mut rng = XorShift64::new(1);
        let o = PickOptions {
            policy: Policy::RoundRobin,
            ..Default::default()
        };
        let mut count = |t: &mut RouteTable, live: &LiveState, picks: usize| {
            let mut c = vec![0usize; t.slots()];
            for _ in 0..picks {
                match t.route_and_pick(&Request::new("m"), live, &mut rng, &o) {
                    Pick::Provider(i) => c[i] += 1,
                    other => panic!("{other:?}"),
                }
            }
            c
        };
        count(&mut t, &live, 50);
        let applied = t.apply(
            2,
            [
                Change::Remove(addr(3)),
                Change::Upsert(Provider::new(addr(20)).with_weight(5)),
                Change::Upsert(Provider::new(addr(21)).with_weight(1)),
                Change::Upsert(Provider::new(addr(0)).with_weight(4)),
                Change::Remove(addr(7)),
            ],
        );
        live.apply(&t, &applied);
        let total: usize = t.providers().map(|(_, p)| p.weight as usize).sum();
        let cycles = 20;
        let c = count(&mut t, &live, total * cycles);
        for (i, p) in t.providers() {
            let want = p.weight as usize * cycles;
            assert!(
                c[i].abs_diff(want) <= 2,
                "threshold {group_threshold}: {i} got {} want {want}: {c:?}",
                c[i]
            );
        }
    }
}

#[test]
fn references_resolve_against_the_consumer() {
    let ps = vec![
        Provider::new("192.168.0.7:1".parse().unwrap()),
        Provider::new("192.168.0.8:1".parse().unwrap()),
    ];
    let mut t = table(ps, r#"{"conditions":["=> host = $host"]}"#);
    assert_eq!(members(&mut t, &Request::new("x")), [0]);
}
