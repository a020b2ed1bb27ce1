//! Multiplexed Dubbo client connections ([`UpstreamConn`], `conn.rs`) and the per-endpoint pool of them
//! ([`Pool`], `pool.rs`), owned by one shard. The consumer agent uses them towards provider agents, the
//! provider agent towards its local Dubbo provider. Their heartbeats: one sweep per shard (`heartbeat.rs`).

mod conn;
mod deadline;
mod heartbeat;
mod pool;

use std::time::Duration;

use mesh_dubbo::Codec;

pub use conn::{PendingCall, UpstreamConn};
pub use pool::Pool;

/// Settings of the connections to one kind of upstream.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Connections per endpoint (per shard).
    pub connections: usize,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub codec: Codec,
    pub read_buffer: usize,
    /// First back-off after a failed dial; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// A connection with nothing read for this long gets a heartbeat; with nothing read for three times
    /// this long it is declared dead (its calls fail at once). `None`: no heartbeats.
    pub heartbeat: Option<Duration>,
    /// TLS towards the upstream (consumer agent -> provider agent), when configured.
    pub tls: Option<crate::tls::ClientTls>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            connections: 2,
            connect_timeout: Duration::from_millis(1000),
            request_timeout: Duration::from_millis(5000),
            codec: Codec::default(),
            read_buffer: 64 * 1024,
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(2000),
            heartbeat: Some(Duration::from_secs(5)),
            tls: None,
        }
    }
}
