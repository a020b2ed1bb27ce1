//! Balancers over a route's candidate set, and the live per-provider state they read.
//!
//! Every policy first makes a few cheap choices (random members, a prefix-sum binary search, one group, a
//! round-robin step) and checks the chosen provider against [`LiveState`] (down, excluded, at its
//! in-flight cap). Only when a few in a row hit unavailable providers does it fall back to an exact pass
//! over the candidates that are available (`candidates AND NOT busy`, word by word); consistent hashing
//! instead walks its ring and checks after 64 steps that anyone is available at all. [`Pick::AllBusy`]
//! therefore means exactly that every candidate is down, excluded or at its cap.
//!
//! One balancer per file: [`adaptive`] (P2C over peak EWMA), [`weighted_random`], [`round_robin`] (smooth
//! WRR), [`least_active`] and [`shortest_response`] (both a lowest-key scan, [`lowest`]),
//! [`consistent_hash`]; [`warmup`] scales the weights they use, [`candidates`] holds what they precompute
//! per route, [`available`] the exact `candidates AND NOT busy` pass and [`live`] the state they read.

mod adaptive;
mod available;
mod candidates;
mod consistent_hash;
mod least_active;
mod live;
mod lowest;
mod round_robin;
mod shortest_response;
mod warmup;
mod weight_tree;
mod weighted_random;

pub(crate) use candidates::CandidateSet;
pub use live::{LiveOptions, LiveState};

use available::available;

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
    /// Power of two choices over peak-EWMA latency x (in-flight + 1) (Finagle's P2C + peak EWMA), the
    /// latency weighted by how far it is inflated above the provider's own floor; ignores weights. The
    /// default here; the consumer agent's `auto` balancer uses it when all registered weights are equal.
    #[default]
    Adaptive,
    /// Random in proportion to (warm-up adjusted) weights.
    WeightedRandom,
    /// Smooth weighted round robin (nginx / Dubbo); grouped (about sqrt(n) groups) on large sets. The
    /// consumer agent's `auto` balancer uses it when the registered weights differ.
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

/// Fast draws a balancer tries before the exact pass over the available members.
const DRAWS: usize = 4;

/// True when `idx` may take this call: not down, below its cap, not excluded.
#[inline]
fn usable(live: &LiveState, exclude: &[usize], idx: usize) -> bool {
    live.is_available(idx) && !exclude.contains(&idx)
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
        debug_assert_eq!(live.len(), self.slots(), "LiveState of another table");
        let now_ms = opts.now_ns / 1_000_000;
        self.clock_ms = now_ms;
        let set_idx = route.0 as usize;
        if self.sets[set_idx].next_refresh_ms <= now_ms {
            let mut set = std::mem::replace(&mut self.sets[set_idx], CandidateSet::empty());
            set.refresh_warm_up(self, now_ms);
            self.sets[set_idx] = set;
        }
        let set = &mut self.sets[set_idx];
        if set.members.is_empty() {
            return Pick::NoProvider;
        }
        let ex = opts.exclude;
        let found = match opts.policy {
            Policy::Adaptive => adaptive::pick(set, live, rng, opts),
            Policy::WeightedRandom => weighted_random::pick(set, live, rng, ex),
            Policy::LeastActive => lowest::grouped(set, live, rng, ex, least_active::key),
            Policy::ShortestResponse => lowest::grouped(set, live, rng, ex, shortest_response::key),
            Policy::RoundRobin => round_robin::pick(set, live, ex),
            Policy::ConsistentHash => match opts.hash_key {
                Some(key) => {
                    return consistent_hash::pick(
                        set,
                        &self.addr_text,
                        self.opts.hash_replicas,
                        live,
                        ex,
                        key,
                    );
                }
                None => weighted_random::pick(set, live, rng, ex),
            },
        };
        match found {
            Some(i) => Pick::Provider(i),
            None => exact(set, live, rng, opts),
        }
    }
}

/// The exact fallback when the fast draws found nobody: the policy applied to the available members only.
fn exact<R: Rng + ?Sized>(set: &CandidateSet, live: &LiveState, rng: &mut R, opts: &PickOptions<'_>) -> Pick {
    let ex = opts.exclude;
    let members = available(set, live, ex);
    let pick = match opts.policy {
        Policy::Adaptive => {
            // Members that weigh more than 0 first; the ones being drained only when no other is left.
            let weighed = available(set, live, ex).filter(|&(pos, _)| set.has_share(pos));
            adaptive::cheaper_of_two(live, rng, weighed, opts.now_ns)
                .or_else(|| adaptive::cheaper_of_two(live, rng, members, opts.now_ns))
        }
        Policy::LeastActive => lowest::lowest(set, live, rng, members, least_active::key),
        Policy::ShortestResponse => lowest::lowest(set, live, rng, members, shortest_response::key),
        // Round robin and hashing land here only when their own choice was unavailable.
        Policy::WeightedRandom | Policy::RoundRobin | Policy::ConsistentHash => {
            weighted_random::exact(set, live, rng, ex)
        }
    };
    match pick {
        Some(i) => Pick::Provider(i),
        None => Pick::AllBusy,
    }
}

/// What the tests of every balancer build on.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::ruleset::RuleSet;
    use crate::table::{ConsumerInfo, Provider, TableOptions};

    /// A table of providers 10.0.0.1:1, 10.0.0.2:1, ... with these weights and caps, and its fresh live
    /// state.
    pub(crate) fn table_and_live(weights: &[u32], caps: &[Option<u32>]) -> (RouteTable, LiveState) {
        let ps = weights
            .iter()
            .zip(caps)
            .enumerate()
            .map(|(i, (&w, cap))| Provider {
                max_concurrency: *cap,
                ..Provider::new(format!("10.0.0.{}:1", i + 1).parse().unwrap()).with_weight(w)
            })
            .collect();
        let t = build(1, ps);
        let live = LiveState::new(&t);
        (t, live)
    }

    /// A table of `providers` at `epoch`, with no rules.
    pub(crate) fn build(epoch: u64, providers: Vec<Provider>) -> RouteTable {
        RouteTable::build(
            epoch,
            providers,
            &RuleSet::default(),
            &ConsumerInfo::default(),
            TableOptions::default(),
        )
    }

    pub(crate) fn opts(policy: Policy) -> PickOptions<'static> {
        PickOptions {
            policy,
            now_ns: 1_000_000_000,
            ..Default::default()
        }
    }

    /// Two providers answering in 50 ms when not loaded (`unloaded` such answers each), whose latest
    /// answers took 60 ms with 100 calls in flight (provider 0) and 50 ms with 150 in flight (provider 1).
    /// With unloaded answers seen, 0 is queueing (60 ms over a 50 ms floor); without, it is only slower.
    pub(crate) fn sixty_ms_at_100_and_fifty_at_150(live: &mut LiveState, unloaded: usize) {
        let now = 1_000_000_000;
        for (idx, lat_ms, inflight) in [(0usize, 60u64, 100), (1, 50, 150)] {
            for _ in 0..unloaded {
                live.on_send(idx, now);
                live.on_answer(idx, now, 50_000_000, true);
            }
            live.on_send(idx, now);
            live.on_answer(idx, now, lat_ms * 1_000_000, true);
            for _ in 0..inflight {
                live.on_send(idx, now);
            }
        }
    }

    /// The providers `n` picks went to, in order (the route of method `m`; seed 7).
    pub(crate) fn picks(t: &mut RouteTable, live: &LiveState, policy: Policy, n: usize) -> Vec<usize> {
        let mut rng = XorShift64::new(7);
        let r = t.route(&Request::new("m"));
        (0..n)
            .map(|_| match t.pick(r, live, &mut rng, &opts(policy)) {
                Pick::Provider(i) => i,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    /// How many of `n` picks went to each provider.
    pub(crate) fn counts(t: &mut RouteTable, live: &LiveState, policy: Policy, n: usize) -> Vec<usize> {
        let mut c = vec![0; t.len()];
        for i in picks(t, live, policy, n) {
            c[i] += 1;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{counts, opts, table_and_live};
    use super::*;

    #[test]
    fn never_picks_a_capped_or_down_provider() {
        let (mut t, mut live) = table_and_live(&[100, 100, 100], &[Some(1), Some(2), None]);
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
}
