//! The glommio thread-per-core runtime of the agent: one pinned executor per shard, each owning its
//! listener, its upstream connection pools and their request-id maps. Nothing on the data path is shared
//! between shards or takes a lock; registry snapshots arrive over channels and are swapped between requests.
//!
//! This is the only crate that touches sockets on the data path.

pub mod consumer;
mod error;
pub mod health;
pub mod io;
pub mod provider;
pub mod runtime;
pub mod sync;
pub mod tls;
pub mod upstream;

pub use consumer::{balancer_named, Balancer};
pub use error::{CallError, Origin};
