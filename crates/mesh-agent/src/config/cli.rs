//! The command line of each role: clap arguments whose flag, environment variable and help come from the
//! key table, turned into [`Overrides`]; and loading the `--config` file.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::Args;

use super::cpus::CoreList;
use super::error::ConfigError;
use super::keys::*;
use super::merge::{load, Overrides};
use super::names::SerializationName;
use super::reference::{file_only_keys, flag_help};
use super::{AgentConfig, Role};

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
    #[arg(long = RUNTIME_CORES.long(), env = RUNTIME_CORES.env(), value_name = RUNTIME_CORES.value_name(),
          help = flag_help(&RUNTIME_CORES), value_parser = trimmed::<CoreList>)]
    cores: Option<CoreList>,

    #[arg(long = RUNTIME_SHARDS.long(), env = RUNTIME_SHARDS.env(), value_name = RUNTIME_SHARDS.value_name(),
          help = flag_help(&RUNTIME_SHARDS), value_parser = trimmed::<usize>)]
    shards: Option<usize>,
}

/// `[etcd]` flags.
#[derive(Debug, Args)]
pub(crate) struct EtcdArgs {
    #[arg(long = ETCD_ENDPOINTS.long(), env = ETCD_ENDPOINTS.env(), value_name = ETCD_ENDPOINTS.value_name(),
          help = flag_help(&ETCD_ENDPOINTS), value_parser = list::<String>)]
    endpoints: Vec<List<String>>,

    #[arg(long = ETCD_PREFIX.long(), env = ETCD_PREFIX.env(), value_name = ETCD_PREFIX.value_name(),
          help = flag_help(&ETCD_PREFIX))]
    etcd_prefix: Option<String>,
}

/// `mesh-agent consumer`.
#[derive(Debug, Args)]
#[command(after_help = file_only_keys(Role::Consumer))]
pub(crate) struct ConsumerArgs {
    #[command(flatten)]
    file: FileArgs,

    #[arg(long = CONSUMER_LISTEN.long(), env = CONSUMER_LISTEN.env(), value_name = CONSUMER_LISTEN.value_name(),
          help = flag_help(&CONSUMER_LISTEN), value_parser = trimmed::<SocketAddr>)]
    listen: Option<SocketAddr>,

    #[arg(long = CONSUMER_APPLICATION.long(), env = CONSUMER_APPLICATION.env(),
          value_name = CONSUMER_APPLICATION.value_name(), help = flag_help(&CONSUMER_APPLICATION),
          value_parser = trimmed::<String>)]
    application: Option<String>,

    #[arg(long = CONSUMER_HOST.long(), env = CONSUMER_HOST.env(), value_name = CONSUMER_HOST.value_name(),
          help = flag_help(&CONSUMER_HOST), value_parser = trimmed::<IpAddr>)]
    host: Option<IpAddr>,

    #[arg(long = CONSUMER_PROVIDERS.long(), env = CONSUMER_PROVIDERS.env(),
          value_name = CONSUMER_PROVIDERS.value_name(), help = flag_help(&CONSUMER_PROVIDERS),
          value_parser = list::<SocketAddr>)]
    providers: Vec<List<SocketAddr>>,

    #[arg(long = CONSUMER_UPSTREAM_CONNECTIONS.long(), env = CONSUMER_UPSTREAM_CONNECTIONS.env(),
          value_name = CONSUMER_UPSTREAM_CONNECTIONS.value_name(),
          help = flag_help(&CONSUMER_UPSTREAM_CONNECTIONS), value_parser = trimmed::<usize>)]
    upstream_connections: Option<usize>,

    #[arg(long = CONSUMER_REQUEST_TIMEOUT_MS.long(), env = CONSUMER_REQUEST_TIMEOUT_MS.env(),
          value_name = CONSUMER_REQUEST_TIMEOUT_MS.value_name(),
          help = flag_help(&CONSUMER_REQUEST_TIMEOUT_MS), value_parser = trimmed::<u64>)]
    request_timeout_ms: Option<u64>,

    #[arg(long = CONSUMER_TOKEN.long(), env = CONSUMER_TOKEN.env(), value_name = CONSUMER_TOKEN.value_name(),
          help = flag_help(&CONSUMER_TOKEN), hide_env_values = true)]
    token: Option<String>,

    #[command(flatten)]
    etcd: EtcdArgs,

    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// `mesh-agent provider`.
#[derive(Debug, Args)]
#[command(after_help = file_only_keys(Role::Provider))]
pub(crate) struct ProviderArgs {
    #[command(flatten)]
    file: FileArgs,

    #[arg(long = PROVIDER_LISTEN.long(), env = PROVIDER_LISTEN.env(), value_name = PROVIDER_LISTEN.value_name(),
          help = flag_help(&PROVIDER_LISTEN), value_parser = trimmed::<SocketAddr>)]
    listen: Option<SocketAddr>,

    #[arg(long = PROVIDER_ADVERTISE.long(), env = PROVIDER_ADVERTISE.env(),
          value_name = PROVIDER_ADVERTISE.value_name(), help = flag_help(&PROVIDER_ADVERTISE),
          value_parser = trimmed::<SocketAddr>)]
    advertise: Option<SocketAddr>,

    #[arg(long = PROVIDER_DUBBO.long(), env = PROVIDER_DUBBO.env(), value_name = PROVIDER_DUBBO.value_name(),
          help = flag_help(&PROVIDER_DUBBO), value_parser = trimmed::<SocketAddr>)]
    dubbo: Option<SocketAddr>,

    #[arg(long = PROVIDER_SERIALIZATION.long(), env = PROVIDER_SERIALIZATION.env(),
          value_name = PROVIDER_SERIALIZATION.value_name(), help = flag_help(&PROVIDER_SERIALIZATION),
          value_parser = trimmed::<SerializationName>)]
    serialization: Option<SerializationName>,

    #[arg(long = PROVIDER_SERVICES.long(), env = PROVIDER_SERVICES.env(),
          value_name = PROVIDER_SERVICES.value_name(), help = flag_help(&PROVIDER_SERVICES),
          value_parser = list::<String>)]
    services: Vec<List<String>>,

    #[arg(long = PROVIDER_WEIGHT.long(), env = PROVIDER_WEIGHT.env(), value_name = PROVIDER_WEIGHT.value_name(),
          help = flag_help(&PROVIDER_WEIGHT), value_parser = trimmed::<u32>)]
    weight: Option<u32>,

    #[arg(long = PROVIDER_MAX_CONCURRENCY.long(), env = PROVIDER_MAX_CONCURRENCY.env(),
          value_name = PROVIDER_MAX_CONCURRENCY.value_name(), help = flag_help(&PROVIDER_MAX_CONCURRENCY),
          value_parser = trimmed::<u32>)]
    max_concurrency: Option<u32>,

    #[arg(long = PROVIDER_UPSTREAM_CONNECTIONS.long(), env = PROVIDER_UPSTREAM_CONNECTIONS.env(),
          value_name = PROVIDER_UPSTREAM_CONNECTIONS.value_name(),
          help = flag_help(&PROVIDER_UPSTREAM_CONNECTIONS), value_parser = trimmed::<usize>)]
    upstream_connections: Option<usize>,

    #[arg(long = PROVIDER_REQUEST_TIMEOUT_MS.long(), env = PROVIDER_REQUEST_TIMEOUT_MS.env(),
          value_name = PROVIDER_REQUEST_TIMEOUT_MS.value_name(),
          help = flag_help(&PROVIDER_REQUEST_TIMEOUT_MS), value_parser = trimmed::<u64>)]
    request_timeout_ms: Option<u64>,

    #[arg(long = PROVIDER_TOKEN.long(), env = PROVIDER_TOKEN.env(), value_name = PROVIDER_TOKEN.value_name(),
          help = flag_help(&PROVIDER_TOKEN), hide_env_values = true)]
    token: Option<String>,

    #[arg(long = PROVIDER_REGISTER.long(), env = PROVIDER_REGISTER.env(), help = flag_help(&PROVIDER_REGISTER),
          value_parser = clap::builder::BoolishValueParser::new())]
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
            application: self.application.clone(),
            host: self.host,
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

    /// `--print-config`.
    pub(crate) fn print_config(&self) -> bool {
        self.file.print_config
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
            serialization: self.serialization,
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

    /// `--print-config`.
    pub(crate) fn print_config(&self) -> bool {
        self.file.print_config
    }
}

/// [`load`] with the file read from `path`; errors located in the file are prefixed with its path.
fn load_file(path: Option<&Path>, overrides: &Overrides, role: Role) -> anyhow::Result<AgentConfig> {
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
