//! `registry-churn`: registers provider instances in etcd as Java Dubbo 2.7 does, then churns them on
//! command, for the registry scale benchmark (`scripts/bench.sh registry`).
//!
//! Instance `i` of `--interfaces x --instances` (plus `--spare` unregistered ones) is
//! `dubbo://<i-th loopback address from --ip-base>:<--port>/<interface>?...` (see `mesh_testkit::churn`);
//! interface 0 is the benchmark's `IHelloService`, interface `k > 0` is `IHelloService<k>`. Keys are
//! `/<root>/<URL-encoded interface>/providers/<URL-encoded full URL>` with the decimal lease id as value, all
//! on one lease kept alive (Java's global lease), put in transactions of at most 64 operations; the parent
//! key `/<root>/<URL-encoded interface>` is written as Java does (persistent, value `path.hashCode()`). The
//! keys and values are `mesh_testkit::dubbo_writers::java27_provider`'s (written from Dubbo's sources).
//!
//! Protocol (lines): stdout `REGISTERED <instances> <revision>` once registered; then, per stdin line
//! `churn <changes per second> <seconds>`: alternately one absent instance joins (its key put, with a fresh
//! `timestamp`) and one present instance leaves (its key deleted), each change sent when due (or when the
//! previous one is answered, if later: one at a time); once all are answered, one JSON line per change is appended to `--records`
//! (`{"op","instance","revision","sent_unix_ns","acked_unix_ns"}`) and stdout says `CHURNED <changes>
//! <failed>`. `quit` or end of input revokes the lease (every key goes) and exits 0; errors exit 1.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Parser;
use etcd_client::{Client, PutOptions, Txn, TxnOp};
use mesh_testkit::churn::{due_ns, nth_loopback, Change, ChurnPlan};
use mesh_testkit::dubbo_writers::{java27_provider, Provider, Registration};
use mesh_testkit::sim::SERVICE;

/// Registers Java-2.7-style provider keys in etcd and churns them on command (scale benchmark).
#[derive(Debug, Parser)]
#[command(name = "registry-churn", version)]
struct Args {
    /// etcd endpoint (http://127.0.0.1:2379).
    #[arg(long)]
    etcd: String,
    /// Dubbo's registry root (the registry URL's `group`).
    #[arg(long, default_value = "/dubbo")]
    root: String,
    /// Interfaces registered.
    #[arg(long, default_value_t = 1)]
    interfaces: u32,
    /// Instances registered per interface.
    #[arg(long, default_value_t = 5000)]
    instances: u32,
    /// Unregistered instances (listening) that churn lets join.
    #[arg(long, default_value_t = 50)]
    spare: u32,
    /// Address of instance 0; instance i listens on the i-th loopback address after it.
    #[arg(long, default_value_t = Ipv4Addr::new(127, 1, 0, 1))]
    ip_base: Ipv4Addr,
    /// The port every instance listens on.
    #[arg(long)]
    port: u16,
    /// Lease TTL in seconds (Java: 30).
    #[arg(long, default_value_t = 30)]
    lease_ttl: i64,
    /// `application` parameter of the URLs.
    #[arg(long, default_value = "bench-provider")]
    application: String,
    /// Seed of the churn's choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where each churn appends its per-change records (JSON lines).
    #[arg(long)]
    records: PathBuf,
    /// Key layout: `java-2.7` (Dubbo's), or `mesh-v1` (the agents' layout before issue 11,
    /// `<root>/<interface>/<ip:port>` = `{}`; for a before/after comparison only).
    #[arg(long, default_value = "java-2.7", value_parser = ["java-2.7", "mesh-v1"])]
    layout: String,
}

/// Puts per transaction (etcd's default `--max-txn-ops` is 128).
const TXN_OPS: usize = 64;
/// Longest wait for one etcd request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest churn accepted, seconds.
const MAX_CHURN_S: f64 = 3600.0;
/// Fastest churn accepted, changes per second.
const MAX_RATE: f64 = 10_000.0;

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("registry-churn")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("registry-churn: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("registry-churn: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One instance's registration.
struct Instance {
    interface: String,
    addr: SocketAddr,
    /// Its key while registered.
    key: Option<String>,
}

/// What one change did, for the records.
#[derive(serde::Serialize)]
struct Record {
    op: &'static str,
    instance: u32,
    revision: i64,
    sent_unix_ns: u64,
    acked_unix_ns: u64,
}

async fn run(args: Args) -> Result<()> {
    if args.interfaces == 0 || args.instances == 0 {
        bail!("--interfaces and --instances must be at least 1");
    }
    let registered = args
        .interfaces
        .checked_mul(args.instances)
        .context("too many instances")?;
    let total = registered.checked_add(args.spare).context("too many instances")?;
    let root = format!("/{}", args.root.trim_matches('/'));
    let mut instances = Vec::with_capacity(total as usize);
    for i in 0..total {
        let ip = nth_loopback(args.ip_base, i)
            .with_context(|| format!("instance {i} falls outside 127.0.0.0/8 from {}", args.ip_base))?;
        // Spares are spread over the interfaces like the registered ones.
        let interface = interface_name(i % args.interfaces);
        instances.push(Instance {
            interface,
            addr: SocketAddr::new(ip.into(), args.port),
            key: None,
        });
    }

    let mut client = timed("connect", Client::connect([args.etcd.as_str()], None)).await?;
    let lease = timed("lease grant", client.lease_grant(args.lease_ttl, None))
        .await?
        .id();
    let keepalive = tokio::spawn(keep_alive(client.clone(), lease, args.lease_ttl));

    let mesh_v1 = args.layout == "mesh-v1";
    // Java writes the interface's path as a persistent key on register (once per interface here: every
    // instance of an interface has the same parents).
    for inst in instances
        .iter()
        .take(args.interfaces as usize)
        .filter(|_| !mesh_v1)
    {
        for parent in java27(&root, inst, &args.application, 0).parents {
            timed("put", client.put(parent.key, parent.value, None)).await?;
        }
    }

    let value = if mesh_v1 {
        "{}".to_string()
    } else {
        lease.to_string()
    };
    let mut revision = 0;
    let first: Vec<u32> = (0..registered).collect();
    for chunk in first.chunks(TXN_OPS) {
        let mut ops = Vec::with_capacity(chunk.len());
        for &i in chunk {
            let inst = &mut instances[i as usize];
            let key = key_of(&root, inst, &args, now_ms());
            ops.push(TxnOp::put(
                key.as_str(),
                value.as_str(),
                Some(PutOptions::new().with_lease(lease)),
            ));
            inst.key = Some(key);
        }
        let response = timed("txn", client.txn(Txn::new().and_then(ops))).await?;
        revision = response.header().map_or(0, |h| h.revision());
    }
    say(&format!("REGISTERED {registered} {revision}"))?;

    let mut plan = ChurnPlan::new(registered, args.spare, args.seed);
    let mut lines = stdin_lines();
    while let Some(line) = lines.recv().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] => {}
            ["quit"] => break,
            ["churn", rate, seconds] => {
                let rate: f64 = rate.parse().context("churn rate")?;
                let seconds: f64 = seconds.parse().context("churn seconds")?;
                if !(rate > 0.0 && rate <= MAX_RATE && seconds > 0.0 && seconds <= MAX_CHURN_S) {
                    bail!("churn {rate}/s for {seconds} s: out of range (0..{MAX_RATE}]/s, (0..{MAX_CHURN_S}] s");
                }
                let (records, failed) = churn(
                    &client,
                    &mut plan,
                    &mut instances,
                    &root,
                    &args,
                    lease,
                    rate,
                    seconds,
                )
                .await?;
                append_records(&args.records, &records)?;
                say(&format!("CHURNED {} {failed}", records.len()))?;
            }
            _ => bail!("unknown command {line:?} (churn <rate> <seconds> | quit)"),
        }
    }
    keepalive.abort();
    timed("lease revoke", client.lease_revoke(lease)).await?;
    Ok(())
}

/// Runs one churn: `rate * seconds` changes, each sent when due or, if the previous one is not answered by
/// then, as soon as it is (one at a time: an instance's key is never deleted before its put is answered).
/// Returns the records of the answered ones and the count of failed ones.
#[allow(clippy::too_many_arguments)]
async fn churn(
    client: &Client,
    plan: &mut ChurnPlan,
    instances: &mut [Instance],
    root: &str,
    args: &Args,
    lease: i64,
    rate: f64,
    seconds: f64,
) -> Result<(Vec<Record>, usize)> {
    let changes = (rate * seconds).round() as u64;
    let start = Instant::now();
    let mut client = client.clone();
    let value = if args.layout == "mesh-v1" {
        "{}".to_string()
    } else {
        lease.to_string()
    };
    let mut records = Vec::with_capacity(changes as usize);
    let mut failed = 0;
    for n in 0..changes {
        let Some(change) = plan.next_change() else { break };
        tokio::time::sleep_until((start + Duration::from_nanos(due_ns(n, rate))).into()).await;
        let sent = unix_ns();
        let done = match change {
            Change::Join(i) => {
                let inst = &mut instances[i as usize];
                let key = key_of(root, inst, args, now_ms());
                inst.key = Some(key.clone());
                let options = PutOptions::new().with_lease(lease);
                timed("put", client.put(key, value.as_str(), Some(options)))
                    .await
                    .map(|r| record("put", i, r.header().map_or(0, |h| h.revision()), sent))
            }
            Change::Leave(i) => {
                let key = instances[i as usize]
                    .key
                    .take()
                    .context("a leaving instance has no key")?;
                timed("delete", client.delete(key, None))
                    .await
                    .map(|r| record("delete", i, r.header().map_or(0, |h| h.revision()), sent))
            }
        };
        match done {
            Ok(r) => records.push(r),
            Err(e) => {
                failed += 1;
                eprintln!("registry-churn: {e:#}");
            }
        }
    }
    Ok((records, failed))
}

fn record(op: &'static str, instance: u32, revision: i64, sent_unix_ns: u64) -> Record {
    Record {
        op,
        instance,
        revision,
        sent_unix_ns,
        acked_unix_ns: unix_ns(),
    }
}

/// Keeps the lease alive at a third of its TTL until aborted.
async fn keep_alive(mut client: Client, lease: i64, ttl: i64) {
    let period = Duration::from_secs(u64::try_from(ttl / 3).unwrap_or(1).max(1));
    loop {
        match client.lease_keep_alive(lease).await {
            Ok((mut keeper, mut answers)) => loop {
                if keeper.keep_alive().await.is_err() {
                    break;
                }
                match tokio::time::timeout(REQUEST_TIMEOUT, answers.message()).await {
                    Ok(Ok(Some(a))) if a.ttl() > 0 => {}
                    other => {
                        eprintln!("registry-churn: lease keepalive: {other:?}");
                        break;
                    }
                }
                tokio::time::sleep(period).await;
            },
            Err(e) => eprintln!("registry-churn: lease keepalive: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The lines of stdin, read on their own thread (ends at end of input or a read error).
fn stdin_lines() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn append_records(path: &PathBuf, records: &[Record]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("open {}", path.display()))?;
    let mut text = String::new();
    for r in records {
        text.push_str(&serde_json::to_string(r)?);
        text.push('\n');
    }
    f.write_all(text.as_bytes())?;
    Ok(())
}

fn say(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

async fn timed<T, E>(op: &str, f: impl std::future::Future<Output = Result<T, E>>) -> Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(REQUEST_TIMEOUT, f).await {
        Ok(r) => r.with_context(|| format!("etcd {op}")),
        Err(_) => bail!("etcd {op}: no answer within {} s", REQUEST_TIMEOUT.as_secs()),
    }
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn now_ms() -> u64 {
    unix_ns() / 1_000_000
}

/// Interface `k`: the benchmark's `IHelloService` for 0, `IHelloService<k>` after it.
fn interface_name(k: u32) -> String {
    if k == 0 {
        SERVICE.to_string()
    } else {
        format!("{SERVICE}{k}")
    }
}

/// An instance's key in the chosen layout.
fn key_of(root: &str, inst: &Instance, args: &Args, timestamp_ms: u64) -> String {
    if args.layout == "mesh-v1" {
        format!("{root}/{}/{}", inst.interface, inst.addr)
    } else {
        java27(root, inst, &args.application, timestamp_ms).key
    }
}

/// Instance `inst` registered by a Java 2.7 provider (`mesh_testkit::dubbo_writers`).
fn java27(root: &str, inst: &Instance, application: &str, timestamp_ms: u64) -> Registration {
    let mut p = Provider::new(&inst.interface, &inst.addr.ip().to_string(), inst.addr.port());
    p.application = application.to_owned();
    p.timestamp_ms = timestamp_ms;
    java27_provider(root, &p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(layout: &str) -> Args {
        Args::parse_from([
            "registry-churn",
            "--etcd",
            "e",
            "--port",
            "1",
            "--records",
            "r",
            "--layout",
            layout,
        ])
    }

    #[test]
    fn an_instance_key_names_its_interface_and_address_in_both_layouts() {
        let inst = Instance {
            interface: interface_name(3),
            addr: "127.1.0.9:20880".parse().unwrap(),
            key: None,
        };
        let java = key_of("/dubbo", &inst, &args("java-2.7"), 1_700_000_000_000);
        let prefix = format!("/dubbo/{SERVICE}3/providers/dubbo%3A%2F%2F127.1.0.9%3A20880%2F{SERVICE}3%3F");
        assert!(java.starts_with(&prefix), "{java}");
        assert!(java.contains("timestamp%3D1700000000000"), "{java}");
        let v1 = key_of("/dubbomesh/v1", &inst, &args("mesh-v1"), 1);
        assert_eq!(v1, format!("/dubbomesh/v1/{SERVICE}3/127.1.0.9:20880"));
    }

    #[test]
    fn interface_zero_is_the_benchmark_service() {
        assert_eq!(interface_name(0), SERVICE);
        assert_eq!(interface_name(9), format!("{SERVICE}9"));
    }
}
