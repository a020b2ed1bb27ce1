//! A shard's hand on its [`ShardMetrics`]: which slot a label value has (shard-local maps, no lock) and
//! one method per event of the call paths.

use foldhash::HashMap;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::series::{bump, provider_status_reason, set, AttemptResult, ERROR_REASONS};
use super::{Rejection, ShardMetrics, MAX_CALL_SERIES, MAX_PROVIDER_SERIES};
use crate::access_log::{AccessEntry, AccessLog};

/// The reason index of a forwarding failure of the provider agent.
const FORWARD_FAILED: usize = ERROR_REASONS.len() - 1;

/// What one attempt at a provider told, for [`Recorder::attempt`].
#[derive(Debug, Clone, Copy)]
pub struct AttemptReport {
    pub result: AttemptResult,
    /// This attempt ejected the provider.
    pub ejected: bool,
    /// The provider is ejected until then (`None`: in rotation or probing).
    pub ejected_until: Option<Instant>,
    /// Another attempt of the same call follows.
    pub retried: bool,
    pub inflight: usize,
    pub learnt_limit: u32,
}

/// Service key -> method -> slot.
type CallSlots = HashMap<Box<str>, HashMap<Box<str>, usize>>;

/// One shard's recorder (see the module doc of [`super`]).
#[derive(Debug)]
pub struct Recorder {
    shared: Arc<ShardMetrics>,
    /// [`super::Recording::metrics`], copied here: the branch every recording method takes first.
    on: bool,
    /// The access log, when on.
    access: Option<AccessLog>,
    calls: RefCell<CallSlots>,
    calls_used: Cell<usize>,
    providers: RefCell<HashMap<SocketAddr, usize>>,
    providers_used: Cell<usize>,
}

impl Recorder {
    pub fn new(shared: Arc<ShardMetrics>) -> Self {
        let recording = shared.recording_of();
        Recorder {
            shared,
            on: recording.metrics,
            access: AccessLog::new(recording.access_log_every),
            calls: RefCell::new(HashMap::default()),
            calls_used: Cell::new(0),
            providers: RefCell::new(HashMap::default()),
            providers_used: Cell::new(0),
        }
    }

    /// A recorder of its own, for tests and tools that count nowhere anyone reads.
    pub fn detached() -> Self {
        Recorder::new(ShardMetrics::new(0))
    }

    pub fn shared(&self) -> &Arc<ShardMetrics> {
        &self.shared
    }

    /// Whether this shard records metrics (`admin.metrics`).
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Counts a call for the access log and writes its line if it is sampled (`entry` is built only
    /// then); nothing when the access log is off.
    pub fn access<'a>(&self, entry: impl FnOnce() -> AccessEntry<'a>) {
        if let Some(log) = &self.access {
            log.record(entry);
        }
    }

    /// The slot of (`service`, `method`): found, taken if one is free, else the [`super::OTHER`] one.
    fn call_slot(&self, service: &str, method: &str) -> usize {
        let mut calls = self.calls.borrow_mut();
        if let Some(slot) = calls.get(service).and_then(|m| m.get(method)) {
            return *slot;
        }
        let used = self.calls_used.get();
        if used == MAX_CALL_SERIES {
            return MAX_CALL_SERIES;
        }
        // Labelled before anything is counted in it: the admin thread skips slots without labels.
        let _ = self.shared.calls[used]
            .labels
            .set((service.into(), method.into()));
        self.calls_used.set(used + 1);
        calls
            .entry(service.into())
            .or_default()
            .insert(method.into(), used);
        used
    }

    /// A call to `service` (`None`: a service key the registry does not list, counted under `other`) and
    /// `method` ended after starting at `begun`, with the error reason `error` (`None`: the provider's OK
    /// answer, or a one-way call sent), see [`ERROR_REASONS`].
    pub fn call_ended(&self, service: Option<&str>, method: &str, begun: Instant, error: Option<usize>) {
        if !self.on {
            return;
        }
        let slot = match service {
            Some(s) => self.call_slot(s, method),
            None => MAX_CALL_SERIES,
        };
        let s = &self.shared.calls[slot];
        bump(&s.requests, 1);
        if let Some(r) = error {
            if let Some(c) = s.errors.get(r) {
                bump(c, 1);
            }
        }
        s.latency.observe(begun.elapsed().as_micros() as u64);
    }

    fn provider_slot(&self, addr: SocketAddr) -> usize {
        let mut providers = self.providers.borrow_mut();
        if let Some(slot) = providers.get(&addr) {
            return *slot;
        }
        let used = self.providers_used.get();
        if used == MAX_PROVIDER_SERIES {
            return MAX_PROVIDER_SERIES;
        }
        let _ = self.shared.providers[used].label.set(addr.to_string().into());
        self.providers_used.set(used + 1);
        providers.insert(addr, used);
        used
    }

    /// An attempt at the provider `addr` was settled.
    pub fn attempt(&self, addr: SocketAddr, report: AttemptReport) {
        if !self.on {
            return;
        }
        let p = &self.shared.providers[self.provider_slot(addr)];
        bump(&p.attempts[report.result.index()], 1);
        if report.retried {
            bump(&p.retries, 1);
        }
        if report.ejected {
            bump(&p.ejections, 1);
        }
        let until = report
            .ejected_until
            .map_or(0, |t| self.shared.millis_since_epoch(t).max(1));
        set(&p.ejected_until_ms, until);
        set(&p.inflight, report.inflight as u64);
        set(&p.learnt_limit, u64::from(report.learnt_limit));
        if report.result == AttemptResult::Overload {
            self.rejected(Rejection::ProviderFull);
        }
    }

    pub fn rejected(&self, why: Rejection) {
        self.shared.rejected(why);
    }

    /// Calls of this shard waiting for a provider with room.
    pub fn queue_depth(&self, n: usize) {
        if !self.on {
            return;
        }
        set(&self.shared.queue_depth, n as u64);
    }

    /// Client connections open on this shard.
    pub fn connections(&self, n: usize) {
        set(&self.shared.connections, n as u64);
    }

    /// Provider agent: calls of this shard being forwarded or waiting to be.
    pub fn local_inflight(&self, n: usize) {
        if !self.on {
            return;
        }
        set(&self.shared.local_inflight, n as u64);
    }

    /// Provider agent: a call forwarded at `begun` ended with the local provider's `status` (`Some(20)`
    /// OK; `None`: no answer, the forwarding failed; a one-way call counts as OK).
    pub fn forward_ended(&self, begun: Instant, status: Option<u8>) {
        if !self.on {
            return;
        }
        let s = &self.shared;
        bump(&s.forwards, 1);
        let reason = match status {
            Some(st) => provider_status_reason(st),
            None => Some(FORWARD_FAILED),
        };
        if let Some(r) = reason {
            bump(&s.forward_errors[r], 1);
        }
        s.forward_latency.observe(begun.elapsed().as_micros() as u64);
    }
}
