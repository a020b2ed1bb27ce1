//! The command line: clap arguments with their environment fallbacks, `--help`, the role entry points.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::*;
use std::io::Write;

use clap::Args;

/// Keys that only the file sets, listed under `--help`.
pub(super) const CONSUMER_FILE_KEYS: &str = "\
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

pub(super) const PROVIDER_FILE_KEYS: &str = "\
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

pub(super) fn list<T: FromStr>(s: &str) -> Result<List<T>, String>
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
pub(super) fn trimmed<T: FromStr>(s: &str) -> Result<T, String>
where
    T::Err: fmt::Display,
{
    s.trim().parse().map_err(|e: T::Err| e.to_string())
}

/// All occurrences of a list flag together; `None` when there are no items.
pub(super) fn joined<T: Clone>(lists: &[List<T>]) -> Option<Vec<T>> {
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

pub(super) fn print_config(role: Role, config: &AgentConfig) -> anyhow::Result<()> {
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
