//! `[etcd]`: the registry.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize, Serializer};

/// `[etcd]`: where providers register and consumers discover them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EtcdSection {
    pub(crate) endpoints: Vec<String>,
    pub(crate) root: String,
    pub(crate) services_root: String,
    pub(crate) mapping_root: String,
    pub(crate) lease_ttl_s: u64,
    pub(crate) publish_interval_ms: u64,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) cert_file: Option<PathBuf>,
    pub(crate) key_file: Option<PathBuf>,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<Password>,
}

/// A password: read like a string, never shown (`Debug` and `--print-config` say [`Password::REDACTED`]).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub(crate) struct Password(String);

impl Password {
    /// What is shown instead of the password.
    pub(crate) const REDACTED: &'static str = "<redacted>";

    /// The password itself, for the etcd client only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::REDACTED)
    }
}

impl Serialize for Password {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(Self::REDACTED)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_never_shown() {
        let p: Password = serde_json::from_str("\"hunter2\"").unwrap();
        assert_eq!(p.expose(), "hunter2");
        assert_eq!(format!("{p:?}"), "<redacted>");
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"<redacted>\"");
    }
}
