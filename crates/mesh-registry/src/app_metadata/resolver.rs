//! The driver the registry watcher runs: a [`MetadataCache`] whose fetches it runs concurrently on the
//! current tokio runtime (at most [`CachePolicy::max_in_flight`] at once), handing each outcome back from
//! [`MetadataResolver::next`].
//!
//! Use (on the watcher's runtime):
//! ```text
//! let mut metadata = MetadataResolver::new(ResolverConfig::default());
//! loop {
//!     tokio::select! {
//!         change = watch.message() => {
//!             // instance put:    match metadata.want(&instance) { Ready(info) => rebuild, Pending => wait,
//!             //                    PendingUnaskable(why) | Skip(why) => log }
//!             // instance delete: metadata.forget(&instance_key)
//!         }
//!         resolution = metadata.next() => match resolution {
//!             Resolution::Resolved { instances, .. } => /* rebuild these instances' providers */,
//!             Resolution::Failed { error, .. } => /* log */,
//!         },
//!     }
//! }
//! ```
//! [`MetadataResolver::next`] is cancel-safe: a `select!` may drop it at any point without losing a
//! result. Nothing here touches the shards; the calls happen only here, never on the request path.

use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinSet;

use super::cache::{CachePolicy, Fetch, FetchOutcome, MetadataCache, RevisionKey, Want};
use super::client::{ClientSettings, MetadataServiceClient};
use super::target::{report_keys, TargetKind};
use crate::dubbo::instance::{InstanceKey, ServiceInstance};
use crate::dubbo::metadata_info::MetadataInfo;
use crate::dubbo::{excerpt, AppDiscoveryError, MetadataCallFailure};

/// The resolver's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolverConfig {
    /// The cache's limits and delays.
    pub policy: CachePolicy,
    /// The MetadataService client's limits (also bound the remote report reads).
    pub client: ClientSettings,
}

/// What happened to a revision (from [`MetadataResolver::next`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// `key` is resolved: rebuild the providers of `instances` (every instance referring to it).
    Resolved {
        /// The revision.
        key: RevisionKey,
        /// Its metadata.
        info: Arc<MetadataInfo>,
        /// The instances referring to it.
        instances: Vec<InstanceKey>,
    },
    /// A fetch of `key` from `instance` failed; it will be retried (see [`MetadataCache`]). For a log line.
    Failed {
        /// The revision.
        key: RevisionKey,
        /// The instance asked.
        instance: InstanceKey,
        /// Why it failed.
        error: AppDiscoveryError,
        /// Failed tries of the key so far.
        attempts: u32,
        /// Whether the key is given up (tried again only every `given_up_retry`).
        given_up: bool,
    },
}

/// What the resolver did, since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetadataCounters {
    /// Fetches started: MetadataService calls and remote report reads.
    pub calls: u64,
    /// Fetches that failed (including answers of the wrong revision).
    pub failures: u64,
    /// Revisions resolved by a fetch.
    pub resolved: u64,
    /// Fetch results that came back after their revision was forgotten or resolved otherwise.
    pub stale: u64,
}

/// Runs the per-revision cache's fetches (see the module documentation).
pub struct MetadataResolver {
    cache: MetadataCache,
    client: MetadataServiceClient,
    report: Option<etcd_client::KvClient>,
    tasks: JoinSet<(Fetch, Result<MetadataInfo, AppDiscoveryError>)>,
    running: std::collections::HashMap<tokio::task::Id, Fetch>,
    counters: MetadataCounters,
}

impl std::fmt::Debug for MetadataResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataResolver")
            .field("cache", &self.cache)
            .field("client", &self.client)
            .field("report", &self.report.is_some())
            .field("running", &self.running.len())
            .field("counters", &self.counters)
            .finish()
    }
}

impl MetadataResolver {
    /// A resolver with nothing wanted. No fetch starts before [`MetadataResolver::next`] is polled.
    pub fn new(config: ResolverConfig) -> Self {
        MetadataResolver {
            cache: MetadataCache::new(config.policy),
            client: MetadataServiceClient::new(config.client),
            report: None,
            tasks: JoinSet::new(),
            running: std::collections::HashMap::new(),
            counters: MetadataCounters::default(),
        }
    }

    /// Gives the resolver an etcd client to read dubbo-go's metadata report with: instances with
    /// `dubbo.metadata.storage-type=remote` are fetched from the keys [`report_keys`] names (sets
    /// [`CachePolicy::read_remote`]); `None` takes it away (they are no longer asked). Call it again with
    /// the new client after reconnecting.
    pub fn set_metadata_report(&mut self, kv: Option<etcd_client::KvClient>) {
        self.cache.set_read_remote(kv.is_some());
        self.report = kv;
    }

    /// An instance was put (added or changed): see [`MetadataCache::want`].
    pub fn want(&mut self, instance: &ServiceInstance) -> Want {
        self.cache.want(instance, Instant::now())
    }

    /// An instance was deleted (or its key is no longer watched): see [`MetadataCache::forget`].
    pub fn forget(&mut self, instance: &InstanceKey) -> Option<RevisionKey> {
        self.cache.forget(instance)
    }

    /// The resolved metadata of `app` at `revision`.
    pub fn get(&self, app: &str, revision: &str) -> Option<Arc<MetadataInfo>> {
        self.cache.get(&RevisionKey::new(app, revision))
    }

    /// The cache, to look at.
    pub fn cache(&self) -> &MetadataCache {
        &self.cache
    }

    /// The counters so far.
    pub fn counters(&self) -> MetadataCounters {
        self.counters
    }

    /// Runs the fetches until one has an outcome, and returns it. Starts the fetches that are due, waits
    /// for one to finish or for the next retry time; pends forever when nothing is wanted. Cancel-safe.
    pub async fn next(&mut self) -> Resolution {
        loop {
            self.start_due();
            let wake = self.cache.next_wake();
            let joined = tokio::select! {
                joined = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => joined,
                () = sleep_until(wake), if wake.is_some() => continue,
                else => std::future::pending().await,
            };
            let (fetch, result) = match joined {
                None => continue,
                Some(Ok((id, done))) => {
                    self.running.remove(&id);
                    done
                }
                Some(Err(join_error)) => {
                    let Some(fetch) = self.running.remove(&join_error.id()) else {
                        continue;
                    };
                    let error = AppDiscoveryError::MetadataCall {
                        address: fetch.target.address(),
                        revision: excerpt(&fetch.key.revision),
                        failure: MetadataCallFailure::Io(format!("the fetch task failed: {join_error}")),
                    };
                    (fetch, Err(error))
                }
            };
            if let Some(resolution) = self.take(fetch, result) {
                return resolution;
            }
        }
    }

    /// Hands a fetch result to the cache; `None` when it changed nothing.
    fn take(&mut self, fetch: Fetch, result: Result<MetadataInfo, AppDiscoveryError>) -> Option<Resolution> {
        match self.cache.fetched(&fetch, result, Instant::now()) {
            FetchOutcome::Resolved { info, instances } => {
                self.counters.resolved += 1;
                Some(Resolution::Resolved {
                    key: fetch.key,
                    info,
                    instances,
                })
            }
            FetchOutcome::Failed {
                error,
                attempts,
                given_up,
                ..
            } => {
                self.counters.failures += 1;
                Some(Resolution::Failed {
                    key: fetch.key,
                    instance: fetch.instance,
                    error,
                    attempts,
                    given_up,
                })
            }
            FetchOutcome::Stale => {
                self.counters.stale += 1;
                None
            }
        }
    }

    /// Spawns the fetches the cache says are due.
    fn start_due(&mut self) {
        for fetch in self.cache.due(Instant::now()) {
            self.counters.calls += 1;
            let client = self.client.clone();
            let report = self.report.clone();
            let task = fetch.clone();
            let handle = self.tasks.spawn(async move {
                let result = match &task.target.kind {
                    TargetKind::Service { .. } => {
                        client.get_metadata_info(&task.target, &task.key.revision).await
                    }
                    TargetKind::Remote => read_report(report, &client, &task.key).await,
                };
                (task, result)
            });
            self.running.insert(handle.id(), fetch);
        }
    }
}

/// Sleeps until `at` (`None`: forever; the `select!` above never polls it then).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Reads `key`'s `MetadataInfo` from dubbo-go's metadata report in etcd: the first of [`report_keys`]
/// that exists, as dubbo-go's JSON, within the client's time limit and answer size.
async fn read_report(
    report: Option<etcd_client::KvClient>,
    client: &MetadataServiceClient,
    key: &RevisionKey,
) -> Result<MetadataInfo, AppDiscoveryError> {
    let keys = report_keys(&key.app, &key.revision);
    let fail = |address: &str, failure| AppDiscoveryError::MetadataCall {
        address: excerpt(address),
        revision: excerpt(&key.revision),
        failure,
    };
    let Some(mut kv) = report else {
        return Err(fail(
            &format!("remote:{}", key.app),
            MetadataCallFailure::Unsupported("no metadata report (etcd client) configured".into()),
        ));
    };
    let settings = client.settings();
    for path in &keys {
        let got = tokio::time::timeout(settings.timeout, kv.get(path.as_str(), None)).await;
        let response = match got {
            Err(_) => return Err(fail(path, MetadataCallFailure::Timeout(settings.timeout))),
            Ok(Err(e)) => return Err(fail(path, MetadataCallFailure::Io(crate::member::reason(&e)))),
            Ok(Ok(r)) => r,
        };
        let Some(found) = response.kvs().first() else {
            continue;
        };
        let value = found.value();
        if value.len() > settings.max_answer {
            return Err(fail(
                path,
                MetadataCallFailure::TooLarge {
                    len: value.len() as u64,
                    max: settings.max_answer,
                },
            ));
        }
        let json: serde_json::Value =
            serde_json::from_slice(value).map_err(|e| AppDiscoveryError::BadMetadataInfo {
                reason: format!("{}: not JSON: {e}", excerpt(path)),
            })?;
        return MetadataInfo::from_go_json(&json);
    }
    Err(fail(
        &format!("remote:{}", key.app),
        MetadataCallFailure::NotInReport(keys.join(", ")),
    ))
}
