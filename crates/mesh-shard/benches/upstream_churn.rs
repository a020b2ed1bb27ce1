//! What registry churn costs a consumer shard's connections: one shard holds `CONNS` upstream pools (one
//! connection each, heartbeats on, as `--upstream-connections 1`), then alternates phases of quiet and of
//! churn at `RATE` changes per second (a change: the oldest pool is dropped, as when its provider leaves; or
//! a new pool dials, as when a provider joins and is first picked). Reported: the shard thread's CPU per
//! change = (CPU in a churn phase - CPU in a quiet phase of the same length) / changes, per round. The
//! answering side runs on another thread (its CPU is not counted), like the providers of the registry
//! benchmark. Route-table work per change is measured by mesh-balance's `incremental` bench.
//!
//! Phases last a whole number of heartbeat intervals (5 s): a sweep pings every idle connection at once,
//! so a phase shorter than the interval holds a sweep or not by chance (4 s phases measured 60 to 220 us
//! per change from one round to the next).
//!
//! `cargo bench -p mesh-shard --bench upstream_churn` (env: CONNS=5000 RATE=100 PHASE_S=10 ROUNDS=3;
//! PHASE_S is rounded up to a multiple of 5).
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::AsyncWriteExt;
use glommio::net::TcpListener;
use mesh_dubbo::{Header, Serialization, Status};
use mesh_shard::runtime::{spawn_shard, ShardIo, ShardSpec};
use mesh_shard::upstream::{Pool, UpstreamConfig};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time of the calling thread (the scheduler's run time, ns: first field of its schedstat).
fn thread_cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    let ns = text
        .split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .expect("run time");
    Duration::from_nanos(ns)
}

/// Answers every frame of every connection with an empty OK answer (heartbeats included).
async fn serve(listener: TcpListener) {
    loop {
        let Ok(stream) = listener.accept().await else {
            return;
        };
        glommio::spawn_local(async move {
            let (r, mut w) = mesh_shard::io::split(stream);
            let mut frames = mesh_shard::frames::FrameReader::new(r, mesh_dubbo::Codec::default(), 4096);
            while let Ok(f) = frames.next(|| ()).await {
                let mut out = BytesMut::new();
                Header::response(f.header.id, Serialization::Hessian2, Status::OK).write(&mut out);
                if w.write_all(&out).await.is_err() {
                    return;
                }
            }
        })
        .detach();
    }
}

fn dial(addr: SocketAddr, cfg: &UpstreamConfig) -> Rc<Pool> {
    let pool = Rc::new(Pool::new(addr, cfg.clone()));
    let p = pool.clone();
    glommio::spawn_local(async move {
        let _ = p.get().await;
    })
    .detach();
    pool
}

/// `quick` (`-- --test`): a smoke run (50 connections, one round of 1 s phases).
async fn client(addr: SocketAddr, quick: bool) {
    let (conns, rate, phase, rounds) = if quick {
        (50, env("RATE", 100), Duration::from_secs(1), 1)
    } else {
        (
            env("CONNS", 5000) as usize,
            env("RATE", 100),
            Duration::from_secs(env("PHASE_S", 10).div_ceil(5).max(1) * 5),
            env("ROUNDS", 3),
        )
    };
    let cfg = UpstreamConfig {
        connections: 1,
        ..UpstreamConfig::default()
    };
    let mut pools: VecDeque<Rc<Pool>> = VecDeque::new();
    for i in 0..conns {
        let pool = Rc::new(Pool::new(addr, cfg.clone()));
        pool.get().await.expect("dialled");
        pools.push_back(pool);
        if i % 1000 == 999 {
            glommio::yield_if_needed().await;
        }
    }
    // Let the heartbeats of the fresh connections spread out before measuring.
    glommio::timer::sleep(if quick { phase } else { Duration::from_secs(6) }).await;
    println!(
        "{conns} connections, {rate} changes/s, phases of {} s",
        phase.as_secs()
    );
    let mut per_change = Vec::new();
    for round in 0..rounds {
        let t0 = thread_cpu();
        glommio::timer::sleep(phase).await;
        let quiet = thread_cpu() - t0;
        let every = Duration::from_secs(1) / rate as u32;
        let start = Instant::now();
        let t1 = thread_cpu();
        let mut changes = 0u32;
        while start.elapsed() < phase {
            if changes.is_multiple_of(2) {
                pools.pop_front();
            } else {
                pools.push_back(dial(addr, &cfg));
            }
            changes += 1;
            let next = start + every * changes;
            glommio::timer::sleep(next.saturating_duration_since(Instant::now())).await;
        }
        let churn = thread_cpu() - t1;
        let us = (churn.as_secs_f64() - quiet.as_secs_f64()) * 1e6 / f64::from(changes);
        println!(
            "round {round}: quiet {:.1} ms, churn {:.1} ms, {changes} changes: {us:.1} us per change",
            quiet.as_secs_f64() * 1e3,
            churn.as_secs_f64() * 1e3
        );
        per_change.push(us);
    }
    per_change.sort_by(f64::total_cmp);
    println!(
        "median: {:.1} us of shard CPU per change",
        per_change[per_change.len() / 2]
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let server = spawn_shard(
        ShardSpec { index: 0, core: None },
        "bench-server",
        ShardIo::default(),
        move || async move {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            serve(listener).await;
        },
    )
    .unwrap();
    let addr = rx.recv().unwrap();
    let quick = std::env::args().any(|a| a == "--test");
    spawn_shard(
        ShardSpec { index: 1, core: None },
        "bench-shard",
        ShardIo::default(),
        move || client(addr, quick),
    )
    .unwrap()
    .join()
    .unwrap();
    drop(server);
    std::process::exit(0);
}
