//! Registry snapshots (pure model) and, with the default feature `etcd`, the sources: etcd (own tokio thread)
//! and a static list.
//!
//! * [`Snapshot`] / [`Endpoint`]: the pure model. A snapshot is immutable and versioned; every shard gets
//!   its own `Arc` of the whole thing, so an update is atomic per shard and the data path takes no lock.
//!   Snapshots are keyed by Dubbo service key (`group/interface:version`) and built change by change by a
//!   [`SnapshotBuilder`] over persistent maps: a change costs O(log n), and each service key's list carries
//!   its epoch and the [`Change`] from the previous one.
//! * [`dubbo`]: Dubbo's own interface-level layout in etcd, pure: [`dubbo::DubboUrl`] (read and written
//!   like Dubbo's `URL`), Java `URLEncoder` / Go `QueryEscape` encoding, the
//!   `/<root>/<interface>/<category>/<url>` keys, Dubbo's provider matching and URL simplification, what a
//!   provider URL means to the consumer ([`dubbo::discover`]) and what a provider agent registers
//!   ([`dubbo::ProviderRegistration`]). This is the only layout: the agents read and write what Java and
//!   Go Dubbo applications do.
//!
//! With the default feature `etcd` (etcd-client and tokio; without it the crate is the pure model only):
//!
//! * `spawn_watcher`: the consumer's registry thread. A `Source::Static` list is published once; under a
//!   `Source::Etcd` registry root every provider key is read, watched, and re-read after any error, on a tokio current-thread
//!   runtime (etcd-client needs tokio; the shards never see it). Snapshots go to every subscriber over
//!   crossbeam channels.
//! * `spawn_registrar` / `spawn_registrations`: the provider's (and optionally the consumer's) Dubbo URLs
//!   and, for Dubbo 3 application-level discovery, the provider's instance `/services/<app>/<host>:<port>`,
//!   all under one lease, kept alive, put back whenever the lease or a key is lost, and updated in place
//!   (`RegistrarHandle::update`) when the exported services change; plus the interface-to-application
//!   mapping `/dubbo/mapping/<interface>`, written by compare-and-swap.
//!
//! [`provider_subset`] (pure): a bounded subset of each service's providers per consumer agent
//! (rendezvous hashing), applied by the [`SnapshotBuilder`] when configured, so that providers joining or
//! leaving outside it change no snapshot.

#[cfg(feature = "etcd")]
pub mod app_discovery;
pub mod app_metadata;
#[cfg(feature = "etcd")]
mod config_rules;
pub mod dubbo;
mod error;
#[cfg(feature = "etcd")]
mod etcd;
#[cfg(feature = "etcd")]
mod etcd_access;
#[cfg(feature = "etcd")]
mod member;
pub mod provider_subset;
#[cfg(feature = "etcd")]
mod publish_pace;
#[cfg(feature = "etcd")]
mod registrar;
mod snapshot;
#[cfg(feature = "etcd")]
mod source;
#[cfg(feature = "etcd")]
mod watch_state;
#[cfg(feature = "etcd")]
mod watched_keys;

#[cfg(feature = "etcd")]
pub use app_discovery::{AppDiscoveryConfig, MigrationDefaults};
pub use error::RegistryError;
#[cfg(feature = "etcd")]
pub use etcd::{EtcdConfig, DEFAULT_PUBLISH_INTERVAL, MAX_PUBLISH_INTERVAL};
#[cfg(feature = "etcd")]
pub use etcd_access::{EtcdAuth, EtcdTls};
pub use provider_subset::{ProviderSubset, SubsetSettings, MAX_PROVIDER_SUBSET};
#[cfg(feature = "etcd")]
pub use registrar::{
    spawn_registrar, spawn_registrations, InstanceRegistration, RegistrarHandle, Registration, Registrations,
    DEFAULT_TTL,
};
pub use snapshot::{
    Change, Endpoint, Providers, Snapshot, SnapshotBuilder, Split, DEFAULT_WEIGHT, WILDCARD_SERVICE,
};
#[cfg(feature = "etcd")]
pub use source::{spawn_watcher, LatestSnapshot, Source, WatcherHandle, STOP_TIMEOUT};
#[cfg(feature = "etcd")]
pub use watch_state::{WatchState, WatchStatus};
#[cfg(feature = "etcd")]
pub use watched_keys::{Skips, WatchedKeys};
