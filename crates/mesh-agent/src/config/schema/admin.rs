//! `[admin]`: the admin HTTP listener (metrics, readiness, registry and configuration views, drain).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::config::Role;

/// The consumer agent's admin address when `admin.listen` is not set (Envoy's admin port).
pub(crate) const CONSUMER_ADMIN_DEFAULT: &str = "127.0.0.1:9901";
/// The provider agent's: one more, so that a consumer and a provider agent on one host do not collide.
pub(crate) const PROVIDER_ADMIN_DEFAULT: &str = "127.0.0.1:9902";
/// `admin.listen = "off"`: no admin listener.
pub(crate) const OFF: &str = "off";

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdminConfig {
    /// `IP:port`, or `off`; `None`: the role's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) listen: Option<String>,
    /// The shards record per-call metrics (see [`AdminConfig::records_metrics`]).
    #[serde(default = "metrics_on")]
    pub(crate) metrics: bool,
}

fn metrics_on() -> bool {
    true
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: None,
            metrics: metrics_on(),
        }
    }
}

/// Where the admin listener goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdminListen {
    Off,
    /// The role's default address: when it is taken (another agent on the host), the agent runs without
    /// an admin listener and says so.
    Default(SocketAddr),
    /// Set by the operator: failing to bind it stops the agent.
    Configured(SocketAddr),
}

impl AdminConfig {
    /// Whether the shards record per-call metrics: `metrics`, and a listener that could show them.
    pub(crate) fn records_metrics(&self) -> bool {
        let off = self
            .listen
            .as_deref()
            .is_some_and(|l| l.trim().eq_ignore_ascii_case(OFF));
        self.metrics && !off
    }

    /// The listener for `role`, or why `admin.listen` is not an address.
    pub(crate) fn listen_for(&self, role: Role) -> Result<AdminListen, String> {
        match self.listen.as_deref().map(str::trim) {
            None => {
                let default = match role {
                    Role::Consumer => CONSUMER_ADMIN_DEFAULT,
                    Role::Provider => PROVIDER_ADMIN_DEFAULT,
                };
                default
                    .parse()
                    .map(AdminListen::Default)
                    .map_err(|e| format!("{default}: {e}"))
            }
            Some(s) if s.eq_ignore_ascii_case(OFF) => Ok(AdminListen::Off),
            Some(s) => s
                .parse()
                .map(AdminListen::Configured)
                .map_err(|e| format!("expected \"IP:port\" or \"off\", got {s:?} ({e})")),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_differ_by_role_and_off_turns_it_off() {
        let none = AdminConfig::default();
        let c = none.listen_for(Role::Consumer).unwrap();
        let p = none.listen_for(Role::Provider).unwrap();
        assert_eq!(c, AdminListen::Default(CONSUMER_ADMIN_DEFAULT.parse().unwrap()));
        assert_ne!(c, p);
        let off = AdminConfig {
            listen: Some("off".into()),
            ..AdminConfig::default()
        };
        assert_eq!(off.listen_for(Role::Provider).unwrap(), AdminListen::Off);
        let set = AdminConfig {
            listen: Some("0.0.0.0:9100".into()),
            ..AdminConfig::default()
        };
        assert_eq!(
            set.listen_for(Role::Consumer).unwrap(),
            AdminListen::Configured("0.0.0.0:9100".parse().unwrap())
        );
        let bad = AdminConfig {
            listen: Some("localhost".into()),
            ..AdminConfig::default()
        };
        assert!(bad.listen_for(Role::Consumer).unwrap_err().contains("\"off\""));
    }

    #[test]
    fn metrics_are_recorded_unless_off_or_unreadable() {
        assert!(AdminConfig::default().records_metrics());
        let no_metrics: AdminConfig = toml::from_str("metrics = false").unwrap();
        assert!(!no_metrics.records_metrics());
        let no_listener: AdminConfig = toml::from_str("listen = \" OFF \"").unwrap();
        assert!(no_listener.metrics && !no_listener.records_metrics());
        let set: AdminConfig = toml::from_str("listen = \"127.0.0.1:9100\"").unwrap();
        assert!(set.records_metrics());
    }
}
