//! The glommio thread-per-core runtime of the agent: one pinned executor per shard, each owning its
//! listener, its upstream connection pools and their request-id maps. Nothing on the data path is shared
//! between shards or takes a lock; registry snapshots arrive over channels and are swapped between requests.
//!
//! This is the only crate that touches sockets on the data path.
//!
//! - [`runtime`]: executor placement and start; [`control`]: stop and drain from the main thread.
//! - [`listener`]: one shard's accept loop and connection permits, used by both roles.
//! - [`consumer`]: the consumer agent's role (HTTP in, Dubbo out); [`provider`]: the provider agent's
//!   role (Dubbo in from consumer agents, Dubbo out to the local provider).
//! - [`upstream`]: multiplexed Dubbo client connections and per-endpoint pools; [`frames`]: reading
//!   Dubbo frames off a connection; [`io`]: socket halves and the batching write queue; [`tls`]: the
//!   agent-to-agent TLS settings; [`sync`]: single-shard oneshot, event and wait queue.
//! - [`timer`]: the shard's timers, woken by an alarm thread instead of a pending glommio timer.
//! - [`metrics`]: each shard's counters (atomics only its shard writes), read by the admin thread.

pub mod access_log;
pub mod consumer;
pub mod control;
mod error;
pub mod frames;
/// Provider health (outlier ejection, adaptive limit): pure state machines in mesh-balance, re-exported.
pub use mesh_balance::health;
pub mod io;
pub mod listener;
mod log_every;
pub mod metrics;
pub mod open_files;
pub mod provider;
pub mod read_buffer;
pub mod runtime;
pub mod sync;
pub mod timer;
pub mod tls;
pub mod upstream;

pub use consumer::{balancer_named, Balancer};
pub use error::CallError;
