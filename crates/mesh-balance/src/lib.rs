//! Pure routing and load balancing over a service's providers: no IO, no threads, no clock and no RNG of
//! its own (time and randomness are arguments), so every decision is reproducible in tests.
//!
//! Two APIs live side by side:
//!
//! - [`least_loaded`] over [`Load`]s: weighted least-active by a linear scan (what the agent uses today);
//! - the route table: Dubbo's tag and condition routers precomputed per snapshot epoch as bitsets, a route
//!   cache, and balancers whose cost does not grow with the number of providers.
//!
//! # Using the route table
//!
//! Per snapshot epoch and service (on each shard; a table is single-threaded and cheap to clone):
//!
//! ```
//! use mesh_balance::{ConsumerInfo, LiveState, Provider, RouteTable, RuleSet, TableOptions};
//! let rules = RuleSet::from_json(r#"{"conditions":["method = find* => version = 2.*"]}"#)?;
//! let providers = vec![
//!     Provider::new("10.0.0.1:30000".parse()?).with_weight(100).with_param("version", "2.0"),
//!     Provider::new("10.0.0.2:30000".parse()?).with_weight(200).with_max_concurrency(100),
//! ];
//! let consumer = ConsumerInfo { host: "10.0.9.9".into(), ..Default::default() };
//! let mut table = RouteTable::build(7, providers, &rules, &consumer, TableOptions::default());
//! let mut live = LiveState::new(&table); // or old_live.carry_over(&old_table, &table)
//! # let _ = &mut live;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Per request:
//!
//! ```
//! # use mesh_balance::*;
//! # let mut table = RouteTable::build(1, vec![Provider::new("10.0.0.1:1".parse().unwrap())],
//! #     &RuleSet::default(), &ConsumerInfo::default(), TableOptions::default());
//! # let mut live = LiveState::new(&table);
//! # let (now_ns, latency_ns) = (1_000_000_000u64, 2_000_000u64);
//! let mut rng = XorShift64::new(42); // one per shard
//! let req = Request { tag: Some("gray"), ..Request::new("findUser") };
//! let opts = PickOptions { policy: Policy::Adaptive, now_ns, ..Default::default() };
//! match table.route_and_pick(&req, &live, &mut rng, &opts) {
//!     Pick::Provider(i) => {
//!         let addr = table.providers()[i].addr;
//!         live.on_send(i, now_ns);
//!         // ... later, when the answer (or an error / timeout) arrives:
//!         live.on_answer(i, now_ns + latency_ns, latency_ns, true);
//!         # let _ = addr;
//!     }
//!     Pick::AllBusy => { /* every candidate at its cap or down: queue */ }
//!     Pick::NoProvider => { /* the routers left nobody: 404/503 */ }
//! }
//! ```
//!
//! Answers that arrive after an epoch change map back by address ([`RouteTable::index_of`]). The in-flight
//! cap of each provider comes from `Provider::max_concurrency` (the caller divides a provider's cap between
//! its shards); [`LiveState::set_down`] takes a provider out while its pool backs off.
//!
//! Cost on the request path: the tag lookup, the request-side matchers of the condition rules (rules that
//! only look at the method are cached per method name), one hash lookup of (tag, matched rules) -> cached
//! candidate set, then an O(1) or O(log n) pick. A new (tag, matched rules) combination costs one AND of
//! cached bitsets (O(n/64) words) the first time.
//!
//! # Rule document
//!
//! One JSON document per service (from an etcd key or from config), parsed by [`RuleSet::from_json`]:
//!
//! ```json
//! {
//!   "tag": {
//!     "enabled": true,
//!     "force": false,
//!     "tags": [ { "name": "gray", "addresses": ["127.0.0.1:20880", "10.1.*.*"] } ]
//!   },
//!   "conditions": [
//!     "=> host != 172.22.3.91",
//!     { "rule": "method = find* => host != 10.1.*", "force": false, "priority": 0, "enabled": true }
//!   ],
//!   "force": false,
//!   "priority": 0
//! }
//! ```
//!
//! - `tag` (optional): Dubbo's dynamic tag rule; `force` = a tag whose address group matches nobody gets
//!   nobody (instead of falling back); `enabled: false` = static tags only. The semantics, including the
//!   fallbacks, are in the [`tag`] module. Addresses: see [`tag::AddressPattern`].
//! - `conditions`: Dubbo condition rules (syntax in the [`rule`] module), as strings (taking the
//!   document-level `force` / `priority` / `enabled`, defaults false / 0 / true) or objects. Rules run in
//!   ascending `priority`, then document order (Dubbo sorts routers by ascending priority), each on the
//!   previous one's result: a matching rule keeps the providers its then part accepts; when that leaves
//!   nobody, a `force: false` rule is ignored and a `force: true` rule leaves nobody. A then part of `false`
//!   (or blank) is a blacklist. At most [`MAX_CONDITION_RULES`] enabled rules.
//! - Dubbo's metadata keys `key`, `scope`, `runtime`, `configVersion` are accepted and ignored; any other
//!   unknown key is an error. Every error says which rule and which token ([`RuleError`]).
//!
//! The tag router runs first, on the whole provider list; the condition rules then run on its result.
//! When-part keys: `method`, `arguments[i]`, `attachments[name]` (from the [`Request`]), and the consumer's
//! `host`, `port`, `address`, `application` or any other parameter ([`ConsumerInfo`], folded when the table
//! is built). Then-part keys: the provider's `host`, `port`, `address`, `tag` and any parameter.

pub mod bitset;
pub mod hash;
pub mod health;
pub mod outcome;
mod pick;
pub mod rule;
mod ruleset;
mod table;
pub mod tag;

pub use bitset::BitSet;
pub use pick::{LiveOptions, LiveState, Pick, PickOptions, Policy, Rng, XorShift64};
pub use rule::{ConditionRule, ParseError};
pub use ruleset::{
    CompiledRule, ConditionEntry, ConditionSpec, RuleDocument, RuleError, RuleSet, MAX_CONDITION_RULES,
};
pub use table::{ConsumerInfo, Provider, Request, RouteId, RouteTable, TableOptions};

/// What the balancer knows about one candidate at the moment of a pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Capacity weight (e.g. small:medium:large = 100:200:300). Zero means "do not send here".
    pub weight: u32,
    /// Calls sent and not yet answered.
    pub inflight: u32,
    /// The provider's thread cap, if known: a candidate at its cap would reject the call.
    pub max_concurrency: Option<u32>,
}

impl Load {
    fn available(&self) -> bool {
        self.weight > 0 && self.max_concurrency.is_none_or(|cap| self.inflight < cap)
    }
}

/// Weighted least-active pick: the available candidate minimising `(inflight + 1) / weight`; ties go to the
/// first one at or after `start` (pass a rotating counter so equal candidates share the load).
///
/// Returns `None` when no candidate is available (all at their cap, or none at all): the caller queues or
/// fails fast, it never sends a call that is known to be rejected.
pub fn least_loaded(loads: &[Load], start: usize) -> Option<usize> {
    let n = loads.len();
    let mut best: Option<usize> = None;
    for k in 0..n {
        let i = (start + k) % n;
        let c = &loads[i];
        if !c.available() {
            continue;
        }
        best = match best {
            Some(b) if !lighter(c, &loads[b]) => Some(b),
            _ => Some(i),
        };
    }
    best
}

/// `(a.inflight + 1) / a.weight < (b.inflight + 1) / b.weight`, in integers.
fn lighter(a: &Load, b: &Load) -> bool {
    (u64::from(a.inflight) + 1) * u64::from(b.weight) < (u64::from(b.inflight) + 1) * u64::from(a.weight)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(weight: u32, inflight: u32, cap: Option<u32>) -> Load {
        Load {
            weight,
            inflight,
            max_concurrency: cap,
        }
    }

    #[test]
    fn prefers_least_loaded_relative_to_weight() {
        // 1:2:3 weights with 0/1/2 in flight: the next call would load each equally, so `start` decides.
        let loads = [l(100, 0, None), l(200, 1, None), l(300, 2, None)];
        assert_eq!(least_loaded(&loads, 0), Some(0));
        assert_eq!(least_loaded(&loads, 1), Some(1));
        assert_eq!(least_loaded(&loads, 2), Some(2));
        let loads = [l(100, 10, None), l(200, 10, None), l(300, 30, None)];
        assert_eq!(least_loaded(&loads, 0), Some(1));
    }

    #[test]
    fn never_picks_a_full_or_zero_weight_candidate() {
        let loads = [l(100, 200, Some(200)), l(0, 0, None), l(300, 5, Some(6))];
        assert_eq!(least_loaded(&loads, 0), Some(2));
        let full = [l(100, 200, Some(200)), l(300, 6, Some(6))];
        assert_eq!(least_loaded(&full, 0), None);
        assert_eq!(least_loaded(&[], 3), None);
    }

    #[test]
    fn shares_follow_weights_when_filling_up() {
        // Simulate picks that never complete: the in-flight counts end up proportional to the weights.
        let mut loads = [l(100, 0, None), l(200, 0, None), l(300, 0, None)];
        for k in 0..600 {
            let i = least_loaded(&loads, k).unwrap();
            loads[i].inflight += 1;
        }
        let got: Vec<u32> = loads.iter().map(|c| c.inflight).collect();
        assert_eq!(got, [100, 200, 300]);
    }
}
