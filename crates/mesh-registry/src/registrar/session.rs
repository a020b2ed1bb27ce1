//! The registrar thread: one lease at a time, our keys put with it, kept alive, watched for deletions,
//! changed in place by updates, and put back after any loss.

use std::cell::RefCell;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, EventType, PutOptions, Txn, TxnOp, WatchFilterType, WatchOptions,
    WatchResponse, WatchStream,
};
use tokio::sync::{mpsc, Notify};

use crate::etcd::{bounded, connect, Backoff, EtcdConfig, HEALTHY_AFTER};
use crate::RegistryError;

use super::mapping_writer;
use super::plan::{Changes, KeyValue, MappingPlan, Plan};
use super::{Command, Shared, DROP_REVOKE_TIMEOUT};

/// Operations per transaction (etcd's default `--max-txn-ops` is 128).
const TXN_OPS: usize = 64;

/// The thread's state between sessions.
struct State {
    /// What is registered (or being registered).
    plan: RefCell<Plan>,
    /// An update not yet in etcd (the newest one asked for).
    pending: RefCell<Option<Plan>>,
    /// Woken when `pending` is set.
    wake: Notify,
    /// The prefixes watched for deletions of our keys, fixed at start.
    watched: Vec<String>,
    /// Leases that may hold our keys: the registered one, and any granted after it (a session cut short
    /// between grant and the end of its puts may have attached some keys to it).
    leases: RefCell<Vec<i64>>,
    /// The task writing the mappings, and what it writes.
    mapping: RefCell<Option<(MappingPlan, tokio::task::JoinHandle<()>)>>,
}

impl State {
    /// Takes the pending update as the plan (for a fresh lease: nothing of it is in etcd yet).
    fn adopt_pending(&self) {
        if let Some(next) = self.pending.borrow_mut().take() {
            *self.plan.borrow_mut() = next;
        }
    }

    /// Starts writing `plan`'s mappings unless they are being written already (an update that maps the
    /// same interfaces does not write them again).
    fn write_mappings(&self, cfg: &EtcdConfig, plan: &Plan, shared: &Arc<Shared>) {
        let mut current = self.mapping.borrow_mut();
        if current.as_ref().map(|(m, _)| m) == plan.mapping.as_ref() {
            return;
        }
        if let Some((_, task)) = current.take() {
            task.abort();
        }
        match &plan.mapping {
            None => shared.mappings_pending.store(0, Ordering::Release),
            Some(m) => {
                shared.mappings_pending.store(m.keys.len(), Ordering::Release);
                let task = tokio::spawn(mapping_writer::write_all(
                    cfg.clone(),
                    m.clone(),
                    Arc::clone(shared),
                ));
                *current = Some((m.clone(), task));
            }
        }
    }
}

/// The thread's body: register and keep registered (taking updates) until told to stop, then revoke.
pub(super) async fn run(
    cfg: &EtcdConfig,
    plan: Plan,
    shared: &Arc<Shared>,
    mut cmd: mpsc::UnboundedReceiver<Command>,
) -> Result<(), RegistryError> {
    let state = State {
        watched: plan.ranges.clone(),
        plan: RefCell::new(plan),
        pending: RefCell::new(None),
        wake: Notify::new(),
        leases: RefCell::new(Vec::new()),
        mapping: RefCell::new(None),
    };
    state.write_mappings(cfg, &state.plan.borrow().clone(), shared);
    let mut work = Box::pin(keep_registered(cfg, &state, shared));
    let deadline = loop {
        tokio::select! {
            biased;
            c = cmd.recv() => match c {
                Some(Command::Update(next)) => {
                    state.write_mappings(cfg, &next, shared);
                    *state.pending.borrow_mut() = Some(next);
                    state.wake.notify_one();
                }
                Some(Command::Stop(deadline)) => break deadline,
                None => break Instant::now() + DROP_REVOKE_TIMEOUT,
            },
            never = &mut work => match never {},
        }
    };
    drop(work);
    if let Some((_, task)) = state.mapping.borrow_mut().take() {
        task.abort();
    }
    shared.registered.store(false, Ordering::Release);
    let summary = state.plan.borrow().summary.clone();
    let leases = state.leases.into_inner();
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
        Ok(()) => {
            tracing::info!(lease = %format_args!("{lease:x}"), "deregistered {summary} (lease {lease:x} revoked)")
        }
        Err(e) => tracing::warn!(
            lease = %format_args!("{lease:x}"),
            error = %e,
            "deregistration of {summary} failed: {e}; the keys expire with lease {lease:x}"
        ),
    }
    result
}

/// Registers, and registers again after every loss, forever.
async fn keep_registered(cfg: &EtcdConfig, state: &State, shared: &Shared) -> Infallible {
    let ttl_secs = state.plan.borrow().ttl_secs;
    let mut backoff = Backoff::new(retry_backoff_cap(cfg.retry_backoff_max, ttl_secs));
    let mut failures: u32 = 0;
    let mut last_error = String::new();
    let mut registrations: u64 = 0;
    let mut resume = None;
    loop {
        let mut healthy_since = None;
        let error = session(
            cfg,
            state,
            shared,
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
            tracing::warn!(
                error = %message,
                retry_in = ?delay,
                "registration of {} lost or failed: {message}; re-registering in {delay:?}",
                state.plan.borrow().summary
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
    state: &State,
    shared: &Shared,
    registrations: &mut u64,
    healthy_since: &mut Option<Instant>,
    resume: &mut Option<Resume>,
) -> RegistryError {
    let mut client = match connect(cfg).await {
        Ok(c) => c,
        Err(e) => return e,
    };
    if let Some(r) = resume.take() {
        return guard(cfg, state, shared, healthy_since, resume, client, r, true).await;
    }
    // A fresh lease holds none of our keys yet: an update not yet applied is simply what to put.
    state.adopt_pending();
    let plan = state.plan.borrow().clone();
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
        let mut leases = state.leases.borrow_mut();
        leases.push(lease);
        // Bounded when grants succeed but puts keep failing: keep the oldest (the registered one, if any)
        // and the newest.
        if leases.len() > 8 {
            leases.remove(1);
        }
    }
    let ttl = Duration::from_secs(u64::try_from(grant.ttl()).unwrap_or(1).max(1));
    let first_revision = match put_all(cfg, &mut client, &plan, lease).await {
        Ok(revision) => revision,
        Err(e) => return as_lease_error(lease, e),
    };
    // Every key is on this lease now: older ones hold none of ours.
    state.leases.borrow_mut().retain(|&l| l == lease);
    shared.lease.store(lease, Ordering::Release);
    shared.in_etcd.store(plan.number, Ordering::Release);
    shared.registered.store(true, Ordering::Release);
    *registrations += 1;
    tracing::info!(
        lease = %format_args!("{lease:x}"),
        registrations = *registrations,
        "{} {} with lease {lease:x} (ttl {}s)",
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
        state,
        shared,
        healthy_since,
        resume,
        client,
        registered,
        false,
    )
    .await
}

/// `e`, as a lost lease when etcd says it does not know `lease`.
fn as_lease_error(lease: i64, e: RegistryError) -> RegistryError {
    if is_lease_not_found(&e) {
        RegistryError::LeaseLost {
            lease,
            reason: e.to_string(),
        }
    } else {
        e
    }
}

/// The next answer of an optional watch (never, without one).
async fn next_answer(watch: &mut Option<WatchStream>) -> Result<Option<WatchResponse>, etcd_client::Error> {
    match watch {
        Some(w) => w.message().await,
        None => std::future::pending().await,
    }
}

/// Keeps `r.lease` alive, our keys in place and the registrations up to date until something fails;
/// returns what failed. `resuming`: the lease comes from an earlier session and is confirmed by the first
/// keepalive answer.
#[allow(clippy::too_many_arguments)]
async fn guard(
    cfg: &EtcdConfig,
    state: &State,
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
        tracing::info!(
            lease = %format_args!("{lease:x}"),
            "kept {} on lease {lease:x} through another etcd member",
            state.plan.borrow().summary
        );
    }
    *resume = Some(r);
    // Deletions of our keys (by anyone) after our puts; puts are filtered out by etcd. One watch per
    // prefix our keys live in (the registry root, the services root: at most two).
    let mut watches = Vec::with_capacity(state.watched.len());
    for range in &state.watched {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(watch_from)
            .with_filters([WatchFilterType::NoPut]);
        match bounded(
            "watch",
            cfg.request_timeout,
            client.watch(range.as_str(), Some(options)),
        )
        .await
        {
            Ok(w) => watches.push(w),
            Err(e) => return e,
        }
    }
    let mut watches = watches.into_iter();
    let (mut first, mut second) = (watches.next(), watches.next());

    let mut ticks = tokio::time::interval((ttl / 3).max(Duration::from_millis(100)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_answer = Instant::now();
    loop {
        let deletions = tokio::select! {
            _ = ticks.tick() => {
                if keepalive_overdue(last_answer.elapsed(), ttl) {
                    // The member stopped answering; the lease may well be alive: the next session tries
                    // it through another member.
                    return RegistryError::Timeout { op: "lease keepalive answer", after: ttl / 2 };
                }
                if let Err(e) = bounded("lease keepalive", cfg.request_timeout, keeper.keep_alive()).await {
                    return e;
                }
                continue;
            }
            answer = answers.message() => match answer {
                Ok(Some(a)) if a.ttl() > 0 => {
                    last_answer = Instant::now();
                    healthy_since.get_or_insert(last_answer);
                    continue;
                }
                Ok(Some(_)) => return lost("keepalive answered TTL 0 (expired or revoked)".into()),
                Ok(None) => return lost("keepalive stream closed".into()),
                Err(e) => {
                    return as_lease_error(lease, RegistryError::Etcd { op: "lease keepalive", source: e })
                }
            },
            () = state.wake.notified() => {
                if let Err(e) = apply_update(cfg, &mut client, state, shared, lease).await {
                    // Start over on a fresh lease with the newest registrations: a half-applied update
                    // leaves nothing behind once the old lease expires.
                    *resume = None;
                    return as_lease_error(lease, e);
                }
                continue;
            }
            answer = next_answer(&mut first) => answer,
            answer = next_answer(&mut second) => answer,
        };
        let response = match deletions {
            Ok(Some(r)) => r,
            Ok(None) => return RegistryError::WatchEnded("etcd closed the watch of our keys".into()),
            Err(e) => {
                return RegistryError::Etcd {
                    op: "watch",
                    source: e,
                }
            }
        };
        if let Err(e) = put_back_deleted(cfg, &mut client, state, &response, lease).await {
            return as_lease_error(lease, e);
        }
    }
}

/// Puts back every key of ours that `response` says was deleted (by someone else: our own deletions are of
/// keys no longer ours).
async fn put_back_deleted(
    cfg: &EtcdConfig,
    client: &mut Client,
    state: &State,
    response: &WatchResponse,
    lease: i64,
) -> Result<(), RegistryError> {
    if response.canceled() {
        return Err(RegistryError::WatchEnded(format!(
            "watch of our keys cancelled by etcd ({:?})",
            response.cancel_reason()
        )));
    }
    for event in response.events() {
        if event.event_type() != EventType::Delete {
            continue;
        }
        let Some(kv) = event.kv() else { continue };
        let ours = {
            let plan = state.plan.borrow();
            plan.is_ours(kv.key()).map(|i| plan.keys[i].clone())
        };
        let Some((key, value)) = ours else { continue };
        tracing::warn!(%key, "{key} was deleted by someone else; putting it back");
        put(cfg, client, &key, &value.for_lease(lease), lease).await?;
    }
    Ok(())
}

/// Applies the pending update (if any) on `lease`: one transaction (per [`TXN_OPS`] operations) deleting
/// the keys that went and putting the new and changed ones. On failure the update stays pending.
async fn apply_update(
    cfg: &EtcdConfig,
    client: &mut Client,
    state: &State,
    shared: &Shared,
    lease: i64,
) -> Result<(), RegistryError> {
    let Some(next) = state.pending.borrow_mut().take() else {
        return Ok(());
    };
    let changes = state.plan.borrow().changes_to(&next);
    if let Err(e) = apply(cfg, client, &changes, lease).await {
        let mut pending = state.pending.borrow_mut();
        if pending.is_none() {
            *pending = Some(next);
        }
        return Err(e);
    }
    tracing::info!(
        lease = %format_args!("{lease:x}"),
        puts = changes.puts.len(),
        deletes = changes.deletes.len(),
        "updated to {} on lease {lease:x} ({} key(s) put, {} deleted)",
        next.summary,
        changes.puts.len(),
        changes.deletes.len()
    );
    shared.in_etcd.store(next.number, Ordering::Release);
    *state.plan.borrow_mut() = next;
    Ok(())
}

/// Puts the parents when absent, then deletes and puts the keys of `changes` on `lease`.
async fn apply(
    cfg: &EtcdConfig,
    client: &mut Client,
    changes: &Changes,
    lease: i64,
) -> Result<(), RegistryError> {
    if changes.is_empty() {
        return Ok(());
    }
    put_parents(cfg, client, &changes.parents).await?;
    let ops: Vec<TxnOp> = changes
        .deletes
        .iter()
        .map(|k| TxnOp::delete(k.as_str(), None))
        .chain(changes.puts.iter().map(|(k, v)| put_op(k, v, lease)))
        .collect();
    let mut ops = ops.into_iter().peekable();
    while ops.peek().is_some() {
        let chunk: Vec<TxnOp> = ops.by_ref().take(TXN_OPS).collect();
        bounded("txn", cfg.request_timeout, client.txn(Txn::new().and_then(chunk))).await?;
    }
    Ok(())
}

fn put_op(key: &str, value: &KeyValue, lease: i64) -> TxnOp {
    TxnOp::put(
        key,
        value.for_lease(lease),
        Some(PutOptions::new().with_lease(lease)),
    )
}

/// Persistent parents, put only when absent: whoever wrote one first keeps it.
async fn put_parents(
    cfg: &EtcdConfig,
    client: &mut Client,
    parents: &[(String, String)],
) -> Result<(), RegistryError> {
    for (parent, value) in parents {
        let absent = Compare::create_revision(parent.as_str(), CompareOp::Equal, 0);
        let txn = Txn::new()
            .when([absent])
            .and_then([TxnOp::put(parent.as_str(), value.as_str(), None)]);
        bounded("put", cfg.request_timeout, client.txn(txn)).await?;
    }
    Ok(())
}

/// Puts every key with `lease`, in transactions of up to [`TXN_OPS`] keys (one transaction, so one watch
/// event batch and one consumer snapshot, in practice); returns the revision of the first.
async fn put_all(
    cfg: &EtcdConfig,
    client: &mut Client,
    plan: &Plan,
    lease: i64,
) -> Result<i64, RegistryError> {
    put_parents(cfg, client, &plan.parents).await?;
    let mut first = None;
    for chunk in plan.keys.chunks(TXN_OPS) {
        let ops: Vec<TxnOp> = chunk.iter().map(|(k, v)| put_op(k, v, lease)).collect();
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
    fn parent_values_are_javas_string_hash() {
        use mesh_dubbo::java_string_hash;
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
}
