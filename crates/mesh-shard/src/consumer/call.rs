//! One call, from a decoded form to its HTTP answer: ONE loop over attempts with ONE retry budget.
//!
//! pick (waiting in the queue while every provider is full) -> send -> wait -> classify the attempt
//! ([`mesh_balance::outcome`]) -> apply its health effect -> answer, try elsewhere or requeue.
//!
//! The first send happens in [`start`] and the wait in [`finish`], so that pipelined requests of one
//! connection are all in flight before the first answer is awaited.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use mesh_balance::outcome::{classify, Attempt, HealthEffect, Next, RetryBudget};
use mesh_dubbo::{Codec, Frame, Header, RequestHead, Serialization, Value};
use mesh_http::answer::{render, HttpAnswer};
use mesh_http::Invocation;

use super::policy::CallPolicy;
use super::routes::{Chosen, Pick};
use super::Ctx;
use crate::error::CallError;
use crate::upstream::PendingCall;

/// A call on its way: what it asks, what it may still try, and where it already failed.
pub(super) struct Call<'a> {
    /// Borrows from the connection's read buffer, which is not advanced until the call is answered.
    inv: Invocation<'a>,
    /// The service key it asks for, `group/interface:version` (the form's `group`, `interface`, `version`).
    service: Cow<'a, str>,
    budget: RetryBudget,
    /// Providers excluded from the next pick: the call did not run there or failed there.
    tried: Vec<SocketAddr>,
    /// Why the previous attempt failed, reported if no other provider is left.
    last: Option<String>,
}

/// An attempt in flight.
pub(super) struct InFlight {
    pending: PendingCall,
    chosen: Chosen,
}

/// A call after [`start`]: answered already, or waiting for a provider's answer.
#[allow(clippy::large_enum_variant)] // a few per connection at a time; boxing would cost an allocation per call
pub(super) enum Started<'a> {
    Answered(HttpAnswer),
    InFlight(Call<'a>, InFlight),
}

/// Admits `inv` under its rate limit and sends its first attempt.
pub(super) async fn start<'a>(ctx: &Ctx, inv: Invocation<'a>) -> Started<'a> {
    let policy = ctx.settings.policies.get(&inv.interface, &inv.method);
    let admitted =
        ctx.limiter
            .borrow_mut()
            .admit(&inv.interface, &inv.method, policy.rate_limit, Instant::now());
    if !admitted {
        let why = format!(
            "rate limit of {} calls/s for {}.{} exceeded",
            policy.rate_limit.unwrap_or_default() * ctx.settings.shards as f64,
            inv.interface,
            inv.method
        );
        return Started::Answered(HttpAnswer::new(429, why));
    }
    let mut call = Call {
        budget: RetryBudget::new(policy.retries),
        service: service_key(&inv),
        inv,
        tried: Vec::new(),
        last: None,
    };
    match call.send(ctx).await {
        Ok(in_flight) => Started::InFlight(call, in_flight),
        Err(answer) => Started::Answered(answer),
    }
}

/// The HTTP answer of a started call: waits for the attempt in flight, and for the ones after it.
pub(super) async fn finish(ctx: &Ctx, started: Started<'_>) -> HttpAnswer {
    let (mut call, mut in_flight) = match started {
        Started::Answered(answer) => return answer,
        Started::InFlight(call, in_flight) => (call, in_flight),
    };
    loop {
        let policy = call.policy(ctx);
        let sent = in_flight.pending.sent();
        let answer = in_flight.pending.wait(policy.timeout).await;
        let attempt = match &answer {
            Ok(frame) => Attempt::Answered {
                status: frame.header.status,
            },
            Err(e) => attempt_of(e),
        };
        let next = call.settle(ctx, &in_flight.chosen, sent, attempt);
        if next != Next::Requeue {
            let rendered = match answer {
                Ok(frame) => render_frame(ctx, &frame),
                Err(e) => HttpAnswer::new(e.http_status(), e.to_string()),
            };
            if next == Next::Answer {
                return rendered;
            }
            // Reported if no other provider is left.
            call.last = Some(rendered.body.into_owned());
        }
        in_flight = match call.send(ctx).await {
            Ok(f) => f,
            Err(answer) => return answer,
        };
    }
}

impl<'a> Call<'a> {
    fn policy<'c>(&self, ctx: &'c Ctx) -> &'c CallPolicy {
        ctx.settings.policies.get(&self.inv.interface, &self.inv.method)
    }

    /// The verdict on an attempt sent to `chosen` at `started`: the provider's health and the balancer
    /// learn from it, the budget grants (or not) a retry, a provider to avoid is excluded.
    fn settle(&mut self, ctx: &Ctx, chosen: &Chosen, started: Instant, attempt: Attempt) -> Next {
        let outcome = classify(attempt, self.policy(ctx).idempotent);
        let pool = &chosen.pool;
        match outcome.health {
            HealthEffect::Success => pool.on_success(started.elapsed()),
            HealthEffect::Failure => {
                pool.on_failure();
            }
            HealthEffect::Overload => pool.on_overload(),
            HealthEffect::Neutral => {}
        }
        // After the pool's health and limit saw the outcome: the cap refreshed from them.
        ctx.upstreams
            .done(&self.service, chosen, started, outcome.ok_for_balancer());
        self.record(outcome.next, pool.addr())
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

    /// Picks a provider (not one already tried) and sends the call; attempts that never reached a
    /// provider (connect failure, backing off) go elsewhere within the budget. `Err`: the caller's answer.
    async fn send(&mut self, ctx: &Ctx) -> Result<InFlight, HttpAnswer> {
        ctx.upstreams.refresh();
        let mut wait = QueueWait::default();
        let sent = loop {
            let chosen = match self.pick(ctx, &mut wait).await {
                Ok(c) => c,
                Err(answer) => break Err(answer),
            };
            // Counted against the provider's cap (by the route table since the pick) while the first
            // connection is being dialled.
            let started = Instant::now();
            let res = match chosen.pool.get().await {
                Ok(conn) => conn.send(|buf, id| {
                    let settings = &ctx.settings;
                    // The provider URL's token (Dubbo's token check), else the agents' shared one.
                    let token = chosen.token.as_deref().or(settings.token.as_deref());
                    encode_call(
                        &settings.upstream.codec,
                        token,
                        buf,
                        id,
                        &self.inv,
                        self.policy(ctx),
                    )
                }),
                Err(e) => Err(e),
            };
            match res {
                Ok(pending) => break Ok(InFlight { pending, chosen }),
                Err(e) => {
                    if self.settle(ctx, &chosen, started, unsent_attempt_of(&e)) == Next::Answer {
                        break Err(HttpAnswer::new(e.http_status(), e.to_string()));
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
    async fn pick(&self, ctx: &Ctx, wait: &mut QueueWait) -> Result<Chosen, HttpAnswer> {
        let inv = &self.inv;
        loop {
            // Calls already waiting go first: a new call joins the queue behind them.
            let picked = if ctx.upstreams.queue.is_empty() || wait.requeued {
                ctx.upstreams.pick(inv, &self.service, &self.tried)
            } else {
                Pick::AllBusy
            };
            let unavailable = |why: String| Err(HttpAnswer::new(503, why));
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
                        return unavailable(format!(
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
                        return unavailable(format!(
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

/// The answer to a call no provider is left for: 404 when the service has no provider at all and the
/// call was never sent, else 503 with the last attempt's failure when there was one.
fn refusal(why: Refusal, call: &Call<'_>) -> HttpAnswer {
    let service = &call.service;
    match (why, &call.last) {
        (Refusal::NoSnapshot, _) => {
            HttpAnswer::new(503, "provider list not loaded yet (registry unreachable)")
        }
        (Refusal::NoService, _) if call.tried.is_empty() => {
            HttpAnswer::new(404, format!("no provider registered for service {service}"))
        }
        (Refusal::NoRoute, _) => HttpAnswer::new(
            503,
            format!(
                "the routing rules of service {service} leave no provider for method {}",
                call.inv.method
            ),
        ),
        (Refusal::NoService | Refusal::Unreachable, Some(last)) => HttpAnswer::new(
            503,
            format!("no other provider for service {service} after: {last}"),
        ),
        (Refusal::NoService | Refusal::Unreachable, None) => {
            HttpAnswer::new(503, format!("no reachable provider for service {service}"))
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

/// Dubbo's service key of the call, `group/interface:version` (each part only when set), borrowed when
/// it is just the interface.
fn service_key<'a>(inv: &Invocation<'a>) -> Cow<'a, str> {
    match (&inv.group, &inv.version) {
        (None, None) => inv.interface.clone(),
        (group, version) => {
            let mut key = String::new();
            if let Some(g) = group {
                key.push_str(g);
                key.push('/');
            }
            key.push_str(&inv.interface);
            if let Some(v) = version {
                key.push(':');
                key.push_str(v);
            }
            Cow::Owned(key)
        }
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

fn render_frame(ctx: &Ctx, frame: &Frame) -> HttpAnswer {
    render(
        ctx.settings
            .upstream
            .codec
            .decode_body(&frame.header, &frame.body),
    )
}

/// Writes the Dubbo request frame of `inv` with request id `id`: the agent's attachments (`path`,
/// `interface`, `timeout`, `group`, `token`) then the caller's own.
fn encode_call(
    codec: &Codec,
    token: Option<&str>,
    buf: &mut BytesMut,
    id: u64,
    inv: &Invocation<'_>,
    policy: &CallPolicy,
) -> Result<(), mesh_dubbo::CodecError> {
    let head = RequestHead {
        dubbo_version: mesh_dubbo::message::DUBBO_VERSION,
        service: &inv.interface,
        version: Some(inv.version.as_deref().unwrap_or("0.0.0")),
        method: &inv.method,
        param_types: &inv.param_types,
    };
    // Arguments are strings; a small stack array covers the usual one-argument call without allocating.
    let path = Value::str(&inv.interface);
    let mut small: [Value<'_>; 4] = [Value::Null, Value::Null, Value::Null, Value::Null];
    let heap: Vec<Value<'_>>;
    let args: &[Value<'_>] = if inv.args.len() <= small.len() {
        for (slot, a) in small.iter_mut().zip(&inv.args) {
            *slot = Value::str(a);
        }
        &small[..inv.args.len()]
    } else {
        heap = inv.args.iter().map(|a| Value::str(a)).collect();
        &heap
    };
    // Dubbo sends attachments as strings; the provider agent reads the timeout from it.
    let mut ms = itoa::Buffer::new();
    let timeout = Value::str(ms.format(policy.timeout.as_millis() as u64));
    let token = token.map(Value::str);
    let group = inv.group.as_deref().map(Value::str);
    let atts = [
        Some(("path", &path)),
        Some(("interface", &path)),
        Some(("timeout", &timeout)),
        group.as_ref().map(|g| ("group", g)),
        token.as_ref().map(|t| ("token", t)),
    ];
    // The caller's own attachments (names checked by the form: none of the above).
    let callers: Vec<(&str, Value<'_>)> = inv
        .attachments
        .iter()
        .map(|(n, v)| (n.as_ref(), Value::str(v)))
        .collect();
    let header = Header::request(id, Serialization::Hessian2, true);
    codec.encode_request(
        buf,
        header,
        &head,
        args,
        atts.iter()
            .flatten()
            .copied()
            .chain(callers.iter().map(|(n, v)| (*n, v))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_dubbo::{decode_frame, Body, Decoded};

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

    #[test]
    fn the_callers_attachments_go_to_the_provider_after_the_agents() {
        let body = b"interface=a.B&method=hash&parameterTypesString=Ljava%2Flang%2FString%3B&parameter=x\
            &group=g&attachment.user=ann&attachment.trace=t+1";
        let inv = mesh_http::parse_form(body, &mesh_http::Limits::default()).unwrap();
        let policy = CallPolicy::default();
        let codec = Codec::default();
        let mut buf = BytesMut::new();
        encode_call(&codec, Some("secret"), &mut buf, 7, &inv, &policy).unwrap();
        let Decoded::Frame(frame) = decode_frame(&mut buf, codec.max_body).unwrap() else {
            panic!("a whole frame was written");
        };
        assert_eq!(frame.header.id, 7);
        let Body::Request(req) = codec.decode_body(&frame.header, &frame.body).unwrap() else {
            panic!("a request was written");
        };
        let atts: Vec<(&str, Option<&str>)> = req
            .attachments
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_str()))
            .collect();
        assert_eq!(
            atts,
            [
                ("path", Some("a.B")),
                ("interface", Some("a.B")),
                ("timeout", Some("5000")),
                ("group", Some("g")),
                ("token", Some("secret")),
                ("user", Some("ann")),
                ("trace", Some("t 1")),
            ]
        );
        assert_eq!(req.args, [Value::str("x")]);
    }

    fn invocation(group: Option<&'static str>, version: Option<&'static str>) -> Invocation<'static> {
        Invocation {
            interface: "com.example.Svc".into(),
            method: "hash".into(),
            param_types: "".into(),
            args: Vec::new(),
            version: version.map(Into::into),
            group: group.map(Into::into),
            tag: None,
            force_tag: false,
            attachments: Vec::new(),
        }
    }

    fn call(retries: usize) -> Call<'static> {
        let inv = invocation(Some("g"), Some("1.0"));
        Call {
            service: service_key(&inv),
            inv,
            budget: RetryBudget::new(retries),
            tried: Vec::new(),
            last: None,
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
    fn the_service_key_is_dubbos() {
        assert!(matches!(
            service_key(&invocation(None, None)),
            Cow::Borrowed("com.example.Svc")
        ));
        assert_eq!(service_key(&invocation(Some("g"), None)), "g/com.example.Svc");
        assert_eq!(service_key(&invocation(None, Some("2"))), "com.example.Svc:2");
        assert_eq!(
            service_key(&invocation(Some("*"), Some("*"))),
            "*/com.example.Svc:*"
        );
    }

    #[test]
    fn refusals_say_why_and_report_the_last_failure() {
        let mut fresh = call(2);
        let answer = |why, call: &Call<'_>| {
            let a = refusal(why, call);
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
