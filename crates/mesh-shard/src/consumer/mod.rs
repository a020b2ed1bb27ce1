//! The consumer agent's shard: HTTP/1.1 in (keep-alive, pipelining answered in order) and, when
//! configured, Dubbo in on a port of its own; Dubbo out to a provider agent chosen from the shard's
//! current registry snapshot.
//!
//! - `server`: one HTTP connection (parsing, pipelining, answers in order, timeouts);
//! - `dubbo_server`: one connection to the Dubbo port (a Dubbo client calling the agent as if it were
//!   the provider: heartbeats, concurrent pipelined calls, back-pressure, READONLY on stop);
//!   `dubbo_call`: a client's request frame as a call (service key, routing view, the frame passed
//!   through with the request id rewritten); `dubbo_answer`: its outcome as a Dubbo answer;
//! - `request`: what the call loop needs from a request (`CallRequest`); `form_call`: the HTTP form's
//!   `Invocation` as one (service key, routing view, hessian2 frame);
//! - `call`: one call's loop over attempts (pick, send, wait, classify, retry within one budget), ending
//!   in a [`CallOutcome`];
//! - `outcome`: how a call ended (the provider's answer frame, or the agent's [`Failure`]) and how that
//!   maps to HTTP and to Dubbo statuses;
//! - `upstreams`: the registry snapshot, the connection pools, the wait queue;
//! - `routes`: the route tables and balancers glued to the pools;
//! - `policy`: call policies and the rate limiters.
//!
//! What a finished attempt means (answer, try elsewhere, requeue; the provider's health) is decided by
//! [`mesh_balance::outcome`]; how a Dubbo answer becomes an HTTP answer by [`mesh_http::answer`].

mod call;
mod dubbo_answer;
mod dubbo_call;
mod dubbo_server;
mod form_call;
mod outcome;
mod policy;
mod request;
mod routes;
mod server;
mod upstreams;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use futures_lite::AsyncWriteExt;

pub use outcome::{CallOutcome, Failure, FailureKind};
pub use policy::{CallPolicy, Policies};
pub use routes::{balancer_named, Balancer};
pub use upstreams::{Upstreams, UpstreamsOptions};

use crate::control::ShardControl;
use crate::listener::Listener;
use crate::metrics::{Recorder, ShardMetrics};
use crate::upstream::UpstreamConfig;
use policy::RateLimiter;

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
    pub queue_timeout: Duration,
    /// An HTTP connection with nothing to read (between requests) or a client not reading our answers
    /// for this long is closed.
    pub idle_timeout: Duration,
    /// A request must arrive whole (head and body) within this long of its first byte, else 408 and the
    /// connection is closed: a client trickling a request (slowloris) cannot hold a connection.
    pub request_read_timeout: Duration,
    /// The Dubbo port, if any: Dubbo clients call the agent as if it were the provider.
    pub dubbo: Option<DubboPortSettings>,
}

/// The consumer's Dubbo port.
#[derive(Debug, Clone)]
pub struct DubboPortSettings {
    /// Every shard listens on it (SO_REUSEPORT); its connections count against `max_connections` on
    /// their own.
    pub listen: SocketAddr,
    /// Calls of one client connection in flight before the agent stops reading it.
    pub max_inflight_per_connection: usize,
    /// A client connection with nothing to read this long is closed (once its calls are answered).
    pub idle_timeout: Duration,
}

/// What every connection of the shard shares.
struct Ctx {
    settings: ConsumerSettings,
    upstreams: Upstreams,
    limiter: RefCell<RateLimiter>,
    metrics: Recorder,
}

/// Runs one consumer shard until `control` says stop, counting in `metrics`. `ready` is called once the
/// listeners are bound.
pub async fn run(
    settings: ConsumerSettings,
    upstreams: Upstreams,
    metrics: std::sync::Arc<ShardMetrics>,
    control: ShardControl,
    ready: impl FnOnce(),
) -> std::io::Result<()> {
    let listener = Listener::bind(settings.listen, settings.max_connections)?;
    let dubbo_listener = match &settings.dubbo {
        Some(port) => Some(Listener::bind(port.listen, settings.max_connections)?),
        None => None,
    };
    ready();
    let connections = listener.connections();
    let dubbo_connections = dubbo_listener.as_ref().map(Listener::connections);
    let ctx = Rc::new(Ctx {
        settings,
        upstreams,
        limiter: RefCell::new(RateLimiter::default()),
        metrics: Recorder::new(metrics),
    });
    crate::metrics::sample_connections(&ctx.metrics, &control, {
        let (http, dubbo) = (connections.clone(), dubbo_connections.clone());
        move || http.open() + dubbo.as_ref().map_or(0, |c| c.open())
    });
    let http = listener.serve_until_stopped(
        &control,
        |stream| {
            let (ctx, control) = (ctx.clone(), control.clone());
            async move { server::serve_connection(stream, &ctx, &control).await }
        },
        // Over the per-shard limit: refuse politely and close.
        |mut stream| async move {
            let mut out = BytesMut::new();
            mesh_http::write_status(&mut out, 503, "connection limit reached", false);
            let _ = stream.write_all(&out).await;
        },
    );
    let dubbo = async {
        if let Some(l) = dubbo_listener {
            l.serve_until_stopped(
                &control,
                |stream| dubbo_server::serve_connection(stream, ctx.clone(), control.clone()),
                // Over the per-shard limit: closed (Dubbo has no way to say why before a request).
                |stream| async move { drop(stream) },
            )
            .await;
        }
    };
    futures_lite::future::zip(http, dubbo).await;
    control
        .drained(|| connections.is_empty() && dubbo_connections.as_ref().is_none_or(|c| c.is_empty()))
        .await;
    Ok(())
}
