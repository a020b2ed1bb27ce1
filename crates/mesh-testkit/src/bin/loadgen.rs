//! `loadgen`: the 2018 challenge's consumer as a load generator (see `mesh_testkit::loadgen`).
//!
//! Prints one JSON summary line on stdout at the end and exits 0 even if calls failed (the caller judges);
//! exits 2 on bad usage.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mesh_dubbo::Serialization;
use mesh_testkit::idle_conns::{open_idle, IdleConfig};
use mesh_testkit::loadgen::{self, Call, LoadConfig, Pacing, Target};

/// Load generator for the consumer agent (http://) or a provider (dubbo://), loopback only.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version)]
struct Args {
    /// http://127.0.0.1:PORT/ (the consumer agent) or dubbo://127.0.0.1:PORT (a provider, directly).
    #[arg(long)]
    target: Target,
    /// Connections to open (HTTP: one call at a time on each).
    #[arg(long, default_value_t = 256)]
    connections: usize,
    /// Dubbo target: total calls in flight, split over the connections (default: one per connection).
    #[arg(long, default_value_t = 0)]
    concurrency: usize,
    /// Open loop: requests per second in total (latency measured from the intended send time; the summary
    /// also gives it from the actual send time, `sent_latency_us`, and the sending lateness, `pacing_late_us`).
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: precise (a timer thread, calls sent within tens of µs of their due time; costs more CPU at
    /// high rates: one wake-up per call) or coarse (tokio's millisecond timer, about 1 ms late; the behaviour
    /// before precise pacing).
    #[arg(long, default_value_t = Pacing::Precise)]
    pacing: Pacing,
    /// How long to send after the warm-up (20s, 500ms, 2m, or seconds).
    #[arg(long, default_value = "20s", value_parser = loadgen::parse_duration)]
    duration: Duration,
    /// Stop after this many counted requests.
    #[arg(long)]
    requests: Option<u64>,
    /// Requests sent during this first period are not counted.
    #[arg(long, default_value = "2s", value_parser = loadgen::parse_duration)]
    warmup: Duration,
    /// Per-request timeout in milliseconds.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// One live line per second on stderr (default: when stderr is a terminal).
    #[arg(long)]
    progress: bool,
    /// Longest random parameter (lengths are uniform in 0..=max-len).
    #[arg(long, default_value_t = loadgen::DEFAULT_MAX_LEN)]
    max_len: usize,
    /// Seed of the parameter generator (random by default).
    #[arg(long)]
    seed: Option<u64>,
    /// Dubbo target: hessian2 or fastjson.
    #[arg(long, default_value = "hessian2", value_parser = parse_serialization)]
    serialization: Serialization,
    /// Timeline windows of N ms (0 = none): adds `timeline` ({window_ms, ok, failed, failed_kinds, gaps,
    /// gap_min_ms}: counted calls by the window they completed in, since the measured start),
    /// `longest_gap_ms` (longest interval without any successful completion), `first_failure_ms` and
    /// `last_failure_ms` (null if none) to the summary.
    #[arg(long, default_value_t = 0)]
    timeline_ms: u64,
    /// The method called: hash (hash(String), the challenge form over HTTP) or user (echoUser(User) with a
    /// fixed POJO: the JSON API over HTTP, answered with a map; --max-len is then unused).
    #[arg(long, default_value_t = Call::Hash)]
    call: Call,
    /// Runtime worker threads; 0 = one per core.
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Idle mode (http:// targets): open N keep-alive connections, one checked call on each, print
    /// `{"open", "errors", "open_ms"}` on stdout, then hold them open and silent for --duration (no warm-up,
    /// no load) and exit.
    #[arg(long, default_value_t = 0)]
    idle_connections: usize,
}

fn parse_serialization(s: &str) -> Result<Serialization, String> {
    match s {
        "hessian2" | "hessian" => Ok(Serialization::Hessian2),
        "fastjson" | "json" => Ok(Serialization::FastJson),
        other => Err(format!("unknown serialization {other:?} (hessian2 or fastjson)")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let cfg = LoadConfig {
        connections: args.connections,
        concurrency: args.concurrency,
        rate: args.rate,
        duration: args.duration,
        requests: args.requests,
        warmup: args.warmup,
        timeout: Duration::from_millis(args.timeout_ms),
        progress: args.progress || loadgen::stderr_is_tty(),
        max_len: args.max_len,
        seed: args.seed,
        serialization: args.serialization,
        pacing: args.pacing,
        timeline_ms: args.timeline_ms,
        call: args.call,
        ..LoadConfig::new(args.target)
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if args.workers > 0 {
        rt.worker_threads(args.workers);
    }
    let rt = match rt.thread_name("loadgen").enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.idle_connections > 0 {
        let idle = IdleConfig {
            target: cfg.target.clone(),
            connections: args.idle_connections,
            opening: 64,
            timeout: cfg.timeout,
        };
        return rt.block_on(hold_idle(idle, args.duration));
    }
    match rt.block_on(loadgen::run(cfg)) {
        Ok(summary) => print_line(&summary).err().unwrap_or(ExitCode::SUCCESS),
        Err(e) => failed(&e),
    }
}

/// The idle mode: opens the connections, says how that went, holds them for `hold`.
async fn hold_idle(cfg: IdleConfig, hold: Duration) -> ExitCode {
    let (held, report) = match open_idle(&cfg).await {
        Ok(r) => r,
        Err(e) => return failed(&e),
    };
    if let Err(code) = print_line(&report) {
        return code;
    }
    tokio::time::sleep(hold).await;
    drop(held);
    ExitCode::SUCCESS
}

/// Says why the run failed; exit 2 for bad input (a usage error), 1 otherwise.
fn failed(e: &std::io::Error) -> ExitCode {
    eprintln!("loadgen: {e}");
    if e.kind() == std::io::ErrorKind::InvalidInput {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

/// Writes `value` as one JSON line on stdout, flushed.
fn print_line(value: &impl serde::Serialize) -> Result<(), ExitCode> {
    let line = serde_json::to_string(value).map_err(|e| {
        eprintln!("loadgen: {e}");
        ExitCode::FAILURE
    })?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|_| ExitCode::FAILURE)
}
