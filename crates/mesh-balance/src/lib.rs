//! Pure routing and load balancing over a service's providers: no IO, no threads, no clock and no RNG of
//! its own (time and randomness are arguments), so every decision is reproducible in tests.
//!
//! Routing and balancing go through the route table: Dubbo's tag and condition routers precomputed per
//! snapshot epoch as bitsets, a route cache, and balancers whose cost per pick grows at most with the
//! square root of the number of candidates (plus a word-wise pass over them when the first draws hit busy
//! providers). The consumer agent keeps one table per requested service key on each shard, changed in
//! place as the registry changes (see *Registry changes* below); its default
//! `auto` balancer is smooth weighted round robin ([`Policy::RoundRobin`]) when the registered weights
//! differ and the adaptive P2C ([`Policy::Adaptive`]) otherwise.
//!
//! Also here, so every decision the consumer makes about a provider is tested in process: [`health`]
//! (outlier ejection with half-open probes, the adaptive limit learnt from rejections) and [`outcome`]
//! (what a finished attempt means: answer, try elsewhere or requeue, its effect on health, the call's
//! retry budget).
//!
//! # Using the route table
//!
//! Per service (on each shard; a table is single-threaded and cheap to clone):
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
//!         let addr = table.provider(i).map(|p| p.addr);
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
//! its shards); [`LiveState::set_down`] takes a provider out while its pool backs off. A provider of
//! weight 0 (Dubbo's way to drain one) stays in the table and takes no share while any candidate of the
//! call weighs more (every balancer but consistent hashing, which ignores weights as Dubbo's does); when
//! every candidate weighs 0 they share equally (round robin: in turn).
//!
//! # Registry changes
//!
//! A change of the provider list need not rebuild the table: [`RouteTable::apply`] takes
//! [`Change::Remove`] / [`Change::Upsert`] (join, or a new weight, cap, tag, parameters or registration
//! time) and returns what happened per index ([`Applied`]); [`LiveState::apply`] follows it. Indices are
//! stable: a leaving provider frees its index (in no route, never picked), a joining one takes a free
//! index or a new one at the end. One change costs O(cached routes x matched rules + tag names + log n);
//! the result equals [`RouteTable::build`] over the same providers (up to index numbering). When more than
//! a third of the indices are free, [`RouteTable::needs_compaction`] says so and [`RouteTable::compacted`]
//! renumbers (O(n), so amortized O(1) per change; carry the live state over with
//! [`LiveState::carry_over`]).
//!
//! What each part of the table does with a change:
//! - tag router: kept as base sets a provider joins on its own (untagged, failover, no-tag result, per tag
//!   name its static set and its dynamic group); which one a request tag gets depends only on which are
//!   empty, so it is re-decided in O(1) (the request-side cache is cleared when a tag's set becomes empty or
//!   not, or a tag name is new);
//! - condition rules: each rule's then-set gains or loses the provider's bit;
//! - cached routes: each keeps, per matched rule, how many providers the rule kept; the provider joins or
//!   leaves the route by itself unless a count moves between 0 and 1 (a non-forced rule that kept nobody
//!   is skipped, Dubbo's fallback): then every cached route is dropped and refilled at its next request
//!   (O(n) each, like a build). Routes that shared a candidate set and now differ get their own;
//! - balancer state, incremental: the member list (P2C, O(1)), weights as a Fenwick tree (weighted
//!   random and the groups of least-active / shortest-response, O(log n)), smooth weighted round robin's
//!   group totals (O(1)), the consistent-hash ring (a `BTreeSet`, O(replicas x log points)), warm-up
//!   (only the warming members are revisited at each refresh);
//! - balancer state, rebuilt lazily at the next pick that needs it: the round-robin grouping and the
//!   ring's replica count once the set has doubled or halved since they were built (amortized O(1)).
//!
//! Cost on the request path: the tag lookup, the request-side matchers of the condition rules (rules that
//! only look at the method are cached per method name), one hash lookup of (tag, matched rules) -> cached
//! candidate set, then the pick: O(1) for the adaptive P2C and weighted random, O(log n) for consistent
//! hashing (and weighted random over unequal weights); on sets larger than
//! [`TableOptions::group_threshold`] (smaller ones are scanned whole), O(sqrt n) for round robin and
//! O([`TableOptions::group_size`]) for least-active and shortest-response. A new (tag, matched rules)
//! combination costs, the first time, one AND of cached bitsets (O(n/64) words) per matching rule, and
//! building its candidate set (O(n)) when that leaves a set of providers not seen before.
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
//! The same model is filled from Dubbo's own config center: [`dubbo_rules`] reads the condition-router and
//! tag-router YAML Dubbo Admin writes (`/dubbo/config/dubbo/<key>`), keeps the last good rule per key and
//! combines the rules that apply to a service into one [`RuleSet`] in Dubbo's router order.
//!
//! The tag router runs first, on the whole provider list; the condition rules then run on its result.
//! When-part keys: `method`, `arguments[i]`, `attachments[name]` (from the [`Request`]), and the consumer's
//! `host`, `port`, `address`, `application` or any other parameter ([`ConsumerInfo`], folded when the table
//! is built). Then-part keys: the provider's `host`, `port`, `address`, `tag` and any parameter.

pub mod bitset;
pub mod dubbo_rules;
pub mod hash;
pub mod health;
pub mod outcome;
pub mod param_match;
mod pick;
pub mod rule;
mod ruleset;
mod table;
pub mod tag;
mod tag_sets;

pub use bitset::BitSet;
pub use dubbo_rules::{ChainQuery, RuleIndex, RuleStore};
pub use pick::{LiveOptions, LiveState, Pick, PickOptions, Policy, Rng, XorShift64};
pub use rule::{ConditionRule, ParseError};
pub use ruleset::{
    CompiledRule, ConditionEntry, ConditionSpec, RuleDocument, RuleError, RuleSet, MAX_CONDITION_RULES,
};
pub use table::{Applied, Change, ConsumerInfo, Provider, Request, RouteId, RouteTable, TableOptions};
