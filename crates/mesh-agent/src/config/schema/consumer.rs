//! `[consumer]`: the HTTP front, the consumer's identity for routing, the connections to provider agents
//! and the call policy.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::names::{BalancerName, MigrationStepName};

/// `[consumer]`. Each field is the key of the same name in `keys.rs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConsumerConfig {
    pub(crate) listen: SocketAddr,
    pub(crate) dubbo_listen: Option<SocketAddr>,
    pub(crate) application: Option<String>,
    /// Unset: see [`ConsumerConfig::host_or`].
    pub(crate) host: Option<IpAddr>,
    pub(crate) providers: Vec<SocketAddr>,
    pub(crate) upstream_connections: usize,
    pub(crate) request_timeout_ms: u64,
    pub(crate) connect_timeout_ms: u64,
    pub(crate) max_head_bytes: usize,
    pub(crate) max_headers: usize,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_form_fields: usize,
    pub(crate) max_frame_bytes: usize,
    pub(crate) queue_limit: usize,
    pub(crate) queue_timeout_ms: u64,
    pub(crate) idle_timeout_ms: u64,
    pub(crate) request_read_timeout_ms: u64,
    pub(crate) dubbo_idle_timeout_ms: u64,
    pub(crate) dubbo_max_inflight_per_connection: usize,
    pub(crate) retries: usize,
    pub(crate) idempotent: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) services: BTreeMap<String, CallPolicyConfig>,
    pub(crate) eject_failures: u32,
    pub(crate) eject_base_ms: u64,
    pub(crate) eject_max_ms: u64,
    pub(crate) heartbeat_ms: u64,
    pub(crate) cap_headroom_pct: u32,
    pub(crate) token: Option<String>,
    pub(crate) tls_ca: Option<PathBuf>,
    pub(crate) tls_server_name: Option<String>,
    pub(crate) tls_cert: Option<PathBuf>,
    pub(crate) tls_key: Option<PathBuf>,
    pub(crate) balancer: BalancerName,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) routing: BTreeMap<String, String>,
    pub(crate) register_services: Vec<String>,
    pub(crate) simplified: bool,
    pub(crate) migration_step: MigrationStepName,
    pub(crate) migration_threshold: Option<f64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) provided_by: BTreeMap<String, String>,
    pub(crate) provider_subset: usize,
    pub(crate) subset_seed: Option<String>,
}

// `migration_threshold` is checked finite by validation, so equality is an equivalence.
impl Eq for ConsumerConfig {}

impl ConsumerConfig {
    /// `provided_by` as interface -> applications (Dubbo's comma list: split, trimmed, empties dropped).
    pub(crate) fn provided_by_apps(&self) -> BTreeMap<String, Vec<String>> {
        self.provided_by
            .iter()
            .map(|(interface, apps)| {
                let apps = apps
                    .split(',')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(str::to_owned)
                    .collect();
                (interface.clone(), apps)
            })
            .collect()
    }
}

impl ConsumerConfig {
    /// The host this consumer advertises to condition rules: `host` when set, else the `listen` IP when it
    /// is a specific address, else `route_ip()` (the machine's address towards its default route), else
    /// 127.0.0.1.
    pub(crate) fn host_or(&self, route_ip: impl FnOnce() -> Option<IpAddr>) -> IpAddr {
        if let Some(h) = self.host {
            return h;
        }
        if !self.listen.ip().is_unspecified() {
            return self.listen.ip();
        }
        route_ip()
            .filter(|ip| !ip.is_unspecified() && !ip.is_loopback())
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }
}

/// One entry of `consumer.services` (unset keys fall back to the consumer's), or of its `methods` (unset
/// keys fall back to the service's; a method has no `methods`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct CallPolicyConfig {
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) retries: Option<usize>,
    pub(crate) idempotent: Option<bool>,
    pub(crate) rate_limit: Option<u64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) methods: BTreeMap<String, CallPolicyConfig>,
}
