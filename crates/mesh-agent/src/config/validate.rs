//! Validation: ranges and the rules between keys, per role.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use super::*;

pub(super) const TIMEOUT_MAX_MS: u64 = 600_000;

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
    pub(super) fn validate(&self, online: &[usize]) -> Result<(), ConfigError> {
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
pub(super) fn connectable(key: &str, a: SocketAddr) -> Result<(), ConfigError> {
    if a.ip().is_unspecified() || a.port() == 0 {
        return Err(invalid(key, format!("{a} is not an address one can connect to")));
    }
    Ok(())
}

impl ConsumerConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
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
    pub(super) fn validate(&self, registering: bool) -> Result<(), ConfigError> {
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
pub(super) fn pair<T>(a: &str, va: &Option<T>, b: &str, vb: &Option<T>) -> Result<(), ConfigError> {
    match (va.is_some(), vb.is_some()) {
        (true, false) => Err(invalid(b, format!("must be set together with {a}"))),
        (false, true) => Err(invalid(a, format!("must be set together with {b}"))),
        _ => Ok(()),
    }
}

/// A token is sent as an attachment: printable ASCII without spaces, 1..=256 bytes.
pub(super) fn valid_token(key: &str, t: &str) -> Result<(), ConfigError> {
    if t.is_empty() || t.len() > 256 || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            key,
            "must be 1..=256 printable ASCII characters without spaces",
        ));
    }
    Ok(())
}

/// `http://host:port` / `https://host:port`, nothing more.
pub(super) fn valid_endpoint(e: &str) -> bool {
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
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
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
