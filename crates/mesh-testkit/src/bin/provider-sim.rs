//! `provider-sim`: a Dubbo 2 provider simulator for `IHelloService.hash(String)` (see `mesh_testkit::sim`).
//!
//! With `--bind-count N`, the same simulator answers on N consecutive loopback addresses from `--bind` (one
//! listener each, same port: the registry scale benchmark's N provider instances), each counting its own
//! thread cap; the stats line sums them.
//!
//! With `--app A --services S` it also serves a Dubbo 3 MetadataService (group `A`, version `1.0.0`) whose
//! `getMetadataInfo(revision)` answers the MetadataInfo of the benchmark's first S interfaces (the
//! application-level registry benchmark's providers), and counts the calls it answered.
//!
//! With `--schedule SPEC` (or `--schedule-file PATH`) its thread cap, latency and knee drift over time (syntax
//! in `mesh_testkit::sim::schedule`: `"0s:threads=200,latency=50ms; 10s:threads=50,latency=80ms"`), from the
//! start or from `--schedule-start-unix-ms`; each step is logged on stderr once when it applies.
//!
//! Prints `LISTENING <port>` on stdout once bound; with `--app`, `METADATA-CALLS <n>` every
//! `--stats-interval-ms` and at exit; on SIGTERM or SIGINT it stops and prints one JSON stats line
//! `{"name","served","rejected","errors","max_inflight"}`, then exits 0. Bad usage exits 2.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use mesh_testkit::churn::bench_services;
use mesh_testkit::sim::metadata_service::SimMetadata;
use mesh_testkit::sim::schedule::Schedule;
use mesh_testkit::sim::{self, SerializationMode, SimConfig, TimerMode};
use tokio::signal::unix::{signal, SignalKind};

/// Dubbo provider simulator (IHelloService.hash), loopback only.
#[derive(Debug, Parser)]
#[command(name = "provider-sim", version)]
struct Args {
    /// Address to bind (must be a loopback address).
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    bind: IpAddr,
    /// Port to bind; 0 = any free port (the chosen one is printed).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Listen on this many consecutive loopback addresses from `--bind` (same port on each).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    bind_count: u32,
    /// Base latency of each call, in milliseconds.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// Thread cap: calls in flight beyond it get status 100 at once; 0 = no cap.
    #[arg(long, default_value_t = 200)]
    threads: usize,
    /// Capacity knee: latency = base * max(1, inflight / knee); 0 = none.
    #[arg(long, default_value_t = 0)]
    knee: usize,
    /// hessian2, fastjson, or any (answer in the request's serialization).
    #[arg(long, default_value = "any")]
    serialization: SerializationMode,
    /// Name for logs and the stats line.
    #[arg(long, default_value = "small")]
    name: String,
    /// Runtime worker threads; 0 = one per core.
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// How answers are timed: precise (a timer thread, answers within tens of µs of their due time) or
    /// coarse (tokio's millisecond timer, about +1.9 ms on 50 ms; the behaviour before the precise timer).
    #[arg(long, default_value_t = TimerMode::Precise)]
    timer: TimerMode,
    /// Require this `token` attachment on every call (Dubbo's provider `token`); others get status 70.
    #[arg(long)]
    token: Option<String>,
    /// Also serve a Dubbo 3 MetadataService (group = this application, version 1.0.0):
    /// `getMetadataInfo(revision)` answers the MetadataInfo of the benchmark's first `--services`
    /// interfaces on `--port` (`mesh_testkit::churn::bench_services`), null for another revision.
    #[arg(long)]
    app: Option<String>,
    /// How many of the benchmark's interfaces the application exports (with `--app`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    services: u32,
    /// With `--app`: print `METADATA-CALLS <calls answered so far>` on stdout this often (0 = only at exit).
    #[arg(long, default_value_t = 0)]
    stats_interval_ms: u64,
    /// Capacity drift: `<time>:threads=N,latency=D,knee=K;...` (keys left out keep their value; before the
    /// first step, the flags above hold).
    #[arg(long, conflicts_with = "schedule_file")]
    schedule: Option<Schedule>,
    /// The schedule from a file (same syntax; steps on lines or separated by `;`, `#` comments).
    #[arg(long)]
    schedule_file: Option<PathBuf>,
    /// The schedule's time 0, in ms since the Unix epoch (default: when the simulator starts). Processes
    /// given the same start change at the same moments.
    #[arg(long)]
    schedule_start_unix_ms: Option<u64>,
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if let Err(e) = sim::require_loopback(args.bind) {
        eprintln!("provider-sim: {e}");
        return ExitCode::from(2);
    }
    if let Some(path) = &args.schedule_file {
        let parsed = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| text.parse::<Schedule>().map_err(|e| e.to_string()));
        match parsed {
            Ok(s) => args.schedule = Some(s),
            Err(e) => {
                eprintln!("provider-sim: --schedule-file {}: {e}", path.display());
                return ExitCode::from(2);
            }
        }
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if args.workers > 0 {
        rt.worker_threads(args.workers);
    }
    let rt = match rt.thread_name("provider-sim").enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("provider-sim: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("provider-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> std::io::Result<()> {
    let cfg = SimConfig {
        name: args.name,
        latency: Duration::from_millis(args.latency_ms),
        threads: args.threads,
        knee: args.knee,
        serialization: args.serialization,
        timer: args.timer,
        token: args.token,
        schedule: args.schedule,
        schedule_start: args
            .schedule_start_unix_ms
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
        ..SimConfig::default()
    };
    if let Some(s) = &cfg.schedule {
        let from = cfg.schedule_start.map_or_else(
            || "now".to_owned(),
            |at| match at.duration_since(SystemTime::now()) {
                Ok(d) => format!("in {:.1} s", d.as_secs_f64()),
                Err(e) => format!("{:.1} s ago", e.duration().as_secs_f64()),
            },
        );
        eprintln!(
            "provider-sim {}: schedule of {} steps over {:?}, starting {from}",
            cfg.name,
            s.steps().len(),
            s.last_change()
        );
    }
    let metadata = args.app.as_deref().map(|app| {
        Arc::new(SimMetadata::new(
            app,
            &bench_services(app, args.services, args.port),
        ))
    });
    if args.port == 0 && metadata.is_some() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "--app needs a fixed --port (the port is part of the services' metadata)",
        ));
    }
    let cfg = SimConfig {
        metadata: metadata.clone(),
        ..cfg
    };
    let first = sim::bind(SocketAddr::new(args.bind, args.port))?;
    let port = first.local_addr()?.port();
    let mut listeners = vec![first];
    for i in 1..args.bind_count {
        let ip = match args.bind {
            IpAddr::V4(base) => mesh_testkit::churn::nth_loopback(base, i).map(IpAddr::V4),
            IpAddr::V6(_) => None,
        };
        let Some(ip) = ip else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "--bind-count {}: address {i} from {} is not a loopback IPv4 address",
                    args.bind_count, args.bind
                ),
            ));
        };
        listeners.push(sim::bind(SocketAddr::new(ip, port))?);
    }
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    eprintln!(
        "provider-sim {}: {}:{port} (x{}) latency {} ms, threads {}, knee {}, serialization {}, timer {}",
        cfg.name,
        args.bind,
        args.bind_count,
        args.latency_ms,
        cfg.threads,
        cfg.knee,
        cfg.serialization,
        cfg.timer
    );
    say(&format!("LISTENING {port}"))?;
    if let Some(md) = &metadata {
        eprintln!(
            "provider-sim {}: MetadataService of {} ({} services), revision {}",
            cfg.name,
            args.app.as_deref().unwrap_or(""),
            args.services,
            md.revision()
        );
        if args.stats_interval_ms > 0 {
            let md = Arc::clone(md);
            let every = Duration::from_millis(args.stats_interval_ms);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if say(&format!("METADATA-CALLS {}", md.calls())).is_err() {
                        return;
                    }
                }
            });
        }
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut sims = tokio::task::JoinSet::new();
    for listener in listeners {
        let mut stopped = stopped.clone();
        sims.spawn(sim::run(cfg.clone(), listener, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
    }
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    let _ = stop.send(true);
    let mut stats = sim::Stats {
        name: cfg.name.clone(),
        ..sim::Stats::default()
    };
    while let Some(done) = sims.join_next().await {
        let s = done.map_err(std::io::Error::other)??;
        stats.served += s.served;
        stats.rejected += s.rejected;
        stats.errors += s.errors;
        stats.max_inflight = stats.max_inflight.max(s.max_inflight);
    }
    if let Some(md) = &metadata {
        say(&format!("METADATA-CALLS {}", md.calls()))?;
    }
    say(&serde_json::to_string(&stats).map_err(std::io::Error::other)?)
}

fn say(line: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}
