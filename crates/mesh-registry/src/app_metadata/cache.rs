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
    /// metadata report to read; [`MetadataCache::set_read_remote`] changes it). When false they count as
    /// unaskable.
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

    fn has_askable(&self, read_remote: bool) -> bool {
        self.instances.values().any(|t| askable(t, read_remote))
    }

    /// The next instance to ask: the first askable one not tried yet; when every askable one was tried,
    /// the round starts again.
    fn pick(&mut self, read_remote: bool) -> Option<(InstanceKey, MetadataTarget)> {
        let State::Waiting { tried, .. } = &mut self.state else {
            return None;
        };
        let mut askable = self
            .instances
            .iter()
            .filter(|(_, t)| askable(t, read_remote))
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

    fn has_untried(&self, read_remote: bool) -> bool {
        let State::Waiting { tried, .. } = &self.state else {
            return false;
        };
        self.instances
            .iter()
            .any(|(k, t)| askable(t, read_remote) && !tried.contains(k))
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

    /// Whether instances with remote storage can be fetched from now on ([`CachePolicy::read_remote`]);
    /// those already recorded are asked (or no longer asked) from the next [`MetadataCache::due`].
    pub fn set_read_remote(&mut self, read_remote: bool) {
        self.policy.read_remote = read_remote;
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
        let target = MetadataTarget::of(instance);
        let unaskable = match &target {
            Err(e) => Some(e.clone()),
            Ok(t) if t.kind == TargetKind::Remote && !self.policy.read_remote => {
                Some(AppDiscoveryError::MetadataCall {
                    address: t.address(),
                    revision: excerpt(&key.revision),
                    failure: MetadataCallFailure::Unsupported(
                        "dubbo.metadata.storage-type=remote and no metadata report is read".into(),
                    ),
                })
            }
            Ok(_) => None,
        };
        let entry = self.entries.entry(key.clone()).or_insert_with(|| Entry::new(now));
        let new_candidate = unaskable.is_none()
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
        let read_remote = self.policy.read_remote;
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
                } if *next_try <= now && e.has_askable(read_remote) => Some((*next_try, k.clone())),
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
            let Some((instance, target)) = entry.pick(read_remote) else {
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
        let has_untried = entry.has_untried(policy.read_remote);
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
                } if e.has_askable(self.policy.read_remote) => Some(*next_try),
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

/// Whether a recorded target can be asked.
fn askable(target: &Result<MetadataTarget, AppDiscoveryError>, read_remote: bool) -> bool {
    match target {
        Ok(t) => read_remote || t.kind != TargetKind::Remote,
        Err(_) => false,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dubbo::instance::{METADATA_SERVICE_URL_PARAMS_KEY, REVISION_KEY, STORAGE_TYPE_KEY};
    use crate::dubbo::metadata_info::ServiceInfo;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    fn instance(app: &str, host: &str, revision: &str) -> ServiceInstance {
        let mut i = ServiceInstance::new(app, host, 20880);
        i.metadata.insert(REVISION_KEY.into(), revision.into());
        i
    }

    fn info(app: &str, revision: &str) -> MetadataInfo {
        MetadataInfo {
            app: app.into(),
            revision: revision.into(),
            services: BTreeMap::from([(
                "com.x.Greeter:dubbo".to_owned(),
                ServiceInfo {
                    name: "com.x.Greeter".into(),
                    group: None,
                    version: None,
                    protocol: Some("dubbo".into()),
                    port: -1,
                    path: None,
                    params: BTreeMap::new(),
                },
            )]),
        }
    }

    fn failure() -> AppDiscoveryError {
        AppDiscoveryError::MetadataCall {
            address: "h:1".into(),
            revision: "r".into(),
            failure: MetadataCallFailure::Null,
        }
    }

    fn policy() -> CachePolicy {
        CachePolicy {
            max_in_flight: 2,
            first_retry: Duration::from_millis(100),
            max_retry: Duration::from_millis(800),
            attempts_before_giving_up: 5,
            given_up_retry: Duration::from_secs(60),
            read_remote: false,
        }
    }

    #[test]
    fn one_fetch_per_revision_shared_by_its_instances() {
        let t0 = Instant::now();
        let mut c = MetadataCache::new(policy());
        assert_eq!(c.want(&instance("a", "10.0.0.1", "r1"), t0), Want::Pending);
        assert_eq!(c.want(&instance("a", "10.0.0.2", "r1"), t0), Want::Pending);
        let fetches = c.due(t0);
        assert_eq!(fetches.len(), 1, "one fetch for the one revision");
        assert_eq!(fetches[0].key, RevisionKey::new("a", "r1"));
        assert_eq!(fetches[0].attempt, 1);
        assert_eq!(c.due(t0), vec![], "never two fetches of one revision");
        let out = c.fetched(&fetches[0], Ok(info("a", "r1")), t0);
        let FetchOutcome::Resolved { info: got, instances } = out else {
            panic!("{out:?}");
        };
        assert_eq!(*got, info("a", "r1"));
        assert_eq!(instances.len(), 2);
        assert_eq!(c.in_flight(), 0);
        // A third instance of the same revision is ready at once, without a fetch.
        assert!(matches!(
            c.want(&instance("a", "10.0.0.3", "r1"), t0),
            Want::Ready(_)
        ));
        assert_eq!(c.due(t0 + Duration::from_secs(3600)), vec![]);
        assert_eq!(c.next_wake(), None);
    }

    #[test]
    fn revision_zero_and_no_revision_are_skipped_and_let_go() {
        let t0 = Instant::now();
        let mut c = MetadataCache::new(policy());
        assert!(matches!(
            c.want(&instance("a", "10.0.0.1", "0"), t0),
            Want::Skip(_)
        ));
        assert!(matches!(
            c.want(&ServiceInstance::new("a", "10.0.0.1", 1), t0),
            Want::Skip(_)
        ));
        assert!(c.is_empty());
        assert_eq!(c.due(t0), vec![]);
        // An instance that drops to revision "0" lets its old revision go.
        c.want(&instance("a", "10.0.0.1", "r1"), t0);
        assert_eq!(c.len(), 1);
        assert!(matches!(
            c.want(&instance("a", "10.0.0.1", "0"), t0),
            Want::Skip(_)
        ));
        assert!(c.is_empty());
    }

    #[test]
    fn a_failure_asks_another_instance_of_the_same_revision_at_once() {
        let t0 = Instant::now();
        let mut c = MetadataCache::new(policy());
        c.want(&instance("a", "10.0.0.1", "r1"), t0);
        c.want(&instance("a", "10.0.0.2", "r1"), t0);
        let first = c.due(t0).remove(0);
        let out = c.fetched(&first, Err(failure()), t0);
        assert!(
            matches!(out, FetchOutcome::Failed { attempts: 1, given_up: false, next_try, .. } if next_try == t0)
        );
        let second = c.due(t0).remove(0);
        assert_ne!(second.instance, first.instance, "the other instance is asked");
        assert_eq!(second.attempt, 2);
        // Both tried: now the backoff applies (100 ms after the 2nd failure... doubled once: 200 ms).
        let out = c.fetched(&second, Err(failure()), t0);
        let FetchOutcome::Failed { next_try, .. } = out else {
            panic!("{out:?}")
        };
        assert_eq!(next_try, t0 + 200 * MS);
        assert_eq!(c.due(t0 + 199 * MS), vec![]);
        assert_eq!(c.next_wake(), Some(t0 + 200 * MS));
        let third = c.due(t0 + 200 * MS).remove(0);
        assert_eq!(
            third.instance, first.instance,
            "a new round starts with the first instance"
        );
    }

    #[test]
    fn gives_up_after_n_failures_then_retries_slowly() {
        let t0 = Instant::now();
        let p = policy();
        let mut c = MetadataCache::new(p.clone());
        c.want(&instance("a", "10.0.0.1", "r1"), t0);
        let mut now = t0;
        let mut waits = Vec::new();
        for attempt in 1..=p.attempts_before_giving_up + 1 {
            let f = c.due(now);
            assert_eq!(f.len(), 1, "attempt {attempt} at {:?}", now - t0);
            let FetchOutcome::Failed {
                next_try, given_up, ..
            } = c.fetched(&f[0], Err(failure()), now)
            else {
                panic!()
            };
            assert_eq!(given_up, attempt >= p.attempts_before_giving_up);
            waits.push(next_try - now);
            assert_eq!(c.due(next_try - MS), vec![], "not before its time");
            now = next_try;
        }
        assert_eq!(
            waits,
            [100, 200, 400, 800]
                .map(Duration::from_millis)
                .into_iter()
                .chain([p.given_up_retry, p.given_up_retry])
                .collect::<Vec<_>>()
        );
        // It still resolves when an answer finally comes.
        let f = c.due(now).remove(0);
        assert!(matches!(
            c.fetched(&f, Ok(info("a", "r1")), now),
            FetchOutcome::Resolved { .. }
        ));
        assert!(matches!(
            c.state(&RevisionKey::new("a", "r1")),
            Some(RevisionState::Resolved(_))
        ));
    }

    #[test]
    fn a_new_instance_of_a_failing_revision_is_tried_without_waiting() {
        let t0 = Instant::now();
        let mut c = MetadataCache::new(policy());
        c.want(&instance("a", "10.0.0.1", "r1"), t0);
        let f = c.due(t0).remove(0);
        c.fetched(&f, Err(failure()), t0);
        assert_eq!(c.due(t0), vec![], "backoff");
        c.want(&instance("a", "10.0.0.2", "r1"), t0);
        let g = c.due(t0).remove(0);
        assert_eq!(g.instance.host, "10.0.0.2");
    }

    #[test]
    fn the_wrong_revision_is_a_failure_and_not_cached() {
        let t0 = Instant::now();
        let mut c = MetadataCache::new(policy());
        c.want(&instance("a", "10.0.0.1", "r1"), t0);
        let f = c.due(t0).remove(0);
        let out = c.fetched(&f, Ok(info("a", "r2")), t0);
        assert!(matches!(
            out,
            FetchOutcome::Failed { error: AppDiscoveryError::WrongRevision { ref asked, ref got, .. }, .. }
                if asked == "r1" && got == "r2"
        ));
        assert_eq!(c.get(&RevisionKey::new("a", "r1")), None);
        assert_eq!(c.get(&RevisionKey::new("a", "r2")), None);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn forgotten_revisions_go_and_late_results_are_stale() {
        let t0 = Instant::now();
        let mut c = MetadataCache::new(policy());
        let i1 = instance("a", "10.0.0.1", "r1");
        c.want(&i1, t0);
        let f = c.due(t0).remove(0);
        assert_eq!(c.forget(&i1.key()), Some(RevisionKey::new("a", "r1")));
        assert!(c.is_empty());
        assert_eq!(c.in_flight(), 1, "the fetch is still out");
        assert_eq!(c.fetched(&f, Ok(info("a", "r1")), t0), FetchOutcome::Stale);
        assert_eq!(c.in_flight(), 0);
        assert!(c.is_empty(), "a late answer does not bring the revision back");
        // An instance that changes revision lets go of the old one.
        c.want(&instance("a", "10.0.0.1", "r1"), t0);
        c.want(&instance("a", "10.0.0.1", "r2"), t0);
        assert_eq!(c.len(), 1);
        assert_eq!(c.revision_of(&i1.key()), Some(&RevisionKey::new("a", "r2")));
    }

    #[test]
    fn fetches_in_flight_are_bounded() {
        let t0 = Instant::now();
        let mut c = MetadataCache::new(policy());
        for r in 0..5 {
            c.want(&instance("a", &format!("10.0.0.{r}"), &format!("r{r}")), t0);
        }
        let first = c.due(t0);
        assert_eq!(first.len(), 2);
        assert_eq!(c.due(t0), vec![]);
        assert_eq!(c.next_wake(), None, "no wake while every slot is taken");
        c.fetched(&first[0], Ok(info("a", &first[0].key.revision)), t0);
        assert_eq!(c.due(t0).len(), 1);
    }

    #[test]
    fn unaskable_instances_count_but_are_not_asked() {
        let t0 = Instant::now();
        let mut c = MetadataCache::new(policy());
        let mut bad = instance("a", "10.0.0.1", "r1");
        bad.metadata.insert(
            METADATA_SERVICE_URL_PARAMS_KEY.into(),
            "{\"version\":\"1.0.0\"}".into(),
        );
        assert!(matches!(c.want(&bad, t0), Want::PendingUnaskable(_)));
        let mut remote = instance("a", "10.0.0.2", "r1");
        remote.metadata.insert(STORAGE_TYPE_KEY.into(), "remote".into());
        assert!(matches!(
            c.want(&remote, t0),
            Want::PendingUnaskable(AppDiscoveryError::MetadataCall {
                failure: MetadataCallFailure::Unsupported(_),
                ..
            })
        ));
        assert_eq!(c.due(t0), vec![]);
        assert_eq!(c.next_wake(), None);
        c.want(&instance("a", "10.0.0.3", "r1"), t0);
        let f = c.due(t0).remove(0);
        assert_eq!(f.instance.host, "10.0.0.3");
        let FetchOutcome::Resolved { instances, .. } = c.fetched(&f, Ok(info("a", "r1")), t0) else {
            panic!()
        };
        assert_eq!(instances.len(), 3, "the unaskable ones use the metadata too");
        // With remote reads on, the remote instance is a target.
        let mut c = MetadataCache::new(CachePolicy {
            read_remote: true,
            ..policy()
        });
        assert_eq!(c.want(&remote, t0), Want::Pending);
        assert_eq!(c.due(t0)[0].target.kind, TargetKind::Remote);
        // Turned on after the instance came: asked from then on.
        let mut c = MetadataCache::new(policy());
        assert!(matches!(c.want(&remote, t0), Want::PendingUnaskable(_)));
        assert_eq!(c.next_wake(), None);
        c.set_read_remote(true);
        assert_eq!(c.next_wake(), Some(t0));
        assert_eq!(c.due(t0)[0].target.kind, TargetKind::Remote);
    }

    #[test]
    fn inline_metadata_of_the_same_revision_resolves_without_a_call() {
        let t0 = Instant::now();
        let mut c = MetadataCache::new(policy());
        let mut go = instance("go-app", "10.0.0.7", "r1");
        go.inline_metadata = Some(info("go-app", "r1"));
        assert!(matches!(c.want(&go, t0), Want::Ready(_)));
        assert_eq!(c.due(t0), vec![]);
    }

    /// One step of a random history.
    #[derive(Debug, Clone)]
    enum Op {
        Want {
            host: u8,
            rev: u8,
        },
        Skip {
            host: u8,
        },
        Forget {
            host: u8,
        },
        Due,
        /// Answer the `n`-th outstanding fetch: 0 ok, 1 error, 2 wrong revision.
        Answer {
            n: u8,
            how: u8,
        },
        Wait {
            ms: u16,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..6u8, 0..4u8).prop_map(|(host, rev)| Op::Want { host, rev }),
            (0..6u8).prop_map(|host| Op::Skip { host }),
            (0..6u8).prop_map(|host| Op::Forget { host }),
            Just(Op::Due),
            Just(Op::Due),
            (0..8u8, 0..3u8).prop_map(|(n, how)| Op::Answer { n, how }),
            (0..2000u16).prop_map(|ms| Op::Wait { ms }),
        ]
    }

    fn check_invariants(c: &MetadataCache, outstanding: &[Fetch]) {
        assert!(c.in_flight() <= c.policy().max_in_flight);
        assert_eq!(c.in_flight(), outstanding.len());
        for (key, entry) in &c.entries {
            assert!(!entry.instances.is_empty(), "{key:?} has no instance but is kept");
            for id in entry.instances.keys() {
                assert_eq!(c.by_instance.get(id), Some(key));
            }
            match &entry.state {
                State::Resolved(info) => assert_eq!(info.revision, key.revision),
                State::Waiting { in_flight, .. } => {
                    if let Some(id) = in_flight {
                        assert_eq!(outstanding.iter().filter(|f| f.id == *id).count(), 1);
                    }
                }
            }
        }
        for (id, key) in &c.by_instance {
            assert!(c.entries[key].instances.contains_key(id));
        }
        let mut per_key = BTreeMap::new();
        for f in outstanding {
            if c.entries.contains_key(&f.key) {
                *per_key.entry(&f.key).or_insert(0) += 1;
            }
        }
        // At most one current fetch per key (a superseded one may still be out after forget + want).
        for (key, n) in per_key {
            assert!(n <= 2, "{key:?} has {n} fetches out");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        /// Whatever the order of instance events, fetch results and time, the cache keeps its invariants,
        /// never fetches a skipped instance, a resolved revision or revision "0", never caches under the
        /// wrong revision; and once every answer is right, every wanted revision gets resolved.
        #[test]
        fn random_histories_keep_the_invariants(ops in proptest::collection::vec(op(), 1..80)) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut c = MetadataCache::new(policy());
            let mut outstanding: Vec<Fetch> = Vec::new();
            let mut skipped = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Want { host, rev } => {
                        let i = instance("a", &format!("10.0.0.{host}"), &format!("r{rev}"));
                        skipped.remove(&i.key());
                        c.want(&i, now);
                    }
                    Op::Skip { host } => {
                        let i = instance("a", &format!("10.0.0.{host}"), "0");
                        prop_assert!(matches!(c.want(&i, now), Want::Skip(_)));
                        prop_assert_eq!(c.revision_of(&i.key()), None);
                        skipped.insert(i.key());
                    }
                    Op::Forget { host } => {
                        let k = InstanceKey { app: "a".into(), host: format!("10.0.0.{host}"), port: 20880 };
                        c.forget(&k);
                        prop_assert_eq!(c.revision_of(&k), None);
                    }
                    Op::Due => {
                        for f in c.due(now) {
                            prop_assert!(!skipped.contains(&f.instance));
                            prop_assert!(f.key.revision != "0");
                            prop_assert_eq!(c.revision_of(&f.instance), Some(&f.key));
                            prop_assert!(c.get(&f.key).is_none(), "a resolved revision is fetched again");
                            outstanding.push(f);
                        }
                    }
                    Op::Answer { n, how } => {
                        if !outstanding.is_empty() {
                            let f = outstanding.remove(n as usize % outstanding.len());
                            let result = match how {
                                0 => Ok(info("a", &f.key.revision)),
                                1 => Err(failure()),
                                _ => Ok(info("a", "other")),
                            };
                            c.fetched(&f, result, now);
                        }
                    }
                    Op::Wait { ms } => now += Duration::from_millis(u64::from(ms)),
                }
                check_invariants(&c, &outstanding);
            }
            // Drain: every answer right from now on; bounded rounds.
            for f in outstanding.drain(..) {
                c.fetched(&f, Ok(info("a", &f.key.revision)), now);
            }
            for _ in 0..100 {
                let due = c.due(now);
                if due.is_empty() {
                    match c.next_wake() {
                        Some(at) => now = now.max(at),
                        None => break,
                    }
                    continue;
                }
                for f in due {
                    c.fetched(&f, Ok(info("a", &f.key.revision)), now);
                }
            }
            prop_assert_eq!(c.resolved(), c.len(), "every wanted revision resolved");
            prop_assert_eq!(c.in_flight(), 0);
        }
    }
}
