//! The consumer's Dubbo 3 application-level discovery and migration (issue 13), run by the registry
//! watcher thread next to the interface-level watch; nothing here is on the request path.
//!
//! * [`AppDiscoveryConfig`]: where instances, mapping keys and the migration rule live, `provided_by`, the
//!   consumer's migration step and threshold.
//! * `app_level` (pure): instances + their revision's `MetadataInfo` -> application-level endpoints per
//!   service key, for the applications mapped to each interface.
//! * `chosen` (pure): per service key, the interface-level or application-level list, chosen by
//!   `migration::which_addresses` with the step and threshold in force, fed into the `SnapshotBuilder` as
//!   the difference; the rule's `force` and `delay` as Java applies them to a switch to a `FORCE_*` step
//!   (the delay a schedule the watcher wakes for); the rule's `proportion` as a split of the key's calls
//!   (`Snapshot::split`: the interface-level list and the percentage beside the application-level list,
//!   drawn per call by the consumer shard); the step in force per key published with each snapshot
//!   (`Snapshot::migration`).
//! * `watch` (etcd): the keys under the services root, the mapping keys and the migration rule read and
//!   watched in the same session as the registry root; `MetadataService` calls through
//!   [`crate::app_metadata::MetadataResolver`]; one log line per batch for what is skipped.

mod app_level;
mod chosen;
mod config;
mod watch;

pub(crate) use chosen::ChosenAddresses;
pub use chosen::MigrationDefaults;
pub use config::{AppDiscoveryConfig, DEFAULT_SERVICES_ROOT};
pub(crate) use watch::AppWatch;
