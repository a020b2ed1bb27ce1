//! Validation: the ranges of the key table, then the rules a table cannot say (shapes of values, keys that
//! go together, what a role needs). Every error names its dotted key.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Serialize;

use super::cpus::format_cpu_list;
use super::error::{invalid, ConfigError};
use super::keys::{keys_of, Check, Key, SERVICE_POLICY};
use super::schema::{ConsumerConfig, EtcdSection, Password, ProviderConfig, RuntimeConfig};
use super::{AgentConfig, Role};

impl AgentConfig {
    /// Checks ranges and the rules between keys for running as `role`, against the given list of online
    /// CPUs. Sections not used by `role` are checked too when present (a typo there is still a typo); the
    /// first error is returned.
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
        self.admin
            .listen_for(role)
            .map_err(|why| invalid("admin.listen", why))?;
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
}

/// The table's checks of `keys` over `value` (a section serialized as it would be printed), naming each key
/// `{prefix}.{name}`. Absent keys (unset options) are not checked.
fn check_table<T: Serialize>(prefix: &str, keys: &[Key], value: &T) -> Result<(), ConfigError> {
    let value = toml::Value::try_from(value).map_err(|e| invalid(prefix, e.to_string()))?;
    let Some(table) = value.as_table() else {
        return Ok(());
    };
    for k in keys {
        let Some(got) = table.get(k.name).and_then(toml::Value::as_integer) else {
            continue;
        };
        let got = u64::try_from(got).unwrap_or(0);
        let (min, max) = match k.check {
            Check::Range(min, max) => (min, max),
            Check::OffOrRange(_, _) if got == 0 => continue,
            Check::OffOrRange(min, max) => (min, max),
            Check::None | Check::OneOf(_) => continue,
        };
        if !(min..=max).contains(&got) {
            return Err(ConfigError::OutOfRange {
                key: format!("{prefix}.{}", k.name),
                min,
                max,
                got,
                location: None,
            });
        }
    }
    Ok(())
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
        check_table("runtime", keys_of("runtime"), self)
    }
}

/// An address one can connect to: not unspecified, not port 0.
fn connectable(key: &str, a: SocketAddr) -> Result<(), ConfigError> {
    if a.ip().is_unspecified() || a.port() == 0 {
        return Err(invalid(key, format!("{a} is not an address one can connect to")));
    }
    Ok(())
}

/// Two listen addresses that would share connections: the same port (not 0, which picks a free one) on
/// the same IP, or on any IP when either is unspecified (SO_REUSEPORT lets both bind).
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// A name without blanks: an interface, a tag, an application, a parameter.
fn is_name(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(char::is_whitespace)
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
        check_table("consumer", keys_of("consumer"), self)?;
        if let Some(d) = self.dubbo_listen {
            if overlaps(d, self.listen) {
                return Err(invalid(
                    "consumer.dubbo_listen",
                    format!("{d} is where consumer.listen ({}) takes HTTP", self.listen),
                ));
            }
        }
        if let Some(a) = &self.application {
            if !is_name(a) {
                return Err(invalid(
                    "consumer.application",
                    format!("{a:?} is not an application name"),
                ));
            }
        }
        if let Some(h) = self.host {
            if h.is_unspecified() {
                return Err(invalid(
                    "consumer.host",
                    format!("{h} cannot be advertised; set the IP rules should see"),
                ));
            }
        }
        service_keys("consumer.register_services", &self.register_services)?;
        for (svc, p) in &self.services {
            let key = format!("consumer.services.{svc}");
            if !is_name(svc) {
                return Err(invalid(key, "is not an interface name"));
            }
            check_table(&key, SERVICE_POLICY, p)?;
            for (m, mp) in &p.methods {
                let key = format!("{key}.methods.{m}");
                check_table(&key, SERVICE_POLICY, mp)?;
                if !mp.methods.is_empty() {
                    return Err(invalid(format!("{key}.methods"), "a method has no methods"));
                }
            }
        }
        if self.eject_max_ms < self.eject_base_ms {
            return Err(invalid(
                "consumer.eject_max_ms",
                format!("must be at least consumer.eject_base_ms ({})", self.eject_base_ms),
            ));
        }
        token_and_identity("consumer", &self.token, &self.tls_cert, &self.tls_key)?;
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
        for (svc, doc) in &self.routing {
            if let Err(e) = mesh_balance::RuleSet::from_json(doc) {
                return Err(invalid(format!("consumer.routing.{svc}"), e.to_string()));
            }
        }
        if let Some(t) = self.migration_threshold {
            if !t.is_finite() || t < 0.0 {
                return Err(invalid(
                    "consumer.migration_threshold",
                    format!("{t} is not a number ≥ 0"),
                ));
            }
        }
        for (interface, apps) in self.provided_by_apps() {
            let key = format!("consumer.provided_by.{interface}");
            if interface.contains('/') || !is_name(&interface) {
                return Err(invalid(key, "is not an interface name"));
            }
            if apps.is_empty() {
                return Err(invalid(key, "names no application"));
            }
            if let Some(bad) = apps.iter().find(|a| !is_name(a) || a.contains('/')) {
                return Err(invalid(key, format!("{bad:?} is not an application name")));
            }
        }
        if self
            .subset_seed
            .as_ref()
            .is_some_and(|s| s.is_empty() || s.len() > 256)
        {
            return Err(invalid("consumer.subset_seed", "must be 1 ..= 256 bytes"));
        }
        Ok(())
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
        if self.services.is_empty() {
            return Err(invalid("provider.services", "must list at least one interface"));
        }
        service_keys("provider.services", &self.services)?;
        check_table("provider", keys_of("provider"), self)?;
        token_and_identity("provider", &self.token, &self.tls_cert, &self.tls_key)?;
        if let Some(t) = &self.tag {
            if !is_name(t) {
                return Err(invalid("provider.tag", format!("{t:?} is not a tag")));
            }
        }
        if let Some(k) = self.params.keys().find(|k| !is_name(k)) {
            return Err(invalid(
                "provider.params",
                format!("{k:?} is not a parameter name"),
            ));
        }
        // What goes into the registered Dubbo URL must be writable there: `&` and `;` separate parameters.
        let mut url_values: Vec<(&str, &str)> = vec![("provider.application", &self.application)];
        if let Some(t) = &self.token {
            url_values.push(("provider.token", t));
        }
        if let Some(t) = &self.tag {
            url_values.push(("provider.tag", t));
        }
        for (k, v) in &self.params {
            url_values.extend([("provider.params", k.as_str()), ("provider.params", v.as_str())]);
        }
        for (key, value) in url_values {
            if value.contains(['&', ';']) {
                return Err(invalid(
                    key,
                    format!("{value:?} cannot go into a Dubbo URL: `&` and `;` separate its parameters"),
                ));
            }
        }
        if !is_name(&self.application) {
            return Err(invalid(
                "provider.application",
                format!("{:?} is not an application name", self.application),
            ));
        }
        if let Some(k) = self.extra_keys.iter().find(|k| !is_name(k)) {
            return Err(invalid(
                "provider.extra_keys",
                format!("{k:?} is not a parameter name"),
            ));
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            return Err(invalid(
                "provider.tls_client_ca",
                "mutual TLS needs TLS: set provider.tls_cert and provider.tls_key too",
            ));
        }
        Ok(())
    }
}

/// Checks a list of Dubbo service keys (`group/interface:version`, group and version optional): each one
/// well formed, none twice.
fn service_keys(key: &str, list: &[String]) -> Result<(), ConfigError> {
    let mut seen = BTreeSet::new();
    for s in list {
        let parsed = mesh_registry::dubbo::ServiceKey::parse(s);
        if !is_name(s) || parsed.interface.is_empty() || parsed.interface.contains(['/', ':']) {
            return Err(invalid(
                key,
                format!("{s:?} is not a service key (`group/interface:version`, group and version optional)"),
            ));
        }
        if !seen.insert(s) {
            return Err(invalid(key, format!("{s:?} is listed twice")));
        }
    }
    Ok(())
}

/// The keys both roles have: `token` (sent as an attachment: printable ASCII without spaces, 1..=256
/// bytes), and `tls_cert` / `tls_key`, set together or not at all.
fn token_and_identity(
    section: &str,
    token: &Option<String>,
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
) -> Result<(), ConfigError> {
    if let Some(t) = token {
        if t.is_empty() || t.len() > 256 || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                format!("{section}.token"),
                "must be 1..=256 printable ASCII characters without spaces",
            ));
        }
    }
    let (cert_key, key_key) = (format!("{section}.tls_cert"), format!("{section}.tls_key"));
    match (cert.is_some(), key.is_some()) {
        (true, false) => Err(invalid(key_key, format!("must be set together with {cert_key}"))),
        (false, true) => Err(invalid(cert_key, format!("must be set together with {key_key}"))),
        _ => Ok(()),
    }
}

/// What is wrong with an etcd endpoint, if anything: it must be `http://host:port` or
/// `https://host:port`, nothing more.
fn endpoint_problem(e: &str) -> Option<String> {
    let bad = || Some(format!("{e:?} is not http://host:port or https://host:port"));
    let Some(rest) = e.strip_prefix("http://").or_else(|| e.strip_prefix("https://")) else {
        return bad();
    };
    let Some((host, port)) = rest.rsplit_once(':') else {
        return bad();
    };
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
    };
    if host_ok && port.parse::<u16>().is_ok_and(|p| p != 0) {
        None
    } else {
        bad()
    }
}

impl EtcdSection {
    /// TLS and credentials: https endpoints need the CA, http ones take no TLS files, one scheme for all;
    /// the client certificate and key go together and need the CA; user and password go together.
    fn validate_access(&self) -> Result<(), ConfigError> {
        let https = self
            .endpoints
            .iter()
            .filter(|e| e.starts_with("https://"))
            .count();
        if https > 0 && https < self.endpoints.len() {
            return Err(invalid(
                "etcd.endpoints",
                "mixes http:// and https:// endpoints: one cluster speaks one of them",
            ));
        }
        let tls_files = self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some();
        if https > 0 && self.ca_file.is_none() {
            return Err(invalid(
                "etcd.ca_file",
                "required by https:// endpoints: the PEM file of the CA that signed the etcd servers' \
                 certificates (--etcd-ca-file or MESH_ETCD_CA_FILE)",
            ));
        }
        if https == 0 && tls_files {
            return Err(invalid(
                "etcd.endpoints",
                "are http:// but etcd TLS files are set: use https:// endpoints, or remove etcd.ca_file, \
                 etcd.cert_file and etcd.key_file",
            ));
        }
        match (self.cert_file.is_some(), self.key_file.is_some()) {
            (true, false) => {
                return Err(invalid(
                    "etcd.key_file",
                    "must be set together with etcd.cert_file",
                ))
            }
            (false, true) => {
                return Err(invalid(
                    "etcd.cert_file",
                    "must be set together with etcd.key_file",
                ))
            }
            _ => {}
        }
        match (&self.user, &self.password) {
            (Some(u), _) if u.trim().is_empty() || u.chars().any(char::is_whitespace) => Err(invalid(
                "etcd.user",
                "must be a non-empty name without whitespace",
            )),
            (Some(_), None) => Err(invalid(
                "etcd.password",
                "required with etcd.user (prefer MESH_ETCD_PASSWORD, which --print-config never shows)",
            )),
            (None, Some(_)) => Err(invalid("etcd.user", "required with etcd.password")),
            (_, Some(p)) if p.expose() == Password::REDACTED => Err(invalid(
                "etcd.password",
                "is the <redacted> placeholder that --print-config writes: set the real password \
                 (MESH_ETCD_PASSWORD)",
            )),
            _ => Ok(()),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.endpoints.is_empty() {
            return Err(invalid(
                "etcd.endpoints",
                "must list at least one endpoint, like \"http://127.0.0.1:2379\"",
            ));
        }
        if let Some(problem) = self.endpoints.iter().find_map(|e| endpoint_problem(e)) {
            return Err(invalid("etcd.endpoints", problem));
        }
        self.validate_access()?;
        for (key, root) in [
            ("etcd.root", &self.root),
            ("etcd.services_root", &self.services_root),
            ("etcd.mapping_root", &self.mapping_root),
        ] {
            if !root.starts_with('/') {
                return Err(invalid(key, format!("must start with '/', got {root:?}")));
            }
            if let Err(e) = mesh_registry::dubbo::RegistryRoot::new(root) {
                return Err(invalid(key, e.to_string()));
            }
        }
        check_table("etcd", keys_of("etcd"), self)
    }
}
