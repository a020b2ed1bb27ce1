//! Each shard's counters, in its own memory, with no lock on the data path.
//!
//! A [`ShardMetrics`] (in an `Arc`) belongs to one shard: only that shard writes it (relaxed loads and
//! stores of atomics, see `series::bump`), and the admin thread reads it when scraped
//! ([`ShardMetrics::export`] into a [`mesh_admin::Exposition`], where the shards' series add up). The
//! shard reaches it through its [`Recorder`], which also keeps, in shard-local maps, which slot each
//! label value has.
//!
//! Label sets are bounded: a shard keeps at most [`MAX_CALL_SERIES`] (service key, method) pairs and
//! [`MAX_PROVIDER_SERIES`] providers; later ones, and every call to a service key the registry does not
//! list (a request can name anything), are counted under [`OTHER`]. Error reasons and attempt results are
//! fixed sets.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `mesh_requests_total` | counter | `service`, `method` |
//! | `mesh_request_errors_total` | counter | `service`, `method`, `reason` ([`ERROR_REASONS`]) |
//! | `mesh_request_duration_seconds` | histogram | `service`, `method` |
//! | `mesh_upstream_attempts_total` | counter | `provider`, `result` (success, failure, overload, neutral) |
//! | `mesh_upstream_retries_total` | counter | `provider` (attempts there followed by another attempt) |
//! | `mesh_upstream_ejections_total` | counter | `provider` |
//! | `mesh_upstream_ejected_shards` | gauge | `provider` (shards that have it ejected now) |
//! | `mesh_upstream_inflight` | gauge | `provider` |
//! | `mesh_upstream_concurrency_limit` | gauge | `provider` (the limit learnt, summed over shards) |
//! | `mesh_rejections_total` | counter | `reason` ([`REJECTION_REASONS`]) |
//! | `mesh_queue_depth` | gauge | (calls waiting for a provider with room) |
//! | `mesh_connections_open` | gauge | `shard` |
//! | `mesh_forwarded_requests_total`, `mesh_forward_errors_total{reason}`, `mesh_forward_duration_seconds` | | provider agent: calls forwarded to the local provider |
//! | `mesh_local_provider_inflight` | gauge | provider agent |

mod recorder;
mod series;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use mesh_admin::{AdminError, Exposition};

pub use crate::access_log::{AccessEntry, AccessLog};
pub use recorder::{AttemptReport, Recorder};
use series::{get, CallSeries, Latency, ProviderSeries};
pub use series::{provider_status_reason, AttemptResult, ERROR_REASONS, LATENCY_BOUNDS_US};

/// Distinct (service key, method) pairs one shard labels; the rest count under [`OTHER`].
pub const MAX_CALL_SERIES: usize = 64;
/// Distinct providers one shard labels; the rest count under [`OTHER`].
pub const MAX_PROVIDER_SERIES: usize = 256;
/// The label value of everything beyond the caps (and of service keys the registry does not list).
pub const OTHER: &str = "other";

/// Why a call was refused before reaching a provider, or by one (status 100).
pub const REJECTION_REASONS: [&str; 5] = [
    // consumer: over a rate limit (HTTP 429 / Dubbo 100)
    "rate_limited",
    // consumer: every provider full and the wait queue full or waited out (HTTP 503 / Dubbo 100)
    "overloaded",
    // consumer: a provider answered status 100 (its agent's cap)
    "provider_full",
    // provider agent: the local provider at its cap and the line full (status 100)
    "queue_full",
    // provider agent: waited in line too long (status 100)
    "queue_timeout",
];

/// A rejection's index in [`REJECTION_REASONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    RateLimited = 0,
    Overloaded = 1,
    ProviderFull = 2,
    QueueFull = 3,
    QueueTimeout = 4,
}

/// What the shards record, fixed at start (`admin.metrics`, `log.access_every`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recording {
    /// Count calls, attempts and refusals (`false`: every recording call returns at once; the series stay
    /// at zero).
    pub metrics: bool,
    /// The access log's "one call in N" (0: off, see [`crate::access_log`]).
    pub access_log_every: u64,
}

impl Default for Recording {
    /// Metrics on, access log off.
    fn default() -> Self {
        Recording {
            metrics: true,
            access_log_every: 0,
        }
    }
}

/// One shard's counters (see the module doc): written by that shard only, read by the admin thread.
#[derive(Debug)]
pub struct ShardMetrics {
    shard: usize,
    recording: Recording,
    /// Ejection deadlines are kept as milliseconds since this instant.
    epoch: Instant,
    /// [`MAX_CALL_SERIES`] labelled slots, then the [`OTHER`] one.
    calls: Box<[CallSeries]>,
    /// [`MAX_PROVIDER_SERIES`] labelled slots, then the [`OTHER`] one.
    providers: Box<[ProviderSeries]>,
    rejections: [AtomicU64; REJECTION_REASONS.len()],
    connections: AtomicU64,
    queue_depth: AtomicU64,
    forwards: AtomicU64,
    forward_errors: [AtomicU64; ERROR_REASONS.len()],
    forward_latency: Latency,
    local_inflight: AtomicU64,
}

impl ShardMetrics {
    /// Shard `shard`'s counters, recording as [`Recording::default`] says.
    pub fn new(shard: usize) -> Arc<Self> {
        ShardMetrics::recording(shard, Recording::default())
    }

    /// Shard `shard`'s counters, recording as `recording` says.
    pub fn recording(shard: usize, recording: Recording) -> Arc<Self> {
        Arc::new(ShardMetrics {
            shard,
            recording,
            epoch: Instant::now(),
            calls: (0..=MAX_CALL_SERIES).map(|_| CallSeries::default()).collect(),
            providers: (0..=MAX_PROVIDER_SERIES)
                .map(|_| ProviderSeries::default())
                .collect(),
            rejections: Default::default(),
            connections: AtomicU64::new(0),
            queue_depth: AtomicU64::new(0),
            forwards: AtomicU64::new(0),
            forward_errors: Default::default(),
            forward_latency: Latency::default(),
            local_inflight: AtomicU64::new(0),
        })
    }

    /// One per shard, for `shards` shards.
    pub fn for_shards(shards: usize) -> Vec<Arc<Self>> {
        ShardMetrics::for_shards_recording(shards, Recording::default())
    }

    /// One per shard, for `shards` shards, each recording as `recording` says.
    pub fn for_shards_recording(shards: usize, recording: Recording) -> Vec<Arc<Self>> {
        (0..shards)
            .map(|shard| ShardMetrics::recording(shard, recording))
            .collect()
    }

    /// What this shard records.
    pub fn recording_of(&self) -> Recording {
        self.recording
    }

    /// Counts a refusal. Only the owning shard calls it (see [`Recorder`]).
    pub fn rejected(&self, why: Rejection) {
        if self.recording.metrics {
            series::bump(&self.rejections[why as usize], 1);
        }
    }

    fn millis_since_epoch(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// Adds this shard's series to `e` (the shards' series sum up there). `now` decides the ejection state.
    pub fn export(&self, e: &mut Exposition, now: Instant) -> Result<(), AdminError> {
        self.export_calls(e)?;
        self.export_providers(e, now)?;
        for (i, reason) in REJECTION_REASONS.iter().enumerate() {
            e.counter(
                "mesh_rejections_total",
                "Calls refused for lack of room: rate limits, full queues, providers at their cap.",
                &[("reason", reason)],
                get(&self.rejections[i]) as f64,
            )?;
        }
        let shard = self.shard.to_string();
        e.gauge(
            "mesh_connections_open",
            "Client connections open, per shard (sampled every second).",
            &[("shard", &shard)],
            get(&self.connections) as f64,
        )?;
        e.gauge(
            "mesh_queue_depth",
            "Consumer calls waiting for a provider with room.",
            &[],
            get(&self.queue_depth) as f64,
        )?;
        e.gauge(
            "mesh_local_provider_inflight",
            "Provider agent: calls being forwarded to the local provider or waiting to be.",
            &[],
            get(&self.local_inflight) as f64,
        )?;
        e.counter(
            "mesh_forwarded_requests_total",
            "Provider agent: calls forwarded to the local provider.",
            &[],
            get(&self.forwards) as f64,
        )?;
        for (i, reason) in ERROR_REASONS.iter().enumerate() {
            let n = get(&self.forward_errors[i]);
            if n > 0 {
                e.counter(
                    "mesh_forward_errors_total",
                    "Provider agent: forwarded calls without an OK answer, by reason.",
                    &[("reason", reason)],
                    n as f64,
                )?;
            }
        }
        let (counts, sum) = self.forward_latency.read();
        e.histogram(
            "mesh_forward_duration_seconds",
            "Provider agent: time from forwarding a call to the local provider's answer.",
            &[],
            &bounds_seconds(),
            &counts,
            sum,
        )
    }

    fn export_calls(&self, e: &mut Exposition) -> Result<(), AdminError> {
        let other = (Box::<str>::from(OTHER), Box::<str>::from(OTHER));
        for (i, s) in self.calls.iter().enumerate() {
            let (service, method) = match s.labels.get() {
                Some(l) => l,
                None if i == MAX_CALL_SERIES => &other,
                None => continue,
            };
            let labels = [("service", &**service), ("method", &**method)];
            let requests = get(&s.requests);
            if requests == 0 && i == MAX_CALL_SERIES {
                continue;
            }
            e.counter(
                "mesh_requests_total",
                "Calls answered by the consumer agent (HTTP and Dubbo port), by service key and method.",
                &labels,
                requests as f64,
            )?;
            for (r, reason) in ERROR_REASONS.iter().enumerate() {
                let n = get(&s.errors[r]);
                if n > 0 {
                    e.counter(
                        "mesh_request_errors_total",
                        "Calls that did not end in a provider's OK answer, by reason.",
                        &[labels[0], labels[1], ("reason", reason)],
                        n as f64,
                    )?;
                }
            }
            let (counts, sum) = s.latency.read();
            e.histogram(
                "mesh_request_duration_seconds",
                "Time from a call's admission to its outcome, retries and queueing included.",
                &labels,
                &bounds_seconds(),
                &counts,
                sum,
            )?;
        }
        Ok(())
    }

    fn export_providers(&self, e: &mut Exposition, now: Instant) -> Result<(), AdminError> {
        let now_ms = self.millis_since_epoch(now);
        for (i, p) in self.providers.iter().enumerate() {
            let provider = match p.label.get() {
                Some(l) => &**l,
                None if i == MAX_PROVIDER_SERIES && p.attempts.iter().any(|a| get(a) > 0) => OTHER,
                None => continue,
            };
            let labels = [("provider", provider)];
            for (r, result) in AttemptResult::NAMES.iter().enumerate() {
                e.counter(
                    "mesh_upstream_attempts_total",
                    "Attempts sent to a provider agent, by how they went for its health.",
                    &[labels[0], ("result", result)],
                    get(&p.attempts[r]) as f64,
                )?;
            }
            e.counter(
                "mesh_upstream_retries_total",
                "Attempts at a provider that were followed by another attempt of the same call.",
                &labels,
                get(&p.retries) as f64,
            )?;
            e.counter(
                "mesh_upstream_ejections_total",
                "Times a provider was ejected by outlier detection.",
                &labels,
                get(&p.ejections) as f64,
            )?;
            let ejected = get(&p.ejected_until_ms) > now_ms;
            e.gauge(
                "mesh_upstream_ejected_shards",
                "Shards that have the provider ejected now (0: in rotation everywhere).",
                &labels,
                f64::from(u8::from(ejected)),
            )?;
            e.gauge(
                "mesh_upstream_inflight",
                "Calls in flight at a provider (as of its last attempt, summed over shards).",
                &labels,
                get(&p.inflight) as f64,
            )?;
            e.gauge(
                "mesh_upstream_concurrency_limit",
                "The concurrency limit learnt for a provider, summed over shards.",
                &labels,
                get(&p.learnt_limit) as f64,
            )?;
        }
        Ok(())
    }
}

/// How often a shard writes its open connection count.
pub const CONNECTIONS_SAMPLE: std::time::Duration = std::time::Duration::from_secs(1);

/// Writes the shard's open connection count (`open()`) every [`CONNECTIONS_SAMPLE`] until the shard
/// stops: a detached task of the calling shard's executor (the listener counts connections in a `Cell`,
/// which only the shard reads).
pub fn sample_connections(
    metrics: &Recorder,
    control: &crate::control::ShardControl,
    open: impl Fn() -> usize + 'static,
) {
    let shared = Arc::clone(metrics.shared());
    let control = control.clone();
    glommio::spawn_local(async move {
        while !control.is_stopping() {
            series::set(&shared.connections, open() as u64);
            crate::timer::sleep(CONNECTIONS_SAMPLE).await;
        }
        series::set(&shared.connections, open() as u64);
    })
    .detach();
}

fn bounds_seconds() -> [f64; LATENCY_BOUNDS_US.len()] {
    LATENCY_BOUNDS_US.map(|us| us as f64 / 1e6)
}

#[cfg(test)]
mod tests;
