//! `[etcd]`: the registry.

use serde::{Deserialize, Serialize};

/// `etcd.prefix` default.
pub(crate) const DEFAULT_ETCD_PREFIX: &str = "/dubbomesh/v1";

/// `[etcd]`: where providers register and consumers discover them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct EtcdSection {
    /// `http://host:port` or `https://host:port`, at least one.
    pub(crate) endpoints: Vec<String>,
    /// Key prefix: starts with `/`, does not end with `/`. Default `/dubbomesh/v1`.
    pub(crate) prefix: String,
    /// Registration lease TTL, 2..=3600 s, default 10.
    pub(crate) lease_ttl_s: u64,
}

impl Default for EtcdSection {
    fn default() -> Self {
        EtcdSection {
            endpoints: Vec::new(),
            prefix: DEFAULT_ETCD_PREFIX.to_owned(),
            lease_ttl_s: 10,
        }
    }
}
