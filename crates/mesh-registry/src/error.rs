//! The one error type of the registry.

use std::time::Duration;

/// Everything that can go wrong in the registry: a bad etcd entry, a bad configuration, an etcd call, or the
/// registry thread itself.
///
/// Bad entries ([`RegistryError::Dubbo`], [`RegistryError::BadValue`]) are reported and skipped by the
/// watcher; they never stop it. Etcd and timeout errors are retried by the registry threads with backoff.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// A registry key or URL that is not Dubbo's layout (the message names the key and the bad part).
    #[error(transparent)]
    Dubbo(#[from] crate::dubbo::DubboError),
    /// An etcd value that cannot be used (e.g. a rule document that is not UTF-8 or too large).
    #[error("bad registry value under {key:?}: {reason}")]
    BadValue {
        /// The key the value was stored under.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A configuration (etcd endpoints, registry root, registration) that cannot work.
    #[error("invalid registry configuration: {0}")]
    Config(String),
    /// An etcd call failed (connection refused, lease not found, ...).
    #[cfg(feature = "etcd")]
    #[error("etcd {op}: {}", crate::member::reason(source))]
    Etcd {
        /// The operation that failed (`get`, `watch`, `lease grant`, ...).
        op: &'static str,
        /// The client's error.
        #[source]
        source: etcd_client::Error,
    },
    /// No etcd endpoint could be used (each refused, failed TLS or authentication, had no leader, or did not
    /// answer in time); lists every endpoint with its reason.
    #[error("no usable etcd member: {0}")]
    NoUsableMember(String),
    /// An etcd call or a thread join did not finish in time.
    #[error("{op} timed out after {after:?}")]
    Timeout {
        /// What timed out.
        op: &'static str,
        /// The bound that was exceeded.
        after: Duration,
    },
    /// The lease holding the registration is gone (expired, revoked, or etcd lost it).
    #[error("lease {lease:x} lost: {reason}")]
    LeaseLost {
        /// The lease id.
        lease: i64,
        /// How the loss was noticed.
        reason: String,
    },
    /// A watch stream ended or was cancelled by etcd (e.g. its revision was compacted).
    #[error("watch ended: {0}")]
    WatchEnded(String),
    /// The registry thread could not be started.
    #[error("cannot start the registry thread: {0}")]
    Io(#[from] std::io::Error),
    /// The registry thread panicked or went away without answering.
    #[error("the registry thread panicked or exited unexpectedly")]
    ThreadGone,
}

impl RegistryError {
    /// Whether trying the same thing again later may succeed (etcd away, timeouts, lost leases).
    /// Bad entries and bad configurations do not get better by retrying.
    pub fn is_retryable(&self) -> bool {
        #[cfg(feature = "etcd")]
        if matches!(self, RegistryError::Etcd { .. }) {
            return true;
        }
        matches!(
            self,
            RegistryError::Timeout { .. }
                | RegistryError::LeaseLost { .. }
                | RegistryError::WatchEnded(_)
                | RegistryError::NoUsableMember(_)
        )
    }

    #[cfg(feature = "etcd")]
    pub(crate) fn etcd(op: &'static str) -> impl FnOnce(etcd_client::Error) -> RegistryError {
        move |source| RegistryError::Etcd { op, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_classification() {
        assert!(RegistryError::Timeout {
            op: "get",
            after: Duration::from_secs(1)
        }
        .is_retryable());
        assert!(RegistryError::LeaseLost {
            lease: 1,
            reason: "ttl 0".into()
        }
        .is_retryable());
        assert!(
            !RegistryError::Dubbo(crate::dubbo::DubboError::MissingProtocol { url: "x".into() })
                .is_retryable()
        );
        assert!(!RegistryError::Config("x".into()).is_retryable());
    }

    #[test]
    fn messages_name_the_key() {
        let e = RegistryError::BadValue {
            key: "/p/s/1.2.3.4:1".into(),
            reason: "not JSON".into(),
        };
        assert_eq!(
            e.to_string(),
            "bad registry value under \"/p/s/1.2.3.4:1\": not JSON"
        );
        let e = RegistryError::LeaseLost {
            lease: 0x1f,
            reason: "keepalive ttl 0".into(),
        };
        assert_eq!(e.to_string(), "lease 1f lost: keepalive ttl 0");
    }
}
