//! Balancers over a route's candidate set, and the live per-provider state they read.
//!
//! Every policy first tries O(1)-ish draws (random members, a prefix-sum binary search, one group) and
//! checks the drawn provider against [`LiveState`] (down, excluded, at its in-flight cap). Only when a few
//! draws in a row hit unavailable providers does it fall back to an exact pass over the candidates that
//! are available (`candidates AND NOT busy`, word by word): [`Pick::AllBusy`] therefore means exactly that
//! every candidate is down, excluded or at its cap.

use crate::bitset::BitSet;
use crate::hash::hash64;
use crate::table::{Request, RouteId, RouteTable};

/// A source of random numbers the caller owns (wrap `rand`'s generators, or use [`XorShift64`]).
pub trait Rng {
    /// The next 64 random bits.
    fn next_u64(&mut self) -> u64;
}

/// xorshift64*: tiny, fast, good enough for load balancing.
#[derive(Debug, Clone)]
pub struct XorShift64(u64);

impl XorShift64 {
    /// Seeded generator (a zero seed is replaced).
    pub fn new(seed: u64) -> Self {
        XorShift64(if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed })
    }
}

impl Rng for XorShift64 {
    #[inline]
    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A uniform integer in `0..n` (`n > 0`), by Lemire's multiply-shift.
#[inline]
fn below<R: Rng + ?Sized>(rng: &mut R, n: u64) -> u64 {
    ((u128::from(rng.next_u64()) * u128::from(n)) >> 64) as u64
}

/// Which balancer picks among a route's candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Power of two choices over peak-EWMA latency x (in-flight + 1) (Finagle's P2C + peak EWMA); ignores
    /// weights. The agent's default.
    #[default]
    Adaptive,
    /// Random in proportion to (warm-up adjusted) weights.
    WeightedRandom,
    /// Smooth weighted round robin (nginx / Dubbo); grouped (about sqrt(n) groups) on large sets.
    RoundRobin,
    /// Fewest in flight, ties by weighted random (Dubbo's least-active); within one weighted-random
    /// group of `group_size` on large sets.
    LeastActive,
    /// Lowest EWMA of successful latency x (in-flight + 1), ties by weighted random (Dubbo's
    /// shortest-response); grouped like least-active.
    ShortestResponse,
    /// Ketama-style ring over `PickOptions::hash_key` (weighted random when no key is given).
    ConsistentHash,
}

/// The outcome of a pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pick {
    /// Send to this provider (an index into [`RouteTable::providers`]).
    Provider(usize),
    /// Every candidate is down, excluded or at its cap: queue the call.
    AllBusy,
    /// The routers left no candidate.
    NoProvider,
}

/// Per-pick arguments.
#[derive(Debug, Clone, Copy, Default)]
pub struct PickOptions<'a> {
    /// The balancer.
    pub policy: Policy,
    /// Now, in nanoseconds, on the clock used for `on_send`/`on_answer` and (in milliseconds) for the
    /// providers' registration times.
    pub now_ns: u64,
    /// Consistent-hash key (e.g. the first argument's bytes).
    pub hash_key: Option<&'a [u8]>,
    /// Providers not to use for this call (e.g. the one a retry comes from).
    pub exclude: &'a [usize],
}

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

#[derive(Debug, Clone, Copy)]
struct Slot {
    inflight: u32,
    cap: u32,
    /// Peak EWMA of latency, ns (0 = no answer yet). `f32`s and a millisecond stamp keep a slot at 28
    /// bytes: P2C reads two random slots per pick, so at 5,000 providers the slots should stay in cache.
    ewma_ns: f32,
    /// The lowest latency seen (creeping up slowly towards later ones), ns (0 = none yet): the provider's
    /// own speed, against which queueing shows as inflation.
    floor_ns: f32,
    /// EWMA of successful latency, ns (0 = none yet).
    ok_ns: f32,
    /// Time of the last answer, ms (wrapping).
    last_ms: u32,
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

/// Cost given to a provider with calls in flight and no answer yet (Finagle's penalty).
const PENALTY_NS: f64 = 1e12;

/// Live per-provider state for one table: in flight, latency EWMAs, caps, down marks. Owned and updated by
/// the caller (`on_send` / `on_answer`); picks only read it.
#[derive(Debug, Clone)]
pub struct LiveState {
    epoch: u64,
    slots: Vec<Slot>,
    /// Providers that are down or at their cap, kept in step with `slots` for the exact fallback.
    busy: BitSet,
    opts: LiveOptions,
}

impl LiveState {
    /// Fresh state for `table`'s providers (caps from their `max_concurrency`).
    pub fn new(table: &RouteTable) -> Self {
        LiveState::with_options(table, LiveOptions::default())
    }

    /// Fresh state with options.
    pub fn with_options(table: &RouteTable, opts: LiveOptions) -> Self {
        let slots: Vec<Slot> = table
            .providers()
            .iter()
            .map(|p| Slot::new(p.max_concurrency))
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
        for (i, p) in new.providers().iter().enumerate() {
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

    /// The epoch of the table this state belongs to.
    pub fn epoch(&self) -> u64 {
        self.epoch
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
    pub fn is_available(&self, idx: usize) -> bool {
        self.slots.get(idx).is_some_and(|s| !s.busy())
    }

    /// P2C cost: decayed peak EWMA x (in flight + 1); the penalty for a provider with calls in flight and
    /// no answer yet. The idle decay is applied only after a sixteenth of the decay time (to spare an
    /// `exp` on most reads).
    #[inline]
    fn cost(&self, idx: usize, now_ns: u64) -> f64 {
        let s = &self.slots[idx];
        let pending = f64::from(s.inflight);
        if s.ewma_ns == 0.0 {
            return if s.inflight == 0 {
                0.0
            } else {
                PENALTY_NS + pending
            };
        }
        let dt_ns = u64::from(((now_ns / 1_000_000) as u32).wrapping_sub(s.last_ms)) * 1_000_000;
        let e = if dt_ns > self.opts.decay_ns / 16 {
            f64::from(s.ewma_ns) * (-(dt_ns as f64) / self.opts.decay_ns as f64).exp()
        } else {
            f64::from(s.ewma_ns)
        };
        // Queueing inflates latency above the provider's own floor; past a capacity knee more calls only
        // make every call slower. Weighing the inflation by its cube moves load away from a provider as
        // soon as its calls start to queue, while providers that are simply slower (a higher floor) are
        // compared by latency x load as in plain P2C.
        let floor = f64::from(s.floor_ns);
        let q = if floor > 0.0 { (e / floor).max(1.0) } else { 1.0 };
        e * (pending + 1.0) * q * q * q
    }
}

/// Effective weight with Dubbo's warm-up: `weight * uptime / warmup`, at least 1, until warm.
fn warm_weight(weight: u32, warm: Option<(u64, u64)>, now_ms: u64) -> (u32, bool) {
    match warm {
        Some((at, warmup)) if warmup > 0 => {
            let up = now_ms.saturating_sub(at);
            if up >= warmup {
                (weight, false)
            } else {
                let w = (u128::from(up) * u128::from(weight) / u128::from(warmup)) as u32;
                (w.clamp(1, weight.max(1)), true)
            }
        }
        _ => (weight, false),
    }
}

#[derive(Debug, Clone)]
struct Swrr {
    gs: usize,
    gw: Vec<i64>,
    gcur: Vec<i64>,
    cur: Vec<i64>,
}

#[derive(Debug, Clone)]
struct Ring {
    points: Vec<u64>,
    owners: Vec<u32>,
}

/// One cached route result and everything the balancers precompute over it.
#[derive(Debug, Clone)]
pub(crate) struct CandidateSet {
    pub(crate) bits: BitSet,
    members: Vec<u32>,
    weights: Vec<u32>,
    cum: Vec<u64>,
    total: u64,
    uniform: bool,
    gs: usize,
    group_cum: Vec<u64>,
    /// When to recompute warm-up weights (ms); `u64::MAX` once every member is warm.
    next_refresh_ms: u64,
    swrr: Option<Swrr>,
    ring: Option<Ring>,
}

const DRAWS: usize = 4;

impl CandidateSet {
    pub(crate) fn new(bits: BitSet, table: &RouteTable) -> Self {
        let members: Vec<u32> = bits.iter().map(|i| i as u32).collect();
        let warming = members.iter().any(|&m| table.warm[m as usize].is_some());
        let gs = if members.len() > table.opts.group_threshold {
            table.opts.group_size.max(1)
        } else {
            members.len().max(1)
        };
        let mut s = CandidateSet {
            bits,
            members,
            weights: Vec::new(),
            cum: Vec::new(),
            total: 0,
            uniform: true,
            gs,
            group_cum: Vec::new(),
            next_refresh_ms: if warming { 0 } else { u64::MAX },
            swrr: None,
            ring: None,
        };
        s.compute_weights(table, None);
        s
    }

    /// Recomputes effective weights (at `now_ms`, or ignoring warm-up when `None`) and everything derived.
    fn compute_weights(&mut self, table: &RouteTable, now_ms: Option<u64>) {
        let mut still_warming = false;
        self.weights.clear();
        for &m in &self.members {
            let p = &table.providers[m as usize];
            let (w, warming) = match now_ms {
                Some(now) => warm_weight(p.weight, table.warm[m as usize], now),
                None => (p.weight, false),
            };
            still_warming |= warming;
            self.weights.push(w);
        }
        self.cum.clear();
        let mut acc = 0u64;
        for &w in &self.weights {
            acc += u64::from(w);
            self.cum.push(acc);
        }
        self.total = acc;
        self.uniform = self.weights.windows(2).all(|w| w[0] == w[1]);
        self.group_cum = self
            .cum
            .chunks(self.gs)
            .map(|c| c.last().copied().unwrap_or(0))
            .collect();
        self.swrr = None;
        if let Some(now) = now_ms {
            self.next_refresh_ms = if still_warming {
                now.saturating_add(table.opts.warmup_refresh_ms)
            } else {
                u64::MAX
            };
        }
    }

    #[inline]
    fn weighted_pos<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        if self.uniform {
            below(rng, self.members.len() as u64) as usize
        } else {
            let r = below(rng, self.total);
            self.cum.partition_point(|&c| c <= r)
        }
    }

    #[inline]
    fn weighted_group<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        if self.uniform {
            below(rng, self.group_cum.len() as u64) as usize
        } else {
            let r = below(rng, self.total);
            self.group_cum.partition_point(|&c| c <= r)
        }
    }
}

#[inline]
fn usable(live: &LiveState, exclude: &[usize], idx: usize) -> bool {
    live.slots.get(idx).is_some_and(|s| !s.busy()) && !exclude.contains(&idx)
}

impl RouteTable {
    /// Routes and picks in one call (the request path).
    pub fn route_and_pick<R: Rng + ?Sized>(
        &mut self,
        req: &Request<'_>,
        live: &LiveState,
        rng: &mut R,
        opts: &PickOptions<'_>,
    ) -> Pick {
        let route = self.route(req);
        self.pick(route, live, rng, opts)
    }

    /// Picks a provider among `route`'s candidates with `opts.policy`. `live` must belong to this table's
    /// providers ([`LiveState::new`] / [`LiveState::carry_over`]).
    pub fn pick<R: Rng + ?Sized>(
        &mut self,
        route: RouteId,
        live: &LiveState,
        rng: &mut R,
        opts: &PickOptions<'_>,
    ) -> Pick {
        debug_assert_eq!(
            live.slots.len(),
            self.providers.len(),
            "LiveState of another table"
        );
        let now_ms = opts.now_ns / 1_000_000;
        let set_idx = route.0 as usize;
        if self.sets[set_idx].next_refresh_ms <= now_ms {
            let mut set = std::mem::replace(&mut self.sets[set_idx], placeholder());
            set.compute_weights(self, Some(now_ms));
            self.sets[set_idx] = set;
        }
        let set = &mut self.sets[set_idx];
        if set.members.is_empty() {
            return Pick::NoProvider;
        }
        let ex = opts.exclude;
        let found = match opts.policy {
            Policy::Adaptive => p2c(set, live, rng, opts),
            Policy::WeightedRandom => (0..DRAWS)
                .map(|_| set.members[set.weighted_pos(rng)] as usize)
                .find(|&i| usable(live, ex, i)),
            Policy::LeastActive => grouped_scan(set, live, rng, ex, |s| u64::from(s.inflight) as f64),
            Policy::ShortestResponse => grouped_scan(set, live, rng, ex, |s| {
                f64::from(s.ok_ns) * (f64::from(s.inflight) + 1.0)
            }),
            Policy::RoundRobin => swrr(set, live, ex),
            Policy::ConsistentHash => match opts.hash_key {
                Some(key) => {
                    return ring_pick(set, &self.addr_text, self.opts.hash_replicas, live, ex, key);
                }
                None => (0..DRAWS)
                    .map(|_| set.members[set.weighted_pos(rng)] as usize)
                    .find(|&i| usable(live, ex, i)),
            },
        };
        match found {
            Some(i) => Pick::Provider(i),
            None => exact(set, live, rng, opts),
        }
    }
}

fn placeholder() -> CandidateSet {
    CandidateSet {
        bits: BitSet::new(0),
        members: Vec::new(),
        weights: Vec::new(),
        cum: Vec::new(),
        total: 0,
        uniform: true,
        gs: 1,
        group_cum: Vec::new(),
        next_refresh_ms: u64::MAX,
        swrr: None,
        ring: None,
    }
}

/// Power of two choices: two distinct random members, the lower cost wins; unavailable ones are skipped.
fn p2c<R: Rng + ?Sized>(
    set: &CandidateSet,
    live: &LiveState,
    rng: &mut R,
    opts: &PickOptions<'_>,
) -> Option<usize> {
    let n = set.members.len() as u64;
    let ex = opts.exclude;
    if n == 1 {
        let i = set.members[0] as usize;
        return usable(live, ex, i).then_some(i);
    }
    for _ in 0..DRAWS {
        let a = below(rng, n);
        let mut b = below(rng, n - 1);
        if b >= a {
            b += 1;
        }
        let (a, b) = (set.members[a as usize] as usize, set.members[b as usize] as usize);
        match (usable(live, ex, a), usable(live, ex, b)) {
            (true, true) => {
                return Some(if live.cost(b, opts.now_ns) < live.cost(a, opts.now_ns) {
                    b
                } else {
                    a
                });
            }
            (true, false) => return Some(a),
            (false, true) => return Some(b),
            (false, false) => {}
        }
    }
    None
}

/// The member of `range` minimising `key` (ties by weighted random, reservoir style), if any is usable.
fn scan_min<R: Rng + ?Sized>(
    set: &CandidateSet,
    range: std::ops::Range<usize>,
    live: &LiveState,
    rng: &mut R,
    ex: &[usize],
    key: impl Fn(&Slot) -> f64,
) -> Option<usize> {
    let mut best: Option<(f64, usize)> = None;
    let mut tie_weight = 0u64;
    for pos in range {
        let i = set.members[pos] as usize;
        if !usable(live, ex, i) {
            continue;
        }
        let k = key(&live.slots[i]);
        let w = u64::from(set.weights[pos]).max(1);
        match best {
            Some((bk, _)) if k > bk => {}
            Some((bk, _)) if k == bk => {
                tie_weight += w;
                if below(rng, tie_weight) < w {
                    best = Some((k, i));
                }
            }
            _ => {
                best = Some((k, i));
                tie_weight = w;
            }
        }
    }
    best.map(|(_, i)| i)
}

/// Exact scan on small sets; on large ones, a weighted-random group of `gs` members (vivo's grouped pick).
fn grouped_scan<R: Rng + ?Sized>(
    set: &CandidateSet,
    live: &LiveState,
    rng: &mut R,
    ex: &[usize],
    key: impl Fn(&Slot) -> f64 + Copy,
) -> Option<usize> {
    let n = set.members.len();
    if set.gs >= n {
        return scan_min(set, 0..n, live, rng, ex, key);
    }
    for _ in 0..DRAWS {
        let g = set.weighted_group(rng);
        let start = g * set.gs;
        if let Some(i) = scan_min(set, start..(start + set.gs).min(n), live, rng, ex, key) {
            return Some(i);
        }
    }
    None
}

/// Smooth weighted round robin, two-level on large sets: over groups of about sqrt(n) members by their
/// total weight, then within the chosen group.
fn swrr(set: &mut CandidateSet, live: &LiveState, ex: &[usize]) -> Option<usize> {
    let n = set.members.len();
    if set.swrr.is_none() {
        let gs = if set.gs >= n {
            n
        } else {
            (n as f64).sqrt().ceil() as usize
        };
        let gw: Vec<i64> = set
            .weights
            .chunks(gs)
            .map(|c| c.iter().map(|&w| i64::from(w)).sum())
            .collect();
        set.swrr = Some(Swrr {
            gs,
            gcur: vec![0; gw.len()],
            gw,
            cur: vec![0; n],
        });
    }
    let st = set.swrr.as_mut()?;
    let total: i64 = st.gw.iter().sum();
    for _ in 0..DRAWS {
        let mut g = 0;
        for k in 0..st.gw.len() {
            st.gcur[k] += st.gw[k];
            if st.gcur[k] > st.gcur[g] {
                g = k;
            }
        }
        st.gcur[g] -= total;
        let start = g * st.gs;
        let end = (start + st.gs).min(n);
        let mut best = start;
        for pos in start..end {
            st.cur[pos] += i64::from(set.weights[pos]);
            if st.cur[pos] > st.cur[best] {
                best = pos;
            }
        }
        st.cur[best] -= st.gw[g];
        let i = set.members[best] as usize;
        if usable(live, ex, i) {
            return Some(i);
        }
    }
    None
}

fn ring_pick(
    set: &mut CandidateSet,
    addr_text: &[String],
    replicas: u32,
    live: &LiveState,
    ex: &[usize],
    key: &[u8],
) -> Pick {
    let n = set.members.len();
    if set.ring.is_none() {
        let reps = u64::from(replicas.max(1)).min(((1usize << 20) / n).max(1) as u64);
        let mut pts: Vec<(u64, u32)> = Vec::with_capacity(n * reps as usize);
        for (pos, &m) in set.members.iter().enumerate() {
            for r in 0..reps {
                pts.push((hash64(addr_text[m as usize].as_bytes(), r), pos as u32));
            }
        }
        pts.sort_unstable();
        set.ring = Some(Ring {
            points: pts.iter().map(|p| p.0).collect(),
            owners: pts.iter().map(|p| p.1).collect(),
        });
    }
    let Some(ring) = set.ring.as_ref() else {
        return Pick::NoProvider;
    };
    let h = hash64(key, 0x6b65_7461_6d61);
    let start = ring.points.partition_point(|&p| p < h);
    let len = ring.points.len();
    // Walk clockwise to the first usable owner; after a short walk, make sure one exists at all.
    for step in 0..len {
        if step == 64 && !any_available(set, live, ex) {
            return Pick::AllBusy;
        }
        let i = set.members[ring.owners[(start + step) % len] as usize] as usize;
        if usable(live, ex, i) {
            return Pick::Provider(i);
        }
    }
    Pick::AllBusy
}

fn any_available(set: &CandidateSet, live: &LiveState, ex: &[usize]) -> bool {
    available(set, live, ex).next().is_some()
}

/// Usable members by a word-wise `candidates AND NOT busy` pass, as (member position, provider index).
fn available<'a>(set: &'a CandidateSet, live: &'a LiveState, ex: &'a [usize]) -> Available<'a> {
    Available {
        cand: set.bits.words(),
        busy: live.busy.words(),
        ex,
        wi: 0,
        base: 0,
        word: set.bits.words().first().copied().unwrap_or(0)
            & !live.busy.words().first().copied().unwrap_or(0),
    }
}

struct Available<'a> {
    cand: &'a [u64],
    busy: &'a [u64],
    ex: &'a [usize],
    wi: usize,
    /// Candidates in words before `wi` (member position of the word's first candidate).
    base: usize,
    /// Remaining usable bits of word `wi`.
    word: u64,
}

impl Iterator for Available<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        loop {
            while self.word == 0 {
                self.base += self.cand.get(self.wi)?.count_ones() as usize;
                self.wi += 1;
                self.word = self.cand.get(self.wi)? & !self.busy.get(self.wi).copied().unwrap_or(0);
            }
            let bit = self.word.trailing_zeros();
            self.word &= self.word - 1;
            let i = self.wi * 64 + bit as usize;
            if self.ex.contains(&i) {
                continue;
            }
            let below = self.cand[self.wi] & ((1u64 << bit) - 1);
            return Some((self.base + below.count_ones() as usize, i));
        }
    }
}

/// The exact fallback when the fast draws found nobody: the policy applied to the available members only.
fn exact<R: Rng + ?Sized>(set: &CandidateSet, live: &LiveState, rng: &mut R, opts: &PickOptions<'_>) -> Pick {
    let ex = opts.exclude;
    let pick = match opts.policy {
        Policy::Adaptive => {
            // Reservoir-sample two available members, keep the cheaper.
            let mut seen = 0u64;
            let mut two: [Option<usize>; 2] = [None, None];
            for (_, i) in available(set, live, ex) {
                seen += 1;
                if seen <= 2 {
                    two[seen as usize - 1] = Some(i);
                } else {
                    let r = below(rng, seen);
                    if r < 2 {
                        two[r as usize] = Some(i);
                    }
                }
            }
            match two {
                [Some(a), Some(b)] => Some(if live.cost(b, opts.now_ns) < live.cost(a, opts.now_ns) {
                    b
                } else {
                    a
                }),
                [a, _] => a,
            }
        }
        Policy::LeastActive | Policy::ShortestResponse => {
            let key = |s: &Slot| match opts.policy {
                Policy::LeastActive => f64::from(s.inflight),
                _ => f64::from(s.ok_ns) * (f64::from(s.inflight) + 1.0),
            };
            let mut best: Option<(f64, usize)> = None;
            let mut tie = 0u64;
            for (pos, i) in available(set, live, ex) {
                let k = key(&live.slots[i]);
                let w = u64::from(set.weights[pos]).max(1);
                match best {
                    Some((bk, _)) if k > bk => {}
                    Some((bk, _)) if k == bk => {
                        tie += w;
                        if below(rng, tie) < w {
                            best = Some((k, i));
                        }
                    }
                    _ => {
                        best = Some((k, i));
                        tie = w;
                    }
                }
            }
            best.map(|b| b.1)
        }
        // Weighted random among the available ones (round robin and hashing land here only when their
        // own choice was unavailable).
        _ => {
            let total: u64 = available(set, live, ex)
                .map(|(pos, _)| u64::from(set.weights[pos]))
                .sum();
            if total == 0 {
                None
            } else {
                let mut r = below(rng, total);
                let mut out = None;
                for (pos, i) in available(set, live, ex) {
                    let w = u64::from(set.weights[pos]);
                    if r < w {
                        out = Some(i);
                        break;
                    }
                    r -= w;
                }
                out
            }
        }
    };
    match pick {
        Some(i) => Pick::Provider(i),
        None => Pick::AllBusy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::RuleSet;
    use crate::table::{ConsumerInfo, Provider, TableOptions};

    fn table(weights: &[u32], caps: &[Option<u32>]) -> RouteTable {
        let ps = weights
            .iter()
            .zip(caps)
            .enumerate()
            .map(|(i, (&w, cap))| Provider {
                max_concurrency: *cap,
                ..Provider::new(format!("10.0.0.{}:1", i + 1).parse().unwrap()).with_weight(w)
            })
            .collect();
        RouteTable::build(
            1,
            ps,
            &RuleSet::default(),
            &ConsumerInfo::default(),
            TableOptions::default(),
        )
    }

    fn opts(policy: Policy) -> PickOptions<'static> {
        PickOptions {
            policy,
            now_ns: 1_000_000_000,
            ..Default::default()
        }
    }

    fn counts(t: &mut RouteTable, live: &LiveState, policy: Policy, n: usize) -> Vec<usize> {
        let mut rng = XorShift64::new(7);
        let mut c = vec![0; t.len()];
        let r = t.route(&Request::new("m"));
        for _ in 0..n {
            match t.pick(r, live, &mut rng, &opts(policy)) {
                Pick::Provider(i) => c[i] += 1,
                other => panic!("{other:?}"),
            }
        }
        c
    }

    #[test]
    fn weighted_policies_follow_weights() {
        let mut t = table(&[100, 200, 300], &[None; 3]);
        let live = LiveState::new(&t);
        let c = counts(&mut t, &live, Policy::WeightedRandom, 60_000);
        for (got, want) in c.iter().zip([10_000, 20_000, 30_000]) {
            assert!((*got as f64 - want as f64).abs() < want as f64 * 0.05, "{c:?}");
        }
        assert_eq!(counts(&mut t, &live, Policy::RoundRobin, 6), [1, 2, 3]);
        let mut rng = XorShift64::new(1);
        let r = t.route(&Request::new("m"));
        let seq: Vec<Pick> = (0..6)
            .map(|_| t.pick(r, &live, &mut rng, &opts(Policy::RoundRobin)))
            .collect();
        // nginx's smooth sequence for 1:2:3 is c b a c b c (as indices 2 1 0 2 1 2)... starting state
        // continues from the previous 6 picks, which returned the state to zero.
        let seq: Vec<usize> = seq
            .into_iter()
            .map(|p| match p {
                Pick::Provider(i) => i,
                _ => 9,
            })
            .collect();
        assert_eq!(seq, [2, 1, 0, 2, 1, 2]);
    }

    #[test]
    fn never_picks_a_capped_or_down_provider() {
        let mut t = table(&[100, 100, 100], &[Some(1), Some(2), None]);
        let mut live = LiveState::new(&t);
        live.on_send(0, 0);
        live.set_down(2, true);
        for p in [
            Policy::Adaptive,
            Policy::WeightedRandom,
            Policy::RoundRobin,
            Policy::LeastActive,
            Policy::ShortestResponse,
        ] {
            let c = counts(&mut t, &live, p, 200);
            assert_eq!(c, [0, 200, 0], "{p:?}");
        }
        live.on_send(1, 0);
        live.on_send(1, 0);
        let r = t.route(&Request::new("m"));
        let mut rng = XorShift64::new(3);
        for p in [Policy::Adaptive, Policy::WeightedRandom, Policy::ConsistentHash] {
            let o = PickOptions {
                hash_key: Some(b"k"),
                ..opts(p)
            };
            assert_eq!(t.pick(r, &live, &mut rng, &o), Pick::AllBusy, "{p:?}");
        }
        live.on_answer(1, 10, 5, true);
        let o = PickOptions {
            exclude: &[1],
            ..opts(Policy::Adaptive)
        };
        assert_eq!(t.pick(r, &live, &mut rng, &o), Pick::AllBusy, "excluded");
        assert_eq!(
            t.pick(r, &live, &mut rng, &opts(Policy::Adaptive)),
            Pick::Provider(1)
        );
    }

    #[test]
    fn adaptive_prefers_fast_and_idle() {
        let mut t = table(&[1, 1], &[None, None]);
        let mut live = LiveState::new(&t);
        let now = 1_000_000_000;
        live.on_send(0, now);
        live.on_answer(0, now, 50_000_000, true);
        live.on_send(1, now);
        live.on_answer(1, now, 5_000_000, true);
        assert_eq!(counts(&mut t, &live, Policy::Adaptive, 100), [0, 100]);
        // 10 calls in flight to the fast one make it cost more than the idle slow one
        for _ in 0..10 {
            live.on_send(1, now);
        }
        assert_eq!(counts(&mut t, &live, Policy::Adaptive, 100), [100, 0]);
        // a provider with calls in flight and no answer yet is avoided
        let mut t = table(&[1, 1], &[None, None]);
        let mut live = LiveState::new(&t);
        live.on_send(0, now);
        assert_eq!(counts(&mut t, &live, Policy::Adaptive, 50), [0, 50]);
    }

    #[test]
    fn adaptive_moves_away_from_a_provider_whose_calls_queue() {
        // Both answer in 50 ms when not loaded. Provider 0 is past its capacity knee: its latest answers
        // took 60 ms, with 100 calls on it; provider 1 still answers in 50 ms with 150 on it. Plain
        // latency x load would prefer 0 (60 x 101 < 50 x 151); 0's queueing (60 / 50 = 1.2, cubed 1.73)
        // makes it cost more.
        let mut t = table(&[1, 1], &[None, None]);
        let mut live = LiveState::new(&t);
        let now = 1_000_000_000;
        for (idx, lat_ms, inflight) in [(0usize, 60u64, 100), (1, 50, 150)] {
            for _ in 0..10 {
                live.on_send(idx, now);
                live.on_answer(idx, now, 50_000_000, true);
            }
            live.on_send(idx, now);
            live.on_answer(idx, now, lat_ms * 1_000_000, true);
            for _ in 0..inflight {
                live.on_send(idx, now);
            }
        }
        assert_eq!(counts(&mut t, &live, Policy::Adaptive, 100), [0, 100]);
        // A provider that is slow by nature (floor 60 ms) is not punished for it: 60 x 101 < 50 x 151.
        let mut t = table(&[1, 1], &[None, None]);
        let mut live = LiveState::new(&t);
        for (idx, lat_ms, inflight) in [(0usize, 60u64, 100), (1, 50, 150)] {
            live.on_send(idx, now);
            live.on_answer(idx, now, lat_ms * 1_000_000, true);
            for _ in 0..inflight {
                live.on_send(idx, now);
            }
        }
        assert_eq!(counts(&mut t, &live, Policy::Adaptive, 100), [100, 0]);
    }

    #[test]
    fn least_active_and_shortest_response() {
        let mut t = table(&[100, 100, 100], &[None; 3]);
        let mut live = LiveState::new(&t);
        live.on_send(0, 0);
        live.on_send(2, 0);
        assert_eq!(counts(&mut t, &live, Policy::LeastActive, 50), [0, 50, 0]);
        for (i, l) in [(0, 10), (1, 90), (2, 30)] {
            live.on_send(i, 0);
            live.on_answer(i, 1, l, true);
        }
        // estimates: 10*2, 90*1, 30*2
        assert_eq!(counts(&mut t, &live, Policy::ShortestResponse, 50), [50, 0, 0]);
    }

    #[test]
    fn warm_up_scales_weights_and_refreshes() {
        let ps = vec![
            Provider::new("10.0.0.1:1".parse().unwrap()),
            Provider::new("10.0.0.2:1".parse().unwrap())
                .with_registered_at_ms(0)
                .with_param("warmup", "100000"),
        ];
        let mut t = RouteTable::build(
            1,
            ps,
            &RuleSet::default(),
            &ConsumerInfo::default(),
            TableOptions::default(),
        );
        let live = LiveState::new(&t);
        let r = t.route(&Request::new("m"));
        let mut rng = XorShift64::new(5);
        let share = |t: &mut RouteTable, rng: &mut XorShift64, now_ms: u64| {
            let o = PickOptions {
                policy: Policy::WeightedRandom,
                now_ns: now_ms * 1_000_000,
                ..Default::default()
            };
            let n = 20_000;
            let c = (0..n)
                .filter(|_| t.pick(r, &live, rng, &o) == Pick::Provider(1))
                .count();
            c as f64 / n as f64
        };
        // 25 s of 100 s: weight 25 vs 100 -> 20 %
        let s = share(&mut t, &mut rng, 25_000);
        assert!((s - 0.2).abs() < 0.02, "{s}");
        // within the refresh interval the weights stay
        let s = share(&mut t, &mut rng, 25_500);
        assert!((s - 0.2).abs() < 0.02, "{s}");
        let s = share(&mut t, &mut rng, 200_000);
        assert!((s - 0.5).abs() < 0.02, "{s}");
        assert_eq!(
            t.sets[r.0 as usize].next_refresh_ms,
            u64::MAX,
            "warm: no more refreshes"
        );
        assert_eq!(warm_weight(100, Some((1000, 10_000)), 1000), (1, true));
        assert_eq!(warm_weight(100, Some((1000, 10_000)), 6000), (50, true));
    }

    #[test]
    fn consistent_hash_is_sticky_and_moves_on_when_busy() {
        let mut t = table(&[100; 10], &[Some(1); 10]);
        let mut live = LiveState::new(&t);
        let r = t.route(&Request::new("m"));
        let mut rng = XorShift64::new(1);
        let pick = |t: &mut RouteTable, live: &LiveState, rng: &mut XorShift64, k: &[u8]| {
            let o = PickOptions {
                hash_key: Some(k),
                ..opts(Policy::ConsistentHash)
            };
            t.pick(r, live, rng, &o)
        };
        let a = pick(&mut t, &live, &mut rng, b"user-1");
        assert_eq!(pick(&mut t, &live, &mut rng, b"user-1"), a);
        let spread: std::collections::HashSet<_> = (0..200)
            .map(|k| pick(&mut t, &live, &mut rng, format!("k{k}").as_bytes()))
            .collect();
        assert!(spread.len() >= 8, "{spread:?}");
        let Pick::Provider(i) = a else { panic!() };
        live.on_send(i, 0);
        let b = pick(&mut t, &live, &mut rng, b"user-1");
        assert!(matches!(b, Pick::Provider(j) if j != i));
    }

    #[test]
    fn slots_stay_compact() {
        assert_eq!(std::mem::size_of::<Slot>(), 28);
    }

    #[test]
    fn carry_over_keeps_state_by_address() {
        let t1 = table(&[1, 1], &[None, None]);
        let mut live = LiveState::new(&t1);
        live.on_send(1, 0);
        let ps = vec![
            Provider::new("10.0.0.2:1".parse().unwrap()),
            Provider::new("10.0.0.9:1".parse().unwrap()),
        ];
        let t2 = RouteTable::build(
            2,
            ps,
            &RuleSet::default(),
            &ConsumerInfo::default(),
            TableOptions::default(),
        );
        let l2 = live.carry_over(&t1, &t2);
        assert_eq!((l2.inflight(0), l2.inflight(1), l2.epoch()), (1, 0, 2));
    }

    /// Regression: `carry_over` dropped the latency floor, so after every snapshot change the adaptive
    /// balancer compared a queueing provider by plain latency x load again.
    #[test]
    fn carry_over_keeps_the_latency_floor() {
        // As in `adaptive_moves_away_from_a_provider_whose_calls_queue`: both answer in 50 ms unloaded;
        // provider 0 now takes 60 ms with 100 in flight (queueing), provider 1 50 ms with 150.
        let t1 = table(&[1, 1], &[None, None]);
        let mut live = LiveState::new(&t1);
        let now = 1_000_000_000;
        for (idx, lat_ms, inflight) in [(0usize, 60u64, 100), (1, 50, 150)] {
            for _ in 0..10 {
                live.on_send(idx, now);
                live.on_answer(idx, now, 50_000_000, true);
            }
            live.on_send(idx, now);
            live.on_answer(idx, now, lat_ms * 1_000_000, true);
            for _ in 0..inflight {
                live.on_send(idx, now);
            }
        }
        // The registry changes: same providers, listed the other way round.
        let ps = vec![
            Provider::new("10.0.0.2:1".parse().unwrap()),
            Provider::new("10.0.0.1:1".parse().unwrap()),
        ];
        let mut t2 = RouteTable::build(
            2,
            ps,
            &RuleSet::default(),
            &ConsumerInfo::default(),
            TableOptions::default(),
        );
        let l2 = live.carry_over(&t1, &t2);
        assert_eq!(l2.slots[1].floor_ns, live.slots[0].floor_ns);
        assert_eq!(l2.slots[0].ok_ns, live.slots[1].ok_ns);
        // The queueing provider (now index 1) is still avoided.
        assert_eq!(counts(&mut t2, &l2, Policy::Adaptive, 100), [100, 0]);
    }
}
