//! Agent configuration: a TOML file, command-line flags and environment variables, merged and validated.
//!
//! Precedence, highest first: **flag > environment variable > file > built-in default**. Flags and their
//! environment fallbacks are resolved by clap; what clap yields becomes an [`Overrides`], which [`load`]
//! writes over the file's keys before the typed structs are built, so a value from any layer goes through the
//! same deserialization and the same [`AgentConfig::validate`].
//!
//! Everything below the clap layer works on strings ([`parse_toml`], [`load`], [`merge`]), so every key and
//! every error message is unit-tested without files, environment or a process.
//!
//! Errors ([`ConfigError`]) are one line and name the full dotted key (`consumer.upstream_connections`);
//! errors about values read from the file also give the line and column. toml's own messages name only the
//! last segment of an unknown key and nothing at all for a value of the wrong type ("invalid socket address
//! syntax"), so the file is read in two steps: toml parses it into spanned untyped tables (syntax errors,
//! with toml's position), then each key is checked against the fields of its section's struct and each
//! section is deserialized on its own; when a section fails, its keys are retried one at a time to find the
//! key that fails, whose name and position then go into the error.
//!
//! The reference for every key is `docs/config.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::Args;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use toml::Spanned;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// `consumer.listen` default.
pub(crate) const DEFAULT_CONSUMER_LISTEN: &str = "127.0.0.1:20000";
/// `provider.listen` default.
pub(crate) const DEFAULT_PROVIDER_LISTEN: &str = "127.0.0.1:30000";
/// `provider.dubbo` default.
pub(crate) const DEFAULT_DUBBO: &str = "127.0.0.1:20880";
/// `provider.services` default.
pub(crate) const DEFAULT_SERVICE: &str = "com.alibaba.dubbo.performance.demo.provider.IHelloService";
/// `etcd.prefix` default.
pub(crate) const DEFAULT_ETCD_PREFIX: &str = "/dubbomesh/v1";
/// Accepted `provider.serialization` values.
pub(crate) const SERIALIZATIONS: [&str; 2] = ["hessian2", "fastjson"];

/// The role the process runs as; decides which section is required and which checks apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Consumer,
    Provider,
}

impl Role {
    /// The TOML section of this role.
    pub(crate) fn section(self) -> &'static str {
        match self {
            Role::Consumer => "consumer",
            Role::Provider => "provider",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.section())
    }
}

// ---------------------------------------------------------------------------------------------------------
// The configuration
// ---------------------------------------------------------------------------------------------------------

/// The whole configuration. `consumer` / `provider` are present when the file has the section or when the
/// process runs that role ([`load`] adds the role's section with its defaults); `etcd` only when configured.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentConfig {
    #[serde(default)]
    pub(crate) runtime: RuntimeConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) consumer: Option<ConsumerConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) provider: Option<ProviderConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) etcd: Option<EtcdSection>,
}

/// `[runtime]`: shards and their CPUs, buffers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RawRuntime")]
pub(crate) struct RuntimeConfig {
    /// CPU ids to pin shards to. Default: the CPUs this process may run on (its affinity mask), at most
    /// `std::thread::available_parallelism()` of them (which also honours a cgroup CPU quota).
    pub(crate) cores: Vec<usize>,
    /// Number of shards (one executor + listener each), >= 1. Default: `cores.len()`. When larger than
    /// `cores.len()`, shard `i` runs on `cores[i % cores.len()]`.
    pub(crate) shards: usize,
    /// Per-connection read buffer, 4 KiB..=16 MiB, default 64 KiB.
    pub(crate) read_buffer_bytes: usize,
    /// Accepted connections per shard before new ones are refused, 1..=1_000_000, default 10 000.
    pub(crate) max_connections_per_shard: usize,
}

impl RuntimeConfig {
    /// The CPU shard `i` is pinned to.
    #[allow(dead_code)] // for the shard runtime
    pub(crate) fn core_of_shard(&self, shard: usize) -> usize {
        self.cores[shard % self.cores.len()]
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RawRuntime::default().into()
    }
}

/// What `[runtime]` says before defaults: `shards` defaults to the number of cores *after* every layer
/// (file, env, flags) had its say on `cores`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuntime {
    cores: Option<CoreList>,
    shards: Option<usize>,
    read_buffer_bytes: Option<usize>,
    max_connections_per_shard: Option<usize>,
}

impl From<RawRuntime> for RuntimeConfig {
    fn from(raw: RawRuntime) -> Self {
        let cores = raw.cores.map_or_else(default_cores, |c| c.0);
        RuntimeConfig {
            shards: raw.shards.unwrap_or(cores.len()),
            cores,
            read_buffer_bytes: raw.read_buffer_bytes.unwrap_or(64 * KIB),
            max_connections_per_shard: raw.max_connections_per_shard.unwrap_or(10_000),
        }
    }
}

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

fn addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|_| unreachable!("bad built-in address {s}"))
}

// ---------------------------------------------------------------------------------------------------------
// CPU lists
// ---------------------------------------------------------------------------------------------------------

/// A list of CPU ids: `[0, 1]` in TOML, or the Linux list syntax `"0-3,6"` (TOML string, `--cores`,
/// `MESH_CORES`). Order is kept (shard `i` goes to the `i`-th entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CoreList(pub(crate) Vec<usize>);

impl FromStr for CoreList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid CPU list {s:?}: expected ids and ranges like 0,1 or 0-3 or 0-3,6");
        let mut cores = Vec::new();
        for part in s.split(',').map(str::trim) {
            let (lo, hi) = match part.split_once('-') {
                Some((lo, hi)) => (lo.trim(), hi.trim()),
                None => (part, part),
            };
            let lo: usize = lo.parse().map_err(|_| bad())?;
            let hi: usize = hi.parse().map_err(|_| bad())?;
            if lo > hi || hi - lo >= 4096 {
                return Err(bad());
            }
            cores.extend(lo..=hi);
        }
        Ok(CoreList(cores))
    }
}

impl<'de> Deserialize<'de> for CoreList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CoreList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of CPU ids like [0, 1] or a string like \"0-3\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<CoreList, E> {
                s.parse().map_err(E::custom)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<CoreList, A::Error> {
                let mut cores = Vec::new();
                while let Some(c) = seq.next_element()? {
                    cores.push(c);
                }
                Ok(CoreList(cores))
            }
        }
        d.deserialize_any(V)
    }
}

/// `0,1,2,3,6` as `0-3,6`.
pub(crate) fn format_cpu_list(cpus: &[usize]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if i == j {
            out.push_str(&sorted[i].to_string());
        } else {
            out.push_str(&format!("{}-{}", sorted[i], sorted[j]));
        }
        i = j + 1;
    }
    out
}

/// The CPUs this process may run on: `Cpus_allowed_list` of `/proc/self/status` (the affinity mask, which
/// also reflects a cpuset), else `/sys/devices/system/cpu/online`, else `0..available_parallelism`.
/// `runtime.cores` is checked against this list.
pub(crate) fn online_cpus() -> Vec<usize> {
    let from_status = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .and_then(|v| v.trim().parse::<CoreList>().ok())
    });
    let from_sys = || {
        std::fs::read_to_string("/sys/devices/system/cpu/online")
            .ok()
            .and_then(|s| s.trim().parse::<CoreList>().ok())
    };
    match from_status.or_else(from_sys) {
        Some(CoreList(cpus)) if !cpus.is_empty() => cpus,
        _ => (0..parallelism()).collect(),
    }
}

fn parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Default `runtime.cores`: the first `available_parallelism()` CPUs of [`online_cpus`] (so a CPU quota of 2
/// on a 16-CPU host gives two shards, not sixteen).
pub(crate) fn default_cores() -> Vec<usize> {
    let mut cpus = online_cpus();
    cpus.truncate(parallelism().max(1));
    cpus
}

// ---------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------

/// A 1-based position in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) line: usize,
    pub(crate) column: usize,
}

impl Location {
    fn at(text: &str, offset: usize) -> Location {
        let before = &text[..offset.min(text.len())];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

fn at(location: &Option<Location>) -> String {
    match location {
        Some(l) => format!(" (line {}, column {})", l.line, l.column),
        None => String::new(),
    }
}

/// A configuration error: one line, naming the dotted key wherever one applies, with the file position
/// when the offending value came from the file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The `--config` file cannot be read.
    #[error("cannot read config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not TOML (toml's message, its lines joined with "; ").
    #[error("TOML syntax error{}: {message}", at(.location))]
    Syntax {
        message: String,
        location: Option<Location>,
    },
    /// A key (or section) the agent does not know; `hint` suggests the likely intended key.
    #[error("unknown key `{key}`{}; {hint}", at(.location))]
    UnknownKey {
        key: String,
        hint: String,
        location: Option<Location>,
    },
    /// A value outside its range.
    #[error("{key}: must be between {min} and {max}, got {got}{}", at(.location))]
    OutOfRange {
        key: String,
        min: u64,
        max: u64,
        got: u64,
        location: Option<Location>,
    },
    /// A value of the wrong type or otherwise unacceptable.
    #[error("{key}: {message}{}", at(.location))]
    Invalid {
        key: String,
        message: String,
        location: Option<Location>,
    },
    /// A section or key the role needs is absent.
    #[error("{key}: {reason}")]
    Required { key: String, reason: String },
}

impl ConfigError {
    /// The dotted key the error is about (`None` for read and syntax errors).
    pub(crate) fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } | ConfigError::Syntax { .. } => None,
            ConfigError::UnknownKey { key, .. }
            | ConfigError::OutOfRange { key, .. }
            | ConfigError::Invalid { key, .. }
            | ConfigError::Required { key, .. } => Some(key),
        }
    }

    /// Whether the error is about the file's text (so the file name belongs in front of the message).
    pub(crate) fn is_in_file(&self) -> bool {
        match self {
            ConfigError::Syntax { .. } => true,
            ConfigError::UnknownKey { location, .. }
            | ConfigError::OutOfRange { location, .. }
            | ConfigError::Invalid { location, .. } => location.is_some(),
            ConfigError::Read { .. } | ConfigError::Required { .. } => false,
        }
    }

    fn with_location(mut self, loc: Option<Location>) -> Self {
        match &mut self {
            ConfigError::UnknownKey { location, .. }
            | ConfigError::OutOfRange { location, .. }
            | ConfigError::Invalid { location, .. }
            | ConfigError::Syntax { location, .. } => {
                if location.is_none() {
                    *location = loc;
                }
            }
            ConfigError::Read { .. } | ConfigError::Required { .. } => {}
        }
        self
    }
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
        location: None,
    }
}

fn range<T: Copy + Into<u64>>(key: &str, got: T, min: T, max: T) -> Result<(), ConfigError> {
    let (got, min, max) = (got.into(), min.into(), max.into());
    if (min..=max).contains(&got) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            key: key.to_owned(),
            min,
            max,
            got,
            location: None,
        })
    }
}

fn range_usize(key: &str, got: usize, min: usize, max: usize) -> Result<(), ConfigError> {
    range(key, got as u64, min as u64, max as u64)
}

// ---------------------------------------------------------------------------------------------------------
// Reading the file
// ---------------------------------------------------------------------------------------------------------

/// The sections and their keys, taken from the serde structs themselves (see [`struct_fields`]).
fn sections() -> [(&'static str, &'static [&'static str]); 4] {
    [
        ("runtime", struct_fields::<RawRuntime>()),
        ("consumer", struct_fields::<ConsumerConfig>()),
        ("provider", struct_fields::<ProviderConfig>()),
        ("etcd", struct_fields::<EtcdSection>()),
    ]
}

/// The field names serde's derive gives a struct (it passes them to `deserialize_struct`), so the list of
/// known keys cannot drift from the structs.
fn struct_fields<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("probe"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
            unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// The file as untyped tables, every key known, plus where each value sits.
#[derive(Debug, Default)]
struct Document {
    table: toml::Table,
    /// `section.key` -> position of the key in the file.
    locations: BTreeMap<String, Location>,
}

/// Keys with their positions. Values are not `Spanned`: toml 0.8 fails on a `Spanned<toml::Value>` that is
/// a table made by dotted keys (`consumer.listen = ...`), so positions are those of the keys.
type SpannedTable = BTreeMap<Spanned<String>, toml::Value>;

fn syntax_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let message = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    ConfigError::Syntax {
        message,
        location: e.span().map(|s| Location::at(text, s.start)),
    }
}

impl Document {
    fn parse(text: &str) -> Result<Document, ConfigError> {
        let sections = sections();
        // Step 1: the root, with positions of its keys: syntax errors, unknown sections, non-tables.
        let root: SpannedTable = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
        let mut root: Vec<_> = root.into_iter().collect();
        root.sort_by_key(|(k, _)| k.span().start);
        for (key, value) in &root {
            let location = Some(Location::at(text, key.span().start));
            let name = key.get_ref();
            if !sections.iter().any(|(s, _)| s == name) {
                return Err(ConfigError::UnknownKey {
                    key: name.clone(),
                    hint: root_hint(name),
                    location,
                });
            }
            if !value.is_table() {
                return Err(ConfigError::Invalid {
                    key: name.clone(),
                    message: format!("must be a table (a [{name}] section), got {}", value.type_str()),
                    location,
                });
            }
        }
        // Step 2: every section with the positions of its keys: unknown keys.
        let nested: BTreeMap<String, SpannedTable> =
            toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
        let mut entries: Vec<_> = nested
            .into_iter()
            .flat_map(|(s, t)| t.into_iter().map(move |(k, v)| (s.clone(), k, v)))
            .collect();
        entries.sort_by_key(|(_, k, _)| k.span().start);
        let mut doc = Document::default();
        for (section, key, value) in entries {
            let name = key.get_ref();
            let fields = sections
                .iter()
                .find(|(s, _)| *s == section)
                .map_or(&[][..], |(_, f)| *f);
            if !fields.contains(&name.as_str()) {
                return Err(ConfigError::UnknownKey {
                    key: format!("{section}.{name}"),
                    hint: key_hint(&section, name),
                    location: Some(Location::at(text, key.span().start)),
                });
            }
            doc.locations
                .insert(format!("{section}.{name}"), Location::at(text, key.span().start));
            doc.section_mut(&section).insert(name.clone(), value);
        }
        // Empty sections (`[etcd]` alone) still count as present.
        for (key, _) in root {
            doc.section_mut(key.get_ref());
        }
        Ok(doc)
    }

    fn section_mut(&mut self, section: &str) -> &mut toml::Table {
        let entry = self
            .table
            .entry(section.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        match entry {
            toml::Value::Table(t) => t,
            _ => unreachable!("made a table above"),
        }
    }

    /// Writes a value over the file's, forgetting the file position.
    fn set(&mut self, section: &str, key: &str, value: toml::Value) {
        self.locations.remove(&format!("{section}.{key}"));
        self.section_mut(section).insert(key.to_owned(), value);
    }

    fn take_section(&mut self, section: &str) -> Option<toml::Table> {
        match self.table.remove(section) {
            Some(toml::Value::Table(t)) => Some(t),
            _ => None,
        }
    }

    /// Deserializes one section; on failure finds the key whose value fails on its own.
    fn typed<T: DeserializeOwned>(&self, section: &str, table: toml::Table) -> Result<T, ConfigError> {
        let err = match table.clone().try_into::<T>() {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        for (key, value) in &table {
            let single: toml::Table = [(key.clone(), value.clone())].into_iter().collect();
            if let Err(e) = single.try_into::<T>() {
                let dotted = format!("{section}.{key}");
                let shown = value.to_string();
                let mut message = e.message().trim().to_owned();
                if !message.contains(&shown) {
                    message.push_str(&format!(", got {shown}"));
                }
                let location = self.locations.get(&dotted).copied();
                return Err(invalid(dotted, message).with_location(location));
            }
        }
        Err(invalid(section, err.message().trim()))
    }

    fn build(mut self) -> Result<AgentConfig, ConfigError> {
        let runtime = self.take_section("runtime").unwrap_or_default();
        let consumer = self.take_section("consumer");
        let provider = self.take_section("provider");
        let etcd = self.take_section("etcd");
        Ok(AgentConfig {
            runtime: self.typed("runtime", runtime)?,
            consumer: consumer.map(|t| self.typed("consumer", t)).transpose()?,
            provider: provider.map(|t| self.typed("provider", t)).transpose()?,
            etcd: etcd.map(|t| self.typed("etcd", t)).transpose()?,
        })
    }
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = if name.len() <= 4 { 1 } else { 2 };
    candidates
        .into_iter()
        .map(|c| (distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn root_hint(name: &str) -> String {
    let sections = sections();
    if let Some(s) = closest(name, sections.iter().map(|(s, _)| *s)) {
        return format!("did you mean `[{s}]`?");
    }
    let owners: Vec<String> = sections
        .iter()
        .filter(|(_, fields)| fields.contains(&name))
        .map(|(s, _)| format!("`{s}.{name}`"))
        .collect();
    if !owners.is_empty() {
        return format!("keys belong in a section: did you mean {}?", owners.join(" or "));
    }
    let names: Vec<&str> = sections.iter().map(|(s, _)| *s).collect();
    format!("the sections are {}", names.join(", "))
}

fn key_hint(section: &str, name: &str) -> String {
    let sections = sections();
    let fields = sections
        .iter()
        .find(|(s, _)| *s == section)
        .map_or(&[][..], |(_, f)| *f);
    if let Some(k) = closest(name, fields.iter().copied()) {
        return format!("did you mean `{section}.{k}`?");
    }
    if let Some((other, _)) = sections.iter().find(|(_, f)| f.contains(&name)) {
        return format!("`{name}` belongs in [{other}]: did you mean `{other}.{name}`?");
    }
    format!("[{section}] keys are {}", fields.join(", "))
}

// ---------------------------------------------------------------------------------------------------------
// Overrides, merging, loading
// ---------------------------------------------------------------------------------------------------------

/// Values from flags or environment variables; `None` leaves the file's value (or the default).
/// `listen`, `upstream_connections` and `request_timeout_ms` apply to the running role's section; every
/// other field always sets the key named in its documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Overrides {
    /// `runtime.cores`
    pub(crate) cores: Option<Vec<usize>>,
    /// `runtime.shards`
    pub(crate) shards: Option<usize>,
    /// `consumer.listen` or `provider.listen`
    pub(crate) listen: Option<SocketAddr>,
    /// `consumer.upstream_connections` or `provider.upstream_connections`
    pub(crate) upstream_connections: Option<usize>,
    /// `consumer.request_timeout_ms` or `provider.request_timeout_ms`
    pub(crate) request_timeout_ms: Option<u64>,
    /// `consumer.token` or `provider.token`
    pub(crate) token: Option<String>,
    /// `consumer.providers`
    pub(crate) providers: Option<Vec<SocketAddr>>,
    /// `provider.advertise`
    pub(crate) advertise: Option<SocketAddr>,
    /// `provider.dubbo`
    pub(crate) dubbo: Option<SocketAddr>,
    /// `provider.serialization`
    pub(crate) serialization: Option<String>,
    /// `provider.services`
    pub(crate) services: Option<Vec<String>>,
    /// `provider.weight`
    pub(crate) weight: Option<u32>,
    /// `provider.max_concurrency`
    pub(crate) max_concurrency: Option<u32>,
    /// `provider.register`
    pub(crate) register: Option<bool>,
    /// `etcd.endpoints`
    pub(crate) etcd_endpoints: Option<Vec<String>>,
    /// `etcd.prefix`
    pub(crate) etcd_prefix: Option<String>,
}

impl Overrides {
    fn apply(&self, doc: &mut Document, role: Role) -> Result<(), ConfigError> {
        fn put<T: Serialize>(
            doc: &mut Document,
            section: &str,
            key: &str,
            value: &Option<T>,
        ) -> Result<(), ConfigError> {
            if let Some(v) = value {
                let v = toml::Value::try_from(v)
                    .map_err(|e| invalid(format!("{section}.{key}"), e.to_string()))?;
                doc.set(section, key, v);
            }
            Ok(())
        }
        let own = role.section();
        put(doc, "runtime", "cores", &self.cores)?;
        put(doc, "runtime", "shards", &self.shards)?;
        put(doc, own, "listen", &self.listen)?;
        put(doc, own, "upstream_connections", &self.upstream_connections)?;
        put(doc, own, "request_timeout_ms", &self.request_timeout_ms)?;
        put(doc, own, "token", &self.token)?;
        put(doc, "consumer", "providers", &self.providers)?;
        put(doc, "provider", "advertise", &self.advertise)?;
        put(doc, "provider", "dubbo", &self.dubbo)?;
        put(doc, "provider", "serialization", &self.serialization)?;
        put(doc, "provider", "services", &self.services)?;
        put(doc, "provider", "weight", &self.weight)?;
        put(doc, "provider", "max_concurrency", &self.max_concurrency)?;
        put(doc, "provider", "register", &self.register)?;
        put(doc, "etcd", "endpoints", &self.etcd_endpoints)?;
        put(doc, "etcd", "prefix", &self.etcd_prefix)?;
        Ok(())
    }
}

/// Parses a config file's text: unknown keys, wrong types and syntax are errors; absent keys take their
/// defaults; no range checks (see [`AgentConfig::validate`]).
#[allow(dead_code)] // API for tests and tools; the binary goes through `load`
pub(crate) fn parse_toml(s: &str) -> Result<AgentConfig, ConfigError> {
    Document::parse(s)?.build()
}

/// File text (if any) with `overrides` on top, the role's section added with its defaults if absent; not
/// validated.
pub(crate) fn merge(
    file_text: Option<&str>,
    overrides: &Overrides,
    role: Role,
) -> Result<(AgentConfig, BTreeMap<String, Location>), ConfigError> {
    let mut doc = match file_text {
        Some(text) => Document::parse(text)?,
        None => Document::default(),
    };
    overrides.apply(&mut doc, role)?;
    doc.section_mut(role.section());
    let locations = doc.locations.clone();
    Ok((doc.build()?, locations))
}

/// [`merge`] + [`AgentConfig::validate`]: what a role runs with. Validation errors about a value that came
/// from the file carry its position.
pub(crate) fn load(
    file_text: Option<&str>,
    overrides: &Overrides,
    role: Role,
) -> Result<AgentConfig, ConfigError> {
    load_on(file_text, overrides, role, &online_cpus())
}

/// [`load`] against a given list of online CPUs.
pub(crate) fn load_on(
    file_text: Option<&str>,
    overrides: &Overrides,
    role: Role,
    online: &[usize],
) -> Result<AgentConfig, ConfigError> {
    let (config, locations) = merge(file_text, overrides, role)?;
    config.validate_on(role, online).map_err(|e| {
        let location = e.key().and_then(|k| locations.get(k)).copied();
        e.with_location(location)
    })?;
    Ok(config)
}

// ---------------------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------------------

const TIMEOUT_MAX_MS: u64 = 600_000;

impl AgentConfig {
    /// Checks ranges and the rules between keys for running as `role`, against this machine's CPUs.
    #[allow(dead_code)] // API; the binary goes through `load`
    pub(crate) fn validate(&self, role: Role) -> Result<(), ConfigError> {
        self.validate_on(role, &online_cpus())
    }

    /// [`AgentConfig::validate`] against a given list of online CPUs. Sections not used by `role` are
    /// checked too when present (a typo there is still a typo); the first error is returned.
    pub(crate) fn validate_on(&self, role: Role, online: &[usize]) -> Result<(), ConfigError> {
        self.runtime.validate(online)?;
        let required = |key: &str| ConfigError::Required {
            key: key.to_owned(),
            reason: format!("section required for the {role} role"),
        };
        match role {
            Role::Consumer if self.consumer.is_none() => return Err(required("consumer")),
            Role::Provider if self.provider.is_none() => return Err(required("provider")),
            _ => {}
        }
        if let Some(c) = &self.consumer {
            c.validate()?;
        }
        if let Some(p) = &self.provider {
            p.validate(role == Role::Provider)?;
        }
        if let Some(e) = &self.etcd {
            e.validate()?;
        }
        match role {
            Role::Consumer => {
                let c = self.consumer.as_ref().ok_or_else(|| required("consumer"))?;
                if c.providers.is_empty() && self.etcd.is_none() {
                    return Err(ConfigError::Required {
                        key: "etcd".to_owned(),
                        reason: "required when consumer.providers is empty (set [etcd] endpoints, \
                                 --etcd or MESH_ETCD; or list provider agents in consumer.providers, \
                                 --provider or MESH_PROVIDERS)"
                            .to_owned(),
                    });
                }
            }
            Role::Provider => {
                let p = self.provider.as_ref().ok_or_else(|| required("provider"))?;
                if p.register && self.etcd.is_none() {
                    return Err(ConfigError::Required {
                        key: "etcd".to_owned(),
                        reason: "required for the provider role, which registers provider.advertise \
                                 there (set [etcd] endpoints, --etcd or MESH_ETCD; or provider.register \
                                 = false / --no-register for static mode)"
                            .to_owned(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The configuration as TOML (what `--print-config` prints).
    pub(crate) fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }
}

impl RuntimeConfig {
    fn validate(&self, online: &[usize]) -> Result<(), ConfigError> {
        if self.cores.is_empty() {
            return Err(invalid("runtime.cores", "must list at least one CPU"));
        }
        let mut seen = BTreeSet::new();
        for &core in &self.cores {
            if !seen.insert(core) {
                return Err(invalid("runtime.cores", format!("core {core} is listed twice")));
            }
            if !online.contains(&core) {
                return Err(invalid(
                    "runtime.cores",
                    format!("core {core} is not online (online: {})", format_cpu_list(online)),
                ));
            }
        }
        if self.shards == 0 {
            return Err(invalid("runtime.shards", "must be at least 1, got 0"));
        }
        range_usize(
            "runtime.read_buffer_bytes",
            self.read_buffer_bytes,
            4 * KIB,
            16 * MIB,
        )?;
        range_usize(
            "runtime.max_connections_per_shard",
            self.max_connections_per_shard,
            1,
            1_000_000,
        )
    }
}

/// An address one can connect to: not unspecified, not port 0.
fn connectable(key: &str, a: SocketAddr) -> Result<(), ConfigError> {
    if a.ip().is_unspecified() || a.port() == 0 {
        return Err(invalid(key, format!("{a} is not an address one can connect to")));
    }
    Ok(())
}

impl ConsumerConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = BTreeSet::new();
        for &p in &self.providers {
            connectable("consumer.providers", p)?;
            if !seen.insert(p) {
                return Err(invalid("consumer.providers", format!("{p} is listed twice")));
            }
        }
        range_usize("consumer.upstream_connections", self.upstream_connections, 1, 64)?;
        range(
            "consumer.request_timeout_ms",
            self.request_timeout_ms,
            1,
            TIMEOUT_MAX_MS,
        )?;
        range(
            "consumer.connect_timeout_ms",
            self.connect_timeout_ms,
            1,
            TIMEOUT_MAX_MS,
        )?;
        range_usize("consumer.max_head_bytes", self.max_head_bytes, KIB, MIB)?;
        range_usize("consumer.max_headers", self.max_headers, 1, 1024)?;
        range_usize("consumer.max_body_bytes", self.max_body_bytes, 1, 256 * MIB)?;
        range_usize("consumer.max_form_fields", self.max_form_fields, 1, 4096)?;
        range_usize("consumer.queue_limit", self.queue_limit, 0, 1_000_000)?;
        range(
            "consumer.queue_timeout_ms",
            self.queue_timeout_ms,
            1,
            TIMEOUT_MAX_MS,
        )?;
        range("consumer.idle_timeout_ms", self.idle_timeout_ms, 1, 3_600_000)?;
        range(
            "consumer.request_read_timeout_ms",
            self.request_read_timeout_ms,
            1,
            3_600_000,
        )?;
        range_usize("consumer.retries", self.retries, 0, 10)?;
        for (svc, p) in &self.services {
            let key = format!("consumer.services.{svc}");
            if svc.is_empty() || svc.chars().any(char::is_whitespace) {
                return Err(invalid(key, "is not an interface name"));
            }
            if let Some(t) = p.timeout_ms {
                range(&format!("{key}.timeout_ms"), t, 1, TIMEOUT_MAX_MS)?;
            }
            if let Some(r) = p.retries {
                range_usize(&format!("{key}.retries"), r, 0, 10)?;
            }
            if let Some(r) = p.rate_limit {
                range(&format!("{key}.rate_limit"), r, 1, 10_000_000)?;
            }
            for (m, mp) in &p.methods {
                let key = format!("{key}.methods.{m}");
                if let Some(t) = mp.timeout_ms {
                    range(&format!("{key}.timeout_ms"), t, 1, TIMEOUT_MAX_MS)?;
                }
                if let Some(r) = mp.retries {
                    range_usize(&format!("{key}.retries"), r, 0, 10)?;
                }
                if let Some(r) = mp.rate_limit {
                    range(&format!("{key}.rate_limit"), r, 1, 10_000_000)?;
                }
            }
        }
        range("consumer.eject_failures", self.eject_failures, 0, 1000)?;
        range("consumer.eject_base_ms", self.eject_base_ms, 1, TIMEOUT_MAX_MS)?;
        range("consumer.eject_max_ms", self.eject_max_ms, 1, 3_600_000)?;
        if self.eject_max_ms < self.eject_base_ms {
            return Err(invalid(
                "consumer.eject_max_ms",
                format!("must be at least consumer.eject_base_ms ({})", self.eject_base_ms),
            ));
        }
        if self.heartbeat_ms != 0 {
            range("consumer.heartbeat_ms", self.heartbeat_ms, 100, TIMEOUT_MAX_MS)?;
        }
        range("consumer.cap_headroom_pct", self.cap_headroom_pct, 0, 100)?;
        if let Some(t) = &self.token {
            valid_token("consumer.token", t)?;
        }
        pair(
            "consumer.tls_cert",
            &self.tls_cert,
            "consumer.tls_key",
            &self.tls_key,
        )?;
        if self.tls_cert.is_some() && self.tls_ca.is_none() {
            return Err(invalid(
                "consumer.tls_cert",
                "a client certificate needs TLS: set consumer.tls_ca too",
            ));
        }
        if self.tls_server_name.is_some() && self.tls_ca.is_none() {
            return Err(invalid(
                "consumer.tls_server_name",
                "needs consumer.tls_ca (TLS is off)",
            ));
        }
        if !BALANCERS.contains(&self.balancer.as_str()) {
            return Err(invalid(
                "consumer.balancer",
                format!("must be one of {}, got {:?}", BALANCERS.join(", "), self.balancer),
            ));
        }
        for (svc, doc) in &self.routing {
            if let Err(e) = mesh_balance::RuleSet::from_json(doc) {
                return Err(invalid(format!("consumer.routing.{svc}"), e.to_string()));
            }
        }
        range_usize("consumer.max_frame_bytes", self.max_frame_bytes, KIB, 1024 * MIB)
    }
}

impl ProviderConfig {
    /// `registering`: this process runs the provider role (the advertised address is then used).
    fn validate(&self, registering: bool) -> Result<(), ConfigError> {
        if registering && self.register {
            let a = self.advertise_addr();
            let why = if self.advertise.is_some() {
                "set it to an address consumers can reach"
            } else {
                "it defaults to provider.listen; set provider.advertise"
            };
            if a.ip().is_unspecified() {
                return Err(invalid(
                    "provider.advertise",
                    format!("{} cannot be advertised; {why}", a.ip()),
                ));
            }
            if a.port() == 0 {
                return Err(invalid(
                    "provider.advertise",
                    format!("port 0 cannot be advertised; {why}"),
                ));
            }
        }
        connectable("provider.dubbo", self.dubbo)?;
        if !SERIALIZATIONS.contains(&self.serialization.as_str()) {
            return Err(invalid(
                "provider.serialization",
                format!(
                    "must be \"hessian2\" or \"fastjson\", got {:?}",
                    self.serialization
                ),
            ));
        }
        if self.services.is_empty() {
            return Err(invalid("provider.services", "must list at least one interface"));
        }
        let mut seen = BTreeSet::new();
        for s in &self.services {
            if s.is_empty() || s.chars().any(char::is_whitespace) {
                return Err(invalid(
                    "provider.services",
                    format!("{s:?} is not an interface name"),
                ));
            }
            if !seen.insert(s) {
                return Err(invalid("provider.services", format!("{s:?} is listed twice")));
            }
        }
        range("provider.weight", self.weight, 1, 10_000)?;
        if let Some(m) = self.max_concurrency {
            range("provider.max_concurrency", m, 1, 100_000)?;
        }
        range_usize("provider.upstream_connections", self.upstream_connections, 1, 64)?;
        range(
            "provider.request_timeout_ms",
            self.request_timeout_ms,
            1,
            TIMEOUT_MAX_MS,
        )?;
        range(
            "provider.drain_timeout_ms",
            self.drain_timeout_ms,
            0,
            TIMEOUT_MAX_MS,
        )?;
        range_usize("provider.queue_limit", self.queue_limit, 0, 1_000_000)?;
        range(
            "provider.queue_timeout_ms",
            self.queue_timeout_ms,
            1,
            TIMEOUT_MAX_MS,
        )?;
        range_usize(
            "provider.max_inflight_per_connection",
            self.max_inflight_per_connection,
            1,
            1_000_000,
        )?;
        if let Some(t) = &self.token {
            valid_token("provider.token", t)?;
        }
        pair(
            "provider.tls_cert",
            &self.tls_cert,
            "provider.tls_key",
            &self.tls_key,
        )?;
        range("provider.warmup_ms", self.warmup_ms, 0, 86_400_000)?;
        if let Some(t) = &self.tag {
            if t.is_empty() || t.chars().any(char::is_whitespace) {
                return Err(invalid("provider.tag", format!("{t:?} is not a tag")));
            }
        }
        if let Some((k, _)) = self
            .params
            .iter()
            .find(|(k, _)| k.is_empty() || k.contains(char::is_whitespace))
        {
            return Err(invalid(
                "provider.params",
                format!("{k:?} is not a parameter name"),
            ));
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            return Err(invalid(
                "provider.tls_client_ca",
                "mutual TLS needs TLS: set provider.tls_cert and provider.tls_key too",
            ));
        }
        range_usize("provider.max_frame_bytes", self.max_frame_bytes, KIB, 1024 * MIB)
    }
}

/// Two keys that are set together or not at all.
fn pair<T>(a: &str, va: &Option<T>, b: &str, vb: &Option<T>) -> Result<(), ConfigError> {
    match (va.is_some(), vb.is_some()) {
        (true, false) => Err(invalid(b, format!("must be set together with {a}"))),
        (false, true) => Err(invalid(a, format!("must be set together with {b}"))),
        _ => Ok(()),
    }
}

/// A token is sent as an attachment: printable ASCII without spaces, 1..=256 bytes.
fn valid_token(key: &str, t: &str) -> Result<(), ConfigError> {
    if t.is_empty() || t.len() > 256 || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            key,
            "must be 1..=256 printable ASCII characters without spaces",
        ));
    }
    Ok(())
}

/// `http://host:port` / `https://host:port`, nothing more.
fn valid_endpoint(e: &str) -> bool {
    let Some(rest) = e.strip_prefix("http://").or_else(|| e.strip_prefix("https://")) else {
        return false;
    };
    let Some((host, port)) = rest.rsplit_once(':') else {
        return false;
    };
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
    };
    host_ok && port.parse::<u16>().is_ok_and(|p| p != 0)
}

impl EtcdSection {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.endpoints.is_empty() {
            return Err(invalid(
                "etcd.endpoints",
                "must list at least one endpoint, like \"http://127.0.0.1:2379\"",
            ));
        }
        if let Some(e) = self.endpoints.iter().find(|e| !valid_endpoint(e)) {
            return Err(invalid(
                "etcd.endpoints",
                format!("{e:?} is not http://host:port or https://host:port"),
            ));
        }
        if !self.prefix.starts_with('/') {
            return Err(invalid(
                "etcd.prefix",
                format!("must start with '/', got {:?}", self.prefix),
            ));
        }
        if self.prefix.ends_with('/') {
            return Err(invalid(
                "etcd.prefix",
                format!("must not end with '/', got {:?}", self.prefix),
            ));
        }
        range("etcd.lease_ttl_s", self.lease_ttl_s, 2, 3600)
    }
}

// ---------------------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------------------

/// Keys that only the file sets, listed under `--help`.
const CONSUMER_FILE_KEYS: &str = "\
Keys set only in the config file (docs/config.md has them all):
  runtime.read_buffer_bytes          per-connection read buffer, 4096..=16777216, default 65536
  runtime.max_connections_per_shard  1..=1000000, default 10000
  consumer.connect_timeout_ms        1..=600000, default 1000
  consumer.max_head_bytes            HTTP request line + headers, 1024..=1048576, default 8192
  consumer.max_headers               1..=1024, default 64
  consumer.max_body_bytes            1..=268435456, default 1048576
  consumer.max_form_fields           1..=4096, default 64
  consumer.max_frame_bytes           Dubbo frame cap both ways, 1024..=1073741824, default 8388608
  consumer.queue_limit               calls waiting per shard when all providers are full, 0..=1000000, default 4096
  consumer.queue_timeout_ms          longest wait in that queue, 1..=600000, default 1000
  consumer.idle_timeout_ms           close HTTP connections idle this long, 1..=3600000, default 60000
  consumer.request_read_timeout_ms   a request must arrive whole within this, else 408, default 10000
  consumer.retries                   further providers tried when a call did not run, 0..=10, default 2
  consumer.idempotent                retry calls lost with their connection elsewhere, default true
  consumer.services                  per-service/method timeout_ms, retries, idempotent (see docs)
  consumer.eject_failures            consecutive failures that eject a provider, 0 = never, default 5
  consumer.eject_base_ms             first ejection, doubled per ejection in a row, default 1000
  consumer.eject_max_ms              longest ejection, default 30000
  consumer.heartbeat_ms              heartbeat idle provider links, dead after 3x, 0 = off, default 5000
  consumer.cap_headroom_pct          calls beyond a provider's cap its agent queues, 0..=100, default 5
  consumer.tls_ca                    TLS to provider agents: CA file (PEM); unset = plain TCP
  consumer.tls_server_name           name checked in their certificates, default their IP address
  consumer.tls_cert                  client certificate (PEM) for mutual TLS, with consumer.tls_key
  consumer.tls_key                   its private key (PEM)
  consumer.balancer                  auto (default), adaptive, weighted_random, round_robin, least_active, ...
  consumer.routing                   routing rule documents (JSON) per service, when etcd has none
  etcd.lease_ttl_s                   2..=3600, default 10

Precedence: flag > environment variable > config file > default.";

const PROVIDER_FILE_KEYS: &str = "\
Keys set only in the config file (docs/config.md has them all):
  runtime.read_buffer_bytes          per-connection read buffer, 4096..=16777216, default 65536
  runtime.max_connections_per_shard  1..=1000000, default 10000
  provider.drain_timeout_ms          on SIGTERM: deregister, then wait at most this, 0..=600000, default 10000
  provider.max_frame_bytes           Dubbo frame cap both ways, 1024..=1073741824, default 8388608
  provider.queue_limit               calls waiting per shard at max_concurrency, else status 100, default 1024
  provider.queue_timeout_ms          longest wait in that queue, 1..=600000, default 1000
  provider.max_inflight_per_connection  stop reading a consumer link with this many calls, default 4096
  provider.tls_cert                  TLS on the agent port: certificate chain (PEM), with provider.tls_key
  provider.tls_key                   its private key (PEM)
  provider.tls_client_ca             require consumer certificates signed by this CA (mutual TLS)
  provider.tag                       dubbo.tag registered for tag routing
  provider.params                    attributes registered for condition routing
  provider.warmup_ms                 weight warm-up after start for weighted balancers, default 0 (none)
  etcd.lease_ttl_s                   2..=3600, default 10

Precedence: flag > environment variable > config file > default.";

/// `--config` and `--print-config`.
#[derive(Debug, Args)]
pub(crate) struct FileArgs {
    /// TOML config file; every key is optional (see docs/config.md).
    #[arg(long, env = "MESH_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Print the effective configuration (defaults, file, env and flags merged, validated) as TOML and exit.
    /// No environment variable on purpose: a stray one would turn a deployment into a no-op.
    #[arg(long)]
    print_config: bool,
}

/// `[runtime]` flags.
#[derive(Debug, Args)]
pub(crate) struct RuntimeArgs {
    /// CPUs to pin shards to, like 0,1 or 0-3 or 0-3,6 [TOML: runtime.cores; default: the CPUs this process
    /// may run on, at most available_parallelism of them; each must be online]
    #[arg(long, env = "MESH_CORES", value_name = "LIST", value_parser = trimmed::<CoreList>)]
    cores: Option<CoreList>,

    /// Number of shards, >= 1; beyond the number of cores they are spread round-robin over the cores
    /// [TOML: runtime.shards; default: the number of cores]
    #[arg(long, env = "MESH_SHARDS", value_name = "N", value_parser = trimmed::<usize>)]
    shards: Option<usize>,
}

/// `[etcd]` flags.
#[derive(Debug, Args)]
pub(crate) struct EtcdArgs {
    /// etcd endpoint http(s)://host:port; repeat or comma-separate for several [TOML: etcd.endpoints;
    /// default: none]
    #[arg(long = "etcd", env = "MESH_ETCD", value_name = "URL", value_parser = list::<String>)]
    endpoints: Vec<List<String>>,

    /// etcd key prefix: starts with '/', does not end with '/' [TOML: etcd.prefix; default: /dubbomesh/v1]
    #[arg(long, env = "MESH_ETCD_PREFIX", value_name = "PREFIX")]
    etcd_prefix: Option<String>,
}

/// `mesh-agent consumer`.
#[derive(Debug, Args)]
#[command(after_help = CONSUMER_FILE_KEYS)]
pub(crate) struct ConsumerArgs {
    #[command(flatten)]
    file: FileArgs,

    /// HTTP listen address IP:port [TOML: consumer.listen; default: 127.0.0.1:20000]
    #[arg(long, env = "MESH_LISTEN", value_name = "ADDR", value_parser = trimmed::<SocketAddr>)]
    listen: Option<SocketAddr>,

    /// Static provider agent IP:port; repeat or comma-separate; none => discovery through etcd
    /// [TOML: consumer.providers; default: none]
    #[arg(long = "provider", env = "MESH_PROVIDERS", value_name = "ADDR", value_parser = list::<SocketAddr>)]
    providers: Vec<List<SocketAddr>>,

    /// Connections per shard per provider agent, 1..=64 [TOML: consumer.upstream_connections; default: 2]
    #[arg(long, env = "MESH_UPSTREAM_CONNECTIONS", value_name = "N", value_parser = trimmed::<usize>)]
    upstream_connections: Option<usize>,

    /// Whole-call timeout in ms, 1..=600000 [TOML: consumer.request_timeout_ms; default: 5000]
    #[arg(long, env = "MESH_REQUEST_TIMEOUT_MS", value_name = "MS", value_parser = trimmed::<u64>)]
    request_timeout_ms: Option<u64>,

    /// Shared secret sent to provider agents as Dubbo's `token` attachment [TOML: consumer.token;
    /// default: none]
    #[arg(long, env = "MESH_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    token: Option<String>,

    #[command(flatten)]
    etcd: EtcdArgs,

    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// `mesh-agent provider`.
#[derive(Debug, Args)]
#[command(after_help = PROVIDER_FILE_KEYS)]
pub(crate) struct ProviderArgs {
    #[command(flatten)]
    file: FileArgs,

    /// Agent-to-agent listen address IP:port [TOML: provider.listen; default: 127.0.0.1:30000]
    #[arg(long, env = "MESH_LISTEN", value_name = "ADDR", value_parser = trimmed::<SocketAddr>)]
    listen: Option<SocketAddr>,

    /// Address registered in etcd, IP:port; must not be 0.0.0.0 or port 0 [TOML: provider.advertise;
    /// default: provider.listen]
    #[arg(long, env = "MESH_ADVERTISE", value_name = "ADDR", value_parser = trimmed::<SocketAddr>)]
    advertise: Option<SocketAddr>,

    /// The local Dubbo provider IP:port [TOML: provider.dubbo; default: 127.0.0.1:20880]
    #[arg(long, env = "MESH_DUBBO", value_name = "ADDR", value_parser = trimmed::<SocketAddr>)]
    dubbo: Option<SocketAddr>,

    /// Serialization the local provider speaks [TOML: provider.serialization; default: hessian2]
    #[arg(long, env = "MESH_SERIALIZATION", value_name = "S", value_parser = SERIALIZATIONS)]
    serialization: Option<String>,

    /// Interface served; repeat or comma-separate [TOML: provider.services; default:
    /// com.alibaba.dubbo.performance.demo.provider.IHelloService]
    #[arg(long = "service", env = "MESH_SERVICES", value_name = "NAME", value_parser = list::<String>)]
    services: Vec<List<String>>,

    /// Capacity weight, 1..=10000 [TOML: provider.weight; default: 100]
    #[arg(long, env = "MESH_WEIGHT", value_name = "N", value_parser = trimmed::<u32>)]
    weight: Option<u32>,

    /// The provider's thread cap, advertised to consumers, 1..=100000 [TOML: provider.max_concurrency;
    /// default: not advertised]
    #[arg(long, env = "MESH_MAX_CONCURRENCY", value_name = "N", value_parser = trimmed::<u32>)]
    max_concurrency: Option<u32>,

    /// Connections per shard to the local provider, 1..=64 [TOML: provider.upstream_connections; default: 4]
    #[arg(long, env = "MESH_UPSTREAM_CONNECTIONS", value_name = "N", value_parser = trimmed::<usize>)]
    upstream_connections: Option<usize>,

    /// Call timeout towards the local provider in ms, 1..=600000 [TOML: provider.request_timeout_ms;
    /// default: 5000]
    #[arg(long, env = "MESH_REQUEST_TIMEOUT_MS", value_name = "MS", value_parser = trimmed::<u64>)]
    request_timeout_ms: Option<u64>,

    /// Calls without this Dubbo `token` attachment are refused [TOML: provider.token; default: none]
    #[arg(long, env = "MESH_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// Static mode: do not register in etcd (consumers then list this agent in consumer.providers)
    /// [TOML: provider.register = false; default: register]
    #[arg(long, env = "MESH_NO_REGISTER", value_parser = clap::builder::BoolishValueParser::new())]
    no_register: bool,

    #[command(flatten)]
    etcd: EtcdArgs,

    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// One occurrence of a list flag, or its environment variable: comma-separated, items trimmed, empty items
/// skipped (so `MESH_PROVIDERS=` means no providers, i.e. no override).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct List<T>(Vec<T>);

fn list<T: FromStr>(s: &str) -> Result<List<T>, String>
where
    T::Err: fmt::Display,
{
    s.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| item.parse().map_err(|e| format!("{item:?}: {e}")))
        .collect::<Result<_, _>>()
        .map(List)
}

/// A single value, surrounding whitespace ignored.
fn trimmed<T: FromStr>(s: &str) -> Result<T, String>
where
    T::Err: fmt::Display,
{
    s.trim().parse().map_err(|e: T::Err| e.to_string())
}

/// All occurrences of a list flag together; `None` when there are no items.
fn joined<T: Clone>(lists: &[List<T>]) -> Option<Vec<T>> {
    let all: Vec<T> = lists.iter().flat_map(|l| l.0.iter().cloned()).collect();
    (!all.is_empty()).then_some(all)
}

impl ConsumerArgs {
    pub(crate) fn overrides(&self) -> Overrides {
        Overrides {
            cores: self.runtime.cores.clone().map(|c| c.0),
            shards: self.runtime.shards,
            listen: self.listen,
            upstream_connections: self.upstream_connections,
            request_timeout_ms: self.request_timeout_ms,
            token: self.token.clone(),
            providers: joined(&self.providers),
            etcd_endpoints: joined(&self.etcd.endpoints),
            etcd_prefix: self.etcd.etcd_prefix.clone(),
            ..Overrides::default()
        }
    }

    /// Reads `--config`, merges env and flags, validates.
    pub(crate) fn load(&self) -> anyhow::Result<AgentConfig> {
        load_file(self.file.config.as_deref(), &self.overrides(), Role::Consumer)
    }
}

impl ProviderArgs {
    pub(crate) fn overrides(&self) -> Overrides {
        Overrides {
            cores: self.runtime.cores.clone().map(|c| c.0),
            shards: self.runtime.shards,
            listen: self.listen,
            upstream_connections: self.upstream_connections,
            request_timeout_ms: self.request_timeout_ms,
            token: self.token.clone(),
            advertise: self.advertise,
            dubbo: self.dubbo,
            serialization: self.serialization.clone(),
            services: joined(&self.services),
            weight: self.weight,
            max_concurrency: self.max_concurrency,
            register: self.no_register.then_some(false),
            etcd_endpoints: joined(&self.etcd.endpoints),
            etcd_prefix: self.etcd.etcd_prefix.clone(),
            ..Overrides::default()
        }
    }

    /// Reads `--config`, merges env and flags, validates.
    pub(crate) fn load(&self) -> anyhow::Result<AgentConfig> {
        load_file(self.file.config.as_deref(), &self.overrides(), Role::Provider)
    }
}

/// [`load`] with the file read from `path`; errors located in the file are prefixed with its path.
pub(crate) fn load_file(
    path: Option<&Path>,
    overrides: &Overrides,
    role: Role,
) -> anyhow::Result<AgentConfig> {
    let text = match path {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
            path: p.to_owned(),
            source,
        })?),
        None => None,
    };
    load(text.as_deref(), overrides, role).map_err(|e| match path {
        Some(p) if e.is_in_file() => anyhow::Error::new(e).context(p.display().to_string()),
        _ => e.into(),
    })
}

/// `mesh-agent consumer`: for now, configuration only.
pub(crate) fn run_consumer(args: &ConsumerArgs) -> anyhow::Result<()> {
    let config = args.load()?;
    if args.file.print_config {
        return print_config(Role::Consumer, &config);
    }
    crate::run::consumer(&config)
}

/// `mesh-agent provider`.
pub(crate) fn run_provider(args: &ProviderArgs) -> anyhow::Result<()> {
    let config = args.load()?;
    if args.file.print_config {
        return print_config(Role::Provider, &config);
    }
    crate::run::provider(&config)
}

fn print_config(role: Role, config: &AgentConfig) -> anyhow::Result<()> {
    let mut text = format!(
        "# mesh-agent {role}: effective configuration (flag > env > file > default)\n{}",
        config.to_toml()?
    );
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------------

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    const EIGHT: &[usize] = &[0, 1, 2, 3, 4, 5, 6, 7];

    fn err_of(text: &str) -> String {
        parse_toml(text).unwrap_err().to_string()
    }

    /// Loads for `role` on an 8-CPU machine and returns the error line.
    fn load_err(text: &str, role: Role) -> ConfigError {
        load_on(Some(text), &Overrides::default(), role, EIGHT).unwrap_err()
    }

    const ETCD: &str = "[etcd]\nendpoints = [\"http://127.0.0.1:2379\"]\n";

    #[test]
    fn defaults() {
        let c = parse_toml("").unwrap();
        assert_eq!(c.runtime.cores, default_cores());
        assert_eq!(c.runtime.shards, c.runtime.cores.len());
        assert_eq!(c.runtime.read_buffer_bytes, 65536);
        assert_eq!(c.runtime.max_connections_per_shard, 10_000);
        assert!(c.consumer.is_none() && c.provider.is_none() && c.etcd.is_none());

        let c = parse_toml("[consumer]\n[provider]\n[etcd]\n").unwrap();
        let consumer = c.consumer.unwrap();
        assert_eq!(consumer.listen, addr("127.0.0.1:20000"));
        assert!(consumer.providers.is_empty());
        assert_eq!(consumer.upstream_connections, 2);
        assert_eq!(consumer.request_timeout_ms, 5000);
        assert_eq!(consumer.connect_timeout_ms, 1000);
        assert_eq!(consumer.max_head_bytes, 8192);
        assert_eq!(consumer.max_headers, 64);
        assert_eq!(consumer.max_body_bytes, 1 << 20);
        assert_eq!(consumer.max_form_fields, 64);
        assert_eq!(consumer.max_frame_bytes, 8 << 20);
        let p = c.provider.unwrap();
        assert_eq!(p.listen, addr("127.0.0.1:30000"));
        assert_eq!(p.advertise, None);
        assert_eq!(p.advertise_addr(), p.listen);
        assert_eq!(p.dubbo, addr("127.0.0.1:20880"));
        assert_eq!(p.serialization, "hessian2");
        assert_eq!(p.services, [DEFAULT_SERVICE]);
        assert_eq!(p.weight, 100);
        assert_eq!(p.max_concurrency, None);
        assert_eq!(p.upstream_connections, 4);
        assert_eq!(p.request_timeout_ms, 5000);
        assert_eq!(p.drain_timeout_ms, 10_000);
        assert_eq!(p.max_frame_bytes, 8 << 20);
        assert!(p.register);
        let e = c.etcd.unwrap();
        assert!(e.endpoints.is_empty());
        assert_eq!(e.prefix, "/dubbomesh/v1");
        assert_eq!(e.lease_ttl_s, 10);
    }

    #[test]
    fn default_consumer_with_etcd_is_valid_and_shards_follow_cores() {
        let c = load_on(Some(ETCD), &Overrides::default(), Role::Consumer, EIGHT).unwrap();
        assert!(c.consumer.is_some());
        let c = parse_toml("[runtime]\ncores = \"2-5\"\n").unwrap();
        assert_eq!((c.runtime.cores, c.runtime.shards), (vec![2, 3, 4, 5], 4));
        let c = parse_toml("[runtime]\ncores = [3, 1]\nshards = 6\n").unwrap();
        assert_eq!((c.runtime.cores.clone(), c.runtime.shards), (vec![3, 1], 6));
        assert_eq!(
            (0..6).map(|s| c.runtime.core_of_shard(s)).collect::<Vec<_>>(),
            [3, 1, 3, 1, 3, 1]
        );
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(
            "0-3,6, 8 - 9".parse::<CoreList>().unwrap().0,
            [0, 1, 2, 3, 6, 8, 9]
        );
        for bad in ["", "a", "3-1", "1,", "-1", "0-99999"] {
            assert!(bad.parse::<CoreList>().is_err(), "{bad:?}");
        }
        assert_eq!(format_cpu_list(&[0, 1, 2, 3, 6, 8, 9]), "0-3,6,8-9");
        assert_eq!(format_cpu_list(&[1]), "1");
        let online = online_cpus();
        assert!(!online.is_empty());
        assert!(default_cores().iter().all(|c| online.contains(c)));
    }

    #[test]
    fn unknown_keys_name_the_full_path() {
        let e = err_of("[consumer]\nlistn = \"127.0.0.1:1\"\n");
        assert_eq!(
            e,
            "unknown key `consumer.listn` (line 2, column 1); did you mean `consumer.listen`?"
        );
        // Dotted keys and inline tables give the same path.
        assert!(
            err_of("consumer.listn = 1\n").starts_with("unknown key `consumer.listn` (line 1, column 10)")
        );
        assert!(err_of("consumer = { listn = 1 }\n")
            .starts_with("unknown key `consumer.listn` (line 1, column 14)"));
        assert_eq!(
            err_of("[consumer]\nserialization = \"fastjson\"\n"),
            "unknown key `consumer.serialization` (line 2, column 1); `serialization` belongs in \
             [provider]: did you mean `provider.serialization`?"
        );
        assert_eq!(
            err_of("[etcd]\nxyz = 1\n"),
            "unknown key `etcd.xyz` (line 2, column 1); [etcd] keys are endpoints, prefix, lease_ttl_s"
        );
        assert_eq!(
            err_of("[consumr]\n"),
            "unknown key `consumr` (line 1, column 2); did you mean `[consumer]`?"
        );
        assert_eq!(
            err_of("listen = \"1.2.3.4:5\"\n"),
            "unknown key `listen` (line 1, column 1); keys belong in a section: did you mean \
             `consumer.listen` or `provider.listen`?"
        );
        assert!(
            err_of("[consumer.tls]\nx = 1\n").starts_with("unknown key `consumer.tls` (line 1, column 11)")
        );
        assert!(
            err_of("[consumer]\ntls.x = 1\n").starts_with("unknown key `consumer.tls` (line 2, column 1)")
        );
        // The first error in file order is reported.
        assert!(err_of("[runtime]\nzzz = 1\n[consumer]\naaa = 1\n").starts_with("unknown key `runtime.zzz`"));
        let e = parse_toml("[provider]\nwieght = 1\n").unwrap_err();
        assert_eq!(e.key(), Some("provider.wieght"));
    }

    #[test]
    fn type_errors_name_the_key() {
        assert_eq!(
            err_of("[consumer]\nlisten = \"abc\"\n"),
            "consumer.listen: invalid socket address syntax, got \"abc\" (line 2, column 1)"
        );
        assert_eq!(
            err_of("[runtime]\ncores = [1, \"a\"]\n"),
            "runtime.cores: invalid type: string \"a\", expected usize, got [1, \"a\"] (line 2, column 1)"
        );
        assert!(err_of("[runtime]\ncores = \"1-x\"\n").starts_with("runtime.cores: invalid CPU list \"1-x\""));
        assert_eq!(
            err_of("[provider]\nweight = -1\n"),
            "provider.weight: invalid value: integer `-1`, expected u32 (line 2, column 1)"
        );
        assert_eq!(
            err_of("[provider]\nregister = \"no\"\n"),
            "provider.register: invalid type: string \"no\", expected a boolean (line 2, column 1)"
        );
        assert_eq!(
            err_of("consumer = 5\n"),
            "consumer: must be a table (a [consumer] section), got integer (line 1, column 1)"
        );
        let e = parse_toml("[[etcd]]\n").unwrap_err();
        assert_eq!(e.key(), Some("etcd"));
    }

    #[test]
    fn syntax_errors_are_one_line_with_position() {
        let e = err_of("[consumer\n");
        assert!(
            e.starts_with("TOML syntax error (line 1, column 10): invalid table header"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        let e = err_of("[consumer]\nupstream_connections = 1\nupstream_connections = 2\n");
        assert!(e.contains("duplicate key") && e.contains("line 3"), "{e}");
    }

    /// Every validation rule, with the message it gives. On an 8-CPU machine.
    #[test]
    fn every_validation_error_names_its_key() {
        let cases: &[(Role, &str, &str)] = &[
            (Role::Consumer, "[runtime]\ncores = []\n", "runtime.cores: must list at least one CPU"),
            (Role::Consumer, "[runtime]\ncores = [1, 1]\n", "runtime.cores: core 1 is listed twice"),
            (Role::Consumer, "[runtime]\ncores = \"0-8\"\n", "runtime.cores: core 8 is not online (online: 0-7)"),
            (Role::Consumer, "[runtime]\nshards = 0\n", "runtime.shards: must be at least 1, got 0"),
            (Role::Consumer, "[runtime]\nread_buffer_bytes = 100\n", "runtime.read_buffer_bytes: must be between 4096 and 16777216, got 100"),
            (Role::Consumer, "[runtime]\nmax_connections_per_shard = 0\n", "runtime.max_connections_per_shard: must be between 1 and 1000000, got 0"),
            (Role::Consumer, "[consumer]\nupstream_connections = 0\n", "consumer.upstream_connections: must be between 1 and 64, got 0"),
            (Role::Consumer, "[consumer]\nupstream_connections = 65\n", "consumer.upstream_connections: must be between 1 and 64, got 65"),
            (Role::Consumer, "[consumer]\nrequest_timeout_ms = 0\n", "consumer.request_timeout_ms: must be between 1 and 600000, got 0"),
            (Role::Consumer, "[consumer]\nconnect_timeout_ms = 600001\n", "consumer.connect_timeout_ms: must be between 1 and 600000, got 600001"),
            (Role::Consumer, "[consumer]\nmax_head_bytes = 10\n", "consumer.max_head_bytes: must be between 1024 and 1048576, got 10"),
            (Role::Consumer, "[consumer]\nmax_headers = 0\n", "consumer.max_headers: must be between 1 and 1024, got 0"),
            (Role::Consumer, "[consumer]\nmax_body_bytes = 0\n", "consumer.max_body_bytes: must be between 1 and 268435456, got 0"),
            (Role::Consumer, "[consumer]\nmax_form_fields = 5000\n", "consumer.max_form_fields: must be between 1 and 4096, got 5000"),
            (Role::Consumer, "[consumer]\nmax_frame_bytes = 1\n", "consumer.max_frame_bytes: must be between 1024 and 1073741824, got 1"),
            (Role::Consumer, "[consumer]\nproviders = [\"0.0.0.0:30000\"]\n", "consumer.providers: 0.0.0.0:30000 is not an address one can connect to"),
            (Role::Consumer, "[consumer]\nproviders = [\"10.0.0.1:30000\", \"10.0.0.1:30000\"]\n", "consumer.providers: 10.0.0.1:30000 is listed twice"),
            (Role::Consumer, "[consumer]\n", "etcd: required when consumer.providers is empty"),
            (Role::Consumer, "[etcd]\n", "etcd.endpoints: must list at least one endpoint"),
            (Role::Consumer, "[etcd]\nendpoints = [\"127.0.0.1:2379\"]\n", "etcd.endpoints: \"127.0.0.1:2379\" is not http://host:port or https://host:port"),
            (Role::Consumer, "[etcd]\nendpoints = [\"http://etcd:2379/v3\"]\n", "etcd.endpoints: \"http://etcd:2379/v3\" is not"),
            (Role::Consumer, "[etcd]\nendpoints = [\"http://h:1\"]\nprefix = \"x\"\n", "etcd.prefix: must start with '/', got \"x\""),
            (Role::Consumer, "[etcd]\nendpoints = [\"http://h:1\"]\nprefix = \"/x/\"\n", "etcd.prefix: must not end with '/', got \"/x/\""),
            (Role::Consumer, "[etcd]\nendpoints = [\"http://h:1\"]\nlease_ttl_s = 1\n", "etcd.lease_ttl_s: must be between 2 and 3600, got 1"),
            (Role::Provider, "[provider]\n", "etcd: required for the provider role"),
            (Role::Provider, "[provider]\nlisten = \"0.0.0.0:30000\"\n", "provider.advertise: 0.0.0.0 cannot be advertised; it defaults to provider.listen; set provider.advertise"),
            (Role::Provider, "[provider]\nadvertise = \"[::]:30000\"\n", "provider.advertise: :: cannot be advertised; set it to an address consumers can reach"),
            (Role::Provider, "[provider]\nlisten = \"10.0.0.1:0\"\n", "provider.advertise: port 0 cannot be advertised"),
            (Role::Provider, "[provider]\ndubbo = \"0.0.0.0:20880\"\n", "provider.dubbo: 0.0.0.0:20880 is not an address one can connect to"),
            (Role::Provider, "[provider]\nserialization = \"json\"\n", "provider.serialization: must be \"hessian2\" or \"fastjson\", got \"json\""),
            (Role::Provider, "[provider]\nservices = []\n", "provider.services: must list at least one interface"),
            (Role::Provider, "[provider]\nservices = [\"a b\"]\n", "provider.services: \"a b\" is not an interface name"),
            (Role::Provider, "[provider]\nservices = [\"a\", \"a\"]\n", "provider.services: \"a\" is listed twice"),
            (Role::Provider, "[provider]\nweight = 0\n", "provider.weight: must be between 1 and 10000, got 0"),
            (Role::Provider, "[provider]\nmax_concurrency = 0\n", "provider.max_concurrency: must be between 1 and 100000, got 0"),
            (Role::Provider, "[provider]\nupstream_connections = 0\n", "provider.upstream_connections: must be between 1 and 64, got 0"),
            (Role::Provider, "[provider]\nrequest_timeout_ms = 0\n", "provider.request_timeout_ms: must be between 1 and 600000, got 0"),
            (Role::Provider, "[provider]\ndrain_timeout_ms = 600001\n", "provider.drain_timeout_ms: must be between 0 and 600000, got 600001"),
            (Role::Provider, "[provider]\nmax_frame_bytes = 0\n", "provider.max_frame_bytes: must be between 1024 and 1073741824, got 0"),
        ];
        for (role, body, want) in cases {
            // Add what the role needs so that the case's own error is the first one.
            let mut text = body.to_string();
            if !body.contains("[etcd]") && !want.starts_with("etcd:") {
                text.push_str(ETCD);
            }
            let e = load_err(&text, *role);
            let line = e.to_string();
            assert!(line.starts_with(want), "{text}\n got: {line}\nwant: {want}");
            assert!(!line.contains('\n'));
            let key = want.split(':').next().unwrap();
            assert_eq!(e.key(), Some(key), "{line}");
        }
    }

    #[test]
    fn validation_errors_carry_the_file_position() {
        let e = load_err(
            "[consumer]\nproviders = [\"10.0.0.1:1\"]\nupstream_connections = 0\n",
            Role::Consumer,
        );
        assert_eq!(
            e.to_string(),
            "consumer.upstream_connections: must be between 1 and 64, got 0 (line 3, column 1)"
        );
        assert!(e.is_in_file());
        // From an override: no position, not "in the file".
        let o = Overrides {
            upstream_connections: Some(0),
            ..Overrides::default()
        };
        let e = load_on(
            Some("[consumer]\nproviders = [\"10.0.0.1:1\"]\nupstream_connections = 3\n"),
            &o,
            Role::Consumer,
            EIGHT,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "consumer.upstream_connections: must be between 1 and 64, got 0"
        );
        assert!(!e.is_in_file());
    }

    #[test]
    fn sections_of_the_other_role_are_checked_but_not_required() {
        // A consumer with a static provider list needs no etcd and no [provider]...
        let text = "[consumer]\nproviders = [\"10.0.0.1:30000\"]\n";
        let c = load_on(Some(text), &Overrides::default(), Role::Consumer, EIGHT).unwrap();
        assert!(c.provider.is_none());
        // ...but a present [provider] is still range-checked (not for advertise: it is not used).
        let text =
            "[consumer]\nproviders = [\"10.0.0.1:30000\"]\n[provider]\nlisten = \"0.0.0.0:1\"\nweight = 0\n";
        assert_eq!(load_err(text, Role::Consumer).key(), Some("provider.weight"));
        // validate() wants the role's section; load() adds it.
        let c = parse_toml(ETCD).unwrap();
        assert_eq!(
            c.validate_on(Role::Consumer, EIGHT).unwrap_err().key(),
            Some("consumer")
        );
        // Static provider mode.
        let c = load_on(
            Some("[provider]\nregister = false\nlisten = \"0.0.0.0:30000\"\n"),
            &Overrides::default(),
            Role::Provider,
            EIGHT,
        )
        .unwrap();
        assert!(!c.provider.unwrap().register);
    }

    #[test]
    fn precedence_override_over_file_over_default() {
        let file = "[runtime]\ncores = [0, 1]\n\n[consumer]\nlisten = \"127.0.0.1:1111\"\nupstream_connections = 3\n\n[etcd]\nendpoints = [\"http://file:2379\"]\n";
        let none = Overrides::default();
        let (c, _) = merge(Some(file), &none, Role::Consumer).unwrap();
        let consumer = c.consumer.clone().unwrap();
        assert_eq!(consumer.listen, addr("127.0.0.1:1111")); // file
        assert_eq!(consumer.upstream_connections, 3); // file
        assert_eq!(consumer.request_timeout_ms, 5000); // default
        assert_eq!((c.runtime.cores.as_slice(), c.runtime.shards), (&[0, 1][..], 2));

        let o = Overrides {
            cores: Some(vec![0, 1, 2]),
            listen: Some(addr("127.0.0.1:2222")),
            request_timeout_ms: Some(77),
            providers: Some(vec![addr("10.0.0.9:30000")]),
            etcd_endpoints: Some(vec!["http://flag:2379".to_owned()]),
            etcd_prefix: Some("/p".to_owned()),
            ..Overrides::default()
        };
        let c = load_on(Some(file), &o, Role::Consumer, EIGHT).unwrap();
        let consumer = c.consumer.unwrap();
        assert_eq!(consumer.listen, addr("127.0.0.1:2222")); // override
        assert_eq!(consumer.upstream_connections, 3); // file
        assert_eq!(consumer.request_timeout_ms, 77); // override over default
        assert_eq!(consumer.providers, [addr("10.0.0.9:30000")]);
        // shards follow the overridden cores, as they were not set anywhere
        assert_eq!(
            (c.runtime.cores.as_slice(), c.runtime.shards),
            (&[0, 1, 2][..], 3)
        );
        let etcd = c.etcd.unwrap();
        assert_eq!(
            (etcd.endpoints.as_slice(), etcd.prefix.as_str()),
            (&["http://flag:2379".to_owned()][..], "/p")
        );

        // Role-relative overrides go to the running role's section.
        let o = Overrides {
            listen: Some(addr("10.1.1.1:3333")),
            upstream_connections: Some(9),
            ..Overrides::default()
        };
        let (c, _) = merge(Some(file), &o, Role::Provider).unwrap();
        let p = c.provider.unwrap();
        assert_eq!((p.listen, p.upstream_connections), (addr("10.1.1.1:3333"), 9));
        assert_eq!(c.consumer.unwrap().listen, addr("127.0.0.1:1111"));
    }

    /// Flags (clap) become overrides; env goes through clap the same way (tested on the binary).
    #[test]
    fn clap_args_become_overrides() {
        #[derive(Debug, Parser)]
        struct C {
            #[command(subcommand)]
            cmd: Sub,
        }
        #[derive(Debug, clap::Subcommand)]
        enum Sub {
            Consumer(ConsumerArgs),
            Provider(ProviderArgs),
        }
        let C {
            cmd: Sub::Consumer(a),
        } = C::try_parse_from([
            "x",
            "consumer",
            "--cores",
            "0-1",
            "--shards",
            "4",
            "--listen",
            "127.0.0.1:9",
            "--provider",
            "10.0.0.1:1,10.0.0.2:2",
            "--provider",
            "10.0.0.3:3",
            "--etcd",
            "http://a:1",
            "--etcd-prefix",
            "/q",
            "--upstream-connections",
            "5",
            "--request-timeout-ms",
            "6",
        ])
        .unwrap()
        else {
            panic!("not a consumer")
        };
        let o = a.overrides();
        assert_eq!(o.cores, Some(vec![0, 1]));
        assert_eq!(o.shards, Some(4));
        assert_eq!(o.providers.as_ref().map(Vec::len), Some(3));
        assert_eq!(o.etcd_endpoints, Some(vec!["http://a:1".to_owned()]));
        assert_eq!((o.upstream_connections, o.request_timeout_ms), (Some(5), Some(6)));

        let C {
            cmd: Sub::Provider(a),
        } = C::try_parse_from([
            "x",
            "provider",
            "--advertise",
            "10.0.0.1:30000",
            "--dubbo",
            "127.0.0.1:1",
            "--serialization",
            "fastjson",
            "--service",
            "a.B,c.D",
            "--weight",
            "300",
            "--max-concurrency",
            "200",
            "--no-register",
        ])
        .unwrap()
        else {
            panic!("not a provider")
        };
        let o = a.overrides();
        assert_eq!(o.services, Some(vec!["a.B".to_owned(), "c.D".to_owned()]));
        assert_eq!(
            (o.weight, o.max_concurrency, o.register),
            (Some(300), Some(200), Some(false))
        );
        let c = load_on(None, &o, Role::Provider, EIGHT).unwrap();
        assert_eq!(c.provider.unwrap().serialization, "fastjson");
        assert!(C::try_parse_from(["x", "provider", "--serialization", "json"]).is_err());
    }

    /// `--help` names every key: flags in their own help, file-only keys in the text after it.
    #[test]
    fn help_documents_every_key() {
        use clap::{Args as _, Command};
        for (role, cmd) in [
            (
                Role::Consumer,
                ConsumerArgs::augment_args(Command::new("consumer")),
            ),
            (
                Role::Provider,
                ProviderArgs::augment_args(Command::new("provider")),
            ),
        ] {
            let help = cmd.clone().render_long_help().to_string();
            for (section, fields) in sections() {
                if section != "runtime" && section != "etcd" && section != role.section() {
                    continue;
                }
                for f in fields {
                    let key = format!("{section}.{f}");
                    assert!(
                        help.contains(&key),
                        "{role} --help does not mention {key}:\n{help}"
                    );
                }
            }
            for a in cmd.get_arguments() {
                if a.get_id() != "print_config" && a.get_id() != "help" {
                    assert!(
                        a.get_env().is_some(),
                        "{role}: --{} has no env fallback",
                        a.get_id()
                    );
                }
            }
        }
    }

    #[test]
    fn printed_config_parses_back_to_the_same() {
        let file = "[runtime]\ncores = [0]\n[provider]\nadvertise = \"10.0.0.1:30000\"\nmax_concurrency = 200\n[consumer]\nproviders = [\"10.0.0.1:30000\"]\n[etcd]\nendpoints = [\"https://e:2379\"]\n";
        let c = load_on(Some(file), &Overrides::default(), Role::Provider, EIGHT).unwrap();
        let text = c.to_toml().unwrap();
        assert_eq!(parse_toml(&text).unwrap(), c, "{text}");
    }

    /// The shipped examples: each parses, validates for its role on a machine with as many CPUs as it
    /// pins, and sets what its name says.
    #[test]
    fn deploy_examples_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config");
        let mut seen = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            let role = if name.starts_with("consumer") {
                Role::Consumer
            } else {
                Role::Provider
            };
            let text = std::fs::read_to_string(&path).unwrap();
            let c = load_on(Some(&text), &Overrides::default(), role, EIGHT)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let want_cores = match name.as_str() {
                "consumer-2core" => 2,
                "consumer-8core" | "provider-8core" => 8,
                "provider-small" => 1,
                "provider-medium" => 2,
                "provider-large" => 3,
                other => panic!("unexpected example {other}"),
            };
            assert_eq!(c.runtime.cores.len(), want_cores, "{name}");
            assert_eq!(c.runtime.shards, want_cores, "{name}");
            if role == Role::Provider {
                let p = c.provider.unwrap();
                let want_weight = match name.as_str() {
                    "provider-small" => 100,
                    "provider-medium" => 200,
                    "provider-large" => 300,
                    _ => 800,
                };
                assert_eq!(p.weight, want_weight, "{name}");
                assert_eq!(p.max_concurrency, Some(200), "{name}");
            }
            seen.push(name);
        }
        seen.sort();
        assert_eq!(
            seen,
            [
                "consumer-2core",
                "consumer-8core",
                "provider-8core",
                "provider-large",
                "provider-medium",
                "provider-small"
            ]
        );
    }
}
