//! `drift-oracle`: the drift benchmark's oracle (see `mesh_testkit::drift`). Registers each provider agent in
//! etcd as a Java 2.7 provider of the challenge's service, with `weight` = its capacity in calls per second
//! and `threads` = its thread cap, taken from the same capacity schedule its simulator follows, and rewrites
//! the registrations at every step (the old keys deleted and the new ones put in one etcd transaction for
//! all providers, so a consumer never sees a provider leave), announcing the smaller capacity from
//! `--lead-ms` before a step (`mesh_testkit::drift::announced_at`).
//!
//! The provider agents run with `--no-register`. Prints `READY` once every provider is registered, a `STEP`
//! line per change; on SIGTERM or SIGINT revokes its lease (the keys go) and exits 0. Bad usage exits 2.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use etcd_client::{PutOptions, Txn, TxnOp};
use mesh_testkit::drift::{announced_at, change_times, Announced, Target};
use mesh_testkit::dubbo_writers::put::DubboEtcdWriter;
use mesh_testkit::dubbo_writers::{java27_provider, Provider, Registration, DEFAULT_ROOT};
use mesh_testkit::sim::schedule::Capacity;
use mesh_testkit::sim::SERVICE;
use tokio::signal::unix::{signal, SignalKind};

/// Registers provider agents with their capacity at every moment of their schedules.
#[derive(Debug, Parser)]
#[command(name = "drift-oracle", version)]
struct Args {
    /// etcd endpoint (http://127.0.0.1:PORT).
    #[arg(long)]
    etcd: String,
    /// A provider agent and its simulator's schedule: `<host:port>=<schedule>` (repeat per provider).
    #[arg(long = "provider", required = true)]
    providers: Vec<Target>,
    /// The schedules' time 0, in ms since the Unix epoch (the simulators' `--schedule-start-unix-ms`);
    /// default: now.
    #[arg(long)]
    schedule_start_unix_ms: Option<u64>,
    /// The simulators' own thread cap (in force before a schedule's first step).
    #[arg(long, default_value_t = 200)]
    base_threads: usize,
    /// The simulators' own latency in ms.
    #[arg(long, default_value_t = 50)]
    base_latency_ms: u64,
    /// The simulators' own knee.
    #[arg(long, default_value_t = 0)]
    base_knee: usize,
    /// Announce the smaller of the current and the coming capacity this long before each step (the time
    /// a registration takes to reach the consumer, with margin).
    #[arg(long, default_value_t = 100)]
    lead_ms: u64,
    /// The lease TTL of the registrations, in seconds.
    #[arg(long, default_value_t = 10)]
    ttl_s: i64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("drift-oracle: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("drift-oracle: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One provider's registration as written now.
struct Registered {
    target: Target,
    said: Announced,
    key: String,
}

fn registration(target: &Target, said: Announced, started_ms: u64) -> Registration {
    let mut p = Provider::new(SERVICE, &target.addr.ip().to_string(), target.addr.port()).weight(said.weight);
    p.application = "drift-oracle".to_owned();
    p.timestamp_ms = started_ms;
    if let Some(t) = said.threads {
        p = p.param("threads", &t.to_string());
    }
    java27_provider(DEFAULT_ROOT, &p)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let base = Capacity {
        threads: args.base_threads,
        latency: Duration::from_millis(args.base_latency_ms),
        knee: args.base_knee,
    };
    let now_wall = SystemTime::now();
    let now = Instant::now();
    let start_wall = args
        .schedule_start_unix_ms
        .map_or(now_wall, |ms| UNIX_EPOCH + Duration::from_millis(ms));
    // Time 0 as an Instant, and how far into the schedules we are (0 while before it).
    let start = match start_wall.duration_since(now_wall) {
        Ok(ahead) => now + ahead,
        Err(behind) => now.checked_sub(behind.duration()).unwrap_or(now),
    };
    let elapsed = |at: Instant| at.saturating_duration_since(start);
    let lead = Duration::from_millis(args.lead_ms);
    let started_ms = now_wall
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);

    let mut writer = DubboEtcdWriter::connect(&[args.etcd.as_str()]).await?;
    let lease = writer.grant_kept_lease(args.ttl_s).await?;
    let mut regs = Vec::with_capacity(args.providers.len());
    for target in &args.providers {
        let said = announced_at(&target.schedule, base, elapsed(Instant::now()), lead);
        let r = registration(target, said, started_ms);
        writer.register_on(&r, Some(lease)).await?;
        say(&format!(
            "REGISTERED {} weight={} threads={}",
            target.addr,
            said.weight,
            said.threads.map_or("none".to_owned(), |t| t.to_string())
        ))?;
        regs.push(Registered {
            target: target.clone(),
            said,
            key: r.key,
        });
    }
    say("READY")?;

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let times = change_times(&args.providers, lead);
    let mut client = writer.client();
    for at in times {
        if at <= elapsed(Instant::now()) {
            continue; // passed before we started (or time 0 still ahead): registered as in force above
        }
        tokio::select! {
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(start + at)) => {}
            _ = term.recv() => return stop(writer, lease).await,
            _ = int.recv() => return stop(writer, lease).await,
        }
        // Every provider whose registration changes now, in one transaction.
        let mut ops = Vec::new();
        let mut lines = Vec::new();
        for reg in &mut regs {
            let said = announced_at(&reg.target.schedule, base, at, lead);
            if said == reg.said {
                continue;
            }
            let r = registration(&reg.target, said, started_ms);
            ops.push(TxnOp::delete(reg.key.as_str(), None));
            ops.push(TxnOp::put(
                r.key.as_str(),
                r.value.value(lease),
                Some(PutOptions::new().with_lease(lease)),
            ));
            lines.push(format!(
                "STEP {:.3}s {} weight={} threads={}",
                at.as_secs_f64(),
                reg.target.addr,
                said.weight,
                said.threads.map_or("none".to_owned(), |t| t.to_string())
            ));
            reg.said = said;
            reg.key = r.key;
        }
        if ops.is_empty() {
            continue;
        }
        tokio::time::timeout(Duration::from_secs(10), client.txn(Txn::new().and_then(ops)))
            .await
            .context("etcd txn: no answer in 10 s")?
            .context("etcd txn")?;
        for l in lines {
            say(&l)?;
        }
    }
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    stop(writer, lease).await
}

async fn stop(mut writer: DubboEtcdWriter, lease: i64) -> anyhow::Result<()> {
    writer.revoke(lease).await?;
    say("STOPPED")?;
    Ok(())
}

fn say(line: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}
