//! `[provider]`: the agent-to-agent port, the local Dubbo provider, the registration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::*;

/// `provider.listen` default.
pub(crate) const DEFAULT_PROVIDER_LISTEN: &str = "127.0.0.1:30000";
/// `provider.dubbo` default.
pub(crate) const DEFAULT_DUBBO: &str = "127.0.0.1:20880";
/// `provider.services` default.
pub(crate) const DEFAULT_SERVICE: &str = "com.alibaba.dubbo.performance.demo.provider.IHelloService";
/// Accepted `provider.serialization` values.
pub(crate) const SERIALIZATIONS: [&str; 2] = ["hessian2", "fastjson"];

/// `[provider]`: the agent-to-agent port, the local Dubbo provider, and what is registered in etcd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ProviderConfig {
    /// Agent-to-agent listen address, default 127.0.0.1:30000.
    pub(crate) listen: SocketAddr,
    /// Address registered in etcd; default `listen` (which then must not be unspecified or port 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) advertise: Option<SocketAddr>,
    /// The local Dubbo provider, default 127.0.0.1:20880.
    pub(crate) dubbo: SocketAddr,
    /// `hessian2` (default) or `fastjson`.
    pub(crate) serialization: String,
    /// Interfaces served, non-empty.
    pub(crate) services: Vec<String>,
    /// Capacity weight, 1..=10 000, default 100.
    pub(crate) weight: u32,
    /// The provider's thread cap, advertised to consumers, 1..=100 000 when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_concurrency: Option<u32>,
    /// Connections per shard to the local provider, 1..=64, default 4.
    pub(crate) upstream_connections: usize,
    /// Call timeout towards the local provider, 1..=600 000 ms, default 5000.
    pub(crate) request_timeout_ms: u64,
    /// On SIGTERM: deregister, then wait at most this for in-flight calls, 0..=600 000 ms, default 10 000.
    pub(crate) drain_timeout_ms: u64,
    /// Dubbo frame body cap, both ways, 1 KiB..=1 GiB, default 8 MiB.
    pub(crate) max_frame_bytes: usize,
    /// Register in etcd (default). `false` is static mode: no etcd, consumers list this agent in
    /// `consumer.providers`.
    pub(crate) register: bool,
    /// Calls waiting for the local provider when `max_concurrency` calls are already on it (per shard),
    /// 0..=1 000 000, default 1024; beyond it, or after `queue_timeout_ms`, Dubbo status 100.
    pub(crate) queue_limit: usize,
    /// Longest wait in that queue, 1..=600 000 ms, default 1000.
    pub(crate) queue_timeout_ms: u64,
    /// Calls in flight per consumer connection before the agent stops reading from it (back-pressure),
    /// 1..=1 000 000, default 4096.
    pub(crate) max_inflight_per_connection: usize,
    /// Calls must carry this as Dubbo's `token` attachment, else they are refused (status 40) without
    /// reaching the provider. Env `MESH_TOKEN`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) token: Option<String>,
    /// TLS on the agent-to-agent port: certificate chain (PEM), with `tls_key`. Unset: plain TCP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Require consumer agents to present a certificate signed by this CA (PEM): mutual TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tls_client_ca: Option<PathBuf>,
    /// Dubbo's `dubbo.tag` of this provider, registered for tag routing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tag: Option<String>,
    /// Attributes registered for condition routing (`application = "orders"`, `zone = "a"`, ...).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) params: BTreeMap<String, String>,
    /// Warm-up: consumers that balance by weight ramp this provider's weight up over this long after the
    /// agent's start (Dubbo's formula), 0..=86 400 000 ms; default 0 = none (the agent cannot know when its
    /// provider started; set it, e.g. to Dubbo's 600 000, when both start together).
    pub(crate) warmup_ms: u64,
}

impl ProviderConfig {
    /// The address registered in etcd: `advertise`, else `listen`.
    pub(crate) fn advertise_addr(&self) -> SocketAddr {
        self.advertise.unwrap_or(self.listen)
    }
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            listen: addr(DEFAULT_PROVIDER_LISTEN),
            advertise: None,
            dubbo: addr(DEFAULT_DUBBO),
            serialization: SERIALIZATIONS[0].to_owned(),
            services: vec![DEFAULT_SERVICE.to_owned()],
            weight: 100,
            max_concurrency: None,
            upstream_connections: 4,
            request_timeout_ms: 5000,
            drain_timeout_ms: 10_000,
            max_frame_bytes: 8 * MIB,
            register: true,
            queue_limit: 1024,
            queue_timeout_ms: 1000,
            max_inflight_per_connection: 4096,
            token: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tag: None,
            params: BTreeMap::new(),
            warmup_ms: 0,
        }
    }
}
