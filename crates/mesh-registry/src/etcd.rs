//! The etcd source: configuration, the watch loop run by the watcher thread, and the helpers the registrar
//! shares (connection, bounded calls, backoff).

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use etcd_client::{Client, EventType, GetOptions, WatchOptions};

use crate::app_discovery::{AppDiscoveryConfig, AppWatch};
use crate::dubbo::{RegistryRoot, DEFAULT_ROOT};
use crate::etcd_access::{check_schemes, EtcdAuth, EtcdTls};
use crate::publish_pace::PublishPace;
use crate::source::Outbox;
use crate::watch_state::WatchState;
use crate::watched_keys::{Skips, WatchedKeys};
use crate::{RegistryError, SubsetSettings, MAX_PROVIDER_SUBSET};

/// How to reach etcd and where the registry lives in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs (`http://host:2379`, or `host:2379`). Default `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// The registry root, Dubbo's registry `group` (default [`DEFAULT_ROOT`], `/dubbo`): provider keys are
    /// `/<root>/<interface>/providers/<URL>`.
    pub root: String,
    /// Bound on establishing a connection (default 3 s).
    pub connect_timeout: Duration,
    /// Bound on every unary etcd call and on opening a stream (default 5 s). Streams themselves are not
    /// bounded; HTTP/2 keepalive (6 s + 3 s, see `member.rs`) detects dead connections under them.
    pub request_timeout: Duration,
    /// Upper bound of the exponential retry backoff (100 ms, 200 ms, ... this; default 5 s).
    pub retry_backoff_max: Duration,
    /// TLS (`https://` endpoints): the CA, and a client certificate if etcd asks for one. Default none.
    pub tls: Option<EtcdTls>,
    /// User and password when etcd has authentication enabled. Default none.
    pub auth: Option<EtcdAuth>,
    /// Dubbo 3 application-level discovery and migration (consumer side, see [`crate::app_discovery`]).
    /// Default none: interface-level only.
    pub app_discovery: Option<Box<AppDiscoveryConfig>>,
    /// The least time between two snapshots the watcher publishes (default
    /// [`DEFAULT_PUBLISH_INTERVAL`], at most [`MAX_PUBLISH_INTERVAL`]): every etcd event is applied as it
    /// comes, but a change within this time of the last publication is held and goes out with the first
    /// change after the interval, or half an interval after its end when none comes (at most 1.5 intervals
    /// late), so the subscribers absorb at most one snapshot per interval; a change after a quiet period
    /// goes out at once. Zero: a snapshot per batch of events.
    pub publish_interval: Duration,
    /// The consumer's provider subset (`size` 0, the default: every provider; see
    /// [`crate::provider_subset`]).
    pub provider_subset: SubsetSettings,
}

/// The default [`EtcdConfig::publish_interval`]: a snapshot per batch of events. Measured at 100 changes/s on
/// 5,000 instances (docs/benchmarks.md), 20 ms cut the shards' snapshots to 0.4 per change but cost the watcher
/// thread more CPU than the shards saved (their routing work is ~5 us per change; connections dominate) and
/// took propagation p99 from ~7 to ~32 ms: pacing is for bursts an operator wants smoothed, not a default.
pub const DEFAULT_PUBLISH_INTERVAL: Duration = Duration::ZERO;

/// The longest [`EtcdConfig::publish_interval`].
pub const MAX_PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: vec!["http://127.0.0.1:2379".to_owned()],
            root: DEFAULT_ROOT.to_owned(),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(5),
            retry_backoff_max: Duration::from_secs(5),
            tls: None,
            auth: None,
            app_discovery: None,
            publish_interval: DEFAULT_PUBLISH_INTERVAL,
            provider_subset: SubsetSettings::default(),
        }
    }
}

impl EtcdConfig {
    /// The default configuration for other etcd endpoints.
    pub fn with_endpoints<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ..EtcdConfig::default()
        }
    }

    /// The registry root (checked by [`EtcdConfig::validate`]; the default root if it is invalid).
    pub fn registry_root(&self) -> RegistryRoot {
        RegistryRoot::new(&self.root).unwrap_or_default()
    }

    /// Checks what can be checked without etcd: the values, the endpoints' schemes against the TLS
    /// settings, and the TLS files (read, each named in the error).
    pub fn validate(&self) -> Result<(), RegistryError> {
        let bad = |m: &str| Err(RegistryError::Config(m.to_owned()));
        if self.endpoints.is_empty() || self.endpoints.iter().any(|e| e.trim().is_empty()) {
            return bad("etcd endpoints must be a non-empty list of URLs");
        }
        if let Err(e) = RegistryRoot::new(&self.root) {
            return Err(RegistryError::Config(format!("registry root: {e}")));
        }
        if self.connect_timeout.is_zero()
            || self.request_timeout.is_zero()
            || self.retry_backoff_max.is_zero()
        {
            return bad("etcd timeouts and retry_backoff_max must be > 0");
        }
        if self.publish_interval > MAX_PUBLISH_INTERVAL {
            return bad("the snapshot publish interval must be at most 1 s");
        }
        if self.provider_subset.size > MAX_PROVIDER_SUBSET {
            return bad("the provider subset must be at most 100000 providers");
        }
        check_schemes(&self.endpoints, self.tls.as_ref())?;
        if let Some(tls) = &self.tls {
            tls.check()?;
        }
        if self.auth.as_ref().is_some_and(|a| a.user.is_empty()) {
            return bad("the etcd user must not be empty");
        }
        if let Some(apps) = &self.app_discovery {
            apps.validate()?;
        }
        Ok(())
    }
}

/// First retry delay; doubled up to [`EtcdConfig::retry_backoff_max`].
pub(crate) const BACKOFF_INITIAL: Duration = Duration::from_millis(100);

/// How often an idle watch asks its member for a progress report.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// How long a watch waits for any answer of its member (events or progress) before it moves to another.
const SILENT_MEMBER: Duration = Duration::from_secs(3);

/// A session (watch, or registration) that ran this long without failing resets the backoff.
pub(crate) const HEALTHY_AFTER: Duration = Duration::from_secs(1);

/// Exponential backoff with ±20 % jitter.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(max: Duration) -> Self {
        Backoff {
            next: BACKOFF_INITIAL.min(max),
            max,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.next = BACKOFF_INITIAL.min(self.max);
    }

    /// The delay before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        // Random bits from std's per-instance hash keys: enough to spread agents restarting together.
        let r = RandomState::new().build_hasher().finish() % 401; // 0..=400
        base.mul_f64(0.8 + r as f64 / 1000.0)
    }
}

/// Connects to one usable etcd member (probing them in turn, see `member.rs`), with the timeouts, HTTP/2
/// keepalive, TLS and credentials of `cfg`. Bounded by `cfg.connect_timeout`.
pub(crate) async fn connect(cfg: &EtcdConfig) -> Result<Client, RegistryError> {
    crate::member::connect_usable(cfg).await
}

impl EtcdConfig {
    /// Connects once, as a registry session would (TLS, credentials, a member with a leader), and says why
    /// it cannot: for start-up checks and messages. Blocks at most `connect_timeout` (on its own runtime).
    pub fn check_reachable(&self) -> Result<(), RegistryError> {
        self.validate()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(connect(self)).map(drop)
    }
}

/// Runs one etcd call, bounded by `after`.
pub(crate) async fn bounded<T>(
    op: &'static str,
    after: Duration,
    call: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, RegistryError> {
    match tokio::time::timeout(after, call).await {
        Ok(result) => result.map_err(RegistryError::etcd(op)),
        Err(_) => Err(RegistryError::Timeout { op, after }),
    }
}

/// The watcher thread's etcd loop: read everything under the registry root, publish, watch from the next
/// revision, apply every batch of events as it comes and publish what changed at most once per
/// [`EtcdConfig::publish_interval`] (`publish_pace.rs`); on any error publish what was held back, keep the
/// last snapshot, back off, read and watch again (the re-read is diffed against what is known, so only real
/// changes are published).
pub(crate) async fn watch_forever(cfg: &EtcdConfig, outbox: &Outbox, state: &WatchState) {
    let mut backoff = Backoff::new(cfg.retry_backoff_max);
    let mut failures: u32 = 0;
    let mut last_error = String::new();
    let mut entries = WatchedKeys::with_apps(cfg.registry_root(), cfg.app_discovery.as_deref())
        .with_provider_subset(&cfg.provider_subset);
    loop {
        let mut healthy_since = None;
        let error = watch_session(cfg, outbox, &mut entries, failures, &mut healthy_since, state).await;
        state.session_ended();
        if healthy_since.is_some_and(|t: Instant| t.elapsed() >= HEALTHY_AFTER) {
            backoff.reset();
            failures = 0;
        }
        let delay = backoff.next_delay();
        let message = error.to_string();
        if failures == 0 || message != last_error {
            tracing::warn!(
                "etcd watch of {}/ failed: {message}; keeping snapshot v{}, retrying in {delay:?} \
                 (backoff up to {:?})",
                cfg.root,
                outbox.version(),
                cfg.retry_backoff_max
            );
        }
        failures = failures.saturating_add(1);
        last_error = message;
        tokio::time::sleep(delay).await;
    }
}

/// One read + watch; returns why it ended. `healthy_since` is set once the watch is established.
async fn watch_session(
    cfg: &EtcdConfig,
    outbox: &Outbox,
    entries: &mut WatchedKeys,
    failures: u32,
    healthy_since: &mut Option<Instant>,
    state: &WatchState,
) -> RegistryError {
    let mut client = match crate::member::connect_member(cfg).await {
        Ok((c, member)) => {
            state.member(&member);
            c
        }
        Err(e) => return e,
    };
    let range = format!("{}/", entries.root);
    let get = client.get(range.as_str(), Some(GetOptions::new().with_prefix()));
    let response = match bounded("get", cfg.request_timeout, get).await {
        Ok(r) => r,
        Err(e) => return e,
    };
    let Some(revision) = response.header().map(|h| h.revision()) else {
        return RegistryError::WatchEnded("get response without header".into());
    };
    let mut skips = Skips::default();
    entries.resync(response.kvs().iter().map(|kv| (kv.key(), kv.value())), &mut skips);
    skips.report(&range);
    // Application-level discovery: its keys inside the registry root come with that read, the others are
    // read here and watched on the same stream below.
    let mut app_reads = Vec::new();
    if let Some(apps) = entries.apps.as_mut() {
        let read = apps.read(
            &mut client,
            cfg.request_timeout,
            &range,
            response.kvs(),
            &mut entries.builder,
        );
        match read.await {
            Ok(reads) => app_reads = reads,
            Err(e) => return e,
        }
    }
    // Dubbo's config center (`/dubbo/config/dubbo/`): inside the registry root by default, else read and
    // watched on its own.
    let rules_prefix = entries.rules.prefix();
    let mut rules_apart = !rules_prefix.starts_with(range.as_str());
    // Each watch starts after its own read; the snapshot reflects the later of the two reads.
    let registry_revision = revision;
    let mut revision = app_reads.iter().map(|r| r.revision()).fold(revision, i64::max);
    let mut rules_revision = revision;
    if rules_apart {
        let get = client.get(rules_prefix.as_str(), Some(GetOptions::new().with_prefix()));
        match bounded("get", cfg.request_timeout, get).await {
            Ok(response) => {
                let Some(r) = response.header().map(|h| h.revision()) else {
                    return RegistryError::WatchEnded("get response without header".into());
                };
                rules_revision = r;
                revision = revision.max(r);
                entries
                    .rules
                    .resync(response.kvs().iter().map(|kv| (kv.key(), kv.value())));
            }
            // The config center is optional: a user allowed to read the registry root only (etcd auth) still
            // discovers providers; the rules last read stay in force.
            Err(e) => {
                tracing::warn!(
                    "routing rules under {rules_prefix} not read ({e}); providers are watched \
                     without them this session"
                );
                rules_apart = false;
            }
        }
    } else {
        entries
            .rules
            .resync(response.kvs().iter().map(|kv| (kv.key(), kv.value())));
    }
    let mut pace = PublishPace::new(cfg.publish_interval);
    let published = publish(entries, outbox, revision);
    pace.done(Instant::now(), published);
    if failures > 0 {
        tracing::info!(
            "etcd watch of {range} resumed at revision {revision} ({} provider keys{})",
            entries.len(),
            if published { ", changed" } else { ", unchanged" }
        );
    }

    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(registry_revision + 1);
    let mut stream = match bounded(
        "watch",
        cfg.request_timeout,
        client.watch(range.as_str(), Some(options)),
    )
    .await
    {
        Ok(s) => s,
        Err(e) => return e,
    };
    if let Err(e) = AppWatch::watch_apart(&mut stream, cfg.request_timeout, &app_reads).await {
        return e;
    }
    let mut rules_stream = None;
    if rules_apart {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(rules_revision + 1);
        match bounded(
            "watch",
            cfg.request_timeout,
            client.watch(rules_prefix.as_str(), Some(options)),
        )
        .await
        {
            Ok(s) => rules_stream = Some(s),
            Err(e) => return e,
        }
    }
    // A member that hangs (process stopped, network gone quiet) keeps the TCP connection: ask it for a
    // progress report every second and give up on it after `SILENT_MEMBER` without any answer, instead of
    // waiting for HTTP/2 keepalive (6 + 3 s).
    let mut progress = tokio::time::interval(PROGRESS_EVERY);
    progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard = Instant::now();
    let mut last_revision = revision;
    let error = loop {
        // A migration switch waiting for the rule's `delay` is decided at a publication (app_discovery).
        let migration_wake = entries.builder.next_wake();
        // Every `message()` future is cancel-safe (a stream's next item stays queued). `biased`: the
        // branches are polled in this order (the watch stream first, where the events come from) instead of
        // from a random one; none can starve the others: each stream yields between etcd's messages.
        let message = tokio::select! {
            biased;
            m = stream.message() => m,
            m = async {
                match rules_stream.as_mut() {
                    Some(rules) => rules.message().await,
                    None => std::future::pending().await,
                }
            } => m,
            resolution = async {
                match entries.apps.as_mut() {
                    Some(apps) => apps.next().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Some(apps) = entries.apps.as_mut() {
                    apps.resolved(resolution, &mut entries.builder);
                }
                publish_paced(entries, outbox, last_revision, &mut pace);
                continue;
            }
            () = sleep_until(migration_wake) => {
                let published = publish(entries, outbox, last_revision);
                pace.done(Instant::now(), published);
                continue;
            }
            () = sleep_until(pace.deadline()) => {
                let published = publish(entries, outbox, last_revision);
                pace.done(Instant::now(), published);
                continue;
            }
            _ = progress.tick() => {
                if heard.elapsed() >= SILENT_MEMBER {
                    break RegistryError::WatchEnded(format!(
                        "the etcd member answered nothing for {:?}, not even a progress request",
                        heard.elapsed()
                    ));
                }
                if let Err(e) = stream.request_progress().await {
                    break RegistryError::Etcd { op: "watch progress", source: e };
                }
                continue;
            }
        };
        heard = Instant::now();
        state.heard();
        let response = match message {
            Ok(Some(r)) => r,
            Ok(None) => break RegistryError::WatchEnded("etcd closed the watch stream".into()),
            Err(e) => {
                break RegistryError::Etcd {
                    op: "watch",
                    source: e,
                }
            }
        };
        if response.canceled() {
            break RegistryError::WatchEnded(format!(
                "cancelled by etcd (compact revision {}, reason {:?})",
                response.compact_revision(),
                response.cancel_reason()
            ));
        }
        if response.created() {
            state.watching();
            healthy_since.get_or_insert_with(Instant::now);
        }
        if response.events().is_empty() {
            continue;
        }
        let mut revision = 0;
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            revision = revision.max(kv.mod_revision());
            match event.event_type() {
                EventType::Put if entries.put_rule(kv.key(), kv.value()) => {}
                EventType::Put if entries.app_put(kv.key(), kv.value()) => {}
                EventType::Put => entries.put(kv.key(), kv.value(), &mut skips),
                EventType::Delete if entries.delete_rule(kv.key()) => {}
                EventType::Delete if entries.app_delete(kv.key()) => {}
                EventType::Delete => entries.delete(kv.key()),
            }
        }
        skips.report(&range);
        if let Some(apps) = entries.apps.as_mut() {
            apps.report(&mut entries.builder);
        }
        let revision = response.header().map_or(revision, |h| h.revision().max(revision));
        last_revision = revision;
        publish_paced(entries, outbox, revision, &mut pace);
    };
    // What was held back goes out now, not after the backoff and the next read.
    if pace.deadline().is_some() {
        let published = publish(entries, outbox, last_revision);
        pace.done(Instant::now(), published);
    }
    error
}

/// Publishes the changes just applied now, or leaves them to the publication `pace` schedules.
fn publish_paced(entries: &mut WatchedKeys, outbox: &Outbox, revision: i64, pace: &mut PublishPace) {
    let now = Instant::now();
    if pace.changed(now) {
        let published = publish(entries, outbox, revision);
        pace.done(now, published);
    }
}

/// Waits until `deadline`; forever when `None`.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Publishes the changes since the last publication, if any; whether it did.
fn publish(entries: &mut WatchedKeys, outbox: &Outbox, revision: i64) -> bool {
    match entries.publish(revision) {
        Some(snapshot) => {
            // Evaluated only when debug is on for this target (`MESH_LOG=info,mesh_registry=debug`).
            tracing::debug!(
                version = snapshot.version,
                revision = snapshot.revision,
                services = snapshot.services().count(),
                endpoints = snapshot.endpoint_count(),
                departed = snapshot.departed().len(),
                "registry change applied: snapshot v{} at revision {}",
                snapshot.version,
                snapshot.revision
            );
            outbox.publish(snapshot);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_max_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(500));
        let d: Vec<Duration> = (0..5).map(|_| b.next_delay()).collect();
        let within = |d: Duration, base_ms: u64| {
            let base = Duration::from_millis(base_ms);
            d >= base.mul_f64(0.79) && d <= base.mul_f64(1.21)
        };
        assert!(within(d[0], 100), "{d:?}");
        assert!(within(d[1], 200), "{d:?}");
        assert!(within(d[2], 400), "{d:?}");
        assert!(within(d[3], 500), "{d:?}");
        assert!(within(d[4], 500), "{d:?}");
        b.reset();
        assert!(within(b.next_delay(), 100));
        let mut tiny = Backoff::new(Duration::from_millis(10));
        assert!(within(tiny.next_delay(), 10));
    }

    #[test]
    fn config_validation() {
        assert!(EtcdConfig::default().validate().is_ok());
        assert_eq!(EtcdConfig::default().root, "/dubbo");
        let cfg = EtcdConfig::with_endpoints(["127.0.0.1:1"]);
        assert_eq!(cfg.endpoints, ["127.0.0.1:1"]);
        assert!(EtcdConfig {
            endpoints: vec![],
            ..EtcdConfig::default()
        }
        .validate()
        .is_err());
        assert!(EtcdConfig {
            root: "/".into(),
            ..EtcdConfig::default()
        }
        .validate()
        .is_err());
        assert!(EtcdConfig {
            retry_backoff_max: Duration::ZERO,
            ..EtcdConfig::default()
        }
        .validate()
        .is_err());
        assert_eq!(EtcdConfig::default().publish_interval, DEFAULT_PUBLISH_INTERVAL);
        for (interval, ok) in [
            (Duration::ZERO, true),
            (MAX_PUBLISH_INTERVAL, true),
            (Duration::from_millis(1001), false),
        ] {
            let cfg = EtcdConfig {
                publish_interval: interval,
                ..EtcdConfig::default()
            };
            assert_eq!(cfg.validate().is_ok(), ok, "{interval:?}");
        }
    }
}
