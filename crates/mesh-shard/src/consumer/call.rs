//! One call, from a request (an HTTP form or a Dubbo client's frame, see [`CallRequest`]) to its
//! [`CallOutcome`]: ONE loop over attempts with ONE retry budget.
//!
//! pick (waiting in the queue while every provider is full) -> send -> wait -> classify the attempt
//! ([`mesh_balance::outcome`]) -> apply its health effect -> answer, try elsewhere or requeue.
//!
//! The first send happens in [`start`] and the wait in [`finish`], so that pipelined requests of one
//! connection are all in flight before the first answer is awaited. A one-way call ([`send_oneway`]) is
//! routed and sent the same way and gets no answer.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mesh_balance::outcome::{classify, Attempt, HealthEffect, Next, RetryBudget};
use mesh_dubbo::CodecError;

use super::outcome::{render_frame, CallOutcome, Failure, FailureKind};
use super::policy::CallPolicy;
use super::request::CallRequest;
use super::routes::{Chosen, Pick};
use super::Ctx;
use crate::error::CallError;
use crate::log_every::LogEvery;
use crate::metrics::{AccessEntry, AttemptReport, AttemptResult, Rejection};
use crate::upstream::{PendingCall, UpstreamConn};

/// A call on its way: what it asks, what it may still try, and where it already failed.
pub(super) struct Call<'a, R> {
    /// May borrow from the connection's read buffer, which is then not advanced until the call is answered.
    req: R,
    /// The service key it asks for, `group/interface:version`.
    service: Cow<'a, str>,
    budget: RetryBudget,
    /// Providers excluded from the next pick: the call did not run there or failed there.
    tried: Vec<SocketAddr>,
    /// Why the previous attempt failed, reported if no other provider is left.
    last: Option<String>,
    /// When it was admitted (its latency is counted from there).
    begun: Instant,
    /// The last attempt's provider and request size (for the access log).
    provider: Option<SocketAddr>,
    request_bytes: usize,
}

/// An attempt in flight.
pub(super) struct InFlight {
    pending: PendingCall,
    chosen: Chosen,
}

/// A call after [`start`]: ended already, or waiting for a provider's answer.
#[allow(clippy::large_enum_variant)] // a few per connection at a time; boxing would cost an allocation per call
pub(super) enum Started<'a, R> {
    Done(CallOutcome),
    InFlight(Call<'a, R>, InFlight),
}

/// Admits `req` (a call to the service key `service`) under its rate limit and sends its first attempt.
pub(super) async fn start<'a, R: CallRequest>(ctx: &Ctx, req: R, service: Cow<'a, str>) -> Started<'a, R> {
    let mut call = match admit(ctx, req, service) {
        Ok(call) => call,
        Err(failure) => return Started::Done(CallOutcome::Failed(failure)),
    };
    match call.send(ctx).await {
        Ok(in_flight) => Started::InFlight(call, in_flight),
        Err(failure) => {
            let outcome = CallOutcome::Failed(failure);
            call.count(ctx, &outcome);
            Started::Done(outcome)
        }
    }
}

/// Admits a one-way `req` under its rate limit and sends it to a provider, retrying elsewhere (within its
/// budget) while a provider cannot be reached; nothing waits for an answer.
pub(super) async fn send_oneway<R: CallRequest>(
    ctx: &Ctx,
    req: R,
    service: Cow<'_, str>,
) -> Result<(), Failure> {
    let mut call = admit(ctx, req, service)?;
    let sent = call
        .dispatch(ctx, |conn, _, encode| conn.send_noreply(encode))
        .await;
    let (((), chosen), started) = match sent {
        Ok(sent) => sent,
        Err(failure) => {
            call.count(ctx, &CallOutcome::Failed(failure.clone()));
            return Err(failure);
        }
    };
    // Nothing will be learnt about this attempt: only its place in the provider's in-flight count ends.
    ctx.upstreams.done(&call.service, &chosen, started, false);
    ctx.metrics
        .call_ended(Some(&call.service), call.req.method(), call.begun, None);
    Ok(())
}

/// The call, if the rate limit of its service or method admits it (a refusal is counted here).
fn admit<'a, R: CallRequest>(ctx: &Ctx, req: R, service: Cow<'a, str>) -> Result<Call<'a, R>, Failure> {
    let policy = ctx.settings.policies.get(req.interface(), req.method());
    let begun = Instant::now();
    let admitted = ctx
        .limiter
        .borrow_mut()
        .admit(req.interface(), req.method(), policy.rate_limit, begun);
    if !admitted {
        ctx.metrics.rejected(Rejection::RateLimited);
        ctx.metrics.call_ended(
            Some(&service),
            req.method(),
            begun,
            Some(FailureKind::RateLimited.error_reason()),
        );
        let why = format!(
            "rate limit of {} calls/s for {}.{} exceeded",
            policy.rate_limit.unwrap_or_default() * ctx.settings.shards as f64,
            req.interface(),
            req.method()
        );
        return Err(Failure::new(FailureKind::RateLimited, why));
    }
    Ok(Call {
        budget: RetryBudget::new(policy.retries),
        service,
        req,
        tried: Vec::new(),
        last: None,
        begun,
        provider: None,
        request_bytes: 0,
    })
}

/// How a started call ends: waits for the attempt in flight, and for the ones after it.
pub(super) async fn finish<R: CallRequest>(ctx: &Ctx, started: Started<'_, R>) -> CallOutcome {
    let (mut call, in_flight) = match started {
        Started::Done(outcome) => return outcome,
        Started::InFlight(call, in_flight) => (call, in_flight),
    };
    let outcome = attempts(ctx, &mut call, in_flight).await;
    call.count(ctx, &outcome);
    outcome
}

/// The attempt in flight and the ones after it, until one is the call's answer.
async fn attempts<R: CallRequest>(ctx: &Ctx, call: &mut Call<'_, R>, mut in_flight: InFlight) -> CallOutcome {
    loop {
        let sent = in_flight.pending.sent();
        let answer = in_flight.pending.wait().await;
        let attempt = match &answer {
            Ok(frame) => Attempt::Answered {
                status: frame.header.status,
            },
            Err(e) => attempt_of(e),
        };
        let next = call.settle(ctx, &in_flight.chosen, sent, attempt);
        if next != Next::Requeue {
            if next == Next::Answer {
                return match answer {
                    Ok(frame) => CallOutcome::Answered(frame),
                    Err(e) => CallOutcome::Failed(e.into()),
                };
            }
            // Reported if no other provider is left.
            call.last = Some(match answer {
                Ok(frame) => render_frame(&ctx.settings.upstream.codec, &frame)
                    .body
                    .into_owned(),
                Err(e) => e.to_string(),
            });
        }
        in_flight = match call.send(ctx).await {
            Ok(f) => f,
            Err(failure) => return CallOutcome::Failed(failure),
        };
    }
}

impl<R: CallRequest> Call<'_, R> {
    fn policy<'c>(&self, ctx: &'c Ctx) -> &'c CallPolicy {
        ctx.settings.policies.get(self.req.interface(), self.req.method())
    }

    /// Counts the call's end in the shard's metrics (a service key the registry does not list is counted
    /// under `other`: the request names it, so it must not become a label).
    fn count(&self, ctx: &Ctx, outcome: &CallOutcome) {
        let m = &ctx.metrics;
        let listed = match outcome {
            CallOutcome::Failed(f) => {
                if f.kind == FailureKind::Overloaded {
                    m.rejected(Rejection::Overloaded);
                }
                f.kind != FailureKind::NoProvider
            }
            CallOutcome::Answered(_) => true,
        };
        let service = listed.then_some(&*self.service);
        m.call_ended(service, self.req.method(), self.begun, outcome.error_reason());
        m.queue_depth(ctx.upstreams.queue.len());
        m.access(|| AccessEntry {
            provider: self.provider,
            retries: self.tried.len(),
            request_bytes: self.request_bytes,
            ..AccessEntry::of_call(&self.service, self.req.method(), outcome, self.begun)
        });
    }

    /// The verdict on an attempt sent to `chosen` at `started`: the provider's health and the balancer
    /// learn from it, the budget grants (or not) a retry, a provider to avoid is excluded.
    fn settle(&mut self, ctx: &Ctx, chosen: &Chosen, started: Instant, attempt: Attempt) -> Next {
        let outcome = classify(attempt, self.policy(ctx).idempotent);
        let pool = &chosen.pool;
        self.provider = Some(pool.addr());
        let mut ejected = false;
        let result = match outcome.health {
            HealthEffect::Success => {
                pool.on_success(started.elapsed());
                AttemptResult::Success
            }
            HealthEffect::Failure => {
                ejected = pool.on_failure();
                AttemptResult::Failure
            }
            HealthEffect::Overload => {
                pool.on_overload();
                AttemptResult::Overload
            }
            HealthEffect::Neutral => AttemptResult::Neutral,
        };
        // After the pool's health and limit saw the outcome: the cap refreshed from them.
        ctx.upstreams
            .done(&self.service, chosen, started, outcome.ok_for_balancer());
        let next = self.record(outcome.next, pool.addr());
        if next == Next::Answer && outcome.next != Next::Answer {
            self.retries_exhausted(ctx, pool.addr());
        }
        let ejected_until = match pool.health(Instant::now()) {
            crate::health::State::Ejected(until) => Some(until),
            _ => None,
        };
        ctx.metrics.attempt(
            pool.addr(),
            AttemptReport {
                result,
                ejected,
                ejected_until,
                retried: next != Next::Answer,
                inflight: pool.inflight(),
                learnt_limit: pool.adaptive_limit(),
            },
        );
        next
    }

    /// The budget refused the retry an attempt at `addr` asked for: a `warn` line when the policy had
    /// retries (they were all spent), at most one per second per shard with the number left out.
    fn retries_exhausted(&self, ctx: &Ctx, addr: SocketAddr) {
        let retries = self.policy(ctx).retries;
        if retries == 0 {
            return;
        }
        thread_local! {
            static EXHAUSTED: LogEvery = const { LogEvery::new(Duration::from_secs(1)) };
        }
        if let Some(left_out) = EXHAUSTED.with(|e| e.admit(Instant::now())) {
            tracing::warn!(
                service = %self.service,
                method = %self.req.method(),
                retries,
                last_provider = %addr,
                left_out,
                "retries exhausted: {} {} failed after {retries} retr{} (last at {addr}); {left_out} more \
                 such call(s) on this shard since the previous line",
                self.service,
                self.req.method(),
                if retries == 1 { "y" } else { "ies" }
            );
        }
    }

    /// What the call does after an attempt at `addr` that `classify` said should go `next`: the budget
    /// grants the retry or turns it into an answer; a provider to try elsewhere is excluded from the
    /// next pick, a requeued call forgets the failure it would have reported.
    fn record(&mut self, next: Next, addr: SocketAddr) -> Next {
        let next = self.budget.grant(next);
        match next {
            Next::TryElsewhere => self.tried.push(addr),
            Next::Requeue => self.last = None,
            Next::Answer => {}
        }
        next
    }

    /// Sends the call for an answer (see [`Call::dispatch`]).
    async fn send(&mut self, ctx: &Ctx) -> Result<InFlight, Failure> {
        let ((pending, chosen), _) = self
            .dispatch(ctx, |conn, timeout, encode| conn.send(timeout, encode))
            .await?;
        Ok(InFlight { pending, chosen })
    }

    /// Picks a provider (not one already tried) and queues the call on one of its connections with
    /// `queue` (for an answer within the given timeout, or not); attempts that never reached a provider (connect failure, backing
    /// off) go elsewhere within the budget. `Ok`: what `queue` returned, the provider, when it was sent.
    async fn dispatch<T>(
        &mut self,
        ctx: &Ctx,
        queue: impl Fn(
            &UpstreamConn,
            Duration,
            &mut dyn FnMut(&mut BytesMut, u64) -> Result<(), CodecError>,
        ) -> Result<T, CallError>,
    ) -> Result<((T, Chosen), Instant), Failure> {
        ctx.upstreams.refresh();
        let mut wait = QueueWait::default();
        let sent = loop {
            let chosen = match self.pick(ctx, &mut wait).await {
                Ok(c) => c,
                Err(failure) => break Err(failure),
            };
            // Counted against the provider's cap (by the route table since the pick) while the first
            // connection is being dialled.
            let started = Instant::now();
            let res = match chosen.pool.get().await {
                Ok(conn) => {
                    let settings = &ctx.settings;
                    // The provider URL's token (Dubbo's token check), else the agents' shared one.
                    let token = chosen.token.as_deref().or(settings.token.as_deref());
                    let timeout = self.policy(ctx).timeout;
                    let (req, codec, bytes) = (&self.req, &settings.upstream.codec, &mut self.request_bytes);
                    queue(&conn, timeout, &mut |buf, id| {
                        let at = buf.len();
                        let encoded = req.encode(codec, buf, id, token, timeout);
                        *bytes = buf.len().saturating_sub(at);
                        encoded
                    })
                }
                Err(e) => Err(e),
            };
            match res {
                Ok(queued) => break Ok(((queued, chosen), started)),
                Err(e) => {
                    if self.settle(ctx, &chosen, started, unsent_attempt_of(&e)) == Next::Answer {
                        break Err(Failure::from(e));
                    }
                    self.last = Some(e.to_string());
                }
            }
        };
        // A waiter that ends without sending (timed out, no provider left, ...) may have been woken for a
        // free slot just as it gave up: pass the wake-up on, or the queue could wait with nothing in flight
        // to wake it. A spurious wake-up only costs the next waiter a look.
        if wait.queued && sent.is_err() {
            ctx.upstreams.queue.wake_one();
        }
        sent
    }

    /// A provider for the next attempt, after waiting for room if every one is at its cap.
    async fn pick(&self, ctx: &Ctx, wait: &mut QueueWait) -> Result<Chosen, Failure> {
        loop {
            // Calls already waiting go first: a new call joins the queue behind them.
            let picked = if ctx.upstreams.queue.is_empty() || wait.requeued {
                self.req
                    .route(&self.service, &self.tried, |call| ctx.upstreams.pick(call))
            } else {
                Pick::AllBusy
            };
            let overloaded = |why: String| Err(Failure::new(FailureKind::Overloaded, why));
            match picked {
                Pick::Chosen(c) => {
                    if wait.requeued {
                        // Woken and served: there may be room for the next waiter too (the chain stops at
                        // the first one that finds none and goes back to the head of the queue).
                        ctx.upstreams.queue.wake_one();
                    }
                    return Ok(c);
                }
                Pick::AllBusy => {
                    // Every provider is at its cap: wait for capacity instead of sending a call that would
                    // be rejected (status 100), within the queue's bound and timeout.
                    let q = &ctx.upstreams.queue;
                    // A call put back after losing a race keeps its place even when the queue is full.
                    if !wait.requeued && q.len() >= ctx.settings.queue_limit {
                        return overloaded(format!(
                            "all providers of {} are full and the queue is full",
                            self.service
                        ));
                    }
                    let ticket = q.wait(wait.requeued);
                    wait.queued = true;
                    // One deadline for the whole wait, however often the call is put back.
                    let deadline = *wait
                        .deadline
                        .get_or_insert_with(|| Instant::now() + ctx.settings.queue_timeout);
                    let left = deadline.saturating_duration_since(Instant::now());
                    let waited = glommio::timer::timeout(left, async move {
                        ticket.await;
                        Ok(())
                    })
                    .await;
                    if waited.is_err() {
                        return overloaded(format!(
                            "all providers of {} stayed full for {} ms",
                            self.service,
                            ctx.settings.queue_timeout.as_millis()
                        ));
                    }
                    ctx.upstreams.refresh();
                    wait.requeued = true;
                }
                Pick::NoSnapshot => return Err(refusal(Refusal::NoSnapshot, self)),
                Pick::NoService => return Err(refusal(Refusal::NoService, self)),
                Pick::NoRoute => return Err(refusal(Refusal::NoRoute, self)),
                Pick::Unreachable => return Err(refusal(Refusal::Unreachable, self)),
            }
        }
    }
}

/// Why a pick found no provider to try (and none to wait for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// No registry snapshot yet.
    NoSnapshot,
    /// The registry lists no provider of the service.
    NoService,
    /// The routing rules leave none for this call.
    NoRoute,
    /// Every candidate was tried already or is backing off.
    Unreachable,
}

/// The failure of a call no provider is left for: `NoProvider` when the service has no provider at all
/// and the call was never sent, else `Unavailable` with the last attempt's failure when there was one.
fn refusal<R: CallRequest>(why: Refusal, call: &Call<'_, R>) -> Failure {
    let service = &call.service;
    let unavailable = |why: String| Failure::new(FailureKind::Unavailable, why);
    match (why, &call.last) {
        (Refusal::NoSnapshot, _) => Failure::new(
            FailureKind::Unavailable,
            "provider list not loaded yet (registry unreachable)",
        ),
        (Refusal::NoService, _) if call.tried.is_empty() => Failure::new(
            FailureKind::NoProvider,
            format!("no provider registered for service {service}"),
        ),
        (Refusal::NoRoute, _) => unavailable(format!(
            "the routing rules of service {service} leave no provider for method {}",
            call.req.method()
        )),
        (Refusal::NoService | Refusal::Unreachable, Some(last)) => {
            unavailable(format!("no other provider for service {service} after: {last}"))
        }
        (Refusal::NoService | Refusal::Unreachable, None) => {
            unavailable(format!("no reachable provider for service {service}"))
        }
    }
}

/// A call's stay in the wait queue during one send.
#[derive(Debug, Default)]
struct QueueWait {
    /// Woken from the queue: picks again at once, and goes back to its head if it finds no room.
    requeued: bool,
    /// Took a place in the queue (then it may hold a wake-up meant for a slot).
    queued: bool,
    deadline: Option<Instant>,
}

/// What an error sending the call (getting a connection, queueing the request) says about the attempt:
/// a connection found closed then never carried the call, so it is a failed connect, safe to retry for
/// any call.
fn unsent_attempt_of(e: &CallError) -> Attempt {
    match e {
        CallError::Closed(_) => Attempt::ConnectFailed,
        other => attempt_of(other),
    }
}

/// What a call error says about the attempt (while waiting for the answer: the call was sent).
fn attempt_of(e: &CallError) -> Attempt {
    match e {
        CallError::Connect { .. } => Attempt::ConnectFailed,
        CallError::BackingOff(_) => Attempt::BackingOff,
        CallError::Closed(_) => Attempt::ConnectionLost,
        CallError::Timeout { .. } => Attempt::TimedOut,
        CallError::BadAnswer { .. } => Attempt::BadAnswer,
        CallError::Encode(_) => Attempt::EncodeFailed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::form_call::service_key;
    use crate::consumer::form_call::tests::invocation;
    use mesh_http::Invocation;

    #[test]
    fn a_connection_closed_before_the_call_was_queued_is_a_failed_connect() {
        let addr: SocketAddr = "10.0.0.1:1".parse().unwrap();
        assert_eq!(
            unsent_attempt_of(&CallError::Closed(addr)),
            Attempt::ConnectFailed
        );
        assert_eq!(attempt_of(&CallError::Closed(addr)), Attempt::ConnectionLost);
        assert_eq!(
            unsent_attempt_of(&CallError::BackingOff(addr)),
            Attempt::BackingOff
        );
        let timeout = CallError::Timeout { addr, ms: 5 };
        assert_eq!(unsent_attempt_of(&timeout), Attempt::TimedOut);
        let encode = CallError::Encode(mesh_dubbo::CodecError::UnsupportedSerialization(9));
        assert_eq!(unsent_attempt_of(&encode), Attempt::EncodeFailed);
    }

    fn call(retries: usize) -> Call<'static, Invocation<'static>> {
        let inv = invocation(Some("g"), Some("1.0"));
        Call {
            service: service_key(&inv),
            req: inv,
            budget: RetryBudget::new(retries),
            tried: Vec::new(),
            last: None,
            begun: Instant::now(),
            provider: None,
            request_bytes: 0,
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn retries_exclude_the_provider_and_share_one_budget() {
        let (a, b, c) = (addr("10.0.0.1:1"), addr("10.0.0.2:1"), addr("10.0.0.3:1"));
        let mut call = call(2);
        call.last = Some("connection refused".into());
        assert_eq!(call.record(Next::TryElsewhere, a), Next::TryElsewhere);
        assert_eq!(call.tried, [a]);
        // A requeue spends the same budget and forgets the failure to report.
        assert_eq!(call.record(Next::Requeue, b), Next::Requeue);
        assert_eq!(call.tried, [a]);
        assert_eq!(call.last, None);
        // Budget spent: the attempt's own answer is the call's.
        assert_eq!(call.record(Next::TryElsewhere, c), Next::Answer);
        assert_eq!(call.tried, [a]);
        assert_eq!(call.record(Next::Answer, c), Next::Answer);
    }

    #[test]
    fn no_retries_answer_the_first_attempt() {
        let mut call = call(0);
        assert_eq!(call.record(Next::TryElsewhere, addr("10.0.0.1:1")), Next::Answer);
        assert_eq!(call.record(Next::Requeue, addr("10.0.0.1:1")), Next::Answer);
        assert!(call.tried.is_empty());
    }

    #[test]
    fn refusals_say_why_and_report_the_last_failure() {
        let mut fresh = call(2);
        let answer = |why, call: &Call<'_, Invocation<'_>>| {
            let a = refusal(why, call).to_http();
            (a.status, a.body.into_owned())
        };
        assert_eq!(answer(Refusal::NoSnapshot, &fresh).0, 503);
        assert_eq!(
            answer(Refusal::NoService, &fresh),
            (
                404,
                "no provider registered for service g/com.example.Svc:1.0".into()
            )
        );
        assert_eq!(
            answer(Refusal::NoRoute, &fresh),
            (
                503,
                "the routing rules of service g/com.example.Svc:1.0 leave no provider for method hash".into()
            )
        );
        assert_eq!(
            answer(Refusal::Unreachable, &fresh),
            (
                503,
                "no reachable provider for service g/com.example.Svc:1.0".into()
            )
        );
        // After an attempt failed somewhere, a service gone from the registry is not a 404, and the
        // failure is reported.
        fresh.tried.push(addr("10.0.0.1:1"));
        fresh.last = Some("connection refused".into());
        for why in [Refusal::NoService, Refusal::Unreachable] {
            assert_eq!(
                answer(why, &fresh),
                (
                    503,
                    "no other provider for service g/com.example.Svc:1.0 after: connection refused".into()
                )
            );
        }
    }
}
