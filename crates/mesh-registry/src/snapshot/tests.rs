use super::*;
use proptest::prelude::*;
use std::collections::HashMap;

fn ep(s: &str) -> Endpoint {
    Endpoint::new(s.parse().unwrap())
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn snapshot_sorts_and_dedups_by_addr_later_wins() {
    let snap = Snapshot::new(
        3,
        [
            ("svc".to_string(), ep("10.0.0.2:20880")),
            ("svc".to_string(), ep("10.0.0.1:20880").with_weight(1)),
            ("svc".to_string(), ep("10.0.0.1:20880").with_weight(7)),
            ("other".to_string(), ep("10.0.0.3:1")),
        ],
    );
    assert_eq!(snap.version, 3);
    let svc = snap.endpoints("svc");
    assert_eq!(svc.len(), 2);
    assert_eq!(svc[0].addr, addr("10.0.0.1:20880"));
    assert_eq!(svc[0].weight, 7);
    assert_eq!(svc[1].addr, addr("10.0.0.2:20880"));
    assert_eq!(snap.services().collect::<Vec<_>>(), ["other", "svc"]);
    assert_eq!(snap.endpoint_count(), 3);
    assert!(!snap.is_empty());
    assert_eq!(snap.providers("svc").unwrap().epoch(), 3);
}

#[test]
fn wildcard_matches_services_without_their_own_entry() {
    let snap = Snapshot::new(
        1,
        [
            ("*".to_string(), ep("127.0.0.1:30000")),
            ("own".to_string(), ep("127.0.0.1:30001")),
        ],
    );
    assert_eq!(snap.endpoints("anything")[0].addr.port(), 30000);
    assert_eq!(snap.endpoints("own").len(), 1);
    assert_eq!(snap.endpoints("own")[0].addr.port(), 30001);
    let no_wildcard = Snapshot::new(1, [("own".to_string(), ep("127.0.0.1:30001"))]);
    assert!(no_wildcard.endpoints("anything").is_empty());
    assert_eq!(snap.matching(&ServiceKey::parse("x.Y")).len(), 1);
    assert!(no_wildcard.matching(&ServiceKey::parse("x.Y")).is_empty());
}

#[test]
fn requests_match_service_keys_by_dubbos_rules() {
    let snap = Snapshot::new(
        1,
        [
            ("a/com.S:1.0".to_string(), ep("10.0.0.1:1")),
            ("b/com.S:1.0".to_string(), ep("10.0.0.2:1")),
            ("a/com.S:2.0".to_string(), ep("10.0.0.3:1")),
            ("com.S".to_string(), ep("10.0.0.4:1")),
            ("com.T".to_string(), ep("10.0.0.5:1")),
        ],
    );
    let keys = |req: &str| -> Vec<String> {
        snap.matching(&ServiceKey::parse(req))
            .into_iter()
            .map(|(k, _)| k.to_owned())
            .collect()
    };
    assert_eq!(keys("a/com.S:1.0"), ["a/com.S:1.0"]);
    assert_eq!(keys("com.S"), ["com.S"]);
    assert!(keys("c/com.S:1.0").is_empty());
    assert!(keys("a/com.S").is_empty(), "no version matches only no version");
    assert_eq!(keys("*/com.S:1.0"), ["a/com.S:1.0", "b/com.S:1.0"]);
    assert_eq!(keys("a/com.S:*"), ["a/com.S:1.0", "a/com.S:2.0"]);
    assert_eq!(keys("b,a/com.S:1.0"), ["a/com.S:1.0", "b/com.S:1.0"]);
    assert_eq!(keys("*/com.S:*").len(), 4);
}

#[test]
fn address_index_counts_every_service() {
    let mut b = SnapshotBuilder::new();
    b.upsert("a", ep("10.0.0.1:1"));
    b.upsert("b", ep("10.0.0.1:1"));
    b.upsert("b", ep("10.0.0.2:2"));
    let s1 = b.publish(5).unwrap();
    assert_eq!((s1.version, s1.revision), (1, 5));
    assert!(s1.contains_addr(addr("10.0.0.1:1")));
    assert!(s1.departed().is_empty());
    b.remove("a", addr("10.0.0.1:1"));
    let s2 = b.publish(6).unwrap();
    assert!(s2.contains_addr(addr("10.0.0.1:1")), "b still lists it");
    assert!(s2.departed().is_empty());
    assert!(s2.providers("a").is_none(), "an emptied service key is gone");
    b.remove("b", addr("10.0.0.1:1"));
    b.remove("b", addr("10.0.0.2:2"));
    let s3 = b.publish(7).unwrap();
    assert_eq!(s3.departed(), [addr("10.0.0.1:1"), addr("10.0.0.2:2")]);
    assert!(!s3.contains_addr(addr("10.0.0.1:1")));
    assert!(s3.is_empty());
    // The older snapshots are untouched by later changes.
    assert_eq!(s1.endpoint_count(), 3);
    assert_eq!(s2.endpoint_count(), 2);
}

#[test]
fn each_change_is_recorded_against_the_previous_epoch() {
    let mut b = SnapshotBuilder::new();
    assert!(b.publish(1).is_some(), "the first publication is always made");
    assert!(b.publish(1).is_none(), "nothing changed");
    b.upsert("s", ep("10.0.0.1:1"));
    b.upsert("s", ep("10.0.0.2:1"));
    b.upsert("t", ep("10.0.0.9:1"));
    let v2 = b.publish(2).unwrap();
    let s = v2.providers("s").unwrap();
    assert_eq!((s.epoch(), s.change().unwrap().base), (2, 0));
    // The same endpoint again is no change at all.
    b.upsert("s", ep("10.0.0.1:1"));
    assert!(b.publish(3).is_none());
    b.upsert("s", ep("10.0.0.1:1").with_weight(5));
    b.remove("s", addr("10.0.0.2:1"));
    b.upsert("s", ep("10.0.0.3:1"));
    b.remove("s", addr("10.0.0.3:1"));
    let v3 = b.publish(4).unwrap();
    let s = v3.providers("s").unwrap();
    let change = s.change().unwrap();
    assert_eq!((s.epoch(), change.base), (3, 2));
    assert_eq!(change.removed, [addr("10.0.0.2:1"), addr("10.0.0.3:1")]);
    assert_eq!(change.upserted.len(), 1);
    assert_eq!(change.upserted[0].weight, 5);
    // `t` did not change: same epoch, same shared list.
    let t3 = v3.providers("t").unwrap();
    assert_eq!(t3.epoch(), 2);
    assert!(Arc::ptr_eq(t3, v2.providers("t").unwrap()));
}

#[test]
fn rules_change_their_own_epoch() {
    let mut store = mesh_balance::RuleStore::default();
    let key = b"/dubbo/config/dubbo/s.tag-router";
    store.put(key, b"tags: [{name: gray, addresses: [10.0.0.1]}]\n");
    let mut b = SnapshotBuilder::new();
    b.upsert("s", ep("10.0.0.1:1"));
    b.set_dubbo_rules(store.index());
    let v1 = b.publish(1).unwrap();
    assert!(v1.dubbo_rules().tag("s").is_some());
    assert_eq!(v1.rules_epoch(), 1);
    b.set_dubbo_rules(store.index());
    assert!(b.publish(2).is_none(), "the same rules: nothing to publish");
    store.delete(key);
    b.set_dubbo_rules(store.index());
    let v2 = b.publish(2).unwrap();
    assert!(v2.dubbo_rules().is_empty());
    assert_eq!(v2.rules_epoch(), 2);
    assert_eq!(v2.providers("s").unwrap().epoch(), 1);
}

#[test]
fn empty_and_same_endpoints() {
    let a = Snapshot::empty(1);
    assert!(a.is_empty());
    assert_eq!(a.endpoint_count(), 0);
    assert!(a.endpoints("x").is_empty());
    let b = Snapshot::new(2, [("s".to_string(), ep("1.2.3.4:5"))]);
    let c = Snapshot::new(9, [("s".to_string(), ep("1.2.3.4:5"))]);
    assert!(b.same_endpoints(&c));
    assert!(!a.same_endpoints(&b));
    assert_eq!(b.clone().with_version(9), c);
    assert_eq!(b.iter().count(), 1);
    let mut store = mesh_balance::RuleStore::default();
    store.put(
        b"/dubbo/config/dubbo/x.condition-router",
        b"conditions: ['=> host = 1.2.3.4']",
    );
    let ruled = b.clone().with_dubbo_rules(store.index());
    assert!(ruled.dubbo_rules().app_condition("x").is_some());
    assert!(!ruled.same_endpoints(&b));
}

#[test]
fn a_split_carries_a_second_list_with_its_own_epochs_and_counts_its_addresses() {
    let mut b = SnapshotBuilder::new();
    b.upsert("s", ep("10.0.0.1:1"));
    let s1 = b.publish(1).unwrap();
    assert!(s1.split("s").is_none(), "no split: nothing extra");
    b.set_split("s", Some(30));
    b.split_upsert("s", ep("10.0.0.1:1"));
    b.split_upsert("s", ep("10.0.0.2:1"));
    let s2 = b.publish(2).unwrap();
    let split = s2.split("s").unwrap();
    assert_eq!(split.percent(), 30);
    let iface = split.interface_level();
    assert_eq!(iface.len(), 2);
    assert_eq!((iface.epoch(), iface.change().unwrap().base), (2, 0));
    assert!(Arc::ptr_eq(
        s1.providers("s").unwrap(),
        s2.providers("s").unwrap()
    ));
    assert!(s2.contains_addr(addr("10.0.0.2:1")));
    assert_eq!(s2.splits().count(), 1);
    // the percentage alone is news; the same one is not
    b.set_split("s", Some(30));
    assert!(b.publish(3).is_none());
    b.set_split("s", Some(120));
    let s3 = b.publish(3).unwrap();
    assert_eq!(s3.split("s").unwrap().percent(), 99, "clamped: 100 is no split");
    assert_eq!(s3.split("s").unwrap().interface_level().epoch(), 2);
    // changes to the second list are recorded against its epoch
    b.split_remove("s", addr("10.0.0.2:1"));
    let s4 = b.publish(4).unwrap();
    let iface = s4.split("s").unwrap().interface_level();
    assert_eq!((iface.epoch(), iface.change().unwrap().base), (4, 2));
    assert_eq!(iface.change().unwrap().removed, [addr("10.0.0.2:1")]);
    assert_eq!(s4.departed(), [addr("10.0.0.2:1")], "listed nowhere else");
    // an address in both lists departs with its last listing only
    b.split_upsert("s", ep("10.0.0.3:1"));
    b.publish(5).unwrap();
    b.set_split("s", None);
    let s6 = b.publish(6).unwrap();
    assert!(s6.split("s").is_none());
    assert_eq!(s6.departed(), [addr("10.0.0.3:1")]);
    assert!(s6.contains_addr(addr("10.0.0.1:1")));
    assert!(!s6.same_endpoints(&s4));
    // no split: its changes are ignored
    b.split_upsert("s", ep("10.0.0.4:1"));
    b.split_remove("s", addr("10.0.0.1:1"));
    assert!(b.publish(7).is_none());
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8, u32),
    Del(u8, u8),
    Publish,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..3, 0u8..6, 1u32..4).prop_map(|(s, a, w)| Op::Put(s, a, w)),
        (0u8..3, 0u8..6).prop_map(|(s, a)| Op::Del(s, a)),
        Just(Op::Publish),
    ]
}

proptest! {
    /// Applying each published change to the list of its base epoch gives the published list, and the
    /// snapshot equals one built whole from the same model.
    #[test]
    fn changes_replay_to_the_published_lists(ops in proptest::collection::vec(op(), 1..60)) {
        let mut b = SnapshotBuilder::new();
        let mut model: BTreeMap<String, BTreeMap<SocketAddr, u32>> = BTreeMap::new();
        // What a shard holds: per service key, (epoch, endpoints).
        let mut shard: HashMap<String, (u64, BTreeMap<SocketAddr, u32>)> = HashMap::new();
        let mut ops = ops;
        ops.push(Op::Publish);
        for op in ops {
            match op {
                Op::Put(s, a, w) => {
                    let (s, a) = (format!("s{s}"), addr(&format!("10.0.0.{a}:1")));
                    b.upsert(&s, Endpoint::new(a).with_weight(w));
                    model.entry(s).or_default().insert(a, w);
                }
                Op::Del(s, a) => {
                    let (s, a) = (format!("s{s}"), addr(&format!("10.0.0.{a}:1")));
                    b.remove(&s, a);
                    if let Some(m) = model.get_mut(&s) {
                        m.remove(&a);
                        if m.is_empty() {
                            model.remove(&s);
                        }
                    }
                }
                Op::Publish => {
                    let Some(snap) = b.publish(0) else { continue };
                    for (key, providers) in snap.iter() {
                        let held = shard.entry(key.to_owned()).or_default();
                        if held.0 != providers.epoch() {
                            let change = providers.change().unwrap();
                            if held.0 != change.base {
                                held.1.clear();
                            }
                            for a in &change.removed {
                                held.1.remove(a);
                            }
                            for e in &change.upserted {
                                held.1.insert(e.addr, e.weight);
                            }
                            held.0 = providers.epoch();
                        }
                        let listed: BTreeMap<SocketAddr, u32> =
                            providers.iter().map(|e| (e.addr, e.weight)).collect();
                        prop_assert_eq!(&held.1, &listed);
                    }
                    shard.retain(|k, _| snap.providers(k).is_some());
                    let whole = Snapshot::new(
                        snap.version,
                        model.iter().flat_map(|(s, m)| {
                            m.iter().map(|(a, w)| (s.clone(), Endpoint::new(*a).with_weight(*w)))
                        }),
                    );
                    prop_assert!(snap.same_endpoints(&whole));
                    for a in snap.departed() {
                        prop_assert!(!snap.contains_addr(*a));
                    }
                }
            }
        }
    }
}
