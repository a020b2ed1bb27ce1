//! The consumer agent's shard: HTTP/1.1 in (keep-alive, pipelining answered in order), Dubbo out to a
//! provider agent chosen from the shard's current registry snapshot.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use mesh_dubbo::{Body, Header, RequestHead, Response, RpcResult, Serialization, Status, Value};
use mesh_http::{ConnectionHeader, HttpRequest, Invocation, Parse};
use mesh_registry::Snapshot;

use crate::error::CallError;
use crate::health::{AdaptiveLimit, EjectionConfig};
use crate::io::{read_into, split};
use crate::routes::{Call, Caps, Chosen, Pick, Routes};
use crate::runtime::ShardControl;
use crate::sync::WaitQueue;
use crate::upstream::{PendingCall, Pool, UpstreamConfig};

/// Settings of one consumer shard.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub listen: SocketAddr,
    pub http: mesh_http::Limits,
    pub upstream: UpstreamConfig,
    pub max_connections: usize,
    pub read_buffer: usize,
    /// Timeouts, retries and idempotence per service and method.
    pub policies: Policies,
    /// Sent as Dubbo's `token` attachment; the provider agents refuse calls without the right one.
    pub token: Option<String>,
    /// Shards of this consumer agent: a provider's concurrency cap is split evenly over them.
    pub shards: usize,
    /// Calls allowed to wait (in this shard) while every provider is at its cap.
    pub queue_limit: usize,
    /// Longest wait in that queue.
    pub queue_timeout: std::time::Duration,
    /// An HTTP connection with nothing to read (between requests) or a client not reading our answers
    /// for this long is closed.
    pub idle_timeout: std::time::Duration,
    /// A request must arrive whole (head and body) within this long of its first byte, else 408 and the
    /// connection is closed: a client trickling a request (slowloris) cannot hold a connection.
    pub request_read_timeout: std::time::Duration,
}

/// How calls to one service (or one method of it) are made.
#[derive(Debug, Clone, PartialEq)]
pub struct CallPolicy {
    /// The whole call, from sending to the answer; sent to the provider as Dubbo's `timeout` attachment.
    pub timeout: std::time::Duration,
    /// Further providers tried after one that provably did not run the call (connect failure, status 60
    /// or 100) — or, for an idempotent call, after one whose connection died with the call in flight.
    pub retries: usize,
    /// Safe to run twice: a call lost with its connection is retried elsewhere.
    pub idempotent: bool,
    /// Calls per second this shard admits for the service or method (a token bucket with one second of
    /// burst); beyond it, 429 at once. `None`: no limit.
    pub rate_limit: Option<f64>,
}

impl Default for CallPolicy {
    fn default() -> Self {
        CallPolicy {
            timeout: std::time::Duration::from_millis(5000),
            retries: 2,
            idempotent: true,
            rate_limit: None,
        }
    }
}

/// A token bucket: `rate` tokens per second, at most one second's worth saved.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self, rate: f64, now: Instant) -> bool {
        let burst = rate.max(1.0);
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Call policies: a default, per-service overrides, per-method overrides within a service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policies {
    pub default: CallPolicy,
    /// Keyed by service (interface) name; the inner map by method name.
    pub services: HashMap<String, (Option<CallPolicy>, HashMap<String, CallPolicy>)>,
}

impl Policies {
    /// The policy of `service.method`: the method's, else the service's, else the default.
    pub fn get(&self, service: &str, method: &str) -> &CallPolicy {
        match self.services.get(service) {
            None => &self.default,
            Some((svc, methods)) => methods.get(method).or(svc.as_ref()).unwrap_or(&self.default),
        }
    }
}

/// How a consumer shard balances and protects its providers.
#[derive(Debug, Clone)]
pub struct UpstreamsOptions {
    /// Shards of this consumer agent: a provider's announced cap is split evenly over them.
    pub shards: usize,
    /// Outlier ejection of providers that keep failing.
    pub ejection: EjectionConfig,
    /// Calls sent to a provider beyond its announced cap, as a fraction of it (0.05 = 5% more). Its agent
    /// queues them and refills the provider's freed threads at once, instead of letting each thread idle
    /// for the answer's way back and the next call's way out. 0 never sends more than the cap.
    pub cap_headroom: f64,
    /// The balancer among routed candidates.
    pub balancer: crate::routes::Balancer,
    /// Routing rule documents (JSON) by service, used when the registry has none for the service.
    pub rules: HashMap<String, String>,
    /// Who this consumer is to condition rules (`host`, `application`, ...): from the configuration.
    pub consumer: mesh_balance::ConsumerInfo,
}

impl Default for UpstreamsOptions {
    fn default() -> Self {
        UpstreamsOptions {
            shards: 1,
            ejection: EjectionConfig::default(),
            cap_headroom: 0.0,
            balancer: crate::routes::Balancer::default(),
            rules: HashMap::new(),
            consumer: mesh_balance::ConsumerInfo::default(),
        }
    }
}

/// The shard's view of the registry, its routing tables and its connection pools to provider agents.
pub struct Upstreams {
    snapshot: RefCell<Arc<Snapshot>>,
    rx: crossbeam_channel::Receiver<Arc<Snapshot>>,
    pools: RefCell<HashMap<SocketAddr, Rc<Pool>>>,
    cfg: UpstreamConfig,
    routes: RefCell<Routes>,
    caps: Caps,
    shards: u32,
    /// Calls waiting for a provider below its cap, oldest first; woken as calls complete.
    queue: Rc<WaitQueue>,
    ejection: EjectionConfig,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Upstreams(snapshot v{})", self.snapshot.borrow().version)
    }
}

/// Dubbo's default provider thread pool: the starting limit for a provider that announces no cap.
const DEFAULT_THREADS: u32 = 200;

impl Upstreams {
    pub fn new(
        rx: crossbeam_channel::Receiver<Arc<Snapshot>>,
        cfg: UpstreamConfig,
        opts: UpstreamsOptions,
    ) -> Self {
        let shards = u32::try_from(opts.shards.max(1)).unwrap_or(u32::MAX);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            ^ (u64::from(std::process::id()) << 32);
        Upstreams {
            snapshot: RefCell::new(Arc::new(Snapshot::default())),
            rx,
            pools: RefCell::new(HashMap::new()),
            cfg,
            routes: RefCell::new(Routes::new(opts.balancer, opts.rules, opts.consumer, seed)),
            caps: Caps {
                shards,
                headroom: opts.cap_headroom.max(0.0),
            },
            shards,
            queue: Rc::new(WaitQueue::new()),
            ejection: opts.ejection,
        }
    }

    /// Takes the newest snapshot the registry thread has published, if any (between requests).
    pub fn refresh(&self) {
        let mut newest = None;
        while let Ok(s) = self.rx.try_recv() {
            newest = Some(s);
        }
        if let Some(s) = newest {
            // Pools of providers that left are dropped (calls in flight keep their connection alive).
            self.pools
                .borrow_mut()
                .retain(|addr, _| s.iter().any(|(_, eps)| eps.iter().any(|e| e.addr == *addr)));
            *self.snapshot.borrow_mut() = s;
            // New providers may have room for calls that wait: start the chain of wake-ups.
            self.queue.wake_one();
        }
    }

    pub fn snapshot_version(&self) -> u64 {
        self.snapshot.borrow().version
    }

    fn pool(&self, addr: SocketAddr) -> Rc<Pool> {
        self.pools
            .borrow_mut()
            .entry(addr)
            .or_insert_with(|| {
                // A provider that does not announce its cap is assumed to have Dubbo's default pool of
                // 200 threads (this shard's share of it) until its answers say otherwise.
                Rc::new(Pool::with_health(
                    addr,
                    self.cfg.clone(),
                    None,
                    self.ejection,
                    AdaptiveLimit::new(DEFAULT_THREADS.div_ceil(self.shards), 10_000),
                ))
            })
            .clone()
    }

    /// Routes and picks a provider for `inv`, not one of `exclude`. A chosen provider counts the call in
    /// flight until [`Upstreams::done`].
    fn pick(&self, inv: &Invocation<'_>, exclude: &[SocketAddr]) -> Pick {
        let snap = self.snapshot.borrow().clone();
        let mut small: [&str; 4] = [""; 4];
        let heap: Vec<&str>;
        let args: &[&str] = if inv.args.len() <= small.len() {
            for (slot, a) in small.iter_mut().zip(&inv.args) {
                *slot = a;
            }
            &small[..inv.args.len()]
        } else {
            heap = inv.args.iter().map(|a| a.as_ref()).collect();
            &heap
        };
        let call = Call {
            service: &inv.interface,
            method: &inv.method,
            tag: inv.tag.as_deref(),
            args,
            exclude,
        };
        self.routes
            .borrow_mut()
            .pick(&snap, &call, self.caps, |addr| self.pool(addr))
    }

    /// A call sent to `chosen` ended: the provider's in-flight count, latency and cap are updated and the
    /// oldest waiting call is woken (there may be room now).
    fn done(&self, service: &str, chosen: &Chosen, started: Instant, ok: bool) {
        let latency = started.elapsed().as_nanos() as u64;
        self.routes
            .borrow_mut()
            .done(service, chosen, latency, ok, self.caps);
        self.queue.wake_one();
    }
}

/// Runs one consumer shard until `control` says stop. `ready` is called once the listener is bound.
pub async fn run(
    settings: ConsumerSettings,
    upstreams: Upstreams,
    control: ShardControl,
    ready: impl FnOnce(),
) -> std::io::Result<()> {
    let listener = crate::io::listen(settings.listen)?;
    ready();
    let ctx = Rc::new(Ctx {
        settings,
        upstreams,
        connections: Cell::new(0),
        buckets: RefCell::new(HashMap::new()),
    });
    let accept = {
        let ctx = ctx.clone();
        let control = control.clone();
        glommio::spawn_local(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok(s) => s,
                    Err(_) => continue,
                };
                if ctx.connections.get() >= ctx.settings.max_connections {
                    // Over the per-shard limit: refuse politely and close.
                    let mut out = BytesMut::new();
                    mesh_http::write_status(&mut out, 503, "connection limit reached", false);
                    let mut s = stream;
                    let _ = s.write_all(&out).await;
                    continue;
                }
                let ctx = ctx.clone();
                let control = control.clone();
                glommio::spawn_local(async move {
                    ctx.connections.set(ctx.connections.get() + 1);
                    serve_connection(stream, &ctx, &control).await;
                    ctx.connections.set(ctx.connections.get() - 1);
                })
                .detach();
            }
        })
    };
    control.stopped().await;
    drop(accept); // stop accepting; the listener closes
    control.drained(|| ctx.connections.get() == 0).await;
    Ok(())
}

struct Ctx {
    settings: ConsumerSettings,
    upstreams: Upstreams,
    connections: Cell<usize>,
    /// Rate-limit buckets by `service#method` (only for policies with a rate limit).
    buckets: RefCell<HashMap<String, Bucket>>,
}

impl Ctx {
    /// Whether the call may go now under its policy's rate limit.
    fn admit(&self, inv: &Invocation<'_>, policy: &CallPolicy) -> bool {
        let Some(rate) = policy.rate_limit else {
            return true;
        };
        let now = Instant::now();
        let mut buckets = self.buckets.borrow_mut();
        let key = format!("{}#{}", inv.interface, inv.method);
        let b = buckets.entry(key).or_insert(Bucket {
            tokens: rate.max(1.0),
            at: now,
        });
        b.take(rate, now)
    }
}

/// An HTTP answer being prepared: either known already, or waiting for a provider. The invocation
/// borrows from the connection's read buffer, which is not advanced until every job of the batch is done.
#[allow(clippy::large_enum_variant)] // a few per connection at a time; boxing would cost an allocation per call
enum Job<'a> {
    Done {
        status: u16,
        body: Cow<'static, str>,
        keep_alive: bool,
    },
    Waiting {
        call: PendingCall,
        chosen: Chosen,
        inv: Invocation<'a>,
        tried: Vec<SocketAddr>,
        keep_alive: bool,
        /// Earlier sends of this call that did not run it.
        attempts: usize,
    },
}

async fn serve_connection(stream: TcpStream, ctx: &Ctx, control: &ShardControl) {
    let _ = stream.set_nodelay(true);
    // Reads only wait while no request is being served, so this is an idle timeout; writes wait only
    // for a client that does not read its answers.
    let _ = stream.set_read_timeout(Some(ctx.settings.idle_timeout));
    let _ = stream.set_write_timeout(Some(ctx.settings.idle_timeout));
    let (mut r, mut w) = split(stream);
    let mut scratch = vec![0u8; ctx.settings.read_buffer];
    let mut buf = BytesMut::with_capacity(ctx.settings.read_buffer);
    let mut out = BytesMut::with_capacity(4096);
    let limits = &ctx.settings.http;
    // `100 Continue` goes out once per request, not on every read while its body arrives.
    let mut continued = false;
    // HTTP/1.0 clients need `Connection: keep-alive` said explicitly.
    let mut http10 = false;
    // When the partial request at the head of `buf` started arriving.
    let mut started: Option<Instant> = None;
    loop {
        // Start every complete request in the buffer (pipelining), then answer them in order.
        let mut jobs: Vec<Job<'_>> = Vec::new();
        let mut offset = 0;
        let mut close_after = false;
        let mut send_continue = false;
        loop {
            match mesh_http::parse_request(&buf[offset..], limits) {
                Ok(Parse::Complete(req)) => {
                    offset += req.consumed;
                    http10 = req.minor_version == 0;
                    let keep_alive = req.keep_alive && !control.is_stopping();
                    jobs.push(start(ctx, &req, keep_alive).await);
                    if !keep_alive {
                        close_after = true;
                        break;
                    }
                }
                Ok(Parse::Partial { send_continue: c }) => {
                    send_continue = c;
                    break;
                }
                Err(e) => {
                    jobs.push(Job::Done {
                        status: e.status(),
                        body: Cow::Owned(e.to_string()),
                        keep_alive: false,
                    });
                    close_after = true;
                    break;
                }
            }
        }
        for job in jobs {
            finish(ctx, job, http10, &mut out).await;
        }
        buf.advance(offset);
        if offset > 0 {
            continued = false; // a partial request at the head now is a new one
            started = None;
        }
        if buf.is_empty() {
            started = None;
        } else if started.is_none() {
            started = Some(Instant::now());
        }
        if send_continue && !close_after && !continued {
            out.extend_from_slice(mesh_http::CONTINUE);
            continued = true;
        }
        if !out.is_empty() {
            if w.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if close_after {
            let _ = w.close().await;
            return;
        }
        // Between requests, a stop closes the connection at once instead of holding the drain; a pending
        // glommio read consumes nothing, so abandoning it loses no data. Within a request, the read is
        // bounded by what is left of the request's read timeout.
        let read = read_into(&mut r, &mut scratch, &mut buf);
        let n = match started {
            None => {
                futures_lite::future::or(read, async {
                    control.stopped().await;
                    Ok(0)
                })
                .await
            }
            Some(t0) => {
                let left = ctx.settings.request_read_timeout.saturating_sub(t0.elapsed());
                futures_lite::future::or(read, async {
                    glommio::timer::sleep(left).await;
                    Err(std::io::Error::from(std::io::ErrorKind::TimedOut))
                })
                .await
            }
        };
        match n {
            Ok(0) => return,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut && started.is_some() => {
                let why = format!(
                    "request not received in full within {} ms",
                    ctx.settings.request_read_timeout.as_millis()
                );
                mesh_http::write_status(&mut out, 408, &why, false);
                let _ = w.write_all(&out).await;
                let _ = w.close().await;
                return;
            }
            Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn done(status: u16, body: impl Into<Cow<'static, str>>, keep_alive: bool) -> Job<'static> {
    Job::Done {
        status,
        body: body.into(),
        keep_alive,
    }
}

/// Turns a request into a Dubbo call sent to a provider agent (or an immediate answer).
async fn start<'a>(ctx: &Ctx, req: &HttpRequest<'a>, keep_alive: bool) -> Job<'a> {
    if req.method != "POST" {
        return done(405, "only POST is served", keep_alive);
    }
    let inv = match &req.body {
        Cow::Borrowed(body) => mesh_http::parse_form(body, &ctx.settings.http),
        // A de-chunked body is owned by `req`: detach the invocation from it.
        Cow::Owned(body) => mesh_http::parse_form(body, &ctx.settings.http).map(owned_invocation),
    };
    match inv {
        Ok(inv) => {
            let policy = ctx.settings.policies.get(&inv.interface, &inv.method);
            if !ctx.admit(&inv, policy) {
                let why = format!(
                    "rate limit of {} calls/s for {}.{} exceeded",
                    policy.rate_limit.unwrap_or_default() * ctx.settings.shards as f64,
                    inv.interface,
                    inv.method
                );
                return done(429, why, keep_alive);
            }
            dispatch(ctx, inv, Vec::new(), keep_alive, None, 0).await
        }
        Err(e) => done(e.status(), e.to_string(), keep_alive && !e.closes_connection()),
    }
}

fn owned_invocation(inv: Invocation<'_>) -> Invocation<'static> {
    let own = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
    Invocation {
        interface: own(inv.interface),
        method: own(inv.method),
        param_types: own(inv.param_types),
        args: inv.args.into_iter().map(own).collect(),
        version: inv.version.map(own),
        group: inv.group.map(own),
        tag: inv.tag.map(own),
        force_tag: inv.force_tag,
        attachments: inv
            .attachments
            .into_iter()
            .map(|(n, v)| (own(n), own(v)))
            .collect(),
    }
}

/// Picks a provider (not one already tried) and sends the call; connect failures move on to the next.
/// `last` is why the previous attempt failed, reported if no other provider is left.
async fn dispatch<'a>(
    ctx: &Ctx,
    inv: Invocation<'a>,
    mut tried: Vec<SocketAddr>,
    keep_alive: bool,
    mut last: Option<String>,
    attempts: usize,
) -> Job<'a> {
    ctx.upstreams.refresh();
    let mut requeued = false;
    // Whether this call took a place in the wait queue (then it may hold a wake-up meant for a slot).
    let mut queued = false;
    let mut deadline: Option<Instant> = None;
    let job = loop {
        // Calls already waiting go first: a new call joins the queue behind them.
        let picked = if ctx.upstreams.queue.is_empty() || requeued {
            ctx.upstreams.pick(&inv, &tried)
        } else {
            Pick::AllBusy
        };
        let chosen = match picked {
            Pick::Chosen(c) => {
                if requeued {
                    // Woken and served: there may be room for the next waiter too (the chain stops at
                    // the first one that finds none and goes back to the head of the queue).
                    ctx.upstreams.queue.wake_one();
                }
                c
            }
            Pick::AllBusy => {
                // Every provider is at its cap: wait for capacity instead of sending a call that would
                // be rejected (status 100), within the queue's bound and timeout.
                let q = &ctx.upstreams.queue;
                // A call put back after losing a race keeps its place even when the queue is full.
                if !requeued && q.len() >= ctx.settings.queue_limit {
                    break done(
                        503,
                        format!(
                            "all providers of {} are full and the queue is full",
                            inv.interface
                        ),
                        keep_alive,
                    );
                }
                let ticket = q.wait(requeued);
                queued = true;
                // One deadline for the whole wait, however often the call is put back.
                let deadline = *deadline.get_or_insert_with(|| Instant::now() + ctx.settings.queue_timeout);
                let left = deadline.saturating_duration_since(Instant::now());
                let waited = glommio::timer::timeout(left, async move {
                    ticket.await;
                    Ok(())
                })
                .await;
                if waited.is_err() {
                    break done(
                        503,
                        format!(
                            "all providers of {} stayed full for {} ms",
                            inv.interface,
                            ctx.settings.queue_timeout.as_millis()
                        ),
                        keep_alive,
                    );
                }
                ctx.upstreams.refresh();
                requeued = true;
                continue;
            }
            Pick::NoSnapshot => {
                break done(
                    503,
                    "provider list not loaded yet (registry unreachable)",
                    keep_alive,
                )
            }
            Pick::NoService if tried.is_empty() => {
                break done(
                    404,
                    format!("no provider registered for service {}", inv.interface),
                    keep_alive,
                )
            }
            Pick::NoRoute => {
                break done(
                    503,
                    format!(
                        "the routing rules of service {} leave no provider for method {}",
                        inv.interface, inv.method
                    ),
                    keep_alive,
                )
            }
            Pick::NoService | Pick::Unreachable => {
                let msg = match &last {
                    Some(last) => {
                        format!("no other provider for service {} after: {last}", inv.interface)
                    }
                    None => format!("no reachable provider for service {}", inv.interface),
                };
                break done(503, msg, keep_alive);
            }
        };
        let policy = ctx.settings.policies.get(&inv.interface, &inv.method);
        let pool = chosen.pool.clone();
        // Counted against the provider's cap (by the route table since the pick) while the first
        // connection is being dialled.
        let started = Instant::now();
        let res = match pool.get().await {
            Ok(conn) => conn.send(|buf, id| encode_call(ctx, buf, id, &inv, policy)),
            Err(e) => Err(e),
        };
        if res.is_err() {
            ctx.upstreams.done(&inv.interface, &chosen, started, false);
        }
        match res {
            Ok(call) => {
                break Job::Waiting {
                    call,
                    chosen,
                    inv,
                    tried,
                    keep_alive,
                    attempts,
                }
            }
            Err(e) if e.retry_safe() && tried.len() < policy.retries => {
                if !matches!(e, CallError::BackingOff(_)) {
                    pool.on_failure();
                }
                tried.push(pool.addr());
                last = Some(e.to_string());
            }
            Err(e) => {
                if e.retry_safe() {
                    pool.on_failure();
                }
                break done(e.http_status(), e.to_string(), keep_alive);
            }
        }
    };
    // A waiter that ends without sending (timed out, no provider left, ...) may have been woken for a
    // free slot just as it gave up: pass the wake-up on, or the queue could wait with nothing in flight
    // to wake it. A spurious wake-up only costs the next waiter a look.
    if queued && matches!(job, Job::Done { .. }) {
        ctx.upstreams.queue.wake_one();
    }
    job
}

fn encode_call(
    ctx: &Ctx,
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
    let token = ctx.settings.token.as_deref().map(Value::str);
    let group = inv.group.as_deref().map(Value::str);
    let atts = [
        Some(("path", &path)),
        Some(("interface", &path)),
        Some(("timeout", &timeout)),
        group.as_ref().map(|g| ("group", g)),
        token.as_ref().map(|t| ("token", t)),
    ];
    let header = Header::request(id, Serialization::Hessian2, true);
    ctx.settings
        .upstream
        .codec
        .encode_request(buf, header, &head, args, atts.iter().flatten().copied())
}

/// Waits for a job's answer and writes its HTTP response. An answer saying the call never ran on that
/// provider (status 60: unreachable local provider, draining agent) is retried on another one.
async fn finish(ctx: &Ctx, mut job: Job<'_>, http10: bool, out: &mut BytesMut) {
    let (status, body, keep_alive) = loop {
        match job {
            Job::Done {
                status,
                body,
                keep_alive,
            } => break (status, body, keep_alive),
            Job::Waiting {
                call,
                chosen,
                inv,
                mut tried,
                keep_alive,
                attempts,
            } => {
                let policy = ctx.settings.policies.get(&inv.interface, &inv.method);
                let sent = call.sent();
                let answer = call.wait(policy.timeout).await;
                let pool = &chosen.pool;
                let ok = matches!(&answer, Ok(f) if !matches!(
                    f.header.status,
                    Status::SERVICE_NOT_FOUND
                        | Status::SERVER_THREADPOOL_EXHAUSTED
                        | Status::SERVER_TIMEOUT
                        | Status::SERVER_ERROR
                        | Status::BAD_RESPONSE
                ));
                // Retry elsewhere (excluding this provider), or go back to the queue (the provider was
                // only full: with its limit lowered, the call waits for room anywhere, this one included).
                enum Again {
                    No,
                    Elsewhere,
                    Requeue,
                }
                let again = match &answer {
                    Ok(frame) => match frame.header.status {
                        // Never ran there: its agent is draining or cannot reach its provider.
                        Status::SERVICE_NOT_FOUND => {
                            pool.on_failure();
                            Again::Elsewhere
                        }
                        // Never ran: the provider is full. Learn from it (providers without a declared
                        // cap) and wait for room.
                        Status::SERVER_THREADPOOL_EXHAUSTED => {
                            pool.on_overload();
                            Again::Requeue
                        }
                        // The provider side failed (its agent lost or timed out on the provider).
                        Status::SERVER_TIMEOUT | Status::SERVER_ERROR | Status::BAD_RESPONSE => {
                            pool.on_failure();
                            Again::No
                        }
                        _ => {
                            pool.on_success(sent.elapsed());
                            Again::No
                        }
                    },
                    // The connection died with the call on it: it may have run, so only an idempotent
                    // call goes elsewhere.
                    Err(CallError::Closed(_)) => {
                        pool.on_failure();
                        if policy.idempotent {
                            Again::Elsewhere
                        } else {
                            Again::No
                        }
                    }
                    Err(_) => {
                        pool.on_failure();
                        Again::No
                    }
                };
                // After the pool's health and limit saw the outcome: the cap refreshed from them.
                ctx.upstreams.done(&inv.interface, &chosen, sent, ok);
                let bounded = attempts < policy.retries && tried.len() < policy.retries;
                match again {
                    Again::Elsewhere if bounded => {
                        tried.push(pool.addr());
                        let why = match &answer {
                            Ok(frame) => render(ctx, frame).1.into_owned(),
                            Err(e) => e.to_string(),
                        };
                        job = dispatch(ctx, inv, tried, keep_alive, Some(why), attempts + 1).await;
                        continue;
                    }
                    Again::Requeue if bounded => {
                        job = dispatch(ctx, inv, tried, keep_alive, None, attempts + 1).await;
                        continue;
                    }
                    _ => {}
                }
                let (status, body) = match answer {
                    Ok(frame) => render(ctx, &frame),
                    Err(e) => (e.http_status(), Cow::Owned(e.to_string())),
                };
                break (status, body, keep_alive);
            }
        }
    };
    let conn = match (keep_alive, http10) {
        (false, _) => ConnectionHeader::Close,
        (true, true) => ConnectionHeader::KeepAlive,
        (true, false) => ConnectionHeader::Omit,
    };
    if status == 200 {
        mesh_http::write_response_with(out, 200, "text/plain; charset=utf-8", body.as_bytes(), conn);
    } else {
        mesh_http::write_status_with(out, status, &body, conn);
    }
}

/// The provider's answer as an HTTP status and body: a value as text, an error with its Dubbo status.
fn render(ctx: &Ctx, frame: &mesh_dubbo::Frame) -> (u16, Cow<'static, str>) {
    let body = match ctx
        .settings
        .upstream
        .codec
        .decode_body(&frame.header, &frame.body)
    {
        Ok(b) => b,
        Err(e) => return (502, Cow::Owned(format!("undecodable answer from provider: {e}"))),
    };
    match body {
        Body::Response(Response::Ok {
            result: RpcResult::Value(v),
            ..
        }) => (200, Cow::Owned(value_text(&v))),
        Body::Response(Response::Ok {
            result: RpcResult::Null,
            ..
        }) => (200, Cow::Borrowed("null")),
        Body::Response(Response::Ok {
            result: RpcResult::Exception(e),
            ..
        }) => (500, Cow::Owned(format!("service threw {}", exception_text(&e)))),
        Body::Response(Response::Error { status, message }) => {
            let code = match status {
                Status::SERVER_THREADPOOL_EXHAUSTED | Status::SERVICE_NOT_FOUND => 503,
                Status::SERVER_TIMEOUT | Status::CLIENT_TIMEOUT => 504,
                _ => 502,
            };
            (
                code,
                Cow::Owned(format!(
                    "provider answered dubbo status {} {}: {message}",
                    status.0,
                    status.name()
                )),
            )
        }
        other => (
            502,
            Cow::Owned(format!("unexpected answer from provider: {other:?}")),
        ),
    }
}

/// A result value as the HTTP body: numbers in decimal, strings as they are, structures as JSON.
pub fn value_text(v: &Value<'_>) -> String {
    match v {
        Value::Int(i) => i.to_string(),
        Value::Long(l) | Value::Date(l) => l.to_string(),
        Value::String(s) => s.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_owned(),
        Value::Double(d) => java_double(*d),
        other => {
            let mut buf = BytesMut::new();
            match mesh_dubbo::fastjson::write_value(&mut buf, other) {
                Ok(()) => String::from_utf8_lossy(buf.strip_suffix(b"\n").unwrap_or(&buf)).into_owned(),
                Err(_) => format!("{other:?}"),
            }
        }
    }
}

/// Formats like Java's `Double.toString` for the common cases (`1.0`, `0.5`, `NaN`, `Infinity`).
fn java_double(d: f64) -> String {
    if d.is_nan() {
        "NaN".into()
    } else if d.is_infinite() {
        if d > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else if d.fract() == 0.0 && d.abs() < 1e7 {
        format!("{d:.1}")
    } else {
        format!("{d}")
    }
}

fn exception_text(e: &Value<'_>) -> String {
    match e {
        Value::Object(o) => {
            let msg = o
                .fields
                .iter()
                .find(|(k, _)| k == "detailMessage")
                .and_then(|(_, v)| v.as_str())
                .unwrap_or("");
            format!("{}: {msg}", o.class)
        }
        other => value_text(other),
    }
}
