//! The watcher's pure core: the provider keys read and watched under the registry root (and the config
//! center's routing rules), turned into snapshots change by change. No IO: `etcd.rs` feeds it what etcd
//! answers and hands what it publishes to the subscribers; benches drive it directly.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use mesh_balance::dubbo_rules::ConfigLayout;

use crate::config_rules::ConfigRules;
use crate::dubbo::{discover, Discovered, RegistryKey, RegistryRoot};
use crate::{Endpoint, Snapshot, SnapshotBuilder};

/// Keys skipped in one batch, reported in one line.
#[derive(Debug, Default)]
pub struct Skips {
    count: usize,
    first: Option<String>,
}

impl Skips {
    pub(crate) fn add(&mut self, key: &[u8], why: &dyn std::fmt::Display) {
        self.count += 1;
        if self.first.is_none() {
            let key = String::from_utf8_lossy(&key[..key.len().min(200)]).into_owned();
            self.first = Some(format!("{key}: {why}"));
        }
    }

    /// Logs the keys skipped since the last report (one line), if any.
    pub fn report(&mut self, range: &str) {
        if let Some(first) = self.first.take() {
            eprintln!(
                "registry: skipped {} key(s) under {range} that are not callable providers; first: {first}",
                self.count
            );
        }
        self.count = 0;
    }
}

/// The providers read from the keys under the root, by etcd key, feeding a [`SnapshotBuilder`]; keys
/// under the config center's rules prefix go to the routing rules.
///
/// Several keys may name the same `(service key, address)` (a Java provider restarted before its old lease
/// ran out registers a second URL with a new `timestamp`): the newest put is listed, and when it goes the
/// one before it comes back.
#[derive(Debug)]
pub struct WatchedKeys {
    pub(crate) root: RegistryRoot,
    /// Dubbo's routing rules from the config center, the last good one per key.
    pub(crate) rules: ConfigRules,
    by_key: HashMap<Vec<u8>, (Arc<str>, Arc<Endpoint>)>,
    /// Per `(service key, address)`, the keys naming it, oldest first.
    holders: HashMap<(Arc<str>, SocketAddr), Vec<Vec<u8>>>,
    builder: SnapshotBuilder,
}

impl WatchedKeys {
    /// Nothing known yet, provider keys under `root`, rules under the default config center.
    pub fn new(root: RegistryRoot) -> Self {
        WatchedKeys {
            root,
            rules: ConfigRules::new(ConfigLayout::default()),
            by_key: HashMap::new(),
            holders: HashMap::new(),
            builder: SnapshotBuilder::new(),
        }
    }

    /// Replaces what is known by a whole read of the root: keys gone are deleted, the others put (a put
    /// that changes nothing is no change).
    pub fn resync<'a>(
        &mut self,
        kvs: impl IntoIterator<Item = (&'a [u8], &'a [u8])> + Clone,
        skips: &mut Skips,
    ) {
        let present: std::collections::HashSet<&[u8]> = kvs.clone().into_iter().map(|(k, _)| k).collect();
        let gone: Vec<Vec<u8>> = self
            .by_key
            .keys()
            .filter(|k| !present.contains(k.as_slice()))
            .cloned()
            .collect();
        for key in gone {
            self.delete(&key);
        }
        for (key, value) in kvs {
            self.put(key, value, skips);
        }
    }

    /// A key was put: a provider URL is listed; anything else is ignored (and a key that held a provider
    /// and no longer does is deleted).
    pub fn put(&mut self, key: &[u8], _value: &[u8], skips: &mut Skips) {
        let discovered = match self.root.parse_key(key) {
            Ok(RegistryKey::Url(url)) => discover(&url),
            Ok(RegistryKey::Parent | RegistryKey::Unrelated) => return,
            Err(e) => {
                skips.add(key, &e);
                self.delete(key);
                return;
            }
        };
        match discovered {
            Discovered::Provider { service, endpoint } => {
                let service: Arc<str> = Arc::from(service);
                if let Some((old_service, old)) = self.by_key.get(key) {
                    if *old_service == service && old.addr == endpoint.addr {
                        // The same provider key put again (a new lease): the URL, hence the endpoint, is
                        // the same.
                        return;
                    }
                    self.delete(key);
                }
                let holders = self
                    .holders
                    .entry((Arc::clone(&service), endpoint.addr))
                    .or_default();
                holders.push(key.to_vec());
                let endpoint = Arc::new(endpoint);
                self.builder.upsert(&service, Arc::clone(&endpoint));
                self.by_key.insert(key.to_vec(), (service, endpoint));
            }
            Discovered::Skipped(why) => {
                if why != "not under providers" {
                    skips.add(key, &why);
                }
                self.delete(key);
            }
        }
    }

    /// A key was deleted: the provider it listed (if any) goes, or an older key of it comes back.
    pub fn delete(&mut self, key: &[u8]) {
        let Some((service, endpoint)) = self.by_key.remove(key) else {
            return;
        };
        let id = (Arc::clone(&service), endpoint.addr);
        let Some(holders) = self.holders.get_mut(&id) else {
            return;
        };
        let was_newest = holders.last().is_some_and(|k| k == key);
        holders.retain(|k| k != key);
        match holders.last() {
            None => {
                self.holders.remove(&id);
                self.builder.remove(&service, endpoint.addr);
            }
            Some(newest) if was_newest => {
                if let Some((_, previous)) = self.by_key.get(newest) {
                    self.builder.upsert(&service, Arc::clone(previous));
                }
            }
            Some(_) => {}
        }
    }

    /// The number of provider keys.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether no provider key is known.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// A rule key put (true), or not a rule key (false: the caller puts it as a provider key).
    pub fn put_rule(&mut self, key: &[u8], value: &[u8]) -> bool {
        self.rules.put(key, value)
    }

    /// A rule key deleted (true), or not a rule key (false).
    pub fn delete_rule(&mut self, key: &[u8]) -> bool {
        self.rules.delete(key)
    }

    /// The snapshot of the changes since the last publication, reflecting etcd `revision`, if anything
    /// changed (the first call always publishes).
    pub fn publish(&mut self, revision: i64) -> Option<Snapshot> {
        if let Some(rules) = self.rules.take_changed() {
            self.builder.set_dubbo_rules(rules);
        }
        self.builder.publish(revision)
    }
}
