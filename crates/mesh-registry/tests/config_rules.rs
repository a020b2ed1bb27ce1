//! The watcher reads Dubbo's routing rules from the config center with a real etcd: inside the registry root
//! (`/dubbo`, one watch) and outside it (another root: a second watch on `/dubbo/config/dubbo/`); a rejected
//! rule publishes nothing and leaves the previous one; a delete removes it. Bounded waits.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mesh_registry::{spawn_watcher, EtcdConfig, Snapshot, Source};
use mesh_testkit::etcd::EtcdServer;

const TAG_KEY: &str = "/dubbo/config/dubbo/shop.tag-router";

fn etcdctl(etcd: &EtcdServer, args: &[&str]) {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(etcd.client_url())
        .args(args)
        .output()
        .expect("etcdctl must be installed");
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The next snapshot satisfying `pred`, within 5 s.
fn next(rx: &Receiver<Arc<Snapshot>>, what: &str, pred: impl Fn(&Snapshot) -> bool) -> Arc<Snapshot> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let snap = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no snapshot with {what}: {e}"));
        if pred(&snap) {
            return snap;
        }
    }
}

fn gray_addresses(s: &Snapshot) -> Option<usize> {
    s.dubbo_rules()
        .tag("shop")
        .and_then(|t| t.tag_rule())
        .and_then(|r| r.group("gray").map(<[_]>::len))
}

fn rules_follow_etcd(root: &str) {
    let etcd = EtcdServer::start().unwrap();
    // A rule present before the watcher starts is in its first snapshot.
    etcdctl(
        &etcd,
        &["put", TAG_KEY, "tags: [{name: gray, addresses: [10.0.0.1]}]\n"],
    );
    let cfg = EtcdConfig {
        root: root.to_owned(),
        ..EtcdConfig::with_endpoints([etcd.client_url()])
    };
    let (tx, rx) = crossbeam_channel::unbounded();
    let watcher = spawn_watcher(Source::Etcd(cfg), vec![tx]).unwrap();
    let first = next(&rx, "the first read", |_| true);
    assert_eq!(gray_addresses(&first), Some(1), "{root}");
    // A change is published with a new rules epoch.
    etcdctl(
        &etcd,
        &[
            "put",
            TAG_KEY,
            "tags: [{name: gray, addresses: [10.0.0.1, 10.0.0.2]}]\n",
        ],
    );
    let changed = next(&rx, "the changed rule", |s| gray_addresses(s) == Some(2));
    assert!(changed.rules_epoch() > first.rules_epoch());
    // A rejected value publishes nothing; a later good change to another key shows the first one kept.
    etcdctl(
        &etcd,
        &["put", TAG_KEY, "tags: [{name: gray, addresses: [not-an-ip]}]\n"],
    );
    etcdctl(
        &etcd,
        &[
            "put",
            "/dubbo/config/dubbo/web.condition-router",
            "conditions: ['=> port = 1']\n",
        ],
    );
    let after = next(&rx, "the other rule", |s| {
        s.dubbo_rules().app_condition("web").is_some()
    });
    assert_eq!(
        after.version,
        changed.version + 1,
        "the rejected value published nothing"
    );
    assert_eq!(
        gray_addresses(&after),
        Some(2),
        "the previous tag rule stays in force"
    );
    // A delete removes the rule.
    etcdctl(&etcd, &["del", TAG_KEY]);
    next(&rx, "the deleted rule", |s| s.dubbo_rules().tag("shop").is_none());
    watcher.stop().unwrap();
}

#[test]
fn rules_inside_the_registry_root_follow_etcd() {
    rules_follow_etcd("/dubbo");
}

#[test]
fn rules_outside_the_registry_root_follow_etcd() {
    rules_follow_etcd("/prod-registry");
}
