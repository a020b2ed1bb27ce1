//! The error of the Dubbo 3 application-level model (instances, `MetadataInfo`, mapping, migration): an
//! input read from etcd or from a MetadataService answer that cannot be used. Every message names the bad part.

/// How much of a bad input an error message quotes.
const EXCERPT_CHARS: usize = 120;

/// An application-level discovery input that cannot be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppDiscoveryError {
    /// An input longer than its limit (bytes, entries or nesting).
    #[error("{what} is {len} long, more than the {max} allowed")]
    TooLong {
        /// What is too long.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A key that is not `/services/<app>/<host>:<port>`.
    #[error("bad instance key {key:?}: {reason}")]
    BadInstanceKey {
        /// The key (shortened).
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An instance value that is not an instance in Java's or dubbo-go's JSON shape.
    #[error("bad instance value: {reason}")]
    BadInstance {
        /// What is wrong with it.
        reason: String,
    },
    /// A metadata entry of an instance (`dubbo.endpoints`, `dubbo.metadata-service.url-params`) that cannot
    /// be read.
    #[error("bad instance metadata {key}: {reason}")]
    BadInstanceMetadata {
        /// The metadata key.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A Hessian value that is not an `org.apache.dubbo.metadata.MetadataInfo` as Dubbo writes it.
    #[error("bad MetadataInfo: {reason}")]
    BadMetadataInfo {
        /// What is wrong with it.
        reason: String,
    },
    /// A `migration.step` that is none of Dubbo's `MigrationStep` names.
    #[error("unknown migration step {step:?} (Dubbo's names: FORCE_INTERFACE, APPLICATION_FIRST, FORCE_APPLICATION)")]
    UnknownMigrationStep {
        /// The step as given (shortened).
        step: String,
    },
    /// A migration rule (`<application>.migration`) that cannot be read.
    #[error("bad migration rule: {reason}")]
    BadMigrationRule {
        /// What is wrong with it.
        reason: String,
    },
    /// A MetadataService `getMetadataInfo(revision)` call (or a remote metadata read) that gave no
    /// `MetadataInfo`.
    #[error("MetadataService at {address}: getMetadataInfo({revision:?}): {failure}")]
    MetadataCall {
        /// Where it was called (`host:port`, or the etcd key of a remote read).
        address: String,
        /// The revision asked for (shortened).
        revision: String,
        /// What went wrong.
        failure: MetadataCallFailure,
    },
    /// A `MetadataInfo` that reports another revision than the one asked for: not cached under either.
    #[error("asked {address} for revision {asked:?} of {app:?}, got a MetadataInfo of revision {got:?}")]
    WrongRevision {
        /// The application.
        app: String,
        /// Who answered.
        address: String,
        /// The revision asked for (shortened).
        asked: String,
        /// The revision the answer reports (shortened).
        got: String,
    },
    /// An application name that cannot go into a mapping value or an instance key.
    #[error("bad application name {name:?}: {reason}")]
    BadApplication {
        /// The name (shortened).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Why a MetadataService call gave no `MetadataInfo` ([`AppDiscoveryError::MetadataCall`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataCallFailure {
    /// The TCP connection could not be made.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// No whole answer within the call's time limit (connecting included).
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The connection failed or closed before the answer was read.
    #[error("connection lost: {0}")]
    Io(String),
    /// The answer's body is longer than the client accepts.
    #[error("answer of {len} bytes, more than the {max} accepted")]
    TooLarge {
        /// The body length the header announced.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The answer is not a Dubbo response that can be decoded (bad frame, Hessian, wrong id).
    #[error("undecodable answer: {0}")]
    Codec(String),
    /// The provider answered with a status other than 20 OK (e.g. 60/70: no such service or revision).
    #[error("status {status}: {message}")]
    Status {
        /// The Dubbo status byte.
        status: u8,
        /// The provider's message (shortened).
        message: String,
    },
    /// `getMetadataInfo` threw (the exception's class and message, shortened).
    #[error("threw {0}")]
    Exception(String),
    /// `getMetadataInfo` answered null (Java does for an unknown revision).
    #[error("answered null")]
    Null,
    /// The instance's MetadataService cannot be called by this client (a protocol other than `dubbo`,
    /// or remote storage with no metadata report configured).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Remote storage: no metadata found under any of the keys read.
    #[error("not in the metadata report (read {0})")]
    NotInReport(String),
}

/// The first [`EXCERPT_CHARS`] characters of `s`, for an error message.
pub(crate) fn excerpt(s: &str) -> String {
    match s.char_indices().nth(EXCERPT_CHARS) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_owned(),
    }
}

/// An application name as Dubbo's registries can carry it: not empty, no `/` (it is a key segment), no `,`
/// (the mapping value's separator), no control characters.
pub(crate) fn check_application(name: &str) -> Result<(), AppDiscoveryError> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() > super::instance::MAX_APPLICATION_LEN {
        Some("too long")
    } else if name.contains('/') {
        Some("contains '/' (a key separator)")
    } else if name.contains(',') {
        Some("contains ',' (the mapping separator)")
    } else if name.chars().any(char::is_control) {
        Some("contains a control character")
    } else if name.trim() != name {
        Some("has leading or trailing white space")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(AppDiscoveryError::BadApplication {
            name: excerpt(name),
            reason,
        }),
        None => Ok(()),
    }
}
