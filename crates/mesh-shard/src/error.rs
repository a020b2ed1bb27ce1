//! Data-path errors: what went wrong on a call (where it may go next is `mesh_balance::outcome`'s decision).

use std::net::SocketAddr;

use mesh_dubbo::CodecError;

/// Why a call through an upstream connection did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("connect to {addr} failed: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("connection to {0} is backing off after failures")]
    BackingOff(SocketAddr),
    #[error("connection to {0} closed before the answer arrived")]
    Closed(SocketAddr),
    #[error("no answer from {addr} within {ms} ms")]
    Timeout { addr: SocketAddr, ms: u64 },
    #[error("undecodable answer from {addr}: {source}")]
    BadAnswer { addr: SocketAddr, source: CodecError },
    #[error("request cannot be encoded: {0}")]
    Encode(CodecError),
}

impl CallError {
    /// The HTTP status a consumer agent answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            CallError::Connect { .. } | CallError::BackingOff(_) => 503,
            CallError::Timeout { .. } => 504,
            CallError::Closed(_) | CallError::BadAnswer { .. } => 502,
            CallError::Encode(CodecError::BodyTooLarge { .. }) => 413,
            CallError::Encode(_) => 400,
        }
    }
}
