//! `[provider]`: the agent-to-agent port, the local Dubbo provider, the registration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::names::{RegisterModeName, SerializationName};

/// `[provider]`. Each field is the key of the same name in `keys.rs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProviderConfig {
    pub(crate) listen: SocketAddr,
    /// Unset: `listen` (see [`ProviderConfig::advertise_addr`]).
    pub(crate) advertise: Option<SocketAddr>,
    pub(crate) dubbo: SocketAddr,
    pub(crate) serialization: SerializationName,
    pub(crate) services: Vec<String>,
    pub(crate) application: String,
    pub(crate) weight: u32,
    pub(crate) max_concurrency: Option<u32>,
    pub(crate) upstream_connections: usize,
    pub(crate) request_timeout_ms: u64,
    pub(crate) drain_timeout_ms: u64,
    pub(crate) max_frame_bytes: usize,
    pub(crate) register: bool,
    pub(crate) register_mode: RegisterModeName,
    pub(crate) write_mapping: bool,
    pub(crate) queue_limit: usize,
    pub(crate) queue_timeout_ms: u64,
    pub(crate) max_inflight_per_connection: usize,
    pub(crate) token: Option<String>,
    pub(crate) tls_cert: Option<PathBuf>,
    pub(crate) tls_key: Option<PathBuf>,
    pub(crate) tls_client_ca: Option<PathBuf>,
    pub(crate) tag: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) params: BTreeMap<String, String>,
    pub(crate) warmup_ms: u64,
    pub(crate) simplified: bool,
    pub(crate) extra_keys: Vec<String>,
}

impl ProviderConfig {
    /// The address registered in etcd: `advertise`, else `listen`.
    pub(crate) fn advertise_addr(&self) -> SocketAddr {
        self.advertise.unwrap_or(self.listen)
    }
}
