//! The watcher's public state against a real etcd: connected while the watch runs, not connected once
//! etcd is gone (within the watch's progress timeout), connected again after etcd comes back. Every wait
//! is bounded and generous (CI machines are slow).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime};

use mesh_registry::{spawn_watcher, EtcdConfig, Source};
use mesh_testkit::etcd::EtcdServer;
use mesh_testkit::process::wait_until;

#[test]
fn connected_follows_etcd_going_away_and_coming_back() {
    let mut etcd = EtcdServer::start().unwrap();
    let cfg = EtcdConfig {
        endpoints: vec![etcd.client_url().to_owned()],
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(1),
        retry_backoff_max: Duration::from_millis(500),
        ..EtcdConfig::default()
    };
    let (tx, _rx) = crossbeam_channel::unbounded();
    let watcher = spawn_watcher(Source::Etcd(cfg), vec![tx]).unwrap();
    let state = watcher.watch_state().expect("an etcd source has a watch state");
    let before = SystemTime::now();
    wait_until(Duration::from_secs(20), "the watch to connect", || {
        state.status().connected
    });
    let up = state.status();
    assert_eq!(up.endpoint.as_deref(), Some(etcd.client_url()));
    assert_eq!(up.restarts, 0);
    assert!(up.connected_since.unwrap() >= before);
    // Progress reports are asked every second: the member keeps being heard while nothing changes.
    let heard = up.last_heard.unwrap();
    wait_until(Duration::from_secs(10), "a progress report", || {
        state.status().last_heard.unwrap() > heard
    });

    etcd.stop().unwrap();
    // A stopped member closes its sockets (the stream fails at once); one that hangs is left after 3 s
    // without an answer: either way well within this bound.
    wait_until(Duration::from_secs(15), "connected = false", || {
        !state.status().connected
    });
    let down = state.status();
    assert!(down.restarts >= 1, "{down:?}");
    assert_eq!(
        down.endpoint.as_deref(),
        Some(etcd.client_url()),
        "the last member stays named"
    );

    etcd.restart().unwrap();
    wait_until(Duration::from_secs(30), "connected again", || {
        state.status().connected
    });
    let again = state.status();
    assert!(again.connected_since.unwrap() > up.connected_since.unwrap());
    assert!(again.restarts >= down.restarts);
    watcher.stop().unwrap();

    let (tx, _rx) = crossbeam_channel::unbounded();
    let fixed = spawn_watcher(Source::Static(vec![]), vec![tx]).unwrap();
    assert!(fixed.watch_state().is_none(), "a static list has no etcd watch");
    fixed.stop().unwrap();
}
