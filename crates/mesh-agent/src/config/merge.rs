//! Overrides (flags and environment) written over the file, and loading: merge + validate.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use super::cpus::online_cpus;
use super::document::Document;
use super::error::{invalid, ConfigError, Location};
use super::keys::{self, Key};
use super::names::SerializationName;
use super::{AgentConfig, Role};

/// Values from flags or environment variables; `None` leaves the file's value (or the default).
/// `listen`, `upstream_connections`, `request_timeout_ms` and `token` apply to the running role's section;
/// every other field always sets the key named in its documentation.
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
    /// `consumer.application`
    pub(crate) application: Option<String>,
    /// `consumer.host`
    pub(crate) host: Option<IpAddr>,
    /// `consumer.providers`
    pub(crate) providers: Option<Vec<SocketAddr>>,
    /// `provider.advertise`
    pub(crate) advertise: Option<SocketAddr>,
    /// `provider.dubbo`
    pub(crate) dubbo: Option<SocketAddr>,
    /// `provider.serialization`
    pub(crate) serialization: Option<SerializationName>,
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

impl Role {
    /// The running role's key of two that exist in both sections.
    fn own(self, consumer: Key, provider: Key) -> Key {
        match self {
            Role::Consumer => consumer,
            Role::Provider => provider,
        }
    }
}

impl Overrides {
    fn apply(&self, doc: &mut Document, role: Role) -> Result<(), ConfigError> {
        fn put<T: Serialize>(doc: &mut Document, key: Key, value: &Option<T>) -> Result<(), ConfigError> {
            if let Some(v) = value {
                let v = toml::Value::try_from(v).map_err(|e| invalid(key.dotted(), e.to_string()))?;
                doc.set(key.section, key.name, v);
            }
            Ok(())
        }
        use keys::*;
        put(doc, RUNTIME_CORES, &self.cores)?;
        put(doc, RUNTIME_SHARDS, &self.shards)?;
        put(doc, role.own(CONSUMER_LISTEN, PROVIDER_LISTEN), &self.listen)?;
        let connections = role.own(CONSUMER_UPSTREAM_CONNECTIONS, PROVIDER_UPSTREAM_CONNECTIONS);
        put(doc, connections, &self.upstream_connections)?;
        let timeout = role.own(CONSUMER_REQUEST_TIMEOUT_MS, PROVIDER_REQUEST_TIMEOUT_MS);
        put(doc, timeout, &self.request_timeout_ms)?;
        put(doc, role.own(CONSUMER_TOKEN, PROVIDER_TOKEN), &self.token)?;
        put(doc, CONSUMER_APPLICATION, &self.application)?;
        put(doc, CONSUMER_HOST, &self.host)?;
        put(doc, CONSUMER_PROVIDERS, &self.providers)?;
        put(doc, PROVIDER_ADVERTISE, &self.advertise)?;
        put(doc, PROVIDER_DUBBO, &self.dubbo)?;
        put(doc, PROVIDER_SERIALIZATION, &self.serialization)?;
        put(doc, PROVIDER_SERVICES, &self.services)?;
        put(doc, PROVIDER_WEIGHT, &self.weight)?;
        put(doc, PROVIDER_MAX_CONCURRENCY, &self.max_concurrency)?;
        put(doc, PROVIDER_REGISTER, &self.register)?;
        put(doc, ETCD_ENDPOINTS, &self.etcd_endpoints)?;
        put(doc, ETCD_PREFIX, &self.etcd_prefix)?;
        Ok(())
    }
}

/// Parses a config file's text: unknown keys, wrong types and syntax are errors; absent keys take their
/// defaults; no range checks (see [`AgentConfig::validate_on`]).
#[cfg(test)]
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

/// [`merge`] + [`AgentConfig::validate_on`] against this machine's CPUs: what a role runs with.
/// Validation errors about a value that came from the file carry its position.
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
