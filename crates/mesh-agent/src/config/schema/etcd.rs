//! `[etcd]`: the registry.

use serde::{Deserialize, Serialize};

/// `[etcd]`: where providers register and consumers discover them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EtcdSection {
    pub(crate) endpoints: Vec<String>,
    pub(crate) root: String,
    pub(crate) lease_ttl_s: u64,
}
