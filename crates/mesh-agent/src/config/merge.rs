//! Overrides (flags and environment) written over the file, and loading: merge + validate.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Serialize;

use super::*;

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
