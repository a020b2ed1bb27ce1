//! The etcd source: configuration, the watch loop run by the watcher thread, and the helpers the registrar
//! shares (connection, bounded calls, backoff).

use std::collections::hash_map::RandomState;
use std::collections::BTreeMap;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use etcd_client::{Client, EventType, GetOptions, KeyValue, WatchOptions};

use crate::etcd_access::{check_schemes, EtcdAuth, EtcdTls};
use crate::snapshot::{normalize_prefix, parse_any, prefix_range, Entry, DEFAULT_PREFIX};
use crate::source::Outbox;
use crate::{RegistryError, Snapshot};

/// How to reach etcd and where the registry lives in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs (`http://host:2379`, or `host:2379`). Default `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Key prefix, default [`DEFAULT_PREFIX`] (`/dubbomesh/v1`); keys are `{prefix}/{service}/{ip:port}`.
    pub prefix: String,
    /// Bound on establishing a connection (default 3 s).
    pub connect_timeout: Duration,
    /// Bound on every unary etcd call and on opening a stream (default 5 s). Streams themselves are not
    /// bounded; HTTP/2 keepalive (10 s + 5 s) detects dead connections under them.
    pub request_timeout: Duration,
    /// Upper bound of the exponential retry backoff (100 ms, 200 ms, ... this; default 5 s).
    pub retry_backoff_max: Duration,
    /// TLS (`https://` endpoints): the CA, and a client certificate if etcd asks for one. Default none.
    pub tls: Option<EtcdTls>,
    /// User and password when etcd has authentication enabled. Default none.
    pub auth: Option<EtcdAuth>,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: vec!["http://127.0.0.1:2379".to_owned()],
            prefix: DEFAULT_PREFIX.to_owned(),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(5),
            retry_backoff_max: Duration::from_secs(5),
            tls: None,
            auth: None,
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

    /// Checks what can be checked without etcd: the values, the endpoints' schemes against the TLS
    /// settings, and the TLS files (read, each named in the error).
    pub fn validate(&self) -> Result<(), RegistryError> {
        let bad = |m: &str| Err(RegistryError::Config(m.to_owned()));
        if self.endpoints.is_empty() || self.endpoints.iter().any(|e| e.trim().is_empty()) {
            return bad("etcd endpoints must be a non-empty list of URLs");
        }
        if normalize_prefix(&self.prefix).is_empty() {
            return bad("the etcd prefix must not be empty or \"/\"");
        }
        if self.connect_timeout.is_zero()
            || self.request_timeout.is_zero()
            || self.retry_backoff_max.is_zero()
        {
            return bad("etcd timeouts and retry_backoff_max must be > 0");
        }
        check_schemes(&self.endpoints, self.tls.as_ref())?;
        if let Some(tls) = &self.tls {
            tls.check()?;
        }
        if self.auth.as_ref().is_some_and(|a| a.user.is_empty()) {
            return bad("the etcd user must not be empty");
        }
        Ok(())
    }
}

/// First retry delay; doubled up to [`EtcdConfig::retry_backoff_max`].
pub(crate) const BACKOFF_INITIAL: Duration = Duration::from_millis(100);

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

/// The watcher thread's etcd loop: read the prefix, publish, watch from the next revision and publish
/// after every batch of events; on any error keep the last snapshot, back off, read and watch again.
pub(crate) async fn watch_forever(cfg: &EtcdConfig, outbox: &Outbox) {
    let mut backoff = Backoff::new(cfg.retry_backoff_max);
    let mut failures: u32 = 0;
    let mut last_error = String::new();
    loop {
        let mut healthy_since = None;
        let error = watch_session(cfg, outbox, failures, &mut healthy_since).await;
        if healthy_since.is_some_and(|t: Instant| t.elapsed() >= HEALTHY_AFTER) {
            backoff.reset();
            failures = 0;
        }
        let delay = backoff.next_delay();
        let message = error.to_string();
        if failures == 0 || message != last_error {
            eprintln!(
                "registry: etcd watch of {} failed: {message}; keeping snapshot v{}, retrying in {delay:?} \
                 (backoff up to {:?})",
                cfg.prefix,
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
    failures: u32,
    healthy_since: &mut Option<Instant>,
) -> RegistryError {
    let mut client = match connect(cfg).await {
        Ok(c) => c,
        Err(e) => return e,
    };
    let range = prefix_range(&cfg.prefix);
    let get = client.get(range.as_str(), Some(GetOptions::new().with_prefix()));
    let response = match bounded("get", cfg.request_timeout, get).await {
        Ok(r) => r,
        Err(e) => return e,
    };
    let Some(revision) = response.header().map(|h| h.revision()) else {
        return RegistryError::WatchEnded("get response without header".into());
    };
    let mut entries = Entries::new(&cfg.prefix);
    for kv in response.kvs() {
        entries.put(kv);
    }
    let published = outbox.publish(entries.snapshot());
    if failures > 0 {
        eprintln!(
            "registry: etcd watch of {} resumed at revision {revision} ({} endpoints{})",
            cfg.prefix,
            entries.len(),
            if published.is_some() {
                ", changed"
            } else {
                ", unchanged"
            }
        );
    }

    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1);
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
    loop {
        let response = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return RegistryError::WatchEnded("etcd closed the watch stream".into()),
            Err(e) => {
                return RegistryError::Etcd {
                    op: "watch",
                    source: e,
                }
            }
        };
        if response.canceled() {
            return RegistryError::WatchEnded(format!(
                "cancelled by etcd (compact revision {}, reason {:?})",
                response.compact_revision(),
                response.cancel_reason()
            ));
        }
        if response.created() {
            healthy_since.get_or_insert_with(Instant::now);
        }
        if response.events().is_empty() {
            continue;
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            match event.event_type() {
                EventType::Put => entries.put(kv),
                EventType::Delete => entries.delete(kv.key()),
            }
        }
        outbox.publish(entries.snapshot());
    }
}

/// The parsed content of the prefix, by key.
struct Entries<'a> {
    prefix: &'a str,
    by_key: BTreeMap<Vec<u8>, Entry>,
}

impl<'a> Entries<'a> {
    fn new(prefix: &'a str) -> Self {
        Entries {
            prefix,
            by_key: BTreeMap::new(),
        }
    }

    /// Adds or replaces an entry; a bad entry is reported and removes what the key held before.
    fn put(&mut self, kv: &KeyValue) {
        match parse_any(self.prefix, kv.key(), kv.value()) {
            Ok(entry) => {
                self.by_key.insert(kv.key().to_vec(), entry);
            }
            Err(e) => {
                eprintln!("registry: skipping etcd entry: {e}");
                self.by_key.remove(kv.key());
            }
        }
    }

    fn delete(&mut self, key: &[u8]) {
        self.by_key.remove(key);
    }

    fn len(&self) -> usize {
        self.by_key.len()
    }

    fn snapshot(&self) -> Snapshot {
        let mut endpoints = Vec::new();
        let mut rules = Vec::new();
        for e in self.by_key.values() {
            match e {
                Entry::Endpoint(s, ep) => endpoints.push((s.clone(), ep.clone())),
                Entry::Rules(s, r) => rules.push((s.clone(), r.clone())),
            }
        }
        Snapshot::new(0, endpoints).with_rules(rules)
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
        assert_eq!(EtcdConfig::default().prefix, "/dubbomesh/v1");
        let cfg = EtcdConfig::with_endpoints(["127.0.0.1:1"]);
        assert_eq!(cfg.endpoints, ["127.0.0.1:1"]);
        assert!(EtcdConfig {
            endpoints: vec![],
            ..EtcdConfig::default()
        }
        .validate()
        .is_err());
        assert!(EtcdConfig {
            prefix: "/".into(),
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
    }
}
