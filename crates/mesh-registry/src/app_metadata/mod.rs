//! The consumer's side of Dubbo 3 application-level metadata: for each distinct `(application, revision)`
//! the instances advertise, one `getMetadataInfo(revision)` call to an instance's MetadataService, cached
//! by revision, retried on failure (on another instance of the same revision when there is one), never on
//! the request path. The registry watcher thread drives it; the shards never see it.
//!
//! * [`MetadataTarget`]: where and how an instance's metadata is read (its MetadataService address,
//!   group, version, or the remote metadata report), from the instance's `metadata` (pure).
//! * [`MetadataCache`]: the per-revision cache and fetch scheduler, pure (no IO, time passed in):
//!   resolved / pending with backoff / given up; which instances advertise a revision and which were
//!   tried; a bound on fetches in flight; a revision no instance references is forgotten.
//! * `MetadataServiceClient` (feature `etcd`): one `getMetadataInfo` call over tokio TCP in Dubbo/Hessian 2,
//!   with a time limit and a bounded answer size, decoded into a [`crate::dubbo::metadata_info::MetadataInfo`].
//! * `MetadataResolver` (feature `etcd`): the driver the watcher runs on its current-thread tokio runtime:
//!   `want` / `forget` instances, `next().await` for each revision resolved or fetch failed, counters.

mod cache;
#[cfg(feature = "etcd")]
mod client;
#[cfg(feature = "etcd")]
mod resolver;
mod target;

pub use cache::{CachePolicy, Fetch, FetchOutcome, MetadataCache, RevisionKey, RevisionState, Want};
#[cfg(feature = "etcd")]
pub use client::{encode_get_metadata_info, ClientSettings, MetadataServiceClient};
#[cfg(feature = "etcd")]
pub use resolver::{MetadataCounters, MetadataResolver, Resolution, ResolverConfig};
pub use target::{report_keys, MetadataTarget, TargetKind};
