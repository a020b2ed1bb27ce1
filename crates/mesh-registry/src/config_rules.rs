//! The watcher's side of Dubbo's routing rules: every key under the config center's rules prefix
//! (`/dubbo/config/dubbo/`) goes through a [`RuleStore`] (the last good rule per key); a rule that cannot be
//! used is logged with its key and the previous rule of that key stays in force. The rules in force travel
//! with the next snapshot ([`crate::Snapshot::dubbo_rules`]).

use std::sync::Arc;

use mesh_balance::dubbo_rules::{ConfigLayout, RuleIndex, RuleStore, StoreChange};

/// Routing rules read from etcd, and whether they changed since the last publication.
#[derive(Debug, Default)]
pub(crate) struct ConfigRules {
    store: RuleStore,
    changed: bool,
}

impl ConfigRules {
    /// Rules under `layout`'s prefix.
    pub(crate) fn new(layout: ConfigLayout) -> Self {
        ConfigRules {
            store: RuleStore::new(layout),
            changed: false,
        }
    }

    /// The prefix to read and watch (`/dubbo/config/dubbo/`).
    pub(crate) fn prefix(&self) -> String {
        self.store.layout().rules_prefix()
    }

    /// A put; false when `key` is no rule key (the caller handles it).
    pub(crate) fn put(&mut self, key: &[u8], value: &[u8]) -> bool {
        let change = self.store.put(key, value);
        self.note(key, change)
    }

    /// A delete; false when `key` is no rule key.
    pub(crate) fn delete(&mut self, key: &[u8]) -> bool {
        let change = self.store.delete(key);
        self.note(key, change)
    }

    /// A whole read of the rules: keys not in it are deleted.
    pub(crate) fn resync<'a>(&mut self, kvs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) {
        for (key, change) in self.store.replace_all(kvs) {
            self.note(key.as_bytes(), change);
        }
    }

    /// The rules in force when they changed since the last call.
    pub(crate) fn take_changed(&mut self) -> Option<Arc<RuleIndex>> {
        std::mem::take(&mut self.changed).then(|| self.store.index())
    }

    fn note(&mut self, key: &[u8], change: StoreChange) -> bool {
        match change {
            StoreChange::NotARule => return false,
            StoreChange::Unchanged => {}
            StoreChange::Changed { warnings } => {
                self.changed = true;
                let key = String::from_utf8_lossy(key);
                for w in warnings {
                    tracing::warn!("routing rule {key}: {w}");
                }
            }
            StoreChange::Rejected(r) => tracing::warn!("{r}"),
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_keys_are_taken_and_changes_published_once() {
        let mut r = ConfigRules::default();
        assert_eq!(r.prefix(), "/dubbo/config/dubbo/");
        assert!(!r.put(b"/dubbo/com.foo.Svc/providers/x", b""));
        assert!(r.take_changed().is_none());
        let key = b"/dubbo/config/dubbo/shop.tag-router";
        assert!(r.put(key, b"tags: [{name: gray, addresses: [10.0.0.1]}]\n"));
        let index = r.take_changed().unwrap();
        assert!(index.tag("shop").is_some());
        assert!(r.take_changed().is_none(), "published once");
        // rejected: handled, nothing to publish, the rule stays
        assert!(r.put(key, b"tags: ["));
        assert!(r.take_changed().is_none());
        r.resync([(&key[..], &b"tags: [{name: gray, addresses: [10.0.0.2]}]\n"[..])]);
        assert_ne!(r.take_changed().unwrap(), index);
        r.resync(std::iter::empty());
        assert!(r.take_changed().unwrap().is_empty());
        assert!(r.delete(key));
        assert!(r.take_changed().is_none(), "nothing left to delete");
    }
}
