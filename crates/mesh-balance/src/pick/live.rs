//! [`LiveState`]: what the balancers know about each provider at the moment of a pick (in flight, cap,
//! down mark, latencies), updated by the caller on every send and answer.

use crate::bitset::BitSet;
use crate::table::RouteTable;

/// Tuning of [`LiveState`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiveOptions {
    /// Time constant of the latency EWMA (Finagle's peak EWMA default: 10 s).
    pub decay_ns: u64,
    /// A failed answer counts as at least this latency (so a provider that fails fast is not preferred).
    pub failure_penalty_ns: u64,
    /// Smoothing of the successful-latency average used by shortest-response.
    pub response_alpha: f64,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            decay_ns: 10_000_000_000,
            failure_penalty_ns: 1_000_000_000,
            response_alpha: 0.125,
        }
    }
}

/// One provider's live state.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    pub(super) inflight: u32,
    cap: u32,
    /// Peak EWMA of latency, ns (0 = no answer yet). `f32`s and a millisecond stamp keep a slot at 28
    /// bytes: P2C reads two random slots per pick, so at 5,000 providers the slots should stay in cache.
    pub(super) ewma_ns: f32,
    /// The lowest latency seen (creeping up slowly towards later ones), ns (0 = none yet): the provider's
    /// own speed, against which queueing shows as inflation.
    pub(super) floor_ns: f32,
    /// EWMA of successful latency, ns (0 = none yet).
    pub(super) ok_ns: f32,
    /// Time of the last answer, ms (wrapping).
    pub(super) last_ms: u32,
    down: bool,
}

impl Slot {
    fn new(cap: Option<u32>) -> Self {
        Slot {
            inflight: 0,
            cap: cap.unwrap_or(u32::MAX),
            down: false,
            ewma_ns: 0.0,
            floor_ns: 0.0,
            last_ms: 0,
            ok_ns: 0.0,
        }
    }

    #[inline]
    fn busy(&self) -> bool {
        self.down || self.inflight >= self.cap
    }
}

/// Live per-provider state for one table: in flight, latency EWMAs, caps, down marks. Owned and updated by
/// the caller (`on_send` / `on_answer`); picks only read it.
#[derive(Debug, Clone)]
pub struct LiveState {
    epoch: u64,
    pub(super) slots: Vec<Slot>,
    /// Providers that are down or at their cap, kept in step with `slots` for the exact fallback.
    pub(super) busy: BitSet,
    pub(super) opts: LiveOptions,
}

impl LiveState {
    /// Fresh state for `table`'s providers (caps from their `max_concurrency`).
    pub fn new(table: &RouteTable) -> Self {
        LiveState::with_options(table, LiveOptions::default())
    }

    /// Fresh state with options.
    pub fn with_options(table: &RouteTable, opts: LiveOptions) -> Self {
        let slots: Vec<Slot> = (0..table.slots())
            .map(|i| Slot::new(table.provider(i).and_then(|p| p.max_concurrency)))
            .collect();
        let busy = BitSet::from_fn(slots.len(), |i| slots[i].busy());
        LiveState {
            epoch: table.epoch(),
            slots,
            busy,
            opts,
        }
    }

    /// State for a new epoch's table: providers present in both keep their in-flight count, down mark and
    /// latencies (peak EWMA, floor, successful-latency average; found by address); new ones start fresh;
    /// caps come from the new table.
    pub fn carry_over(&self, old: &RouteTable, new: &RouteTable) -> LiveState {
        let mut next = LiveState::with_options(new, self.opts);
        for (i, p) in new.providers() {
            if let Some(s) = old.index_of(p.addr).and_then(|j| self.slots.get(j)) {
                let slot = &mut next.slots[i];
                slot.inflight = s.inflight;
                slot.down = s.down;
                slot.ewma_ns = s.ewma_ns;
                slot.floor_ns = s.floor_ns;
                slot.last_ms = s.last_ms;
                slot.ok_ns = s.ok_ns;
                next.busy.set(i, slot.busy());
            }
        }
        next
    }

    /// Follows [`RouteTable::apply`](crate::RouteTable::apply) in O(changes): an added index starts fresh,
    /// a removed one is reset, an updated one keeps its state and takes the provider's new cap.
    pub fn apply(&mut self, table: &RouteTable, applied: &[crate::Applied]) {
        self.epoch = table.epoch();
        if self.slots.len() < table.slots() {
            self.slots.resize(table.slots(), Slot::new(None));
            self.busy.grow(table.slots());
        }
        for a in applied {
            match *a {
                crate::Applied::Added(i) | crate::Applied::Removed(i) => {
                    self.slots[i] = Slot::new(table.provider(i).and_then(|p| p.max_concurrency));
                }
                crate::Applied::Updated(i) => {
                    self.slots[i].cap = table
                        .provider(i)
                        .and_then(|p| p.max_concurrency)
                        .unwrap_or(u32::MAX);
                }
            }
            self.refresh_busy(match *a {
                crate::Applied::Added(i) | crate::Applied::Removed(i) | crate::Applied::Updated(i) => i,
            });
        }
    }

    /// The epoch of the table this state belongs to.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The number of providers (the table's).
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    fn refresh_busy(&mut self, idx: usize) {
        if let Some(s) = self.slots.get(idx) {
            let b = s.busy();
            self.busy.set(idx, b);
        }
    }

    /// A call was sent to `idx`.
    pub fn on_send(&mut self, idx: usize, _now_ns: u64) {
        if let Some(s) = self.slots.get_mut(idx) {
            s.inflight = s.inflight.saturating_add(1);
            self.refresh_busy(idx);
        }
    }

    /// A call to `idx` ended after `latency_ns` (ok = a normal answer; false = error or timeout).
    pub fn on_answer(&mut self, idx: usize, now_ns: u64, latency_ns: u64, ok: bool) {
        let opts = self.opts;
        let Some(s) = self.slots.get_mut(idx) else { return };
        s.inflight = s.inflight.saturating_sub(1);
        let rtt = if ok {
            latency_ns
        } else {
            latency_ns.max(opts.failure_penalty_ns)
        } as f64;
        // Peak EWMA: jump up to a slower observation, decay towards faster ones with the time elapsed.
        let now_ms = (now_ns / 1_000_000) as u32;
        let ewma = f64::from(s.ewma_ns);
        if rtt > ewma || ewma == 0.0 {
            s.ewma_ns = rtt as f32;
        } else {
            let dt = f64::from(now_ms.wrapping_sub(s.last_ms)) * 1e6;
            let w = (-dt / opts.decay_ns as f64).exp();
            s.ewma_ns = (ewma * w + rtt * (1.0 - w)) as f32;
        }
        s.last_ms = now_ms;
        if ok {
            // The floor follows a faster answer at once and a slower one by 1/1024 of the difference, so a
            // lasting change of the provider's speed is learnt over about a thousand answers.
            let f = f64::from(s.floor_ns);
            let l = latency_ns as f64;
            s.floor_ns = if f == 0.0 || l < f {
                l
            } else {
                f + (l - f) / 1024.0
            } as f32;
            let ok = f64::from(s.ok_ns);
            s.ok_ns = if ok == 0.0 {
                l as f32
            } else {
                (ok + opts.response_alpha * (l - ok)) as f32
            };
        }
        self.refresh_busy(idx);
    }

    /// Marks `idx` down (never picked) or up again, e.g. while its connection pool backs off.
    pub fn set_down(&mut self, idx: usize, down: bool) {
        if let Some(s) = self.slots.get_mut(idx) {
            s.down = down;
            self.refresh_busy(idx);
        }
    }

    /// Changes the in-flight cap of `idx`.
    pub fn set_cap(&mut self, idx: usize, cap: Option<u32>) {
        if let Some(s) = self.slots.get_mut(idx) {
            s.cap = cap.unwrap_or(u32::MAX);
            self.refresh_busy(idx);
        }
    }

    /// Calls in flight to `idx`.
    pub fn inflight(&self, idx: usize) -> u32 {
        self.slots.get(idx).map_or(0, |s| s.inflight)
    }

    /// The peak-EWMA latency of `idx` in ns (0 before its first answer).
    pub fn latency_ns(&self, idx: usize) -> f64 {
        self.slots.get(idx).map_or(0.0, |s| f64::from(s.ewma_ns))
    }

    /// True when `idx` may be picked (not down, below its cap).
    #[inline]
    pub fn is_available(&self, idx: usize) -> bool {
        self.slots.get(idx).is_some_and(|s| !s.busy())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{build, counts, sixty_ms_at_100_and_fifty_at_150, table_and_live};
    use super::super::Policy;
    use super::*;
    use crate::table::Provider;

    #[test]
    fn slots_stay_compact() {
        assert_eq!(std::mem::size_of::<Slot>(), 28);
    }

    #[test]
    fn carry_over_keeps_state_by_address() {
        let (t1, mut live) = table_and_live(&[1, 1], &[None, None]);
        live.on_send(1, 0);
        let ps = vec![
            Provider::new("10.0.0.2:1".parse().unwrap()),
            Provider::new("10.0.0.9:1".parse().unwrap()),
        ];
        let t2 = build(2, ps);
        let l2 = live.carry_over(&t1, &t2);
        assert_eq!((l2.inflight(0), l2.inflight(1), l2.epoch()), (1, 0, 2));
    }

    /// Regression: `carry_over` dropped the latency floor, so after every snapshot change the adaptive
    /// balancer compared a queueing provider by plain latency x load again.
    #[test]
    fn carry_over_keeps_the_latency_floor() {
        // Both answer in 50 ms unloaded; provider 0 now takes 60 ms with 100 in flight (queueing),
        // provider 1 50 ms with 150: the adaptive balancer avoids 0 (see its tests).
        let (t1, mut live) = table_and_live(&[1, 1], &[None, None]);
        sixty_ms_at_100_and_fifty_at_150(&mut live, 10);
        // The registry changes: same providers, listed the other way round.
        let ps = vec![
            Provider::new("10.0.0.2:1".parse().unwrap()),
            Provider::new("10.0.0.1:1".parse().unwrap()),
        ];
        let mut t2 = build(2, ps);
        let l2 = live.carry_over(&t1, &t2);
        assert_eq!(l2.slots[1].floor_ns, live.slots[0].floor_ns);
        assert_eq!(l2.slots[0].ok_ns, live.slots[1].ok_ns);
        // The queueing provider (now index 1) is still avoided.
        assert_eq!(counts(&mut t2, &l2, Policy::Adaptive, 100), [100, 0]);
    }
}
