//! Keep this agent's Dubbo URLs in etcd under a lease, whatever happens to the lease: the provider's
//! `/<root>/<interface>/providers/<URL>` keys (and the consumer's `consumers` keys when it registers), as
//! Java's `EtcdRegistry` writes them (fact sheet §1.1): the key holds the URL-encoded URL, the value is the
//! decimal lease id, one lease is shared by every key, and the parent `/<root>/<interface>` is written as a
//! persistent key when absent (Dubbo Admin lists interfaces from those).

use std::cell::RefCell;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, EventType, PutOptions, Txn, TxnOp, WatchFilterType, WatchOptions,
};
use tokio::sync::oneshot;

use crate::dubbo::{Category, DubboUrl, KeyEncoding};
use crate::etcd::{bounded, connect, Backoff, EtcdConfig, HEALTHY_AFTER};
use crate::RegistryError;
use mesh_dubbo::java_string_hash;

/// Default lease TTL of a registration.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// Keys per transaction (etcd's default `--max-txn-ops` is 128).
const TXN_PUTS: usize = 64;

/// How long a dropped [`RegistrarHandle`] lets its thread try to revoke the lease.
const DROP_REVOKE_TIMEOUT: Duration = Duration::from_secs(2);

/// One Dubbo URL this agent registers (a provider URL, or a consumer URL with `category=consumers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The URL; its interface and `category` (default `providers`) give the key.
    pub url: DubboUrl,
    /// Lease TTL (default 10 s, whole seconds, at least 1 s; etcd may raise very short TTLs to its minimum,
    /// about 2 s by default). All registrations of one registrar share one lease with the smallest TTL.
    pub ttl: Duration,
}

impl Registration {
    /// A registration with the default TTL.
    pub fn new(url: DubboUrl) -> Self {
        Registration {
            url,
            ttl: DEFAULT_TTL,
        }
    }

    /// The same registration with another TTL.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
}

/// Starts the registrar thread (`mesh-registry-reg`): grant a lease, put every key with it, keep it alive
/// every TTL/3 and watch the keys. Whenever the lease is lost (keepalive answers TTL 0, lease not found)
/// it grants a new lease and puts the keys again; a key deleted by someone else is put again at once. When
/// the etcd member fails instead (stream error, no keepalive answer for TTL/2, the member died or hangs) the
/// next session keeps the same lease alive through another member (see `Resume`), and falls back to a new
/// lease if etcd no longer knows it.
///
/// Timing: a lease revoked from outside is noticed within TTL/3 (next keepalive) or at once through the
/// deleted keys, and replaced immediately; while etcd is unreachable it retries with backoff up to
/// [`EtcdConfig::retry_backoff_max`] but at least every TTL/3, so registration returns at most that long
/// after etcd does (and a lease etcd restored is kept).
///
/// Errors: the OS refused the thread or the runtime, or the configuration/registrations are invalid
/// ([`std::io::ErrorKind::InvalidInput`] wrapping [`RegistryError::Config`]).
pub fn spawn_registrar(cfg: EtcdConfig, regs: Vec<Registration>) -> std::io::Result<RegistrarHandle> {
    let invalid = |e: RegistryError| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    cfg.validate().map_err(invalid)?;
    let plan = Plan::new(&cfg, &regs).map_err(invalid)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let shared = Arc::new(Shared {
        registered: AtomicBool::new(false),
        lease: AtomicI64::new(0),
    });
    let (cmd_tx, cmd_rx) = oneshot::channel::<Instant>();
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let thread_shared = Arc::clone(&shared);
    let thread = std::thread::Builder::new()
        .name("mesh-registry-reg".into())
        .spawn(move || {
            let result = runtime.block_on(run(&cfg, &plan, &thread_shared, cmd_rx));
            drop(runtime);
            let _ = done_tx.send(result);
        })?;
    Ok(RegistrarHandle {
        cmd: Some(cmd_tx),
        done: done_rx,
        thread: Some(thread),
        shared,
    })
}

/// The running registrar. Dropping it revokes the lease in the background (best effort, 2 s) without
/// waiting; [`RegistrarHandle::deregister`] waits.
#[derive(Debug)]
#[must_use = "dropping the handle deregisters"]
pub struct RegistrarHandle {
    cmd: Option<oneshot::Sender<Instant>>,
    done: crossbeam_channel::Receiver<Result<(), RegistryError>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    registered: AtomicBool,
    /// The lease the keys were last put with (0: none yet).
    lease: AtomicI64,
}

impl RegistrarHandle {
    /// Whether every key is in etcd under a lease whose last keepalive (or grant) succeeded. False before
    /// the first registration, from the moment a loss or an etcd error is noticed until the keys are put
    /// again, and after deregistration.
    pub fn is_registered(&self) -> bool {
        self.shared.registered.load(Ordering::Acquire)
    }

    /// The lease the keys were last put with, if any (it may since have been lost).
    pub fn lease_id(&self) -> Option<i64> {
        Some(self.shared.lease.load(Ordering::Acquire)).filter(|&l| l != 0)
    }

    /// Revokes the lease (etcd then deletes the keys, and watchers see them go) and stops the thread,
    /// all within `timeout`. If etcd cannot be reached in time the keys stay until the lease's TTL runs
    /// out, and the error says why ([`RegistryError::Timeout`] or [`RegistryError::Etcd`]).
    pub fn deregister(mut self, timeout: Duration) -> Result<(), RegistryError> {
        let deadline = Instant::now() + timeout;
        if let Some(cmd) = self.cmd.take() {
            let _ = cmd.send(deadline);
        }
        // A little slack over the thread's own deadline, so its answer (not ours) explains a timeout.
        let wait = timeout + Duration::from_millis(200);
        match self.done.recv_timeout(wait) {
            Ok(result) => {
                if let Some(t) = self.thread.take() {
                    let _ = t.join();
                }
                result
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(RegistryError::Timeout {
                op: "deregister",
                after: timeout,
            }),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(RegistryError::ThreadGone),
        }
    }
}

impl Drop for RegistrarHandle {
    fn drop(&mut self) {
        // The thread sees the closed channel and revokes with a short deadline of its own.
        self.cmd.take();
    }
}

/// The keys and values to put, and the lease TTL in seconds.
#[derive(Debug)]
struct Plan {
    /// The URL keys (the value of each is the lease id).
    puts: Vec<String>,
    /// Persistent parent keys put when absent, with their values.
    parents: Vec<(String, String)>,
    /// The range the keys live in (the registry root), watched for deletions.
    range: String,
    ttl_secs: i64,
    summary: String,
}

impl Plan {
    fn new(cfg: &EtcdConfig, regs: &[Registration]) -> Result<Self, RegistryError> {
        if regs.is_empty() {
            return Err(RegistryError::Config("nothing to register".into()));
        }
        let root = crate::dubbo::RegistryRoot::new(&cfg.root)?;
        let mut puts = Vec::with_capacity(regs.len());
        let mut parents: Vec<(String, String)> = Vec::new();
        for r in regs {
            let key = root.url_key(&r.url, KeyEncoding::JavaUrlEncoder)?;
            if !puts.contains(&key) {
                puts.push(key);
            }
            let parent = root.service_path(r.url.service_interface(), KeyEncoding::JavaUrlEncoder);
            if !parents.iter().any(|(p, _)| *p == parent) {
                // Java's `AbstractEtcdClient.createParentIfAbsent` stores the path's `String.hashCode()`.
                let value = java_string_hash(&parent).to_string();
                parents.push((parent, value));
            }
        }
        let ttl = regs.iter().map(|r| r.ttl).min().unwrap_or(DEFAULT_TTL);
        let ttl_secs = i64::try_from(ttl.as_millis().div_ceil(1000))
            .unwrap_or(i64::MAX)
            .max(1);
        let summary = regs
            .iter()
            .map(|r| {
                let category = r.url.category();
                let side = if category == Category::Providers.as_str() {
                    ""
                } else {
                    " (consumer)"
                };
                format!("{}{side} at {}:{}", r.url.service_key(), r.url.host, r.url.port)
            })
            .collect::<Vec<_>>()
            .join(", ");
        Ok(Plan {
            puts,
            parents,
            range: format!("{root}/"),
            ttl_secs,
            summary,
        })
    }

    fn is_ours(&self, key: &[u8]) -> Option<usize> {
        self.puts.iter().position(|k| k.as_bytes() == key)
    }
}

/// The thread's body: register and keep registered until told to stop, then revoke.
async fn run(
    cfg: &EtcdConfig,
    plan: &Plan,
    shared: &Shared,
    mut cmd: oneshot::Receiver<Instant>,
) -> Result<(), RegistryError> {
    // Leases that may hold our keys: the registered one, and any granted after it (a session cut short
    // between grant and the end of its puts may have attached some keys to it).
    let leases = RefCell::new(Vec::new());
    let deadline = tokio::select! {
        biased;
        c = &mut cmd => c.unwrap_or_else(|_| Instant::now() + DROP_REVOKE_TIMEOUT),
        never = keep_registered(cfg, plan, shared, &leases) => match never {},
    };
    shared.registered.store(false, Ordering::Release);
    let leases = leases.into_inner();
    let Some(&lease) = leases.last() else {
        return Ok(());
    };
    let revoke = async {
        let mut client = connect(cfg).await?;
        let mut result = Ok(());
        for &l in &leases {
            match bounded("lease revoke", cfg.request_timeout, client.lease_revoke(l)).await {
                Err(e) if is_lease_not_found(&e) => {} // expired already: its keys are gone
                Err(e) => result = result.and(Err(e)),
                Ok(_) => {}
            }
        }
        result
    };
    let after = deadline.saturating_duration_since(Instant::now());
    let result = match tokio::time::timeout(after, revoke).await {
        Ok(r) => r,
        Err(_) => Err(RegistryError::Timeout {
            op: "lease revoke",
            after,
        }),
    };
    match &result {
        Ok(()) => eprintln!(
            "registry: deregistered {} (lease {lease:x} revoked)",
            plan.summary
        ),
        Err(e) => eprintln!(
            "registry: deregistration of {} failed: {e}; the keys expire with lease {lease:x}",
            plan.summary
        ),
    }
    result
}

/// Registers, and registers again after every loss, forever.
async fn keep_registered(
    cfg: &EtcdConfig,
    plan: &Plan,
    shared: &Shared,
    leases: &RefCell<Vec<i64>>,
) -> Infallible {
    let mut backoff = Backoff::new(retry_backoff_cap(cfg.retry_backoff_max, plan.ttl_secs));
    let mut failures: u32 = 0;
    let mut last_error = String::new();
    let mut registrations: u64 = 0;
    let mut resume = None;
    loop {
        let mut healthy_since = None;
        let error = session(
            cfg,
            plan,
            shared,
            leases,
            &mut registrations,
            &mut healthy_since,
            &mut resume,
        )
        .await;
        shared.registered.store(false, Ordering::Release);
        if !may_resume_after(&error) {
            resume = None;
        }
        let was_healthy = healthy_since.is_some_and(|t: Instant| t.elapsed() >= HEALTHY_AFTER);
        if was_healthy {
            backoff.reset();
            failures = 0;
        }
        // A lost lease on a working etcd is replaced at once; anything else (or a repeat) backs off.
        let delay = if was_healthy && matches!(error, RegistryError::LeaseLost { .. }) {
            Duration::ZERO
        } else {
            backoff.next_delay()
        };
        let message = error.to_string();
        if failures == 0 || message != last_error {
            eprintln!(
                "registry: registration of {} lost or failed: {message}; re-registering in {delay:?}",
                plan.summary
            );
        }
        failures = failures.saturating_add(1);
        last_error = message;
        tokio::time::sleep(delay).await;
    }
}

/// A registration that was complete when its session failed for a reason that says nothing about the
/// lease (the member died, a stream broke, a call timed out): the next session, on another member, keeps
/// the same lease alive instead of granting a new one and putting every key again. Right after a leader
/// dies, followers still forward proposals (grant, put) to it for an election timeout and those are lost
/// until etcd's own request timeout; a keepalive is not a proposal and goes through as soon as there is a
/// leader. Deletions made meanwhile are caught by watching our keys again from `watch_from`.
#[derive(Debug, Clone, Copy)]
struct Resume {
    lease: i64,
    ttl: Duration,
    watch_from: i64,
}

/// Whether a session that ended with `error` may be resumed on its lease: not when the lease is lost, nor
/// when the watch of our keys was cancelled (its revision may be compacted: register from scratch).
fn may_resume_after(error: &RegistryError) -> bool {
    !matches!(
        error,
        RegistryError::LeaseLost { .. } | RegistryError::WatchEnded(_)
    )
}

/// One lease: grant, put, keep alive and guard the keys until something fails; returns what failed.
/// With `resume` set, the lease and keys of the previous session are kept instead (see [`Resume`]).
async fn session(
    cfg: &EtcdConfig,
    plan: &Plan,
    shared: &Shared,
    leases: &RefCell<Vec<i64>>,
    registrations: &mut u64,
    healthy_since: &mut Option<Instant>,
    resume: &mut Option<Resume>,
) -> RegistryError {
    let mut client = match connect(cfg).await {
        Ok(c) => c,
        Err(e) => return e,
    };
    if let Some(r) = resume.take() {
        return guard(cfg, plan, shared, healthy_since, resume, client, r, true).await;
    }
    let grant = match bounded(
        "lease grant",
        cfg.request_timeout,
        client.lease_grant(plan.ttl_secs, None),
    )
    .await
    {
        Ok(g) => g,
        Err(e) => return e,
    };
    let lease = grant.id();
    {
        let mut leases = leases.borrow_mut();
        leases.push(lease);
        // Bounded when grants succeed but puts keep failing: keep the oldest (the registered one, if any)
        // and the newest.
        if leases.len() > 8 {
            leases.remove(1);
        }
    }
    let ttl = Duration::from_secs(u64::try_from(grant.ttl()).unwrap_or(1).max(1));
    let lost = |reason: String| RegistryError::LeaseLost { lease, reason };
    let as_lease_error = |e: RegistryError| {
        if is_lease_not_found(&e) {
            lost(e.to_string())
        } else {
            e
        }
    };

    let first_revision = match put_all(cfg, &mut client, plan, lease).await {
        Ok(revision) => revision,
        Err(e) => return as_lease_error(e),
    };
    // Every key is on this lease now: older ones hold none of ours.
    leases.borrow_mut().retain(|&l| l == lease);
    shared.lease.store(lease, Ordering::Release);
    shared.registered.store(true, Ordering::Release);
    *registrations += 1;
    eprintln!(
        "registry: {} {} with lease {lease:x} (ttl {}s)",
        if *registrations == 1 {
            "registered"
        } else {
            "re-registered"
        },
        plan.summary,
        ttl.as_secs()
    );
    let registered = Resume {
        lease,
        ttl,
        watch_from: first_revision + 1,
    };
    guard(
        cfg,
        plan,
        shared,
        healthy_since,
        resume,
        client,
        registered,
        false,
    )
    .await
}

/// Keeps `r.lease` alive and our keys in place until something fails; returns what failed. `resuming`:
/// the lease comes from an earlier session and is confirmed by the first keepalive answer.
#[allow(clippy::too_many_arguments)]
async fn guard(
    cfg: &EtcdConfig,
    plan: &Plan,
    shared: &Shared,
    healthy_since: &mut Option<Instant>,
    resume: &mut Option<Resume>,
    mut client: Client,
    r: Resume,
    resuming: bool,
) -> RegistryError {
    let Resume {
        lease,
        ttl,
        watch_from,
    } = r;
    let lost = |reason: String| RegistryError::LeaseLost { lease, reason };
    let as_lease_error = |e: RegistryError| {
        if is_lease_not_found(&e) {
            lost(e.to_string())
        } else {
            e
        }
    };
    let (mut keeper, mut answers) = match bounded(
        "lease keepalive",
        cfg.request_timeout,
        client.lease_keep_alive(lease),
    )
    .await
    {
        Ok(k) => k,
        Err(e) if is_lease_not_found(&e) => return lost(e.to_string()),
        Err(e) => {
            // The member failed, not the lease: the next session tries this lease again.
            *resume = Some(r);
            return e;
        }
    };
    if resuming {
        // etcd answered the keepalive with a TTL > 0: the lease, and with it our keys, are still there.
        shared.registered.store(true, Ordering::Release);
        eprintln!(
            "registry: kept {} on lease {lease:x} through another etcd member",
            plan.summary
        );
    }
    *resume = Some(r);
    // Deletions of our keys (by anyone) after our puts; puts are filtered out by etcd.
    let watch_options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(watch_from)
        .with_filters([WatchFilterType::NoPut]);
    let range = plan.range.clone();
    let mut deletions = match bounded(
        "watch",
        cfg.request_timeout,
        client.watch(range.as_str(), Some(watch_options)),
    )
    .await
    {
        Ok(w) => w,
        Err(e) => return e,
    };

    let mut ticks = tokio::time::interval((ttl / 3).max(Duration::from_millis(100)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_answer = Instant::now();
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                if keepalive_overdue(last_answer.elapsed(), ttl) {
                    // The member stopped answering; the lease may well be alive: the next session tries
                    // it through another member.
                    return RegistryError::Timeout { op: "lease keepalive answer", after: ttl / 2 };
                }
                if let Err(e) = bounded("lease keepalive", cfg.request_timeout, keeper.keep_alive()).await {
                    return e;
                }
            }
            answer = answers.message() => match answer {
                Ok(Some(a)) if a.ttl() > 0 => {
                    last_answer = Instant::now();
                    healthy_since.get_or_insert(last_answer);
                }
                Ok(Some(_)) => return lost("keepalive answered TTL 0 (expired or revoked)".into()),
                Ok(None) => return lost("keepalive stream closed".into()),
                Err(e) => return as_lease_error(RegistryError::Etcd { op: "lease keepalive", source: e }),
            },
            event = deletions.message() => {
                let response = match event {
                    Ok(Some(r)) => r,
                    Ok(None) => return RegistryError::WatchEnded("etcd closed the watch of our keys".into()),
                    Err(e) => return RegistryError::Etcd { op: "watch", source: e },
                };
                if response.canceled() {
                    return RegistryError::WatchEnded(format!(
                        "watch of our keys cancelled by etcd ({:?})",
                        response.cancel_reason()
                    ));
                }
                for event in response.events() {
                    let Some(kv) = event.kv() else { continue };
                    let Some(i) = plan.is_ours(kv.key()) else { continue };
                    if event.event_type() != EventType::Delete {
                        continue;
                    }
                    let key = &plan.puts[i];
                    eprintln!("registry: {key} was deleted by someone else; putting it back");
                    if let Err(e) = put(cfg, &mut client, key, &lease.to_string(), lease).await {
                        return as_lease_error(e);
                    }
                }
            }
        }
    }
}

/// Puts every key with `lease`, in transactions of up to [`TXN_PUTS`] keys (one transaction, so one watch
/// event batch and one consumer snapshot, in practice); returns the revision of the first.
async fn put_all(
    cfg: &EtcdConfig,
    client: &mut Client,
    plan: &Plan,
    lease: i64,
) -> Result<i64, RegistryError> {
    // The parents first (persistent, only when absent: whoever wrote one first keeps it).
    for (parent, value) in &plan.parents {
        let absent = Compare::create_revision(parent.as_str(), CompareOp::Equal, 0);
        let txn = Txn::new()
            .when([absent])
            .and_then([TxnOp::put(parent.as_str(), value.as_str(), None)]);
        bounded("put", cfg.request_timeout, client.txn(txn)).await?;
    }
    // Java's value: the decimal lease id.
    let value = lease.to_string();
    let mut first = None;
    for chunk in plan.puts.chunks(TXN_PUTS) {
        let ops: Vec<TxnOp> = chunk
            .iter()
            .map(|k| {
                TxnOp::put(
                    k.as_str(),
                    value.as_str(),
                    Some(PutOptions::new().with_lease(lease)),
                )
            })
            .collect();
        let response = bounded("put", cfg.request_timeout, client.txn(Txn::new().and_then(ops))).await?;
        first.get_or_insert(response.header().map_or(0, |h| h.revision()));
    }
    Ok(first.unwrap_or(0))
}

async fn put(
    cfg: &EtcdConfig,
    client: &mut Client,
    key: &str,
    value: &str,
    lease: i64,
) -> Result<i64, RegistryError> {
    let options = PutOptions::new().with_lease(lease);
    let response = bounded("put", cfg.request_timeout, client.put(key, value, Some(options))).await?;
    Ok(response.header().map_or(0, |h| h.revision()))
}

/// The registrar's longest wait between attempts: the configured maximum, but at most a third of the lease
/// TTL. When etcd comes back after an outage it restores the leases with a fresh TTL; retrying at least
/// every TTL/3 keeps that lease (and the keys on it) alive before it runs out, instead of letting the keys
/// disappear and putting them again.
fn retry_backoff_cap(configured: Duration, ttl_secs: i64) -> Duration {
    let ttl = Duration::from_secs(u64::try_from(ttl_secs).unwrap_or(1).max(1));
    configured.min(ttl / 3)
}

/// Whether the member stopped answering keepalives: no answer for half the TTL. The session then ends and
/// the next one (on another member) puts the keys again before the lease, renewed last at most that long
/// ago, expires: checked every TTL/3, this fires within 5/6 of the TTL, before the keys are deleted.
fn keepalive_overdue(since_last_answer: Duration, ttl: Duration) -> bool {
    since_last_answer > ttl / 2
}

fn is_lease_not_found(e: &RegistryError) -> bool {
    match e {
        RegistryError::Etcd { source, .. } => source.to_string().contains("lease not found"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(url: &str) -> Registration {
        Registration::new(DubboUrl::parse(url).unwrap())
    }

    #[test]
    fn plan_writes_dubbos_keys_and_uses_the_smallest_ttl_rounded_up() {
        let cfg = EtcdConfig::default();
        let plan = Plan::new(
            &cfg,
            &[
                reg("dubbo://10.0.0.1:30000/com.foo.A?interface=com.foo.A&side=provider")
                    .with_ttl(Duration::from_millis(2500)),
                reg("dubbo://10.0.0.1:30000/com.foo.B?group=g&interface=com.foo.B&side=provider"),
                reg("consumer://10.0.0.1/com.foo.B?category=consumers&interface=com.foo.B"),
            ],
        )
        .unwrap();
        assert_eq!(plan.ttl_secs, 3);
        assert_eq!(
            plan.puts[0],
            "/dubbo/com.foo.A/providers/dubbo%3A%2F%2F10.0.0.1%3A30000%2Fcom.foo.A%3Finterface%3Dcom.foo.A\
             %26side%3Dprovider"
        );
        assert!(plan.puts[2].starts_with("/dubbo/com.foo.B/consumers/consumer%3A%2F%2F10.0.0.1%2F"));
        assert_eq!(
            plan.parents.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
            ["/dubbo/com.foo.A", "/dubbo/com.foo.B"]
        );
        assert_eq!(plan.range, "/dubbo/");
        assert_eq!(plan.is_ours(plan.puts[1].as_bytes()), Some(1));
        assert_eq!(plan.is_ours(b"/dubbo/com.foo.C"), None);
        assert!(plan.summary.contains("g/com.foo.B at 10.0.0.1:30000"));
        let tiny = Plan::new(&cfg, &[reg("dubbo://10.0.0.1:1/S").with_ttl(Duration::ZERO)]).unwrap();
        assert_eq!(tiny.ttl_secs, 1);
        let grouped = Plan::new(
            &EtcdConfig {
                root: "mesh".into(),
                ..EtcdConfig::default()
            },
            &[reg("dubbo://10.0.0.1:1/S")],
        )
        .unwrap();
        assert!(grouped.puts[0].starts_with("/mesh/S/providers/dubbo%3A%2F%2F"));
    }

    #[test]
    fn parent_values_are_javas_string_hash() {
        // Values computed with Java's "...".hashCode().
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(
            java_string_hash("/dubbo/org.apache.dubbo.demo.DemoService"),
            1_694_933_453
        );
        // Outside the BMP: two UTF-16 code units, as Java counts them.
        assert_eq!(java_string_hash("\u{1F600}"), 1_772_899);
    }

    #[test]
    fn retries_come_at_least_every_third_of_the_ttl() {
        assert_eq!(
            retry_backoff_cap(Duration::from_secs(5), 2),
            Duration::from_secs(2) / 3
        );
        assert_eq!(
            retry_backoff_cap(Duration::from_secs(5), 30),
            Duration::from_secs(5)
        );
        assert_eq!(
            retry_backoff_cap(Duration::from_millis(200), 10),
            Duration::from_millis(200)
        );
        assert!(retry_backoff_cap(Duration::from_secs(5), 0) > Duration::ZERO);
    }

    #[test]
    fn only_failures_of_the_member_keep_the_lease_for_the_next_session() {
        let lost = RegistryError::LeaseLost {
            lease: 1,
            reason: "ttl 0".into(),
        };
        assert!(!may_resume_after(&lost));
        assert!(!may_resume_after(&RegistryError::WatchEnded("compacted".into())));
        assert!(may_resume_after(&RegistryError::Timeout {
            op: "lease keepalive",
            after: Duration::from_secs(5)
        }));
        assert!(may_resume_after(&RegistryError::NoUsableMember(
            "a: refused".into()
        )));
    }

    #[test]
    fn a_silent_member_is_left_before_the_lease_expires() {
        let ttl = Duration::from_secs(10);
        assert!(!keepalive_overdue(Duration::from_secs(5), ttl));
        assert!(keepalive_overdue(Duration::from_millis(5001), ttl));
        // The first check after the limit comes at most TTL/3 later: still inside the TTL.
        assert!(ttl / 2 + ttl / 3 < ttl);
    }

    #[test]
    fn plan_rejects_bad_registrations() {
        let cfg = EtcdConfig::default();
        assert!(Plan::new(&cfg, &[]).is_err());
        let unwritable = DubboUrl::parse("dubbo://10.0.0.1:1/S")
            .unwrap()
            .with_param("x", "a&b");
        assert!(Plan::new(&cfg, &[Registration::new(unwritable)]).is_err());
        let err = spawn_registrar(cfg, vec![]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }
}
