//! Registry snapshots (pure model) and, with the default feature `etcd`, the sources: etcd (own tokio thread)
//! and a static list.
//!
//! * [`Snapshot`] / [`Endpoint`]: the pure model. A snapshot is immutable and versioned; every shard gets
//!   its own `Arc` of the whole thing, so an update is atomic per shard and the data path takes no lock.
//! * Etcd layout: `{prefix}/{service}/{ip:port}` (prefix default `/dubbomesh/v1`) with the JSON value
//!   `{"weight":..,"max_concurrency":..,"id":".."}`: [`key_for`], [`encode_value`], [`parse_entry`].
//! * [`dubbo`]: Dubbo's own interface-level layout in etcd, pure: [`dubbo::DubboUrl`] (read and written
//!   like Dubbo's `URL`), Java `URLEncoder` / Go `QueryEscape` encoding, the
//!   `/<root>/<interface>/<category>/<url>` keys, Dubbo's provider matching and URL simplification. Not
//!   wired into the watcher or registrar yet.
//!
//! With the default feature `etcd` (etcd-client and tokio; without it the crate is the pure model only):
//!
//! * `spawn_watcher`: the consumer's registry thread. A `Source::Static` list is published once; a
//!   `Source::Etcd` prefix is read, watched, and re-read after any error, on a tokio current-thread
//!   runtime (etcd-client needs tokio; the shards never see it). Snapshots go to every subscriber over
//!   crossbeam channels.
//! * `spawn_registrar`: the provider's registration under a lease, kept alive, and put back whenever the
//!   lease or a key is lost.

pub mod dubbo;
mod error;
#[cfg(feature = "etcd")]
mod etcd;
#[cfg(feature = "etcd")]
mod etcd_access;
#[cfg(feature = "etcd")]
mod member;
#[cfg(feature = "etcd")]
mod registrar;
mod snapshot;
#[cfg(feature = "etcd")]
mod source;

pub use error::RegistryError;
#[cfg(feature = "etcd")]
pub use etcd::EtcdConfig;
#[cfg(feature = "etcd")]
pub use etcd_access::{EtcdAuth, EtcdTls};
#[cfg(feature = "etcd")]
pub use registrar::{spawn_registrar, RegistrarHandle, Registration, DEFAULT_TTL};
pub use snapshot::{
    encode_value, key_for, normalize_prefix, parse_any, parse_entry, prefix_range, rules_key_for,
    validate_service, Endpoint, Entry, Snapshot, DEFAULT_PREFIX, DEFAULT_WEIGHT, ROUTING_SEGMENT,
    WILDCARD_SERVICE,
};
#[cfg(feature = "etcd")]
pub use source::{spawn_watcher, Source, WatcherHandle, STOP_TIMEOUT};
