//! `[consumer]`: the HTTP front and the connections to provider agents.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::*;

/// `consumer.listen` default.
pub(crate) const DEFAULT_CONSUMER_LISTEN: &str = "127.0.0.1:20000";

/// `[consumer]`: the HTTP front and the connections to provider agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ConsumerConfig {
    /// HTTP listen address, default 127.0.0.1:20000.
    pub(crate) listen: SocketAddr,
    /// Static provider agents; empty => discovery through etcd (then `[etcd]` is required).
    pub(crate) providers: Vec<SocketAddr>,
    /// Connections per shard per provider agent, 1..=64, default 2.
    pub(crate) upstream_connections: usize,
    /// Whole-call timeout, 1..=600 000 ms, default 5000.
    pub(crate) request_timeout_ms: u64,
    /// Connect timeout to a provider agent, 1..=600 000 ms, default 1000.
    pub(crate) connect_timeout_ms: u64,
    /// HTTP request line + headers cap, 1 KiB..=1 MiB, default 8 KiB.
    pub(crate) max_head_bytes: usize,
    /// HTTP header count cap, 1..=1024, default 64.
    pub(crate) max_headers: usize,
    /// HTTP body cap, 1..=256 MiB, default 1 MiB.
    pub(crate) max_body_bytes: usize,
    /// Form field count cap, 1..=4096, default 64.
    pub(crate) max_form_fields: usize,
    /// Dubbo frame body cap, both ways, 1 KiB..=1 GiB, default 8 MiB.
    pub(crate) max_frame_bytes: usize,
    /// Calls waiting (per shard) while every provider is at its concurrency cap, 0..=1 000 000, default
    /// 4096; beyond it, an immediate 503.
    pub(crate) queue_limit: usize,
    /// Longest wait in that queue before a 503, 1..=600 000 ms, default 1000.
    pub(crate) queue_timeout_ms: u64,
    /// An HTTP connection idle between requests (or not reading its answers) this long is closed,
    /// 1..=3 600 000 ms, default 60 000.
    pub(crate) idle_timeout_ms: u64,
    /// A request must arrive whole (head and body) within this long of its first byte, else 408 and the
    /// connection closes (slowloris), 1..=3 600 000 ms, default 10 000.
    pub(crate) request_read_timeout_ms: u64,
    /// Further providers tried after one that provably did not run a call (connect failure, Dubbo status
    /// 60 or 100) and, for idempotent calls, after a connection lost with the call on it; 0..=10, default 2.
    pub(crate) retries: usize,
    /// Calls may run twice (default true, right for the benchmark's `hash`): a call in flight on a
    /// connection that dies is retried on another provider. Per service/method in `consumer.services`.
    pub(crate) idempotent: bool,
    /// Per-service and per-method overrides of `request_timeout_ms`, `retries` and `idempotent`:
    /// `[consumer.services."com.example.Svc"]` with `timeout_ms`, `retries`, `idempotent` and a
    /// `methods` table of the same keys per method name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) services: BTreeMap<String, ServicePolicyConfig>,
    /// Consecutive failures (lost connection, timeout, provider-side error, failed dial) that eject a
    /// provider agent from rotation, 0..=1000, 0 = never; default 5. The last usable provider of a service
    /// is never ejected.
    pub(crate) eject_failures: u32,
    /// First ejection, doubled for each ejection in a row up to `eject_max_ms`; then one probe call
    /// decides. 1..=600 000 ms, default 1000.
    pub(crate) eject_base_ms: u64,
    /// Longest ejection, 1..=3 600 000 ms, default 30 000.
    pub(crate) eject_max_ms: u64,
    /// Heartbeat on an idle connection to a provider agent after this long; three times it with nothing
    /// received declares the connection dead. 0 = none, else 100..=600 000 ms; default 5000.
    pub(crate) heartbeat_ms: u64,
    /// Calls sent to a provider beyond its announced cap, in percent of it (its agent queues them so its
    /// threads never wait for the next call's round trip), 0..=100, default 5.
    pub(crate) cap_headroom_pct: u32,
    /// Shared secret sent as Dubbo's `token` attachment; provider agents with `provider.token` refuse
    /// calls without it. Env `MESH_TOKEN`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) token: Option<String>,
    /// TLS to provider agents: PEM file of the CA that signed their certificates. Unset: plain TCP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// Name checked in the provider agents' certificates; default: their IP address (an IP SAN).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tls_server_name: Option<String>,
    /// Client certificate chain (PEM) for provider agents that require one, with `tls_key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tls_key: Option<PathBuf>,
    /// How a provider is picked among the routed candidates: `auto` (default: `round_robin` by weight when
    /// a service's providers register different weights, else `adaptive`), `adaptive` (power of two
    /// choices over in-flight calls and latency, no weights needed), `weighted_random`, `round_robin`
    /// (smooth weighted), `least_active`, `shortest_response`, `consistent_hash` (on the first argument).
    pub(crate) balancer: String,
    /// Routing rule documents per service (JSON, see docs/config.md), used when etcd has none for the
    /// service at `{prefix}/{service}/routing`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) routing: BTreeMap<String, String>,
}

/// Accepted `consumer.balancer` values.
pub(crate) const BALANCERS: [&str; 7] = [
    "auto",
    "adaptive",
    "weighted_random",
    "round_robin",
    "least_active",
    "shortest_response",
    "consistent_hash",
];

/// One entry of `consumer.services`: unset keys fall back to the consumer's.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ServicePolicyConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) retries: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) idempotent: Option<bool>,
    /// Calls per second the whole agent admits for the service (each method counted on its own), split
    /// over the shards; beyond it, 429. 1..=10 000 000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rate_limit: Option<u64>,
    /// Per-method overrides; unset keys fall back to the service's.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) methods: BTreeMap<String, MethodPolicyConfig>,
}

/// One entry of `consumer.services.<svc>.methods`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct MethodPolicyConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) retries: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) idempotent: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rate_limit: Option<u64>,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            listen: addr(DEFAULT_CONSUMER_LISTEN),
            providers: Vec::new(),
            upstream_connections: 2,
            request_timeout_ms: 5000,
            connect_timeout_ms: 1000,
            max_head_bytes: 8 * KIB,
            max_headers: 64,
            max_body_bytes: MIB,
            max_form_fields: 64,
            max_frame_bytes: 8 * MIB,
            queue_limit: 4096,
            queue_timeout_ms: 1000,
            idle_timeout_ms: 60_000,
            request_read_timeout_ms: 10_000,
            retries: 2,
            idempotent: true,
            services: BTreeMap::new(),
            eject_failures: 5,
            eject_base_ms: 1000,
            eject_max_ms: 30_000,
            heartbeat_ms: 5000,
            cap_headroom_pct: 5,
            token: None,
            tls_ca: None,
            tls_server_name: None,
            tls_cert: None,
            tls_key: None,
            balancer: BALANCERS[0].to_owned(),
            routing: BTreeMap::new(),
        }
    }
}
