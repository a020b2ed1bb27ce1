//! What a registry change costs a consumer shard's route table, at 500 and 5,000 providers, with the
//! routing bench's rules on (3 static tags, 5 condition rules) and its request mix routed first (so about
//! 20 routes are cached, as on a shard under load):
//!
//! * `rebuild`: what a shard did per change before `RouteTable::apply`: build the table, carry the live
//!   state over by address, refill the routes of the request mix;
//! * `apply_leave_join`: one provider leaves and one joins (two changes, `apply` + `LiveState::apply`);
//! * `apply_weight`: one provider's weight changes;
//! * `apply_params`: one untagged provider's parameters change (condition rules see them: it leaves and
//!   joins routes in place);
//! * `route_and_pick_fresh` / `route_and_pick_after_1000_changes`: the request path (adaptive P2C over
//!   the request mix) on a fresh table and on one that took 1,000 leave/join changes.
//!
//! `cargo bench -p mesh-balance --bench incremental` (criterion; `-- --test` runs each once).
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion};
use mesh_balance::{
    Change, ConsumerInfo, LiveState, PickOptions, Policy, Provider, Request, RouteTable, RuleSet,
    TableOptions, XorShift64,
};

mod estate;
use estate::{addr, requests, rules_json, Req};

const SIZES: [usize; 2] = [500, 5000];
const REQS: usize = 1024;

fn rules() -> RuleSet {
    RuleSet::from_json(&rules_json()).unwrap()
}

/// Provider `i` with a concurrency cap.
fn provider(i: usize, gen: usize) -> Provider {
    estate::provider(i, gen).with_max_concurrency(50)
}

fn consumer() -> ConsumerInfo {
    ConsumerInfo {
        host: "10.9.9.9".into(),
        ..Default::default()
    }
}

/// Routes every request once (fills the route cache as traffic would).
fn warm(t: &mut RouteTable, reqs: &[Req]) {
    for r in reqs {
        let args = [r.args[0].as_str()];
        let req = Request {
            tag: r.tag,
            arguments: &args,
            ..Request::new(r.method)
        };
        black_box(t.route(&req));
    }
}

fn table(n: usize, reqs: &[Req]) -> (RouteTable, LiveState) {
    let ps = (0..n).map(|i| provider(i, 0)).collect();
    let mut t = RouteTable::build(1, ps, &rules(), &consumer(), TableOptions::default());
    warm(&mut t, reqs);
    let live = LiveState::new(&t);
    (t, live)
}

/// 1,000 changes: a provider leaves, another (new address, same kind of registration) joins.
fn churn(t: &mut RouteTable, live: &mut LiveState, n: usize) {
    for k in 0..500 {
        let applied = t.apply(
            t.epoch() + 1,
            [
                Change::Remove(addr(k * 7 % n)),
                Change::Upsert(provider(n + k, 0)),
            ],
        );
        live.apply(t, &applied);
    }
}

fn route_and_pick(t: &mut RouteTable, live: &LiveState, reqs: &[Req], rng: &mut XorShift64, k: &mut usize) {
    let r = &reqs[*k % REQS];
    *k += 1;
    let args = [r.args[0].as_str()];
    let req = Request {
        tag: r.tag,
        arguments: &args,
        ..Request::new(r.method)
    };
    let opts = PickOptions {
        policy: Policy::Adaptive,
        now_ns: 1_000_000,
        ..Default::default()
    };
    black_box(t.route_and_pick(&req, live, rng, &opts));
}

fn bench(c: &mut Criterion) {
    let reqs = requests(REQS);
    let rules = rules();
    let mut g = c.benchmark_group("incremental");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in SIZES {
        let (t0, live0) = table(n, &reqs);
        eprintln!("n={n}: {} cached routes", t0.cached_sets());

        // The old way: a full rebuild per change (one provider's parameters moved).
        let mut gen = 0usize;
        g.bench_function(BenchmarkId::new("rebuild", n), |b| {
            b.iter_batched(
                || {
                    gen += 1;
                    (0..n)
                        .map(|i| provider(i, usize::from(i == gen % n)))
                        .collect::<Vec<_>>()
                },
                |ps| {
                    let mut t = RouteTable::build(2, ps, &rules, &consumer(), TableOptions::default());
                    let live = live0.carry_over(&t0, &t);
                    warm(&mut t, &reqs);
                    black_box((t, live))
                },
                BatchSize::LargeInput,
            )
        });

        let (mut t, mut live) = (t0.clone(), live0.clone());
        let mut k = 0usize;
        g.bench_function(BenchmarkId::new("apply_leave_join", n), |b| {
            b.iter(|| {
                k += 1;
                let gone = k * 13 % n;
                let applied = t.apply(t.epoch() + 1, [Change::Remove(addr(gone))]);
                live.apply(&t, &applied);
                let applied = t.apply(t.epoch() + 1, [Change::Upsert(provider(gone, 0))]);
                live.apply(&t, &applied);
            })
        });
        g.bench_function(BenchmarkId::new("apply_weight", n), |b| {
            b.iter(|| {
                k += 1;
                let i = k * 13 % n;
                let p = provider(i, 0).with_weight(100 + (k % 7) as u32 * 50);
                let applied = t.apply(t.epoch() + 1, [Change::Upsert(p)]);
                live.apply(&t, &applied);
            })
        });
        // Untagged providers only: each route keeps many of every zone, version and group, so no
        // router's fallback flips and no route is recomputed (see the crate docs for when one is).
        g.bench_function(BenchmarkId::new("apply_params", n), |b| {
            b.iter(|| {
                k += 1;
                let i = (k * 13 % (n / 20)) * 20 + 3 + k % 17;
                let applied = t.apply(t.epoch() + 1, [Change::Upsert(provider(i, k))]);
                live.apply(&t, &applied);
            })
        });
        eprintln!("n={n}: after the apply benches {} cached routes", t.cached_sets());

        let mut rng = XorShift64::new(7);
        let (mut fresh, fresh_live) = (t0.clone(), live0.clone());
        let mut k = 0usize;
        g.bench_function(BenchmarkId::new("route_and_pick_fresh", n), |b| {
            b.iter(|| route_and_pick(&mut fresh, &fresh_live, &reqs, &mut rng, &mut k))
        });
        let (mut churned, mut churned_live) = (t0.clone(), live0.clone());
        churn(&mut churned, &mut churned_live, n);
        eprintln!(
            "n={n}: after 1,000 changes {} providers over {} indices, {} cached routes",
            churned.len(),
            churned.slots(),
            churned.cached_sets()
        );
        g.bench_function(BenchmarkId::new("route_and_pick_after_1000_changes", n), |b| {
            b.iter(|| route_and_pick(&mut churned, &churned_live, &reqs, &mut rng, &mut k))
        });
    }
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
