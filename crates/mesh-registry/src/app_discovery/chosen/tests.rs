use super::*;
use crate::dubbo::instance::REVISION_KEY;
use crate::dubbo::metadata_info::ServiceInfo;
use crate::dubbo::migration::{AskedStep, StepInForce, FIRST_FETCH_WAIT};

const KEY: &str = "a.Cart:1.0.0";

fn ep(addr: &str) -> Arc<Endpoint> {
    Arc::new(Endpoint::new(addr.parse().unwrap()))
}

fn info() -> Arc<MetadataInfo> {
    Arc::new(MetadataInfo::new(
        "shop",
        [ServiceInfo {
            name: "a.Cart".into(),
            group: None,
            version: Some("1.0.0".into()),
            protocol: Some("dubbo".into()),
            port: -1,
            path: Some("a.Cart".into()),
            params: [("weight".to_owned(), "7".to_owned())].into(),
        }],
    ))
}

fn instance(host: &str) -> ServiceInstance {
    let mut i = ServiceInstance::new("shop", host, 20880);
    i.metadata.insert(REVISION_KEY.into(), "r1".into());
    i
}

fn migrating(step: MigrationStep, threshold: Option<f32>) -> ChosenAddresses {
    ChosenAddresses::migrating(
        MigrationDefaults { step, threshold },
        [("a.Cart".to_owned(), vec!["shop".to_owned()])].into(),
    )
}

/// The addresses and weights the snapshot lists for [`KEY`].
fn listed(snapshot: &Snapshot) -> Vec<(String, u32)> {
    snapshot
        .providers(KEY)
        .map(|p| p.iter().map(|e| (e.addr.to_string(), e.weight)).collect())
        .unwrap_or_default()
}

/// Interface-level 10.0.0.1 and 10.0.0.2 (weight 100); application-level 10.0.0.2 and 10.0.0.3 (weight 7).
fn both_lists(chosen: &mut ChosenAddresses) {
    chosen.upsert(KEY, ep("10.0.0.1:20880"));
    chosen.upsert(KEY, ep("10.0.0.2:20880"));
    for host in ["10.0.0.2", "10.0.0.3"] {
        let key = format!("/services/shop/{host}:20880");
        chosen.put_instance(key.as_bytes(), instance(host), Some(info()));
    }
}

#[test]
fn each_step_reaches_its_list() {
    let mut chosen = migrating(MigrationStep::ForceInterface, None);
    both_lists(&mut chosen);
    let s = chosen.publish(1).unwrap();
    assert_eq!(
        listed(&s),
        [("10.0.0.1:20880".into(), 100), ("10.0.0.2:20880".into(), 100)]
    );
    assert!(
        chosen.logged().is_empty(),
        "the consumer's step on interface-level is not news"
    );

    let mut chosen = migrating(MigrationStep::ForceApplication, None);
    both_lists(&mut chosen);
    let s = chosen.publish(1).unwrap();
    assert_eq!(
        listed(&s),
        [("10.0.0.2:20880".into(), 7), ("10.0.0.3:20880".into(), 7)]
    );
    assert_eq!(chosen.logged().len(), 1);
    assert_eq!(chosen.in_force(KEY).unwrap().choice.source, Source::Application);

    // APPLICATION_FIRST, default threshold: application-level as soon as it has an address
    let mut chosen = migrating(MigrationStep::ApplicationFirst, None);
    chosen.upsert(KEY, ep("10.0.0.1:20880"));
    let s = chosen.publish(1).unwrap();
    assert_eq!(listed(&s), [("10.0.0.1:20880".into(), 100)]);
    chosen.put_instance(
        b"/services/shop/10.0.0.3:20880",
        instance("10.0.0.3"),
        Some(info()),
    );
    let s = chosen.publish(2).unwrap();
    assert_eq!(listed(&s), [("10.0.0.3:20880".into(), 7)]);
    assert!(
        chosen.logged()[0].contains("APPLICATION_FIRST"),
        "{:?}",
        chosen.logged()
    );
    // the last application-level address goes: back to interface-level
    chosen.remove_instance(b"/services/shop/10.0.0.3:20880");
    let s = chosen.publish(3).unwrap();
    assert_eq!(listed(&s), [("10.0.0.1:20880".into(), 100)]);
}

#[test]
fn application_first_threshold_and_changes_in_force_go_straight_through() {
    // threshold 1.0: application-level needs at least as many addresses as interface-level
    let mut chosen = migrating(MigrationStep::ApplicationFirst, Some(1.0));
    chosen.upsert(KEY, ep("10.0.0.1:20880"));
    chosen.upsert(KEY, ep("10.0.0.2:20880"));
    chosen.put_instance(
        b"/services/shop/10.0.0.3:20880",
        instance("10.0.0.3"),
        Some(info()),
    );
    let s = chosen.publish(1).unwrap();
    assert_eq!(listed(&s).len(), 2);
    assert_eq!(chosen.in_force(KEY).unwrap().choice.source, Source::Interface);
    // a change to the interface-level list in force shows at once
    chosen.upsert(
        KEY,
        Endpoint::new("10.0.0.1:20880".parse().unwrap()).with_weight(5),
    );
    let s = chosen.publish(2).unwrap();
    assert_eq!(listed(&s)[0], ("10.0.0.1:20880".into(), 5));
    // a second application-level address passes the threshold (2/2 >= 1.0)
    chosen.put_instance(
        b"/services/shop/10.0.0.4:20880",
        instance("10.0.0.4"),
        Some(info()),
    );
    let s = chosen.publish(3).unwrap();
    assert_eq!(
        listed(&s),
        [("10.0.0.3:20880".into(), 7), ("10.0.0.4:20880".into(), 7)]
    );
    // interface-level changes while application-level is in force do not reach the snapshot
    chosen.remove(KEY, "10.0.0.2:20880".parse().unwrap());
    chosen.upsert(KEY, ep("10.0.0.9:20880"));
    chosen.upsert(KEY, ep("10.0.0.8:20880"));
    let s = chosen.publish(4);
    // 2 application-level vs 3 interface-level: below the threshold, back to interface-level
    let s = s.unwrap();
    assert_eq!(listed(&s).len(), 3);
    assert_eq!(chosen.in_force(KEY).unwrap().choice.source, Source::Interface);
}

#[test]
fn a_switch_keeps_addresses_in_both_lists() {
    let mut chosen = migrating(MigrationStep::ForceInterface, None);
    both_lists(&mut chosen);
    chosen.publish(1).unwrap();
    chosen.set_rule(Some(
        MigrationRule::parse("step: FORCE_APPLICATION\n")
            .unwrap()
            .unwrap(),
    ));
    let s = chosen.publish(2).unwrap();
    assert_eq!(
        listed(&s),
        [("10.0.0.2:20880".into(), 7), ("10.0.0.3:20880".into(), 7)]
    );
    // 10.0.0.2 is in both lists: changed (new weight), not removed; only 10.0.0.1 departs
    assert_eq!(s.departed(), ["10.0.0.1:20880".parse::<SocketAddr>().unwrap()]);
    let change = s.providers(KEY).unwrap().change().unwrap();
    assert_eq!(change.removed, ["10.0.0.1:20880".parse::<SocketAddr>().unwrap()]);
    assert_eq!(chosen.logged().len(), 1);
    assert!(
        chosen.logged()[0].contains("FORCE_APPLICATION"),
        "{:?}",
        chosen.logged()
    );
    // the rule names this interface: FORCE_INTERFACE for it only
    chosen.set_rule(Some(
        MigrationRule::parse(
            "step: FORCE_APPLICATION\ninterfaces:\n  - serviceKey: a.Cart:1.0.0\n    step: FORCE_INTERFACE\n",
        )
        .unwrap()
        .unwrap(),
    ));
    let s = chosen.publish(3).unwrap();
    assert_eq!(
        listed(&s),
        [("10.0.0.1:20880".into(), 100), ("10.0.0.2:20880".into(), 100)]
    );
    // the rule is deleted: the consumer's step again
    chosen.set_rule(None);
    assert!(
        chosen.publish(4).is_none(),
        "FORCE_INTERFACE again: nothing changed"
    );
    assert_eq!(chosen.in_force(KEY).unwrap().step, MigrationStep::ForceInterface);
}

#[test]
fn application_first_waits_for_the_first_fetches_before_switching() {
    let mut chosen = migrating(MigrationStep::ApplicationFirst, None);
    chosen.upsert(KEY, ep("10.0.0.1:20880"));
    chosen.set_settling(true);
    chosen.put_instance(
        b"/services/shop/10.0.0.3:20880",
        instance("10.0.0.3"),
        Some(info()),
    );
    let s = chosen.publish(1).unwrap();
    assert_eq!(
        listed(&s),
        [("10.0.0.1:20880".into(), 100)],
        "held on interface-level"
    );
    chosen.put_instance(
        b"/services/shop/10.0.0.4:20880",
        instance("10.0.0.4"),
        Some(info()),
    );
    chosen.set_settling(false);
    let s = chosen.publish(2).unwrap();
    assert_eq!(
        listed(&s),
        [("10.0.0.3:20880".into(), 7), ("10.0.0.4:20880".into(), 7)],
        "both instances at once"
    );
    // FORCE_APPLICATION is not held
    let mut chosen = migrating(MigrationStep::ForceApplication, None);
    chosen.upsert(KEY, ep("10.0.0.1:20880"));
    chosen.set_settling(true);
    chosen.put_instance(
        b"/services/shop/10.0.0.3:20880",
        instance("10.0.0.3"),
        Some(info()),
    );
    assert_eq!(
        listed(&chosen.publish(1).unwrap()),
        [("10.0.0.3:20880".into(), 7)]
    );
}

#[test]
fn interface_level_changes_without_application_level_addresses_are_not_decided_again() {
    let mut chosen = migrating(MigrationStep::ApplicationFirst, None);
    let dirty = |c: &ChosenAddresses| c.migration.as_deref().map_or(0, |m| m.dirty.len());
    chosen.upsert(KEY, ep("10.0.0.1:20880"));
    assert_eq!(dirty(&chosen), 1, "a key first seen is decided");
    chosen.publish(1).unwrap();
    chosen.upsert(KEY, ep("10.0.0.2:20880"));
    chosen.remove(KEY, "10.0.0.1:20880".parse().unwrap());
    assert_eq!(dirty(&chosen), 0);
    let s = chosen.publish(2).unwrap();
    assert_eq!(listed(&s), [("10.0.0.2:20880".into(), 100)]);
    // An application-level address still switches it, with the interface-level list kept up to date.
    chosen.put_instance(
        b"/services/shop/10.0.0.3:20880",
        instance("10.0.0.3"),
        Some(info()),
    );
    assert_eq!(
        listed(&chosen.publish(3).unwrap()),
        [("10.0.0.3:20880".into(), 7)]
    );
    chosen.upsert(KEY, ep("10.0.0.4:20880"));
    assert_eq!(dirty(&chosen), 1, "application-level in force: decided again");
    chosen.remove_instance(b"/services/shop/10.0.0.3:20880");
    let s = chosen.publish(4).unwrap();
    assert_eq!(
        listed(&s),
        [("10.0.0.2:20880".into(), 100), ("10.0.0.4:20880".into(), 100)]
    );
    // The last interface-level address goes: decided (forgotten).
    chosen.remove(KEY, "10.0.0.2:20880".parse().unwrap());
    chosen.remove(KEY, "10.0.0.4:20880".parse().unwrap());
    assert_eq!(dirty(&chosen), 1);
    assert!(chosen.publish(5).unwrap().is_empty());
    assert!(chosen.in_force(KEY).is_none());
    // A rule in force: every change is decided again.
    chosen.set_rule(Some(
        MigrationRule::parse("step: FORCE_INTERFACE\n").unwrap().unwrap(),
    ));
    chosen.upsert(KEY, ep("10.0.0.5:20880"));
    chosen.publish(6).unwrap();
    chosen.upsert(KEY, ep("10.0.0.6:20880"));
    assert_eq!(dirty(&chosen), 1);
}

fn rule(text: &str) -> Option<MigrationRule> {
    Some(MigrationRule::parse(text).unwrap().unwrap())
}

/// The step shown for [`KEY`] in `snapshot`.
fn shown(snapshot: &Snapshot) -> Option<StepInForce> {
    snapshot.migration().get(KEY).copied()
}

#[test]
fn an_unforced_switch_without_addresses_keeps_the_step_and_a_forced_one_switches() {
    let t0 = Instant::now();
    let mut chosen = migrating(MigrationStep::ApplicationFirst, None);
    chosen.upsert(KEY, ep("10.0.0.1:20880"));
    let s = chosen.publish_at(1, t0).unwrap();
    assert_eq!(
        shown(&s),
        Some(StepInForce {
            step: MigrationStep::ApplicationFirst,
            source: Source::Interface,
            asked: None
        })
    );
    // FORCE_APPLICATION without force, no application-level address: refused, interface-level stays
    chosen.set_rule(rule("step: FORCE_APPLICATION\nforce: false\n"));
    let s = chosen
        .publish_at(2, t0)
        .expect("the refusal is news for the admin side");
    assert_eq!(listed(&s), [("10.0.0.1:20880".into(), 100)]);
    assert_eq!(
        shown(&s),
        Some(StepInForce {
            step: MigrationStep::ApplicationFirst,
            source: Source::Interface,
            asked: Some(AskedStep {
                step: MigrationStep::ForceApplication,
                refused: true
            })
        })
    );
    assert!(chosen.warned()[0].contains("refused"), "{:?}", chosen.warned());
    assert_eq!(chosen.next_wake(), None, "a refusal waits for nothing");
    // the same rule put again (a resync) changes nothing
    chosen.set_rule(rule("step: FORCE_APPLICATION\nforce: false\n"));
    assert!(chosen.publish_at(3, t0).is_none());
    // application-level addresses arriving later do not retry it (Java: only a new rule does); the
    // APPLICATION_FIRST in force uses them
    chosen.put_instance(
        b"/services/shop/10.0.0.3:20880",
        instance("10.0.0.3"),
        Some(info()),
    );
    let s = chosen.publish_at(4, t0).unwrap();
    assert_eq!(listed(&s), [("10.0.0.3:20880".into(), 7)]);
    assert_eq!(shown(&s).unwrap().step, MigrationStep::ApplicationFirst);
    assert_eq!(shown(&s).unwrap().source, Source::Application);
    chosen.remove_instance(b"/services/shop/10.0.0.3:20880");
    chosen.publish_at(5, t0).unwrap();
    // force: true switches, with no address at all on the new side
    chosen.set_rule(rule("step: FORCE_APPLICATION\nforce: true\n"));
    let s = chosen.publish_at(6, t0).unwrap();
    assert!(
        s.providers(KEY).is_none(),
        "FORCE_APPLICATION with no instance lists nothing"
    );
    assert_eq!(
        shown(&s),
        Some(StepInForce {
            step: MigrationStep::ForceApplication,
            source: Source::Application,
            asked: None
        })
    );
    // back to FORCE_INTERFACE without force: the interface-level list has an address, the
    // application-level none: allowed (Java: "No instance address available", old side empty)
    chosen.set_rule(rule("step: FORCE_INTERFACE\n"));
    let s = chosen.publish_at(7, t0).unwrap();
    assert_eq!(listed(&s), [("10.0.0.1:20880".into(), 100)]);
    assert_eq!(shown(&s).unwrap().step, MigrationStep::ForceInterface);
}

#[test]
fn the_threshold_decides_an_unforced_switch() {
    let t0 = Instant::now();
    let mut chosen = migrating(MigrationStep::ForceInterface, None);
    both_lists(&mut chosen); // 2 interface-level, 2 application-level
    chosen.upsert(KEY, ep("10.0.0.5:20880"));
    chosen.publish_at(1, t0).unwrap();
    // 2 / 3 < 0.9: refused
    chosen.set_rule(rule("step: FORCE_APPLICATION\nthreshold: 0.9\n"));
    let s = chosen.publish_at(2, t0).unwrap();
    assert_eq!(listed(&s).len(), 3);
    assert!(shown(&s).unwrap().asked.unwrap().refused);
    // 2 / 3 >= 0.5: switches (a changed rule is tried again)
    chosen.set_rule(rule("step: FORCE_APPLICATION\nthreshold: 0.5\n"));
    let s = chosen.publish_at(3, t0).unwrap();
    assert_eq!(
        listed(&s),
        [("10.0.0.2:20880".into(), 7), ("10.0.0.3:20880".into(), 7)]
    );
    assert_eq!(shown(&s).unwrap().asked, None);
}

#[test]
fn the_delay_is_waited_for_on_the_watchers_clock() {
    let t0 = Instant::now();
    let secs = std::time::Duration::from_secs;
    let mut chosen = migrating(MigrationStep::ForceInterface, None);
    both_lists(&mut chosen);
    chosen.publish_at(1, t0).unwrap();
    chosen.set_rule(rule("step: FORCE_APPLICATION\ndelay: 10\n"));
    let s = chosen.publish_at(2, t0).unwrap();
    assert_eq!(listed(&s).len(), 2);
    assert_eq!(listed(&s)[0].1, 100, "still interface-level");
    assert_eq!(
        shown(&s).unwrap().asked,
        Some(AskedStep {
            step: MigrationStep::ForceApplication,
            refused: false
        })
    );
    assert_eq!(chosen.next_wake(), Some(t0 + secs(10)));
    // an address change before the delay does not hurry it
    chosen.upsert(KEY, ep("10.0.0.9:20880"));
    let s = chosen.publish_at(3, t0 + secs(9)).unwrap();
    assert_eq!(listed(&s).len(), 3);
    assert_eq!(chosen.next_wake(), Some(t0 + secs(10)));
    // at the wake-up: decided (2 application-level / 3 interface-level >= 0.0)
    let s = chosen.publish_at(4, t0 + secs(10)).unwrap();
    assert_eq!(
        listed(&s),
        [("10.0.0.2:20880".into(), 7), ("10.0.0.3:20880".into(), 7)]
    );
    assert_eq!(chosen.next_wake(), None);
    assert_eq!(shown(&s).unwrap().step, MigrationStep::ForceApplication);
    // a new rule while one waits replaces it, its delay counted from now
    chosen.set_rule(rule("step: FORCE_INTERFACE\ndelay: 5\n"));
    chosen.publish_at(5, t0 + secs(20));
    chosen.set_rule(rule("step: FORCE_INTERFACE\ndelay: 3\n"));
    chosen.publish_at(6, t0 + secs(21));
    assert_eq!(chosen.next_wake(), Some(t0 + secs(24)));
    // APPLICATION_FIRST is neither delayed nor checked
    chosen.set_rule(rule("step: APPLICATION_FIRST\ndelay: 30\n"));
    let s = chosen.publish_at(7, t0 + secs(22)).unwrap();
    assert_eq!(shown(&s).unwrap().step, MigrationStep::ApplicationFirst);
    assert_eq!(chosen.next_wake(), None);
}

#[test]
fn a_switch_waits_for_the_first_fetches_then_decides() {
    let t0 = Instant::now();
    let mut chosen = migrating(MigrationStep::ForceInterface, None);
    chosen.upsert(KEY, ep("10.0.0.1:20880"));
    chosen.publish_at(1, t0).unwrap();
    // the rule arrives; the instance is known but its metadata is on its way
    chosen.set_rule(rule("step: FORCE_APPLICATION\n"));
    chosen.put_instance(b"/services/shop/10.0.0.3:20880", instance("10.0.0.3"), None);
    chosen.set_settling(true);
    chosen.publish_at(2, t0);
    assert_eq!(chosen.next_wake(), Some(t0 + FIRST_FETCH_WAIT));
    assert_eq!(chosen.in_force(KEY).unwrap().step, MigrationStep::ForceInterface);
    // the answer: decided at once, and it passes
    chosen.set_metadata(&[b"/services/shop/10.0.0.3:20880".to_vec()], &info());
    chosen.set_settling(false);
    let s = chosen
        .publish_at(3, t0 + std::time::Duration::from_millis(40))
        .unwrap();
    assert_eq!(listed(&s), [("10.0.0.3:20880".into(), 7)]);
    // fetches that never settle: decided at the bound all the same (here: refused, nothing resolved)
    let mut chosen = migrating(MigrationStep::ForceInterface, None);
    chosen.upsert(KEY, ep("10.0.0.1:20880"));
    chosen.publish_at(1, t0).unwrap();
    chosen.set_rule(rule("step: FORCE_APPLICATION\n"));
    chosen.set_settling(true);
    chosen.publish_at(2, t0);
    let s = chosen.publish_at(3, t0 + FIRST_FETCH_WAIT).unwrap();
    assert!(shown(&s).unwrap().asked.unwrap().refused);
    assert_eq!(chosen.next_wake(), None);
}

/// The split of [`KEY`] in `snapshot`: percent and the interface-level addresses.
fn split(snapshot: &Snapshot) -> Option<(u8, Vec<String>)> {
    snapshot.split(KEY).map(|s| {
        let addrs = s.interface_level().iter().map(|e| e.addr.to_string()).collect();
        (s.percent(), addrs)
    })
}

#[test]
fn a_proportion_under_application_first_splits_the_calls_between_both_lists() {
    let t0 = Instant::now();
    let mut chosen = migrating(MigrationStep::ApplicationFirst, None);
    both_lists(&mut chosen); // interface-level .1 .2, application-level .2 .3
    let s = chosen.publish_at(1, t0).unwrap();
    assert_eq!(split(&s), None, "no rule: proportion 100, no split");
    chosen.set_rule(rule("step: APPLICATION_FIRST\nproportion: 30\n"));
    let s = chosen.publish_at(2, t0).unwrap();
    assert_eq!(
        listed(&s),
        [("10.0.0.2:20880".into(), 7), ("10.0.0.3:20880".into(), 7)],
        "the key's own list stays the application-level one"
    );
    assert_eq!(
        split(&s),
        Some((30, vec!["10.0.0.1:20880".into(), "10.0.0.2:20880".into()]))
    );
    assert!(
        chosen
            .logged()
            .iter()
            .any(|l| l.contains("proportion 30: 30% of calls")),
        "{:?}",
        chosen.logged()
    );
    assert!(chosen.warned().is_empty(), "applied, not warned about");
    // interface-level changes follow into the split's list
    chosen.upsert(KEY, ep("10.0.0.9:20880"));
    chosen.remove(KEY, "10.0.0.1:20880".parse().unwrap());
    let s = chosen.publish_at(3, t0).unwrap();
    assert_eq!(
        split(&s),
        Some((30, vec!["10.0.0.2:20880".into(), "10.0.0.9:20880".into()]))
    );
    assert_eq!(listed(&s).len(), 2);
    // a new percentage; 0 sends every call to interface-level, still a split
    chosen.set_rule(rule("step: APPLICATION_FIRST\nproportion: 0\n"));
    assert_eq!(split(&chosen.publish_at(4, t0).unwrap()).unwrap().0, 0);
    chosen.set_rule(rule("step: APPLICATION_FIRST\nproportion: -5\n"));
    assert!(chosen.publish_at(5, t0).is_none(), "below 0 is 0: nothing new");
    // 100 (or the rule removed): no split, every call on application-level
    chosen.set_rule(rule("step: APPLICATION_FIRST\nproportion: 100\n"));
    let s = chosen.publish_at(6, t0).unwrap();
    assert_eq!(split(&s), None);
    assert_eq!(listed(&s).len(), 2);
    assert_eq!(s.departed(), ["10.0.0.9:20880".parse().unwrap()]);
    chosen.set_rule(rule("step: APPLICATION_FIRST\nproportion: 40\n"));
    assert_eq!(split(&chosen.publish_at(7, t0).unwrap()).unwrap().0, 40);
    chosen.set_rule(None);
    assert_eq!(split(&chosen.publish_at(8, t0).unwrap()), None);
}

#[test]
fn a_proportion_splits_only_application_first_on_application_level_with_both_lists() {
    let t0 = Instant::now();
    // FORCE_* steps ignore it (Java reads it under APPLICATION_FIRST only)
    for step in ["FORCE_APPLICATION", "FORCE_INTERFACE"] {
        let mut chosen = migrating(MigrationStep::ApplicationFirst, None);
        both_lists(&mut chosen);
        chosen.set_rule(rule(&format!("step: {step}\nproportion: 30\n")));
        assert_eq!(split(&chosen.publish_at(1, t0).unwrap()), None, "{step}");
    }
    // the threshold keeps interface-level preferred: every call there, no split
    let mut chosen = migrating(MigrationStep::ApplicationFirst, None);
    both_lists(&mut chosen);
    chosen.upsert(KEY, ep("10.0.0.5:20880"));
    chosen.set_rule(rule("step: APPLICATION_FIRST\nthreshold: 0.9\nproportion: 30\n"));
    let s = chosen.publish_at(1, t0).unwrap();
    assert_eq!(split(&s), None);
    assert_eq!(listed(&s).len(), 3, "interface-level preferred");
    // no interface-level address: every call on application-level (Java would fail 70% of them)
    let mut chosen = migrating(MigrationStep::ApplicationFirst, None);
    chosen.set_rule(rule("step: APPLICATION_FIRST\nproportion: 30\n"));
    chosen.put_instance(
        b"/services/shop/10.0.0.3:20880",
        instance("10.0.0.3"),
        Some(info()),
    );
    assert_eq!(split(&chosen.publish_at(1, t0).unwrap()), None);
    // the first interface-level address starts the split; the last one ends it
    chosen.upsert(KEY, ep("10.0.0.1:20880"));
    let s = chosen.publish_at(2, t0).unwrap();
    assert_eq!(split(&s), Some((30, vec!["10.0.0.1:20880".into()])));
    assert_eq!(listed(&s), [("10.0.0.3:20880".into(), 7)]);
    chosen.remove(KEY, "10.0.0.1:20880".parse().unwrap());
    let s = chosen.publish_at(3, t0).unwrap();
    assert_eq!(split(&s), None);
    assert_eq!(s.departed(), ["10.0.0.1:20880".parse().unwrap()]);
    // the application-level addresses gone: interface-level preferred, no split
    chosen.upsert(KEY, ep("10.0.0.1:20880"));
    chosen.publish_at(4, t0).unwrap();
    chosen.remove_instance(b"/services/shop/10.0.0.3:20880");
    let s = chosen.publish_at(5, t0).unwrap();
    assert_eq!(split(&s), None);
    assert_eq!(listed(&s), [("10.0.0.1:20880".into(), 100)]);
    // both lists emptied: the split and the key forgotten
    chosen.put_instance(
        b"/services/shop/10.0.0.3:20880",
        instance("10.0.0.3"),
        Some(info()),
    );
    assert!(split(&chosen.publish_at(6, t0).unwrap()).is_some());
    chosen.remove_instance(b"/services/shop/10.0.0.3:20880");
    chosen.remove(KEY, "10.0.0.1:20880".parse().unwrap());
    let s = chosen.publish_at(7, t0).unwrap();
    assert_eq!(split(&s), None);
    assert!(s.is_empty());
}

#[test]
fn a_refused_switch_keeps_the_proportion_of_the_rule_in_force() {
    let t0 = Instant::now();
    let mut chosen = migrating(MigrationStep::ApplicationFirst, None);
    both_lists(&mut chosen);
    chosen.set_rule(rule("step: APPLICATION_FIRST\nproportion: 30\n"));
    assert_eq!(split(&chosen.publish_at(1, t0).unwrap()).unwrap().0, 30);
    // FORCE_INTERFACE refused (threshold: 2 interface-level / 2 application-level < 5): Java keeps the
    // rule in force, and its promotion
    chosen.set_rule(rule("step: FORCE_INTERFACE\nthreshold: 5\nproportion: 80\n"));
    let s = chosen.publish_at(2, t0).unwrap();
    assert!(shown(&s).unwrap().asked.unwrap().refused);
    assert_eq!(split(&s).unwrap().0, 30);
}

proptest::proptest! {
    #[test]
    fn an_unforced_switch_happens_iff_dubbos_check_passes(
        apps in 0usize..4, ifaces in 1usize..4, force: bool, threshold in proptest::option::of(0.0f32..2.0),
    ) {
        let t0 = Instant::now();
        let mut chosen = migrating(MigrationStep::ForceInterface, None);
        for i in 0..ifaces {
            chosen.upsert(KEY, ep(&format!("10.0.1.{i}:20880")));
        }
        for i in 0..apps {
            let host = format!("10.0.2.{i}");
            let key = format!("/services/shop/{host}:20880");
            chosen.put_instance(key.as_bytes(), instance(&host), Some(info()));
        }
        chosen.publish_at(1, t0).unwrap();
        let mut text = format!("step: FORCE_APPLICATION\nforce: {force}\n");
        if let Some(t) = threshold {
            text.push_str(&format!("threshold: {t}\n"));
        }
        chosen.set_rule(rule(&text));
        let s = chosen.publish_at(2, t0).unwrap();
        let switched = force || crate::dubbo::migration::should_migrate(apps, ifaces, threshold.unwrap_or(-1.0));
        let state = shown(&s).unwrap();
        proptest::prop_assert_eq!(state.step == MigrationStep::ForceApplication, switched);
        proptest::prop_assert_eq!(state.source == Source::Application, switched);
        proptest::prop_assert_eq!(state.asked.is_some(), !switched);
        // the snapshot lists the list in force
        proptest::prop_assert_eq!(listed(&s).len(), if switched { apps } else { ifaces });
    }
}

#[derive(Debug, Clone)]
enum SplitOp {
    Iface(u8, bool),
    Instance(u8, bool),
    Proportion(Option<i32>),
    Publish,
}

fn split_op() -> impl proptest::strategy::Strategy<Value = SplitOp> {
    use proptest::prelude::*;
    prop_oneof![
        (0u8..4, any::<bool>()).prop_map(|(i, up)| SplitOp::Iface(i, up)),
        (0u8..3, any::<bool>()).prop_map(|(i, up)| SplitOp::Instance(i, up)),
        proptest::option::of(prop_oneof![Just(0), Just(30), Just(100), Just(-1)])
            .prop_map(SplitOp::Proportion),
        Just(SplitOp::Publish),
    ]
}

proptest::proptest! {
    /// Whatever the order of changes, each snapshot splits the key exactly when Java would split its
    /// calls (APPLICATION_FIRST on application-level addresses, interface-level ones present, a
    /// proportion below 100), its second list is the interface-level list, and its own list the
    /// application-level one.
    #[test]
    fn a_split_always_mirrors_both_lists(ops in proptest::collection::vec(split_op(), 1..50)) {
        let mut chosen = migrating(MigrationStep::ApplicationFirst, None);
        let mut iface: std::collections::BTreeSet<String> = Default::default();
        let mut apps: std::collections::BTreeSet<String> = Default::default();
        let mut proportion: Option<i32> = None;
        let mut ops = ops;
        ops.push(SplitOp::Publish);
        for op in ops {
            match op {
                SplitOp::Iface(i, true) => {
                    let a = format!("10.0.1.{i}:20880");
                    chosen.upsert(KEY, ep(&a));
                    iface.insert(a);
                }
                SplitOp::Iface(i, false) => {
                    let a = format!("10.0.1.{i}:20880");
                    chosen.remove(KEY, a.parse().unwrap());
                    iface.remove(&a);
                }
                SplitOp::Instance(i, up) => {
                    let host = format!("10.0.2.{i}");
                    let key = format!("/services/shop/{host}:20880");
                    if up {
                        chosen.put_instance(key.as_bytes(), instance(&host), Some(info()));
                        apps.insert(format!("{host}:20880"));
                    } else {
                        chosen.remove_instance(key.as_bytes());
                        apps.remove(&format!("{host}:20880"));
                    }
                }
                SplitOp::Proportion(p) => {
                    proportion = p;
                    chosen.set_rule(p.and_then(|p| rule(&format!("step: APPLICATION_FIRST\nproportion: {p}\n"))));
                }
                SplitOp::Publish => {
                    let Some(s) = chosen.publish(0) else { continue };
                    let own: Vec<String> = listed(&s).into_iter().map(|(a, _)| a).collect();
                    let expect_own: Vec<String> = if apps.is_empty() { iface.iter().cloned().collect() } else { apps.iter().cloned().collect() };
                    proptest::prop_assert_eq!(&own, &expect_own);
                    let p = proportion.unwrap_or(100);
                    let want = (!apps.is_empty() && !iface.is_empty() && p < 100)
                        .then(|| (p.clamp(0, 99) as u8, iface.iter().cloned().collect::<Vec<_>>()));
                    proptest::prop_assert_eq!(split(&s), want);
                    for a in s.departed() {
                        proptest::prop_assert!(!s.contains_addr(*a));
                    }
                }
            }
        }
    }
}

#[test]
fn interface_only_passes_through() {
    let mut chosen = ChosenAddresses::interface_only();
    chosen.upsert(KEY, ep("10.0.0.1:20880"));
    chosen.put_instance(b"k", instance("10.0.0.3"), Some(info()));
    let s = chosen.publish(1).unwrap();
    assert_eq!(listed(&s), [("10.0.0.1:20880".into(), 100)]);
    assert!(!chosen.is_migrating());
    assert!(chosen.in_force(KEY).is_none());
    chosen.remove(KEY, "10.0.0.1:20880".parse().unwrap());
    assert!(chosen.publish(2).unwrap().is_empty());
}

#[test]
fn a_key_emptied_in_both_lists_is_forgotten() {
    let mut chosen = migrating(MigrationStep::ForceApplication, None);
    both_lists(&mut chosen);
    chosen.publish(1).unwrap();
    for host in ["10.0.0.2", "10.0.0.3"] {
        chosen.remove_instance(format!("/services/shop/{host}:20880").as_bytes());
    }
    chosen.remove(KEY, "10.0.0.1:20880".parse().unwrap());
    chosen.remove(KEY, "10.0.0.2:20880".parse().unwrap());
    let s = chosen.publish(2).unwrap();
    assert!(s.providers(KEY).is_none());
    assert!(chosen.in_force(KEY).is_none());
}
