//! Route + pick cost at 100 .. 5,000 providers with a tag router (3 static tags) and 5 condition rules on,
//! against a naive per-call chain (scan every provider, tag router, each condition rule by string matching,
//! weighted random over the survivors: what Dubbo's RouterChain + LoadBalance do per call).
//!
//! `cargo bench -p mesh-balance --bench routing`. Prints one JSON line and writes it to `$MESH_BENCH_OUT`
//! or `<workspace>/target/bench/routing.json`. Times are medians of several batches of plain
//! `Instant` loops, in ns per call.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use mesh_balance::rule::{ConditionRule, Key};
use mesh_balance::{
    ConsumerInfo, LiveState, Pick, PickOptions, Policy, Provider, Request, Rng, RouteTable, RuleSet,
    TableOptions, XorShift64,
};

mod estate;
use estate::{addr, provider, requests, rules_json, METHODS, RULES, TAGS};

const SIZES: [usize; 5] = [100, 500, 1000, 2000, 5000];
const BATCHES: usize = 21;
const REQS: usize = 4096;

fn providers(n: usize) -> Vec<Provider> {
    (0..n).map(|i| provider(i, 0)).collect()
}

// ---- naive baseline: everything per call, as Dubbo's router chain does ----

struct NaiveProvider {
    weight: u32,
    tag: Option<String>,
    attrs: BTreeMap<String, String>,
}

struct Naive {
    providers: Vec<NaiveProvider>,
    rules: Vec<ConditionRule>,
}

impl Naive {
    fn new(ps: &[Provider]) -> Self {
        let providers = ps
            .iter()
            .map(|p| {
                let mut attrs = p.params.clone();
                attrs.insert("host".into(), p.addr.ip().to_string());
                attrs.insert("port".into(), p.addr.port().to_string());
                NaiveProvider {
                    weight: p.weight,
                    tag: p.tag.clone(),
                    attrs,
                }
            })
            .collect();
        let rules = RULES.iter().map(|r| ConditionRule::parse(r).unwrap()).collect();
        Naive { providers, rules }
    }

    fn when(rule: &ConditionRule, req: &Request<'_>) -> bool {
        rule.when.iter().all(|c| {
            let v = match &c.key {
                Key::Method => Some(req.method),
                Key::Argument(i) => req.arguments.get(*i).copied(),
                _ => None,
            };
            c.test(v)
        })
    }

    fn then(rule: &ConditionRule, p: &NaiveProvider) -> bool {
        rule.then.as_ref().is_some_and(|cs| {
            cs.iter().all(|c| {
                let key = match &c.key {
                    Key::Host => "host",
                    Key::Port => "port",
                    Key::Param(k) => k.as_str(),
                    _ => "",
                };
                c.test(p.attrs.get(key).map(String::as_str))
            })
        })
    }

    fn route_and_pick(&self, req: &Request<'_>, rng: &mut XorShift64) -> Option<usize> {
        // tag router
        let mut cur: Vec<usize> = match req.tag {
            Some(t) => {
                let tagged: Vec<usize> = (0..self.providers.len())
                    .filter(|&i| self.providers[i].tag.as_deref() == Some(t))
                    .collect();
                if tagged.is_empty() {
                    (0..self.providers.len())
                        .filter(|&i| self.providers[i].tag.is_none())
                        .collect()
                } else {
                    tagged
                }
            }
            None => (0..self.providers.len())
                .filter(|&i| self.providers[i].tag.is_none())
                .collect(),
        };
        // condition routers, each on the previous result
        for rule in &self.rules {
            if !Self::when(rule, req) {
                continue;
            }
            let next: Vec<usize> = cur
                .iter()
                .copied()
                .filter(|&i| Self::then(rule, &self.providers[i]))
                .collect();
            if !next.is_empty() {
                cur = next;
            }
        }
        // weighted random
        let total: u64 = cur.iter().map(|&i| u64::from(self.providers[i].weight)).sum();
        if total == 0 {
            return None;
        }
        let mut r = rng.next_u64() % total;
        for &i in &cur {
            let w = u64::from(self.providers[i].weight);
            if r < w {
                return Some(i);
            }
            r -= w;
        }
        None
    }
}

// ---- timing ----

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Median over `BATCHES` batches of `iters` calls of `f(k)`, in ns per call (after one warm-up batch).
fn time(iters: usize, f: impl FnMut(usize)) -> f64 {
    time2(iters, f).0
}

/// (median, minimum) over `BATCHES` batches, ns per call. Batches are short (a few ms) so that on a
/// shared machine most of them run undisturbed; the minimum is the least-disturbed batch.
fn time2(iters: usize, mut f: impl FnMut(usize)) -> (f64, f64) {
    let mut k = 0;
    let mut batch = |f: &mut dyn FnMut(usize)| {
        let t = Instant::now();
        for _ in 0..iters {
            f(k);
            k += 1;
        }
        t.elapsed().as_nanos() as f64 / iters as f64
    };
    batch(&mut f);
    let v: Vec<f64> = (0..BATCHES).map(|_| batch(&mut f)).collect();
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    (median(v), min)
}

/// One batch of `iters` calls of `f(k)` (k continuing from `*k`), in ns per call.
fn batch(iters: usize, k: &mut usize, mut f: impl FnMut(usize)) -> f64 {
    let t = Instant::now();
    for _ in 0..iters {
        f(*k);
        *k += 1;
    }
    t.elapsed().as_nanos() as f64 / iters as f64
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn live_for(table: &RouteTable, seed: u64) -> LiveState {
    let mut live = LiveState::new(table);
    let mut rng = XorShift64::new(seed);
    for i in 0..table.len() {
        let lat = 1_000_000 + rng.next_u64() % 50_000_000;
        live.on_send(i, 0);
        live.on_answer(i, 1_000, lat, true);
        for _ in 0..rng.next_u64() % 4 {
            live.on_send(i, 1_000);
        }
    }
    live
}

fn pick_opts(policy: Policy) -> PickOptions<'static> {
    PickOptions {
        policy,
        now_ns: 2_000,
        ..Default::default()
    }
}

fn expect_provider(p: Pick) -> usize {
    match p {
        Pick::Provider(i) => i,
        other => panic!("bench pick failed: {other:?}"),
    }
}

fn main() {
    let reqs = requests(REQS);
    let rules = RuleSet::from_json(&rules_json()).unwrap();
    let consumer = ConsumerInfo {
        host: "10.9.9.9".into(),
        ..Default::default()
    };
    struct Case {
        n: usize,
        table: RouteTable,
        live: LiveState,
        naive: Naive,
        build_us: f64,
        samples: [Vec<f64>; 5],
    }
    let mut rng = XorShift64::new(1);
    let mut cases: Vec<Case> = SIZES
        .iter()
        .map(|&n| {
            let ps = providers(n);
            let t0 = Instant::now();
            let mut table = RouteTable::build(1, ps.clone(), &rules, &consumer, TableOptions::default());
            let build_us = t0.elapsed().as_nanos() as f64 / 1000.0;
            let live = live_for(&table, 11);
            let naive = Naive::new(&ps);
            // Both chains route the same way on the whole request mix (the naive one has the static-tag
            // semantics and the rules of this bench only): its pick is always one of our candidates.
            for r in &reqs {
                let args = [r.args[0].as_str()];
                let req = Request {
                    tag: r.tag,
                    arguments: &args,
                    ..Request::new(r.method)
                };
                let route = table.route(&req);
                let ours: Vec<usize> = table.candidates(route).iter().collect();
                let i = naive.route_and_pick(&req, &mut rng).expect("naive pick");
                assert!(
                    ours.contains(&i),
                    "naive picked {i} outside our route for {}",
                    r.method
                );
            }
            Case {
                n,
                table,
                live,
                naive,
                build_us,
                samples: Default::default(),
            }
        })
        .collect();
    // Interleaved: batch b of every measurement at every size, then batch b + 1, ... so that load from
    // other processes on a shared machine spreads over all sizes instead of hitting one.
    let mut k = 0usize;
    for b in 0..=BATCHES {
        for case in &mut cases {
            let ours_policies = [
                (Policy::Adaptive, 20_000),
                (Policy::WeightedRandom, 20_000),
                (Policy::LeastActive, 10_000),
            ];
            for (slot, (policy, iters)) in ours_policies.into_iter().enumerate() {
                let opts = pick_opts(policy);
                let ns = batch(iters, &mut k, |k| {
                    let r = &reqs[k & (REQS - 1)];
                    let args = [r.args[0].as_str()];
                    let req = Request {
                        tag: r.tag,
                        arguments: &args,
                        ..Request::new(r.method)
                    };
                    black_box(
                        case.table
                            .route_and_pick(black_box(&req), &case.live, &mut rng, &opts),
                    );
                });
                if b > 0 {
                    case.samples[slot].push(ns);
                }
            }
            let ns = batch(20_000, &mut k, |k| {
                let r = &reqs[k & (REQS - 1)];
                let args = [r.args[0].as_str()];
                let req = Request {
                    tag: r.tag,
                    arguments: &args,
                    ..Request::new(r.method)
                };
                black_box(case.table.route(black_box(&req)));
            });
            let naive_ns = batch((200_000 / case.n).max(20), &mut k, |k| {
                let r = &reqs[k & (REQS - 1)];
                let args = [r.args[0].as_str()];
                let req = Request {
                    tag: r.tag,
                    arguments: &args,
                    ..Request::new(r.method)
                };
                black_box(case.naive.route_and_pick(black_box(&req), &mut rng));
            });
            if b > 0 {
                case.samples[3].push(ns);
                case.samples[4].push(naive_ns);
            }
        }
    }
    let mut runs = Vec::new();
    for case in &cases {
        let min = case.samples[0].iter().copied().fold(f64::INFINITY, f64::min);
        let [ours, wr, la, route_only, naive_ns] = case.samples.clone().map(median);
        let n = case.n;
        eprintln!(
            "n={n:5}  ours(adaptive) {ours:7.1} ns  weighted-random {wr:7.1}  least-active {la:7.1}  route only {route_only:6.1}  naive {naive_ns:10.1} ns  x{:.0}  build {:.0} us  sets {}",
            naive_ns / ours,
            case.build_us,
            case.table.cached_sets()
        );
        runs.push(serde_json::json!({
            "providers": n,
            "ours_ns": round(ours),
            "naive_ns": round(naive_ns),
            "ours_min_ns": round(min),
            "speedup": round(naive_ns / ours),
            "weighted_random_ns": round(wr),
            "least_active_ns": round(la),
            "route_only_ns": round(route_only),
            "build_us": round(case.build_us),
            "cached_sets": case.table.cached_sets(),
        }));
    }
    let balancers = balancer_bench();
    let out = serde_json::json!({
        "runs": runs,
        "balancers": balancers,
        "setup": {
            "tags": TAGS,
            "rules": RULES,
            "methods": METHODS,
            "request_mix": "40% tagged (gray/canary/blue/unknown), 8 methods, arguments[0] uniform 0..300",
            "ours": "route_and_pick with Policy::Adaptive (P2C + peak EWMA); live state preloaded",
            "batches": BATCHES,
            "stat": "median ns per call over the batches, interleaved across sizes (ours_min_ns: fastest batch)",
        },
    });
    let line = out.to_string();
    println!("{line}");
    let path = std::env::var_os("MESH_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench/routing.json"));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("create bench output dir");
    }
    std::fs::write(&path, format!("{line}\n")).expect("write bench output");
    eprintln!("wrote {}", path.display());
}

/// ns per pick of each balancer over one route (no routers) of 100 and 5,000 candidates.
fn balancer_bench() -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for n in [100usize, 5000] {
        let mut row = serde_json::Map::new();
        for (name, policy, opts) in [
            ("adaptive_p2c", Policy::Adaptive, TableOptions::default()),
            ("weighted_random", Policy::WeightedRandom, TableOptions::default()),
            ("round_robin", Policy::RoundRobin, TableOptions::default()),
            ("least_active", Policy::LeastActive, TableOptions::default()),
            (
                "shortest_response",
                Policy::ShortestResponse,
                TableOptions::default(),
            ),
            ("consistent_hash", Policy::ConsistentHash, TableOptions::default()),
            (
                "round_robin_flat",
                Policy::RoundRobin,
                TableOptions {
                    group_threshold: usize::MAX,
                    ..TableOptions::default()
                },
            ),
            (
                "least_active_flat",
                Policy::LeastActive,
                TableOptions {
                    group_threshold: usize::MAX,
                    ..TableOptions::default()
                },
            ),
        ] {
            let ps: Vec<Provider> = (0..n)
                .map(|i| Provider::new(addr(i)).with_weight([100, 200, 300][i % 3]))
                .collect();
            let mut table = RouteTable::build(1, ps, &RuleSet::default(), &ConsumerInfo::default(), opts);
            let live = live_for(&table, 3);
            let route = table.route(&Request::new("m"));
            let mut rng = XorShift64::new(9);
            let keys: Vec<String> = (0..1024).map(|k| format!("user-{k}")).collect();
            let iters = if name.ends_with("_flat") { 200 } else { 20_000 };
            // first pick builds lazily (ring, round-robin state): outside the timing
            let _ = table.pick(route, &live, &mut rng, &pick_opts(policy));
            let ns = time(iters, |k| {
                let opts = PickOptions {
                    hash_key: Some(keys[k % keys.len()].as_bytes()),
                    ..pick_opts(policy)
                };
                black_box(expect_provider(table.pick(route, &live, &mut rng, &opts)));
            });
            eprintln!("balancer {name:18} n={n:5} {ns:8.1} ns/pick");
            row.insert(name.into(), round(ns).into());
        }
        out.insert(n.to_string(), row.into());
    }
    out.into()
}
