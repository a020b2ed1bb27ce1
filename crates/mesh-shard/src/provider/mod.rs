//! The provider agent's shard: Dubbo frames in from consumer agents (`server.rs`), forwarded to the local
//! Dubbo provider over a few persistent multiplexed connections with request ids rewritten, answers
//! routed back (`forward.rs`), under the local provider's thread cap (`limit.rs`).
//!
//! Calls to `org.apache.dubbo.metadata.MetadataService` are never forwarded: the agent answers them itself
//! from the metadata published to it (`metadata_service.rs`).
//!
//! When the local provider speaks hessian2 (the agent link's serialization) frames are forwarded as bytes
//! with only the id changed; for a fastjson provider each request and answer is transcoded.

mod forward;
mod limit;
mod metadata_answer;
pub mod metadata_service;
mod server;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use mesh_dubbo::Serialization;

pub use limit::ConcurrencyLimit;
pub use metadata_service::{MetadataPublisher, MetadataReceiver, ServedMetadata};

use crate::control::ShardControl;
use crate::io::OutQueue;
use crate::listener::Listener;
use crate::metrics::{Recorder, ShardMetrics};
use crate::upstream::{Pool, UpstreamConfig};

/// Settings of one provider-agent shard.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub listen: SocketAddr,
    /// The local Dubbo provider.
    pub dubbo: SocketAddr,
    /// What the local provider speaks.
    pub serialization: Serialization,
    pub upstream: UpstreamConfig,
    pub max_connections: usize,
    pub read_buffer: usize,
    /// The local provider's thread cap, shared by every shard of this agent; `None`: no limit here.
    pub limit: Option<Arc<ConcurrencyLimit>>,
    /// Calls waiting (per shard) for the local provider while it is at its cap; beyond it, status 100.
    pub queue_limit: usize,
    /// Longest wait in that queue; then status 100.
    pub queue_timeout: Duration,
    /// Calls in flight per consumer connection before the agent stops reading from it.
    pub max_inflight_per_connection: usize,
    /// Calls must carry this Dubbo `token` attachment.
    pub token: Option<String>,
    /// Shards of this provider agent (they share `limit`).
    pub shards: usize,
    /// TLS on the agent-to-agent port, when configured.
    pub tls: Option<crate::tls::ServerTls>,
}

/// One provider-agent shard's state, shared by its connection tasks.
struct Shard {
    settings: ProviderSettings,
    control: ShardControl,
    /// Connections to the local provider.
    pool: Rc<Pool>,
    /// Calls of this shard being forwarded or waiting to be.
    inflight: Cell<usize>,
    admission: limit::Admission,
    /// Every open connection's write queue, to flush and close them after a drain.
    outs: RefCell<HashMap<u64, OutQueue>>,
    next_conn: Cell<u64>,
    /// What this agent's MetadataService answers.
    metadata: MetadataReceiver,
    metrics: Recorder,
}

/// Runs one provider-agent shard until `control` says stop; then stops accepting and drains. `ready` is
/// called once the listener is bound. `metadata` is this shard's end of the [`MetadataPublisher`];
/// `metrics` its counters.
pub async fn run(
    settings: ProviderSettings,
    metadata: MetadataReceiver,
    metrics: Arc<ShardMetrics>,
    control: ShardControl,
    ready: impl FnOnce(),
) -> std::io::Result<()> {
    let listener = Listener::bind(settings.listen, settings.max_connections)?;
    ready();
    let connections = listener.connections();
    let shard = Rc::new(Shard {
        pool: Rc::new(Pool::new(settings.dubbo, settings.upstream.clone())),
        admission: limit::Admission::new(
            settings.limit.clone(),
            settings.queue_limit,
            settings.queue_timeout,
            settings.shards,
            metrics.clone(),
        ),
        settings,
        control: control.clone(),
        inflight: Cell::new(0),
        outs: RefCell::new(HashMap::new()),
        next_conn: Cell::new(0),
        metadata,
        metrics: Recorder::new(metrics),
    });
    crate::metrics::sample_connections(&shard.metrics, &control, {
        let connections = connections.clone();
        move || connections.open()
    });
    listener
        .serve_until_stopped(
            &control,
            |stream| server::serve_connection(stream, shard.clone()),
            // Over the limit: closed without a word.
            |_stream| async {},
        )
        .await;
    control.drained(|| shard.inflight.get() == 0).await;
    // Every answer is queued: let the writers flush them, then close the connections.
    let outs: Vec<OutQueue> = shard.outs.borrow().values().cloned().collect();
    for out in outs {
        out.close();
    }
    control.drained(|| connections.is_empty()).await;
    Ok(())
}
