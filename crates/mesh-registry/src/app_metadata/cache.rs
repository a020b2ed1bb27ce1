//! The per-revision `MetadataInfo` cache and fetch scheduler, pure: no IO, the time is passed in.
//!
//! Keyed by `(application, revision)` ([`RevisionKey`]); an instance refers to exactly one key (its
//! current revision). A key is
//! * resolved: its `MetadataInfo` (shared by every instance of that revision, never fetched again: a
//!   revision names one set of services);
//! * waiting: not resolved yet, with the attempts made, the time of the next try, the fetch in flight
//!   (at most one per key), the instances that advertise it and those already tried. After a failure the
//!   next try goes to an instance not yet tried, at once when there is one, else after a backoff (doubling
//!   from [`CachePolicy::first_retry`] to [`CachePolicy::max_retry`]); after
//!   [`CachePolicy::attempts_before_giving_up`] failures the key is given up: still retried, every
//!   [`CachePolicy::given_up_retry`].
//!
//! A key no instance refers to any more is forgotten. Instances that are not usable (disabled, unhealthy,
//! no revision, revision `"0"`: [`ServiceInstance::usability`]) are never fetched; instances whose
//! MetadataService cannot be called (bad url-params, remote storage when not read) count as referring to
//! their revision but are not asked. A dubbo-go instance that carries its `MetadataInfo` inline
//! (`ServiceMetadata`) of the same revision resolves its key without a call. A `MetadataInfo` whose
//! revision is not the one asked is a failure ([`AppDiscoveryError::WrongRevision`]) and is not cached.
//! At most [`CachePolicy::max_in_flight`] fetches run at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::target::{MetadataTarget, TargetKind};
use crate::dubbo::instance::{InstanceKey, InstanceUse, ServiceInstance};
use crate::dubbo::metadata_info::MetadataInfo;
use crate::dubbo::{excerpt, AppDiscoveryError, MetadataCallFailure};

/// An application's revision: the cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RevisionKey {
    /// The application.
    pub app: String,
    /// The revision (`dubbo.metadata.revision`).
    pub revision: String,
}

impl RevisionKey {
    /// The key of `app` at `revision`.
    pub fn new(app: impl Into<String>, revision: impl Into<String>) -> Self {
        RevisionKey {
            app: app.into(),
            revision: revision.into(),
        }
    }
}

/// The scheduler's limits and delays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePolicy {
    /// The most fetches in flight at once, over all keys (at least 1).
    pub max_in_flight: usize,
    /// The wait before the second try of a key when no untried instance is left; doubled per failure.
    pub first_retry: Duration,
    /// The longest wait between tries before giving up.
    pub max_retry: Duration,
    /// Failures after which a key is given up (still retried, every [`CachePolicy::given_up_retry`]).
    pub attempts_before_giving_up: u32,
    /// The wait between tries of a given-up key.
    pub given_up_retry: Duration,
    /// Whether instances with `dubbo.metadata.storage-type=remote` can be fetched (the resolver has a
    /// metadata report to read). When false they count as unaskable.
    pub read_remote: bool,
}

impl Default for CachePolicy {
    /// 8 in flight; 500 ms doubling to 30 s; given up after 6 failures, then every 2 minutes; no remote.
    fn default() -> Self {
        CachePolicy {
            max_in_flight: 8,
            first_retry: Duration::from_millis(500),
            max_retry: Duration::from_secs(30),
            attempts_before_giving_up: 6,
            given_up_retry: Duration::from_secs(120),
            read_remote: false,
        }
    }
}

/// What [`MetadataCache::want`] says about an instance.
#[derive(Debug, Clone, PartialEq)]
pub enum Want {
    /// Its revision is resolved: build its providers now.
    Ready(Arc<MetadataInfo>),
    /// Its revision is being resolved: a [`FetchOutcome::Resolved`] will list it.
    Pending,
    /// Its revision is being resolved, but this instance cannot be asked (why: for one log line); another
    /// instance of the same revision can resolve it.
    PendingUnaskable(AppDiscoveryError),
    /// Not used at all (disabled, unhealthy, no port, no revision, revision `"0"`): for one log line.
    /// Any revision it referred to before is let go.
    Skip(&'static str),
}

/// A key's state, as [`MetadataCache::state`] shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum RevisionState {
    /// Resolved.
    Resolved(Arc<MetadataInfo>),
    /// Not resolved yet.
    Waiting {
        /// Failed tries so far.
        attempts: u32,
        /// When the next try is due (if an askable instance is there and a slot is free).
        next_try: Instant,
        /// Whether a fetch is in flight.
        in_flight: bool,
        /// Whether it was given up (tries every [`CachePolicy::given_up_retry`]).
        given_up: bool,
        /// The last failure.
        last_error: Option<AppDiscoveryError>,
    },
}

/// A fetch to run: read `key`'s `MetadataInfo` from `target` (the MetadataService of `instance`), then
/// hand the result to [`MetadataCache::fetched`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    /// The fetch's number (unique per cache).
    pub id: u64,
    /// The revision to read.
    pub key: RevisionKey,
    /// The instance asked.
    pub instance: InstanceKey,
    /// Where to read it.
    pub target: MetadataTarget,
    /// Which try of this key it is (1 = first).
    pub attempt: u32,
}

/// What [`MetadataCache::fetched`] made of a result.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchOutcome {
    /// The key is resolved now: rebuild these instances' providers.
    Resolved {
        /// The metadata.
        info: Arc<MetadataInfo>,
        /// The instances that refer to the key.
        instances: Vec<InstanceKey>,
    },
    /// The fetch failed; the key will be tried again at `next_try`.
    Failed {
        /// Why.
        error: AppDiscoveryError,
        /// Failed tries of the key so far.
        attempts: u32,
        /// Whether the key is (now) given up.
        given_up: bool,
        /// When it will be tried again.
        next_try: Instant,
    },
    /// Nothing changed: the key was forgotten or resolved meanwhile, or the fetch was superseded.
    Stale,
}

/// One key's bookkeeping.
#[derive(Debug)]
struct Entry {
    /// The instances referring to the key, with their target (`Err`: cannot be asked, and why).
    instances: BTreeMap<InstanceKey, Result<MetadataTarget, AppDiscoveryError>>,
    state: State,
}

#[derive(Debug)]
enum State {
    Resolved(Arc<MetadataInfo>),
    Waiting {
        attempts: u32,
        next_try: Instant,
        in_flight: Option<u64>,
        tried: BTreeSet<InstanceKey>,
        given_up: bool,
        last_error: Option<AppDiscoveryError>,
    },
}

impl Entry {
    fn new(now: Instant) -> Self {
        Entry {
            instances: BTreeMap::new(),
            state: State::Waiting {
                attempts: 0,
                next_try: now,
                in_flight: None,
                tried: BTreeSet::new(),
                given_up: false,
                last_error: None,
            },
        }
    }

    fn has_askable(&self) -> bool {
        self.instances.values().any(Result::is_ok)
    }

    /// The next instance to ask: the first askable one not tried yet; when every askable one was tried,
    /// the round starts again.
    fn pick(&mut self) -> Option<(InstanceKey, MetadataTarget)> {
        let State::Waiting { tried, .. } = &mut self.state else {
            return None;
        };
        let mut askable = self
            .instances
            .iter()
            .filter_map(|(k, t)| t.as_ref().ok().map(|t| (k, t)));
        let (first_key, first_target) = askable.next()?;
        let untried = std::iter::once((first_key, first_target))
            .chain(askable)
            .find(|(k, _)| !tried.contains(*k));
        let (key, target) = match untried {
            Some(found) => found,
            None => {
                tried.clear();
                (first_key, first_target)
            }
        };
        tried.insert(key.clone());
        Some((key.clone(), target.clone()))
    }

    fn has_untried(&self) -> bool {
        let State::Waiting { tried, .. } = &self.state else {
            return false;
        };
        self.instances
            .iter()
            .any(|(k, t)| t.is_ok() && !tried.contains(k))
    }
}

/// The per-revision cache and scheduler (see the module documentation).
#[derive(Debug)]
pub struct MetadataCache {
    policy: CachePolicy,
    entries: BTreeMap<RevisionKey, Entry>,
    by_instance: HashMap<InstanceKey, RevisionKey>,
    in_flight: usize,
    next_id: u64,
}

impl MetadataCache {
    /// An empty cache.
    pub fn new(policy: CachePolicy) -> Self {
        MetadataCache {
            policy: CachePolicy {
                max_in_flight: policy.max_in_flight.max(1),
                ..policy
            },
            entries: BTreeMap::new(),
            by_instance: HashMap::new(),
            in_flight: 0,
            next_id: 0,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &CachePolicy {
        &self.policy
    }

    /// Records that `instance` (added or changed) advertises its revision, and says whether its metadata
    /// is there. An instance that changed revision lets the old one go (see [`MetadataCache::forget`]).
    pub fn want(&mut self, instance: &ServiceInstance, now: Instant) -> Want {
        let id = instance.key();
        let revision = match instance.usability() {
            InstanceUse::Skip(reason) => {
                self.forget(&id);
                return Want::Skip(reason);
            }
            InstanceUse::Use { revision } => revision.to_owned(),
        };
        let key = RevisionKey::new(&instance.service_name, revision);
        if self.by_instance.get(&id).is_some_and(|old| *old != key) {
            self.forget(&id);
        }
        let target = MetadataTarget::of(instance).and_then(|t| {
            if t.kind == TargetKind::Remote && !self.policy.read_remote {
                Err(AppDiscoveryError::MetadataCall {
                    address: t.address(),
                    revision: key.revision.clone(),
                    failure: MetadataCallFailure::Unsupported(
                        "dubbo.metadata.storage-type=remote and no metadata report is read".into(),
                    ),
                })
            } else {
                Ok(t)
            }
        });
        let unaskable = target.as_ref().err().cloned();
        let entry = self.entries.entry(key.clone()).or_insert_with(|| Entry::new(now));
        let new_candidate = target.is_ok()
            && !matches!(entry.instances.get(&id), Some(Ok(old)) if Ok(old) == target.as_ref());
        entry.instances.insert(id.clone(), target);
        self.by_instance.insert(id.clone(), key.clone());
        if let State::Waiting { .. } = entry.state {
            if let Some(inline) = instance
                .inline_metadata
                .as_ref()
                .filter(|m| m.revision == key.revision)
            {
                entry.state = State::Resolved(Arc::new(inline.clone()));
            }
        }
        match &mut entry.state {
            State::Resolved(info) => Want::Ready(Arc::clone(info)),
            State::Waiting {
                next_try,
                in_flight,
                tried,
                ..
            } => {
                // A new instance to ask: try it now rather than after the backoff.
                if new_candidate && in_flight.is_none() && !tried.contains(&id) && *next_try > now {
                    *next_try = now;
                }
                match unaskable {
                    Some(e) => Want::PendingUnaskable(e),
                    None => Want::Pending,
                }
            }
        }
    }

    /// Lets go of a removed (or no longer usable) instance. Returns the key it referred to when that key
    /// is forgotten with it (no instance refers to it any more).
    pub fn forget(&mut self, instance: &InstanceKey) -> Option<RevisionKey> {
        let key = self.by_instance.remove(instance)?;
        let entry = self.entries.get_mut(&key)?;
        entry.instances.remove(instance);
        if let State::Waiting { tried, .. } = &mut entry.state {
            tried.remove(instance);
        }
        if entry.instances.is_empty() {
            self.entries.remove(&key);
            return Some(key);
        }
        None
    }

    /// The fetches to start now: keys due, not in flight, with an instance to ask, most overdue first,
    /// as many as free slots allow. Each is in flight until handed to [`MetadataCache::fetched`].
    pub fn due(&mut self, now: Instant) -> Vec<Fetch> {
        let free = self.policy.max_in_flight.saturating_sub(self.in_flight);
        if free == 0 {
            return Vec::new();
        }
        let mut ready: Vec<(Instant, RevisionKey)> = self
            .entries
            .iter()
            .filter_map(|(k, e)| match &e.state {
                State::Waiting {
                    next_try,
                    in_flight: None,
                    ..
                } if *next_try <= now && e.has_askable() => Some((*next_try, k.clone())),
                _ => None,
            })
            .collect();
        ready.sort();
        ready.truncate(free);
        let mut fetches = Vec::with_capacity(ready.len());
        for (_, key) in ready {
            let Some(entry) = self.entries.get_mut(&key) else {
                continue;
            };
            let Some((instance, target)) = entry.pick() else {
                continue;
            };
            let State::Waiting {
                attempts, in_flight, ..
            } = &mut entry.state
            else {
                continue;
            };
            self.next_id += 1;
            *in_flight = Some(self.next_id);
            self.in_flight += 1;
            fetches.push(Fetch {
                id: self.next_id,
                key,
                instance,
                target,
                attempt: *attempts + 1,
            });
        }
        fetches
    }

    /// Takes the result of a fetch from [`MetadataCache::due`] (every fetch must come back exactly once,
    /// whatever happened to its key meanwhile).
    pub fn fetched(
        &mut self,
        fetch: &Fetch,
        result: Result<MetadataInfo, AppDiscoveryError>,
        now: Instant,
    ) -> FetchOutcome {
        self.in_flight = self.in_flight.saturating_sub(1);
        let policy = &self.policy;
        let Some(entry) = self.entries.get_mut(&fetch.key) else {
            return FetchOutcome::Stale;
        };
        let has_untried = entry.has_untried();
        let State::Waiting {
            attempts,
            next_try,
            in_flight,
            given_up,
            last_error,
            ..
        } = &mut entry.state
        else {
            return FetchOutcome::Stale;
        };
        let current = *in_flight == Some(fetch.id);
        if current {
            *in_flight = None;
        }
        let error = match result {
            Ok(info) if info.revision == fetch.key.revision => {
                let info = Arc::new(info);
                entry.state = State::Resolved(Arc::clone(&info));
                return FetchOutcome::Resolved {
                    info,
                    instances: entry.instances.keys().cloned().collect(),
                };
            }
            Ok(info) => AppDiscoveryError::WrongRevision {
                app: fetch.key.app.clone(),
                address: fetch.target.address(),
                asked: excerpt(&fetch.key.revision),
                got: excerpt(&info.revision),
            },
            Err(e) => e,
        };
        if !current {
            return FetchOutcome::Stale;
        }
        *attempts += 1;
        if *attempts >= policy.attempts_before_giving_up {
            *given_up = true;
        }
        *next_try = if *given_up {
            now + policy.given_up_retry
        } else if has_untried {
            now
        } else {
            now + backoff(policy, *attempts)
        };
        *last_error = Some(error.clone());
        FetchOutcome::Failed {
            error,
            attempts: *attempts,
            given_up: *given_up,
            next_try: *next_try,
        }
    }

    /// When [`MetadataCache::due`] will next have something to start (`None`: nothing until an instance
    /// comes or a fetch comes back). Never in the past while every slot is taken.
    pub fn next_wake(&self) -> Option<Instant> {
        if self.in_flight >= self.policy.max_in_flight {
            return None;
        }
        self.entries
            .values()
            .filter_map(|e| match &e.state {
                State::Waiting {
                    next_try,
                    in_flight: None,
                    ..
                } if e.has_askable() => Some(*next_try),
                _ => None,
            })
            .min()
    }

    /// The resolved metadata of a key.
    pub fn get(&self, key: &RevisionKey) -> Option<Arc<MetadataInfo>> {
        match &self.entries.get(key)?.state {
            State::Resolved(info) => Some(Arc::clone(info)),
            State::Waiting { .. } => None,
        }
    }

    /// A key's state (`None`: no instance refers to it).
    pub fn state(&self, key: &RevisionKey) -> Option<RevisionState> {
        Some(match &self.entries.get(key)?.state {
            State::Resolved(info) => RevisionState::Resolved(Arc::clone(info)),
            State::Waiting {
                attempts,
                next_try,
                in_flight,
                given_up,
                last_error,
                ..
            } => RevisionState::Waiting {
                attempts: *attempts,
                next_try: *next_try,
                in_flight: in_flight.is_some(),
                given_up: *given_up,
                last_error: last_error.clone(),
            },
        })
    }

    /// The instances referring to a key.
    pub fn instances(&self, key: &RevisionKey) -> Vec<InstanceKey> {
        self.entries
            .get(key)
            .map(|e| e.instances.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The key an instance refers to.
    pub fn revision_of(&self, instance: &InstanceKey) -> Option<&RevisionKey> {
        self.by_instance.get(instance)
    }

    /// Fetches handed out by [`MetadataCache::due`] and not yet back.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The keys some instance refers to (resolved or not).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no instance is recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The resolved keys.
    pub fn resolved(&self) -> usize {
        self.entries
            .values()
            .filter(|e| matches!(e.state, State::Resolved(_)))
            .count()
    }
}

/// The wait after the `attempts`-th failure when no untried instance is left: `first_retry` doubled per
/// earlier failure, at most `max_retry`.
fn backoff(policy: &CachePolicy, attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(30);
    policy
        .first_retry
        .saturating_mul(1u32 << doublings)
        .min(policy.max_retry)
}
