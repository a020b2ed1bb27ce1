//! The watcher's pure core: the provider keys read and watched under the registry root (and the config
//! center's routing rules), turned into snapshots change by change. No IO: `etcd.rs` feeds it what etcd
//! answers and hands what it publishes to the subscribers; benches drive it directly.

use std::collections::HashSet;
use std::hash::BuildHasherDefault;
use std::net::SocketAddr;
use std::sync::Arc;

use mesh_balance::dubbo_rules::ConfigLayout;
use mesh_balance::hash::{FxHasher, FxMap};

use crate::app_discovery::{AppDiscoveryConfig, AppWatch, ChosenAddresses};
use crate::config_rules::ConfigRules;
use crate::dubbo::{discover_owned, Discovered, RegistryKey, RegistryRoot};
use crate::{Endpoint, ProviderSubset, Snapshot, SubsetSettings};

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
            tracing::warn!(
                "skipped {} key(s) under {range} that are not callable providers; first: {first}",
                self.count
            );
        }
        self.count = 0;
    }
}

/// An etcd key, stored once and shared.
type EtcdKey = Arc<[u8]>;

/// The providers read from the keys under the root, by etcd key, feeding a [`crate::SnapshotBuilder`]; keys
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
    /// The rules' prefix (`/dubbo/config/dubbo/`): a key outside it is no rule key.
    rules_prefix: Box<[u8]>,
    /// The provider keys, each with what it lists (a key is stored once, shared with `holders`). Fx hashing
    /// (one multiply per 8 bytes) for both maps: a Java provider key is ~450 bytes, and std's SipHash of it
    /// was a sixth of the watcher thread's instructions per key (callgrind); the keys come from the
    /// operator's registry, not from a client of the agent.
    by_key: FxMap<EtcdKey, (Arc<str>, Arc<Endpoint>)>,
    /// Per `(service key, address)`, the keys naming it, oldest first.
    holders: FxMap<(Arc<str>, SocketAddr), Vec<EtcdKey>>,
    /// The snapshot builder, behind the choice between interface-level and application-level addresses.
    pub(crate) builder: ChosenAddresses,
    /// Application-level discovery's keys and MetadataService calls, when configured.
    pub(crate) apps: Option<AppWatch>,
}

impl WatchedKeys {
    /// Nothing known yet, provider keys under `root`, rules under the default config center;
    /// interface-level discovery only.
    pub fn new(root: RegistryRoot) -> Self {
        Self::with_apps(root, None)
    }

    /// As [`WatchedKeys::new`], with application-level discovery and migration when `apps` is given.
    pub fn with_apps(root: RegistryRoot, apps: Option<&AppDiscoveryConfig>) -> Self {
        let rules = ConfigRules::new(ConfigLayout::default());
        WatchedKeys {
            root,
            rules_prefix: rules.prefix().into_bytes().into(),
            rules,
            by_key: FxMap::default(),
            holders: FxMap::default(),
            builder: apps.map_or_else(ChosenAddresses::interface_only, AppWatch::chosen),
            apps: apps.map(AppWatch::new),
        }
    }

    /// The same, listing at most `settings.size` providers per service key in the snapshots (see
    /// [`crate::provider_subset`]); a size of 0 lists every provider. Before any change.
    pub fn with_provider_subset(mut self, settings: &SubsetSettings) -> Self {
        self.builder.set_provider_subset(ProviderSubset::new(settings));
        self
    }

    /// A put of an application-level key (instance, mapping, migration rule); false for other keys.
    pub fn app_put(&mut self, key: &[u8], value: &[u8]) -> bool {
        self.apps
            .as_mut()
            .is_some_and(|apps| apps.put(key, value, &mut self.builder))
    }

    /// A delete of an application-level key; false for other keys.
    pub fn app_delete(&mut self, key: &[u8]) -> bool {
        self.apps
            .as_mut()
            .is_some_and(|apps| apps.delete(key, &mut self.builder))
    }

    /// Replaces what is known by a whole read of the root: keys gone are deleted, the others put (a put
    /// that changes nothing is no change).
    pub fn resync<'a>(
        &mut self,
        kvs: impl IntoIterator<Item = (&'a [u8], &'a [u8])> + Clone,
        skips: &mut Skips,
    ) {
        let present: HashSet<&[u8], BuildHasherDefault<FxHasher>> =
            kvs.clone().into_iter().map(|(k, _)| k).collect();
        let gone: Vec<EtcdKey> = self
            .by_key
            .keys()
            .filter(|k| !present.contains(&***k))
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
        if self.by_key.contains_key(key) {
            // The same provider key put again (a new lease): the key is the URL, hence the same endpoint.
            return;
        }
        let discovered = match self.root.parse_key(key) {
            Ok(RegistryKey::Url(url)) => discover_owned(url),
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
                let key: EtcdKey = Arc::from(key);
                let holders = self
                    .holders
                    .entry((Arc::clone(&service), endpoint.addr))
                    .or_default();
                holders.push(Arc::clone(&key));
                let endpoint = Arc::new(endpoint);
                self.builder.upsert(&service, Arc::clone(&endpoint));
                self.by_key.insert(key, (service, endpoint));
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
        let was_newest = holders.last().is_some_and(|k| **k == *key);
        holders.retain(|k| **k != *key);
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
        key.starts_with(&self.rules_prefix) && self.rules.put(key, value)
    }

    /// A rule key deleted (true), or not a rule key (false).
    pub fn delete_rule(&mut self, key: &[u8]) -> bool {
        key.starts_with(&self.rules_prefix) && self.rules.delete(key)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dubbo::{DubboUrl, KeyEncoding};

    const IFACE: &str = "com.foo.Svc";

    /// The key a Java 2.7 provider at `host:port` writes, with `params` after the usual ones.
    fn key(host: &str, port: u16, params: &str) -> Vec<u8> {
        let url = DubboUrl::parse(&format!(
            "dubbo://{host}:{port}/{IFACE}?application=app&interface={IFACE}&side=provider{params}"
        ))
        .unwrap();
        RegistryRoot::default()
            .url_key(&url, KeyEncoding::JavaUrlEncoder)
            .unwrap()
            .into_bytes()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// The `timestamp` parameter of each endpoint listed for the service.
    fn listed(snapshot: &Snapshot) -> Vec<(SocketAddr, Option<String>)> {
        snapshot
            .endpoints(IFACE)
            .into_iter()
            .map(|e| (e.addr, e.params.get("timestamp").cloned()))
            .collect()
    }

    #[test]
    fn puts_and_deletes_list_and_unlist_providers() {
        let mut keys = WatchedKeys::new(RegistryRoot::default());
        let mut skips = Skips::default();
        let first = keys.publish(1).unwrap();
        assert!(first.is_empty(), "the first publication is always made");
        let a = key("10.0.0.1", 20880, "&timestamp=1");
        let b = key("10.0.0.2", 20880, "&timestamp=1");
        keys.put(&a, b"lease", &mut skips);
        keys.put(&b, b"lease", &mut skips);
        let s = keys.publish(2).unwrap();
        assert_eq!(s.endpoints(IFACE).len(), 2);
        assert_eq!((keys.len(), s.revision), (2, 2));
        // The same key put again (a new lease): no change at all.
        keys.put(&a, b"other lease", &mut skips);
        assert!(keys.publish(3).is_none());
        keys.delete(&a);
        keys.delete(&a);
        keys.delete(b"/dubbo/never/put");
        let s = keys.publish(4).unwrap();
        assert_eq!(listed(&s), [(addr("10.0.0.2:20880"), Some("1".into()))]);
        assert_eq!(s.departed(), [addr("10.0.0.1:20880")]);
        assert!(!keys.is_empty());
    }

    #[test]
    fn the_newest_key_of_an_address_is_listed_and_the_older_comes_back() {
        let mut keys = WatchedKeys::new(RegistryRoot::default());
        let mut skips = Skips::default();
        let old = key("10.0.0.1", 20880, "&timestamp=1");
        let new = key("10.0.0.1", 20880, "&timestamp=2");
        keys.put(&old, b"", &mut skips);
        keys.put(&new, b"", &mut skips);
        let s = keys.publish(1).unwrap();
        assert_eq!(listed(&s), [(addr("10.0.0.1:20880"), Some("2".into()))]);
        assert_eq!(keys.len(), 2);
        // The newest goes: the older one is listed again.
        keys.delete(&new);
        let s = keys.publish(2).unwrap();
        assert_eq!(listed(&s), [(addr("10.0.0.1:20880"), Some("1".into()))]);
        assert!(s.departed().is_empty());
        // An older key going while a newer one stays changes nothing.
        keys.put(&new, b"", &mut skips);
        keys.publish(3).unwrap();
        keys.delete(&old);
        assert!(keys.publish(4).is_none());
        keys.delete(&new);
        let s = keys.publish(5).unwrap();
        assert!(s.is_empty());
        assert_eq!(s.departed(), [addr("10.0.0.1:20880")]);
        assert!(keys.is_empty());
    }

    #[test]
    fn keys_that_are_no_callable_provider_are_skipped() {
        let mut keys = WatchedKeys::new(RegistryRoot::default());
        let mut skips = Skips::default();
        keys.put(b"/dubbo/com.foo.Svc", b"parent", &mut skips);
        keys.put(b"/elsewhere/x", b"", &mut skips);
        keys.put(&key("10.0.0.1", 20880, "&enabled=false"), b"", &mut skips);
        keys.put(&key("not-an-ip", 20880, ""), b"", &mut skips);
        keys.put(b"/dubbo/com.foo.Svc/providers/%ZZ", b"", &mut skips);
        // Skipped and counted: all but the parent key.
        assert_eq!(skips.count, 4, "{:?}", skips.first);
        assert!(keys.is_empty());
        skips.report("/dubbo/");
        assert_eq!((skips.count, skips.first.as_deref()), (0, None));
        assert!(keys.publish(1).unwrap().is_empty());
    }

    #[test]
    fn a_resync_deletes_what_is_gone_and_keeps_what_stays() {
        let mut keys = WatchedKeys::new(RegistryRoot::default());
        let mut skips = Skips::default();
        let a = key("10.0.0.1", 20880, "");
        let b = key("10.0.0.2", 20880, "");
        let c = key("10.0.0.3", 20880, "");
        keys.resync([(&a[..], &b""[..]), (&b[..], &b""[..])], &mut skips);
        let s1 = keys.publish(1).unwrap();
        keys.resync([(&b[..], &b""[..]), (&c[..], &b""[..])], &mut skips);
        let s2 = keys.publish(2).unwrap();
        let addrs = |s: &Snapshot| -> Vec<SocketAddr> { s.endpoints(IFACE).iter().map(|e| e.addr).collect() };
        assert_eq!(addrs(&s1), [addr("10.0.0.1:20880"), addr("10.0.0.2:20880")]);
        assert_eq!(addrs(&s2), [addr("10.0.0.2:20880"), addr("10.0.0.3:20880")]);
        assert_eq!(s2.departed(), [addr("10.0.0.1:20880")]);
        // The same read again: nothing to publish.
        keys.resync([(&b[..], &b""[..]), (&c[..], &b""[..])], &mut skips);
        assert!(keys.publish(3).is_none());
    }

    #[test]
    fn with_a_provider_subset_changes_outside_it_publish_nothing() {
        let settings = SubsetSettings {
            size: 3,
            identity: "web@host/10.9.0.1:20000".into(),
            ..SubsetSettings::default()
        };
        let mut keys = WatchedKeys::new(RegistryRoot::default()).with_provider_subset(&settings);
        let mut skips = Skips::default();
        let all: Vec<Vec<u8>> = (1..=20).map(|i| key(&format!("10.0.0.{i}"), 20880, "")).collect();
        for k in &all {
            keys.put(k, b"", &mut skips);
        }
        let s = keys.publish(1).unwrap();
        let members: Vec<SocketAddr> = s.endpoints(IFACE).iter().map(|e| e.addr).collect();
        assert_eq!(members.len(), 3);
        // Deleting and putting back every provider outside the subset publishes nothing.
        // A key names its address as `%2F%2F<ip>%3A` (`//<ip>:`).
        let names =
            |k: &[u8], a: &SocketAddr| String::from_utf8_lossy(k).contains(&format!("%2F%2F{}%3A", a.ip()));
        let outside: Vec<&Vec<u8>> = all
            .iter()
            .filter(|k| !members.iter().any(|m| names(k, m)))
            .collect();
        assert_eq!(outside.len(), 17);
        for k in &outside {
            keys.delete(k);
            assert!(keys.publish(2).is_none());
            keys.put(k, b"", &mut skips);
            assert!(keys.publish(3).is_none());
        }
        // A member going is replaced by the next best: one out, one in, in one snapshot.
        let first = all.iter().find(|k| names(k, &members[0])).unwrap();
        keys.delete(first);
        let s = keys.publish(4).unwrap();
        assert_eq!(s.endpoints(IFACE).len(), 3);
        assert_eq!(s.departed(), [members[0]]);
        let change = s.providers(IFACE).unwrap().change().unwrap();
        assert_eq!((change.removed.len(), change.upserted.len()), (1, 1));
    }

    #[test]
    fn rule_keys_go_to_the_rules() {
        let mut keys = WatchedKeys::new(RegistryRoot::default());
        let rule = b"/dubbo/config/dubbo/app.tag-router";
        assert!(keys.put_rule(rule, b"tags: [{name: gray, addresses: [10.0.0.1]}]\n"));
        assert!(!keys.put_rule(&key("10.0.0.1", 20880, ""), b""));
        let s = keys.publish(1).unwrap();
        assert!(s.dubbo_rules().tag("app").is_some());
        assert!(keys.delete_rule(rule));
        assert!(keys.publish(2).unwrap().dubbo_rules().is_empty());
    }
}
