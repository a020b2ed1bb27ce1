//! Tests of the consumer shard's routing.

use super::service_routes::token_of;
use super::*;
use crate::upstream::UpstreamConfig;
use mesh_registry::Endpoint;

const SERVICE: &str = "com.example.Svc";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Three providers of application `shop`: 10.0.0.1 tagged `gray`, 10.0.0.2 and 10.0.0.3 untagged.
fn three_providers(version: u64) -> Snapshot {
    let ep = |a: &str| Endpoint::new(addr(a)).with_param("application", "shop");
    Snapshot::new(
        version,
        [
            (SERVICE.to_string(), ep("10.0.0.1:1").with_tag("gray")),
            (SERVICE.to_string(), ep("10.0.0.2:1")),
            (SERVICE.to_string(), ep("10.0.0.3:1")),
        ],
    )
}

/// [`three_providers`], and `rules` as the service's configured document.
fn routes_and_snapshot(rules: &str) -> (Routes, Arc<Snapshot>) {
    let routes = Routes::new(
        Balancer::Fixed(Policy::RoundRobin),
        HashMap::from([(SERVICE.to_string(), rules.to_string())]),
        ConsumerInfo::default(),
        7,
    );
    (routes, Arc::new(three_providers(1)))
}

/// The providers `call` can be routed to (many picks, each answered at once).
fn picked(routes: &mut Routes, snap: &Arc<Snapshot>, call: &Call<'_>) -> Result<Vec<SocketAddr>, String> {
    let caps = Caps {
        shards: 1,
        headroom: 0.0,
    };
    let pool_of = |a| Rc::new(Pool::new(a, UpstreamConfig::default()));
    let mut seen = Vec::new();
    for _ in 0..8 {
        match routes.pick(snap, call, caps, pool_of) {
            Pick::Chosen(c) => {
                let a = c.pool.addr();
                routes.done(call.service, &c, 1_000, true, caps);
                if !seen.contains(&a) {
                    seen.push(a);
                }
            }
            Pick::NoRoute => return Err("no route".into()),
            _ => return Err("no pick".into()),
        }
    }
    seen.sort();
    Ok(seen)
}

fn call<'r>(tag: Option<&'r str>, force_tag: bool, attachments: &'r [(&'r str, &'r str)]) -> Call<'r> {
    Call {
        service: SERVICE,
        method: "hash",
        tag,
        force_tag,
        args: &["x"],
        attachments,
        exclude: &[],
    }
}

#[test]
fn condition_rules_see_the_call_attachments() {
    let (mut routes, snap) =
        routes_and_snapshot(r#"{"conditions":["attachments[user] = ann => host = 10.0.0.3"]}"#);
    let ann = [("user", "ann")];
    assert_eq!(
        picked(&mut routes, &snap, &call(None, false, &ann)),
        Ok(vec![addr("10.0.0.3:1")])
    );
    let bob = [("user", "bob")];
    assert_eq!(
        picked(&mut routes, &snap, &call(None, false, &bob)),
        Ok(vec![addr("10.0.0.2:1"), addr("10.0.0.3:1")])
    );
}

#[test]
fn a_forced_tag_never_falls_back() {
    let (mut routes, snap) = routes_and_snapshot("{}");
    assert_eq!(
        picked(&mut routes, &snap, &call(Some("gray"), true, &[])),
        Ok(vec![addr("10.0.0.1:1")])
    );
    // An unknown tag falls back to the untagged providers, unless forced.
    assert_eq!(
        picked(&mut routes, &snap, &call(Some("blue"), false, &[])),
        Ok(vec![addr("10.0.0.2:1"), addr("10.0.0.3:1")])
    );
    assert_eq!(
        picked(&mut routes, &snap, &call(Some("blue"), true, &[])),
        Err("no route".into())
    );
}
/// Checks every per-index vector against the table.
fn consistent(r: &ServiceRoutes) {
    let n = r.table.slots();
    assert_eq!((r.pools.len(), r.announced.len(), r.down.len()), (n, n, n));
    for i in 0..n {
        match r.table.provider(i) {
            Some(p) => assert_eq!(r.pools[i].as_ref().map(|p| p.addr()), Some(p.addr)),
            None => assert!(r.pools[i].is_none() && r.down[i].is_none()),
        }
    }
    assert_eq!(r.downs, r.down.iter().filter(|d| d.is_some()).count());
    let mut w: HashMap<u32, usize> = HashMap::new();
    for (_, p) in r.table.providers() {
        *w.entry(p.weight).or_insert(0) += 1;
    }
    assert_eq!(w, r.weights);
}

#[test]
fn changes_apply_in_place_and_keep_per_index_state() {
    let caps = Caps {
        shards: 2,
        headroom: 0.0,
    };
    let consumer = ConsumerInfo::default();
    let with = Inputs {
        balancer: Balancer::Auto,
        consumer: &consumer,
        caps,
        subsetting: Subsetting::new(0, 1),
    };
    let pool_of = |a| Rc::new(Pool::new(a, UpstreamConfig::default()));
    let ep = |i: u8| Endpoint::new(SocketAddr::from(([10, 0, 0, i], 1)));
    let eps: Vec<Endpoint> = (1..=40).map(ep).collect();
    let refs: Vec<&Endpoint> = eps.iter().collect();
    let built = (
        1,
        Built::Exact {
            key: "k".into(),
            epoch: 1,
        },
        0,
        1,
    );
    let mut r = ServiceRoutes::build(
        built,
        Lane::Own,
        (false, false),
        &RuleSet::default(),
        &refs,
        with,
        &pool_of,
        None,
    );
    consistent(&r);
    assert_eq!(r.policy, Policy::Adaptive);
    r.live.on_send(4, 0);
    let now = Instant::now();
    r.down[5] = Some(now);
    r.downs = 1;
    // 10.0.0.6 (index 5, marked down) leaves, 10.0.0.50 joins and takes its index fresh, 10.0.0.5
    // (index 4, one call in flight) registers weight 300 and a cap of 8.
    let token = ep(50).with_param("token", "s3cret");
    r.apply(
        2,
        &[ep(6).addr],
        &[
            Arc::new(token),
            Arc::new(ep(5).with_weight(300).with_max_concurrency(8)),
        ],
        with,
        &pool_of,
    );
    consistent(&r);
    assert_eq!((r.table.epoch(), r.table.len(), r.table.slots()), (2, 40, 40));
    assert_eq!(r.table.index_of(ep(50).addr), Some(5));
    assert_eq!((r.down[5], r.downs), (None, 0), "the new provider is not down");
    assert_eq!(r.tokens[5].as_deref(), Some("s3cret"));
    assert_eq!(
        (r.live.inflight(4), r.announced[4]),
        (1, Some(8)),
        "kept in flight, new cap"
    );
    assert_eq!(r.policy, Policy::RoundRobin, "weights differ now");
    // most leave: the table is compacted, the state follows by address
    let gone: Vec<SocketAddr> = (7..=40).map(|i| ep(i).addr).collect();
    r.apply(3, &gone, &[], with, &pool_of);
    consistent(&r);
    assert_eq!((r.table.len(), r.table.slots()), (6, 6), "compacted");
    let i = r.table.index_of(ep(5).addr).unwrap();
    assert_eq!((r.live.inflight(i), r.announced[i]), (1, Some(8)));
    r.apply(4, &[], &[Arc::new(ep(5))], with, &pool_of);
    consistent(&r);
    assert_eq!(r.policy, Policy::Adaptive);
}

#[test]
fn tables_follow_each_snapshot_change_without_a_rebuild() {
    let caps = Caps {
        shards: 1,
        headroom: 0.0,
    };
    let pool_of = |a| Rc::new(Pool::new(a, UpstreamConfig::default()));
    let ep = |i: u8| Endpoint::new(SocketAddr::from(([10, 0, 0, i], 1)));
    let mut builder = mesh_registry::SnapshotBuilder::new();
    for i in 1..=3 {
        builder.upsert(SERVICE, ep(i));
    }
    builder.upsert("other/Svc:1.0", ep(7));
    let v1 = Arc::new(builder.publish(1).unwrap());
    let mut routes = Routes::new(Balancer::Auto, HashMap::new(), ConsumerInfo::default(), 7);
    let c = call(None, false, &[]);
    let Pick::Chosen(first) = routes.pick(&v1, &c, caps, pool_of) else {
        panic!("no pick")
    };
    let table = |routes: &Routes| {
        let r = &routes.services[SERVICE];
        let addrs: Vec<Option<SocketAddr>> = (0..r.table.slots())
            .map(|i| r.table.provider(i).map(|p| p.addr))
            .collect();
        (r.table.epoch(), addrs)
    };
    // v2: 10.0.0.1 leaves, 10.0.0.9 joins (it takes the free index: no rebuild, which would sort).
    builder.remove(SERVICE, ep(1).addr);
    builder.upsert(SERVICE, ep(9));
    let v2 = Arc::new(builder.publish(2).unwrap());
    routes.advance(&v2, caps, pool_of);
    assert_eq!(
        table(&routes),
        (2, vec![Some(ep(9).addr), Some(ep(2).addr), Some(ep(3).addr)])
    );
    // The call picked before the change is still counted against its provider (by address).
    let r = &routes.services[SERVICE];
    let in_flight = r.table.index_of(first.pool.addr()).map(|i| r.live.inflight(i));
    let want = (first.pool.addr() != ep(1).addr).then_some(1);
    assert_eq!(in_flight, want, "picked {}", first.pool.addr());
    routes.done(SERVICE, &first, 1_000, true, caps);
    // v3 changes another key only: nothing to do here.
    builder.upsert("other/Svc:1.0", ep(8));
    let v3 = Arc::new(builder.publish(3).unwrap());
    routes.advance(&v3, caps, pool_of);
    assert_eq!(table(&routes).0, 2, "still the list of epoch 2");
    // v4 and v5 change the key, the shard sees only v5: the step is missed, the next pick rebuilds.
    builder.upsert(SERVICE, ep(4));
    let _v4 = builder.publish(4).unwrap();
    builder.remove(SERVICE, ep(2).addr);
    let v5 = Arc::new(builder.publish(5).unwrap());
    routes.advance(&v5, caps, pool_of);
    assert_eq!(table(&routes).0, 2, "not applied over a missing step");
    assert!(matches!(routes.pick(&v5, &c, caps, pool_of), Pick::Chosen(_)));
    assert_eq!(
        table(&routes),
        (5, vec![Some(ep(3).addr), Some(ep(4).addr), Some(ep(9).addr)]),
        "rebuilt, in address order"
    );
}

#[test]
fn a_wildcard_request_matching_one_key_follows_its_changes_until_a_second_key_matches() {
    let caps = Caps {
        shards: 1,
        headroom: 0.0,
    };
    let pool_of = |a| Rc::new(Pool::new(a, UpstreamConfig::default()));
    let ep = |i: u8| Endpoint::new(SocketAddr::from(([10, 0, 0, i], 1)));
    let (g1, g2, any) = (
        "g1/com.example.Svc:1.0",
        "g2/com.example.Svc:1.0",
        "*/com.example.Svc:1.0",
    );
    let mut builder = mesh_registry::SnapshotBuilder::new();
    builder.upsert(g1, ep(1));
    builder.upsert(g1, ep(2));
    let v1 = Arc::new(builder.publish(1).unwrap());
    let mut routes = Routes::new(Balancer::Auto, HashMap::new(), ConsumerInfo::default(), 7);
    let c = Call {
        service: any,
        ..call(None, false, &[])
    };
    assert!(matches!(routes.pick(&v1, &c, caps, pool_of), Pick::Chosen(_)));
    let state = |routes: &Routes| {
        let r = &routes.services[any];
        let addrs: Vec<Option<SocketAddr>> = (0..r.table.slots())
            .map(|i| r.table.provider(i).map(|p| p.addr))
            .collect();
        (r.built.clone(), addrs)
    };
    builder.remove(g1, ep(1).addr);
    builder.upsert(g1, ep(9));
    let v2 = Arc::new(builder.publish(2).unwrap());
    routes.advance(&v2, caps, pool_of);
    assert_eq!(
        state(&routes),
        (
            Built::Exact {
                key: g1.into(),
                epoch: 2
            },
            vec![Some(ep(9).addr), Some(ep(2).addr)]
        ),
        "applied in place"
    );
    builder.upsert(g2, ep(5));
    let v3 = Arc::new(builder.publish(3).unwrap());
    routes.advance(&v3, caps, pool_of);
    assert!(matches!(routes.pick(&v3, &c, caps, pool_of), Pick::Chosen(_)));
    assert_eq!(
        state(&routes),
        (
            Built::Merged { version: 3 },
            vec![Some(ep(2).addr), Some(ep(9).addr), Some(ep(5).addr)]
        ),
        "two keys match: merged"
    );
}

/// Random changes of one key, snapshot after snapshot (some skipped, so that tables are also rebuilt):
/// whenever the table is at the key's epoch, its providers and every per-index vector equal the list.
#[test]
fn random_changes_keep_every_per_index_vector_in_step_with_the_snapshot() {
    use mesh_balance::Rng;
    let caps = Caps {
        shards: 1,
        headroom: 0.0,
    };
    let pool_of = |a| Rc::new(Pool::new(a, UpstreamConfig::default()));
    let (mut applied, mut rebuilt) = (0, 0);
    for seed in 1..=12u64 {
        let mut rng = XorShift64::new(seed);
        let endpoint = |rng: &mut XorShift64| {
            let r = rng.next_u64();
            let mut e = Endpoint::new(SocketAddr::from(([10, 0, 0, (r % 60) as u8 + 1], 1)))
                .with_weight((r >> 8) as u32 % 3 * 100);
            if r >> 16 & 1 == 1 {
                e = e.with_max_concurrency((r >> 20) as u32 % 50 + 1);
            }
            if r >> 17 & 1 == 1 {
                e = e.with_param("token", format!("t{}", r >> 30 & 7));
            }
            e
        };
        let mut builder = mesh_registry::SnapshotBuilder::new();
        for _ in 0..30 {
            builder.upsert(SERVICE, endpoint(&mut rng));
        }
        let mut snap = Arc::new(builder.publish(1).unwrap());
        let mut routes = Routes::new(Balancer::Auto, HashMap::new(), ConsumerInfo::default(), seed);
        let c = call(None, false, &[]);
        assert!(matches!(routes.pick(&snap, &c, caps, pool_of), Pick::Chosen(_)));
        for step in 0..80 {
            for _ in 0..rng.next_u64() % 4 + 1 {
                if rng.next_u64().is_multiple_of(3) {
                    let gone = endpoint(&mut rng).addr;
                    builder.remove(SERVICE, gone);
                } else {
                    builder.upsert(SERVICE, endpoint(&mut rng));
                }
            }
            let Some(next) = builder.publish(step + 2) else {
                continue;
            };
            snap = Arc::new(next);
            let before = routes.services.get(SERVICE).map(|r| r.table.slots());
            if step % 9 != 4 {
                routes.advance(&snap, caps, pool_of);
            }
            let Some(listed) = snap.providers(SERVICE) else {
                continue;
            };
            if routes.services[SERVICE].table.epoch() == listed.epoch() {
                applied += 1;
            } else {
                assert!(matches!(routes.pick(&snap, &c, caps, pool_of), Pick::Chosen(_)));
                rebuilt += 1;
            }
            let r = &routes.services[SERVICE];
            assert_eq!(r.table.epoch(), listed.epoch());
            consistent(r);
            let mut want: Vec<_> = listed
                .iter()
                .map(|e| (e.addr, e.weight, token_of(e), e.max_concurrency))
                .collect();
            let mut got: Vec<_> = r
                .table
                .providers()
                .map(|(i, p)| (p.addr, p.weight, r.tokens[i].clone(), r.announced[i]))
                .collect();
            want.sort_by_key(|w| w.0);
            got.sort_by_key(|g| g.0);
            assert_eq!(got, want, "seed {seed} step {step} (slots before: {before:?})");
        }
    }
    assert!(
        applied > 500 && rebuilt > 50,
        "applied {applied}, rebuilt {rebuilt}"
    );
}

/// Rules from Dubbo's config center, carried by the snapshot: they replace the configured document, the
/// consumer's application selects its rule, and a rule change rebuilds the table.
#[test]
fn config_center_rules_route_and_follow_changes() {
    let mut store = mesh_balance::RuleStore::default();
    let put = |store: &mut mesh_balance::RuleStore, key: &str, yaml: &str| {
        let change = store.put(format!("/dubbo/config/dubbo/{key}").as_bytes(), yaml.as_bytes());
        assert!(
            matches!(change, mesh_balance::dubbo_rules::StoreChange::Changed { .. }),
            "{change:?}"
        );
    };
    put(
        &mut store,
        &format!("{SERVICE}::.condition-router"),
        "conditions: ['=> host != 10.0.0.3']\n",
    );
    put(
        &mut store,
        "web.condition-router",
        "conditions: ['=> host = 10.0.0.1']\n",
    );
    put(
        &mut store,
        "shop.tag-router",
        "tags: [{name: gray, addresses: ['10.0.0.3']}]\n",
    );
    let consumer = ConsumerInfo {
        params: [("application".to_string(), "web".to_string())].into(),
        ..ConsumerInfo::default()
    };
    let mut routes = Routes::new(
        Balancer::Fixed(Policy::RoundRobin),
        HashMap::from([(
            SERVICE.to_string(),
            r#"{"conditions":["=> host = 10.0.0.3"]}"#.to_string(),
        )]),
        consumer,
        7,
    );
    let snap = Arc::new(three_providers(1).with_dubbo_rules(store.index()));
    // Tag router: untagged calls avoid the dynamic group `gray` (10.0.0.3) and the providers statically
    // tagged with a name the rule uses (10.0.0.1) -> 10.0.0.2; the service rule keeps it; the app rule
    // (host = 10.0.0.1) would leave nobody and is not forced: ignored.
    assert_eq!(
        picked(&mut routes, &snap, &call(None, false, &[])),
        Ok(vec![addr("10.0.0.2:1")])
    );
    // `gray` calls go to the dynamic group, not to the static tag; the condition rules would leave
    // nobody and are ignored.
    assert_eq!(
        picked(&mut routes, &snap, &call(Some("gray"), false, &[])),
        Ok(vec![addr("10.0.0.3:1")])
    );
    // The tag rule goes (same providers, new rules epoch): untagged calls may use 10.0.0.3 again, but
    // the service rule still excludes it.
    store.delete(b"/dubbo/config/dubbo/shop.tag-router");
    let snap = Arc::new(three_providers(1).with_version(2).with_dubbo_rules(store.index()));
    assert_eq!(
        picked(&mut routes, &snap, &call(None, false, &[])),
        Ok(vec![addr("10.0.0.2:1")])
    );
    // No config-center rule applies any more: the configured document does.
    store.delete(format!("/dubbo/config/dubbo/{SERVICE}::.condition-router").as_bytes());
    store.delete(b"/dubbo/config/dubbo/web.condition-router");
    let snap = Arc::new(three_providers(1).with_version(3).with_dubbo_rules(store.index()));
    assert_eq!(
        picked(&mut routes, &snap, &call(None, false, &[])),
        Ok(vec![addr("10.0.0.3:1")])
    );
}

fn one_pick(routes: &mut Routes, snap: &Arc<Snapshot>, service: &str) -> Option<Chosen> {
    let caps = Caps {
        shards: 1,
        headroom: 0.0,
    };
    let c = Call {
        service,
        ..call(None, false, &[])
    };
    match routes.pick(snap, &c, caps, |a| {
        Rc::new(Pool::new(a, UpstreamConfig::default()))
    }) {
        Pick::Chosen(chosen) => {
            routes.done(service, &chosen, 1_000, true, caps);
            Some(chosen)
        }
        _ => None,
    }
}

#[test]
fn the_provider_urls_token_goes_with_the_pick() {
    let snap = Arc::new(Snapshot::new(
        1,
        [(
            SERVICE.to_string(),
            Endpoint::new(addr("10.0.0.1:1")).with_param("token", "t0k"),
        )],
    ));
    let mut routes = Routes::new(Balancer::Auto, HashMap::new(), ConsumerInfo::default(), 1);
    let chosen = one_pick(&mut routes, &snap, SERVICE).unwrap();
    assert_eq!(chosen.token.as_deref(), Some("t0k"));
}

#[test]
fn a_table_lives_as_long_as_its_service_keys_providers_and_rules() {
    let mut builder = mesh_registry::SnapshotBuilder::new();
    builder.upsert(SERVICE, Endpoint::new(addr("10.0.0.1:1")));
    builder.upsert("other", Endpoint::new(addr("10.0.0.9:1")));
    let v1 = Arc::new(builder.publish(1).unwrap());
    let mut routes = Routes::new(Balancer::Auto, HashMap::new(), ConsumerInfo::default(), 1);
    one_pick(&mut routes, &v1, SERVICE).unwrap();
    let build = |r: &Routes| r.services[SERVICE].build;
    let first = build(&routes);
    // Another service key changed: the table stays.
    builder.upsert("other", Endpoint::new(addr("10.0.0.8:1")));
    let v2 = Arc::new(builder.publish(2).unwrap());
    one_pick(&mut routes, &v2, SERVICE).unwrap();
    assert_eq!(build(&routes), first);
    // Its own providers changed: a new table, with the new provider.
    builder.upsert(SERVICE, Endpoint::new(addr("10.0.0.2:1")));
    let v3 = Arc::new(builder.publish(3).unwrap());
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..8 {
        seen.insert(one_pick(&mut routes, &v3, SERVICE).unwrap().pool.addr());
    }
    assert_ne!(build(&routes), first);
    assert_eq!(seen.len(), 2);
    // Rules changed: rebuilt too.
    let after_providers = build(&routes);
    let mut store = mesh_balance::RuleStore::default();
    store.put(
        b"/dubbo/config/dubbo/web.condition-router",
        b"conditions: ['=> host = 10.0.0.1']",
    );
    builder.set_dubbo_rules(store.index());
    let v4 = Arc::new(builder.publish(4).unwrap());
    one_pick(&mut routes, &v4, SERVICE).unwrap();
    assert_ne!(build(&routes), after_providers);
    // Gone from the registry: no service, and the table goes.
    builder.remove(SERVICE, addr("10.0.0.1:1"));
    builder.remove(SERVICE, addr("10.0.0.2:1"));
    let v5 = Arc::new(builder.publish(5).unwrap());
    assert!(one_pick(&mut routes, &v5, SERVICE).is_none());
    assert!(!routes.services.contains_key(SERVICE));
}

#[test]
fn wildcard_and_group_list_requests_merge_the_matching_keys() {
    let snap = Arc::new(Snapshot::new(
        1,
        [
            ("a/com.S:1".to_string(), Endpoint::new(addr("10.0.0.1:1"))),
            ("b/com.S:1".to_string(), Endpoint::new(addr("10.0.0.2:1"))),
            ("c/com.S:1".to_string(), Endpoint::new(addr("10.0.0.3:1"))),
        ],
    ));
    let mut routes = Routes::new(Balancer::Auto, HashMap::new(), ConsumerInfo::default(), 1);
    let mut picked = |service: &str| {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..12 {
            if let Some(c) = one_pick(&mut routes, &snap, service) {
                seen.insert(c.pool.addr().ip().to_string());
            }
        }
        seen.into_iter().collect::<Vec<_>>()
    };
    assert_eq!(picked("a/com.S:1"), ["10.0.0.1"]);
    assert_eq!(picked("*/com.S:1"), ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
    assert_eq!(picked("a,c/com.S:1"), ["10.0.0.1", "10.0.0.3"]);
    assert!(picked("a/com.S:2").is_empty());
    assert!(picked("com.S:1").is_empty(), "no group matches only no group");
}

/// Two shards' routes over the same snapshots, as a two-shard consumer holds them.
fn two_shards() -> [Routes; 2] {
    [0, 1].map(|s| {
        Routes::new(
            Balancer::Auto,
            HashMap::new(),
            ConsumerInfo::default(),
            3 + s as u64,
        )
        .with_subsetting(Subsetting::new(s, 2))
    })
}

fn large(n: usize) -> Vec<Endpoint> {
    (0..n)
        .map(|i| {
            Endpoint::new(SocketAddr::from((
                [127, 1, (i / 250) as u8, (i % 250) as u8 + 1],
                20880,
            )))
            .with_max_concurrency(10)
        })
        .collect()
}

/// The addresses shard routes `r` picks over `picks` calls, and the table's build number.
fn picked_by(
    r: &mut Routes,
    snap: &Arc<Snapshot>,
    picks: usize,
) -> (std::collections::BTreeSet<SocketAddr>, u64) {
    let caps = Caps {
        shards: 2,
        headroom: 0.0,
    };
    let pool_of = |a| Rc::new(Pool::new(a, UpstreamConfig::default()));
    let call = Call {
        service: SERVICE,
        method: "m",
        tag: None,
        force_tag: false,
        args: &[],
        attachments: &[],
        exclude: &[],
    };
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..picks {
        match r.pick(snap, &call, caps, pool_of) {
            Pick::Chosen(c) => {
                seen.insert(c.pool.addr());
                r.done(SERVICE, &c, 1_000, true, caps);
            }
            _ => panic!("no pick"),
        }
    }
    (seen, r.services[SERVICE].build)
}

#[test]
fn a_large_untagged_service_is_split_between_the_shards_and_a_change_touches_one() {
    let mut builder = mesh_registry::SnapshotBuilder::new();
    for e in large(400) {
        builder.upsert(SERVICE, e);
    }
    let snap = Arc::new(builder.publish(1).unwrap());
    let mut shards = two_shards();
    let mut held = Vec::new();
    for r in &mut shards {
        let (seen, _) = picked_by(r, &snap, 4000);
        let t = &r.services[SERVICE];
        assert!(t.subset, "400 providers on 2 shards are subset");
        assert!(t.table.len() > 150 && t.table.len() < 250, "{}", t.table.len());
        // The whole announced cap is this shard's (split over 1, not 2).
        let caps: std::collections::BTreeSet<_> =
            t.table.providers().map(|(_, p)| p.max_concurrency).collect();
        assert_eq!(caps, [Some(10)].into());
        assert!(seen.len() > 150, "picks spread over the subset: {}", seen.len());
        held.push(
            t.table
                .providers()
                .map(|(_, p)| p.addr)
                .collect::<std::collections::BTreeSet<_>>(),
        );
        assert!(seen.is_subset(held.last().unwrap()));
    }
    assert!(held[0].is_disjoint(&held[1]));
    assert_eq!(held[0].len() + held[1].len(), 400);
    // One of shard 0's providers leaves: shard 1's table does not change (same build), shard 0's does.
    let gone = *held[0].iter().next().unwrap();
    let before: Vec<u64> = shards.iter().map(|r| r.services[SERVICE].build).collect();
    builder.remove(SERVICE, gone);
    let snap = Arc::new(builder.publish(2).unwrap());
    let pool_of = |a| Rc::new(Pool::new(a, UpstreamConfig::default()));
    let caps = Caps {
        shards: 2,
        headroom: 0.0,
    };
    for r in &mut shards {
        r.advance(&snap, caps, pool_of);
    }
    assert_ne!(shards[0].services[SERVICE].build, before[0]);
    assert_eq!(shards[1].services[SERVICE].build, before[1]);
    assert_eq!(shards[0].services[SERVICE].table.index_of(gone), None);
    // A tagged provider joins: tag routing needs every provider on every shard, both rebuild whole.
    builder.upsert(SERVICE, Endpoint::new(addr("10.9.9.9:1")).with_tag("gray"));
    let snap = Arc::new(builder.publish(3).unwrap());
    for r in &mut shards {
        r.advance(&snap, caps, pool_of);
        let _ = picked_by(r, &snap, 1);
        let t = &r.services[SERVICE];
        assert!(!t.subset);
        assert_eq!(t.table.len(), 400);
        assert!(t
            .table
            .providers()
            .filter(|(_, p)| p.tag.is_none())
            .all(|(_, p)| p.max_concurrency == Some(5)));
    }
}

#[test]
fn a_small_service_or_one_shard_keeps_every_provider_and_a_grown_list_becomes_a_subset() {
    let mut builder = mesh_registry::SnapshotBuilder::new();
    for e in large(100) {
        builder.upsert(SERVICE, e);
    }
    let snap = Arc::new(builder.publish(1).unwrap());
    let mut shards = two_shards();
    let mut one = Routes::new(Balancer::Auto, HashMap::new(), ConsumerInfo::default(), 1);
    for r in shards.iter_mut().chain([&mut one]) {
        let _ = picked_by(r, &snap, 1);
        assert!(!r.services[SERVICE].subset);
        assert_eq!(r.services[SERVICE].table.len(), 100);
    }
    // Grows past 64 per shard by changes: rebuilt once as a subset.
    for e in large(200).into_iter().skip(100) {
        builder.upsert(SERVICE, e);
    }
    let snap = Arc::new(builder.publish(2).unwrap());
    for r in shards.iter_mut().chain([&mut one]) {
        let _ = picked_by(r, &snap, 1);
    }
    assert!(shards.iter().all(|r| r.services[SERVICE].subset));
    assert_eq!(
        shards
            .iter()
            .map(|r| r.services[SERVICE].table.len())
            .sum::<usize>(),
        200
    );
    assert!(!one.services[SERVICE].subset);
}

/// A table's providers as the routers see them, with the per-index state kept beside the table, by address.
type TableView = Vec<(
    SocketAddr,
    u32,
    Option<u32>,
    std::collections::BTreeMap<String, String>,
    Option<Rc<str>>,
    Option<u32>,
)>;

fn view(r: &ServiceRoutes) -> TableView {
    let mut v: TableView = r
        .table
        .providers()
        .map(|(i, p)| {
            (
                p.addr,
                p.weight,
                p.max_concurrency,
                p.params.clone(),
                r.tokens[i].clone(),
                r.announced[i],
            )
        })
        .collect();
    v.sort_by_key(|p| p.0);
    v
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Tables advanced change by change (two shards with subsetting, and one shard) equal tables built
    /// from scratch from the same snapshot: providers, caps, the parameters kept, tokens, policy.
    #[test]
    fn incremental_tables_equal_tables_rebuilt_from_scratch(
        steps in proptest::collection::vec(
            proptest::collection::vec((0u8..4, 0usize..260, 0u32..3, proptest::bool::ANY), 1..4),
            1..30,
        )
    ) {
        let caps = |shards| Caps { shards, headroom: 0.0 };
        let pool_of = |a| Rc::new(Pool::new(a, UpstreamConfig::default()));
        let endpoint = |i: usize, w: u32, extra: bool| {
            let mut e = Endpoint::new(SocketAddr::from(([127, 1, (i / 250) as u8, (i % 250) as u8 + 1], 20880)))
                .with_weight(100 + w * 100)
                .with_param("application", "shop")
                .with_param("side", "provider");
            if extra {
                e = e.with_max_concurrency(20 + w).with_param("token", format!("t{w}")).with_param("warmup", "5000");
            }
            e
        };
        let mut builder = mesh_registry::SnapshotBuilder::new();
        for i in 0..200 {
            builder.upsert(SERVICE, endpoint(i, 0, i % 7 == 0));
        }
        let mut snap = Arc::new(builder.publish(1).unwrap());
        let mut held = two_shards();
        let mut one = Routes::new(Balancer::Auto, HashMap::new(), ConsumerInfo::default(), 9);
        for r in &mut held {
            let _ = picked_by(r, &snap, 1);
        }
        assert!(matches!(one.pick(&snap, &call(None, false, &[]), caps(1), pool_of), Pick::Chosen(_)));
        for (n, step) in steps.iter().enumerate() {
            for &(op, i, w, extra) in step {
                if op == 0 {
                    builder.remove(SERVICE, endpoint(i, 0, false).addr);
                } else {
                    builder.upsert(SERVICE, endpoint(i, w, extra));
                }
            }
            let Some(next) = builder.publish(n as i64 + 2) else { continue };
            snap = Arc::new(next);
            for (s, r) in held.iter_mut().enumerate() {
                r.advance(&snap, caps(2), pool_of);
                let _ = picked_by(r, &snap, 1);
                let mut fresh = Routes::new(Balancer::Auto, HashMap::new(), ConsumerInfo::default(), 5)
                    .with_subsetting(Subsetting::new(s, 2));
                let _ = picked_by(&mut fresh, &snap, 1);
                let (a, b) = (&r.services[SERVICE], &fresh.services[SERVICE]);
                proptest::prop_assert_eq!(a.subset, b.subset);
                proptest::prop_assert_eq!(a.policy, b.policy);
                proptest::prop_assert_eq!(view(a), view(b), "shard {} step {}", s, n);
                consistent(a);
            }
            one.advance(&snap, caps(1), pool_of);
            assert!(matches!(one.pick(&snap, &call(None, false, &[]), caps(1), pool_of), Pick::Chosen(_)));
            let mut fresh = Routes::new(Balancer::Auto, HashMap::new(), ConsumerInfo::default(), 5);
            assert!(matches!(fresh.pick(&snap, &call(None, false, &[]), caps(1), pool_of), Pick::Chosen(_)));
            proptest::prop_assert_eq!(view(&one.services[SERVICE]), view(&fresh.services[SERVICE]));
            proptest::prop_assert_eq!(one.services[SERVICE].policy, fresh.services[SERVICE].policy);
        }
    }
}

/// A snapshot where [`SERVICE`]'s own (application-level) list is 10.0.0.1 and, split at `percent`, its
/// interface-level list 10.0.0.2 and 10.0.0.3 (version `version`).
fn split_snapshot(builder: &mut mesh_registry::SnapshotBuilder, percent: Option<u8>) -> Arc<Snapshot> {
    builder.upsert(SERVICE, Endpoint::new(addr("10.0.0.1:1")));
    builder.set_split(SERVICE, percent);
    for a in ["10.0.0.2:1", "10.0.0.3:1"] {
        builder.split_upsert(SERVICE, Endpoint::new(addr(a)));
    }
    Arc::new(builder.publish(0).unwrap())
}

/// How many of `n` picks (each answered at once) went to each address.
fn pick_counts(
    routes: &mut Routes,
    snap: &Arc<Snapshot>,
    call: &Call<'_>,
    n: u32,
) -> HashMap<SocketAddr, u32> {
    let caps = Caps {
        shards: 1,
        headroom: 0.0,
    };
    let pool_of = |a| Rc::new(Pool::new(a, UpstreamConfig::default()));
    let mut counts = HashMap::new();
    for _ in 0..n {
        if let Pick::Chosen(c) = routes.pick(snap, call, caps, pool_of) {
            routes.done(call.service, &c, 1_000, true, caps);
            *counts.entry(c.pool.addr()).or_insert(0) += 1;
        }
    }
    counts
}

#[test]
fn a_split_key_routes_its_percentage_of_calls_on_its_own_list_and_the_rest_on_the_other() {
    let mut routes = Routes::new(
        Balancer::Fixed(Policy::RoundRobin),
        HashMap::new(),
        ConsumerInfo::default(),
        11,
    );
    let mut builder = mesh_registry::SnapshotBuilder::new();
    let snap = split_snapshot(&mut builder, Some(30));
    let n = 20_000;
    let counts = pick_counts(&mut routes, &snap, &call(None, false, &[]), n);
    let share = |a: &str| f64::from(counts.get(&addr(a)).copied().unwrap_or(0)) / f64::from(n);
    // 30% on the own list; the rest round robin over the interface-level two (sd of a share < 0.0033)
    assert!((share("10.0.0.1:1") - 0.30).abs() < 0.015, "{counts:?}");
    assert!((share("10.0.0.2:1") - 0.35).abs() < 0.015, "{counts:?}");
    assert!((share("10.0.0.3:1") - 0.35).abs() < 0.015, "{counts:?}");
    // a new percentage follows the snapshot; the interface-level table follows its list's changes
    builder.set_split(SERVICE, Some(0));
    builder.split_remove(SERVICE, addr("10.0.0.3:1"));
    let snap = Arc::new(builder.publish(0).unwrap());
    let counts = pick_counts(&mut routes, &snap, &call(None, false, &[]), 1_000);
    assert_eq!(
        counts,
        HashMap::from([(addr("10.0.0.2:1"), 1_000)]),
        "0: every call"
    );
    // the split ends: every call on the own list, the other table dropped
    builder.set_split(SERVICE, None);
    let snap = Arc::new(builder.publish(0).unwrap());
    let caps = Caps {
        shards: 1,
        headroom: 0.0,
    };
    routes.advance(&snap, caps, |a| Rc::new(Pool::new(a, UpstreamConfig::default())));
    assert!(routes.interface_level.is_empty());
    let counts = pick_counts(&mut routes, &snap, &call(None, false, &[]), 1_000);
    assert_eq!(counts, HashMap::from([(addr("10.0.0.1:1"), 1_000)]));
}

#[test]
fn both_lists_of_a_split_key_are_routed_by_the_rules() {
    // the condition rule excludes 10.0.0.3 (interface-level) and does not touch 10.0.0.1 (own list)
    let mut routes = Routes::new(
        Balancer::Fixed(Policy::RoundRobin),
        HashMap::from([(
            SERVICE.to_string(),
            r#"{"conditions":["=> host != 10.0.0.3"]}"#.to_string(),
        )]),
        ConsumerInfo::default(),
        5,
    );
    let mut builder = mesh_registry::SnapshotBuilder::new();
    let snap = split_snapshot(&mut builder, Some(50));
    let counts = pick_counts(&mut routes, &snap, &call(None, false, &[]), 4_000);
    assert_eq!(counts.get(&addr("10.0.0.3:1")), None, "{counts:?}");
    let own = counts.get(&addr("10.0.0.1:1")).copied().unwrap_or(0);
    assert!((1_800..=2_200).contains(&own), "{counts:?}");
    assert_eq!(counts.values().sum::<u32>(), 4_000);
}

#[test]
fn a_key_without_a_split_draws_nothing() {
    let (mut routes, snap) = routes_and_snapshot("{}");
    let caps = Caps {
        shards: 1,
        headroom: 0.0,
    };
    let pool_of = |a| Rc::new(Pool::new(a, UpstreamConfig::default()));
    let Pick::Chosen(_) = routes.pick(&snap, &call(None, false, &[]), caps, pool_of) else {
        panic!("no pick");
    };
    assert!(routes.interface_level.is_empty());
    assert_eq!(routes.services[SERVICE].split, None);
}

#[test]
fn requested_spellings_of_a_key_hold_at_most_the_cap_of_tables() {
    let key = format!("gray/{SERVICE}");
    let snap = Arc::new(Snapshot::new(
        1,
        [(key.clone(), Endpoint::new(addr("10.0.0.1:1")))],
    ));
    let mut routes = Routes::new(
        Balancer::Fixed(Policy::RoundRobin),
        HashMap::new(),
        ConsumerInfo::default(),
        7,
    );
    let caps = Caps {
        shards: 1,
        headroom: 0.0,
    };
    let pool_of = |a| Rc::new(Pool::new(a, UpstreamConfig::default()));
    // Every spelling below matches the one key (a comma list of groups matches any group in it); each is
    // held under its own string until the cap.
    for n in 0..MAX_HELD_TABLES + 100 {
        let service = format!("x{n},gray/{SERVICE}");
        let c = Call {
            service: &service,
            ..call(None, false, &[])
        };
        match routes.pick(&snap, &c, caps, pool_of) {
            Pick::Chosen(chosen) => routes.done(&service, &chosen, 1_000, true, caps),
            _ => panic!("{service:?} matches {key}"),
        }
        assert!(
            routes.services.len() <= MAX_HELD_TABLES,
            "{} held",
            routes.services.len()
        );
    }
    assert_eq!(routes.services.len(), MAX_HELD_TABLES);
    // The exact key still routes (its table built again when it was dropped).
    let exact = Call {
        service: &key,
        ..call(None, false, &[])
    };
    assert!(matches!(
        routes.pick(&snap, &exact, caps, pool_of),
        Pick::Chosen(_)
    ));
}
