//! `registry-churn`: registers provider instances in etcd as Dubbo does, then churns them on command, for
//! the registry scale benchmark (`scripts/bench.sh registry`).
//!
//! The estate is `--interfaces` S services x `--instances` N instances, instance `i` listening on the `i`-th
//! loopback address from `--ip-base`, all on `--port` (see `mesh_testkit::churn`), plus `--spare` addresses
//! that churn lets join; interface 0 is the benchmark's `IHelloService`, interface `k > 0` is
//! `IHelloService<k>` (`churn::bench_interface`). What an instance writes depends on `--model`:
//!
//! * `interface` (default), Dubbo's interface-level registry as Java 2.7 writes it
//!   (`mesh_testkit::dubbo_writers::java27_provider`; `--layout java-3.3`: as Java 3.3 writes it,
//!   `java33_provider`, no `pid`/`anyhost`, `prefer.serialization` and `service-name-mapping`): keys `/<root>/<URL-encoded interface>/providers/
//!   <URL-encoded full URL>`, the decimal lease id as value, the parent key `/<root>/<URL-encoded interface>`
//!   persistent (value `path.hashCode()`). With `--instance-exports one` (the default, issue 11's estate) each
//!   of the S x N addresses exports one interface (`i % S`): one key per instance. With `all`, each of the N
//!   addresses exports all S interfaces (one application exporting S services, the estate the
//!   application-level model compares against): S keys per instance, put or deleted together in one
//!   transaction when it joins or leaves (a process registering at start, or its lease going).
//! * `application`, Dubbo 3's application-level discovery (`dubbo_writers::app_level`): one key per instance,
//!   `/services/<--application>/<ip>:<port>`, its value Java 3.3's Gson JSON (`--shape java-3`) or dubbo-go's
//!   (`--shape dubbo-go`, with the whole MetadataInfo in `ServiceMetadata`), the revision Java's over the
//!   S services (`churn::bench_services`: the same for every instance and every restart, as one build of one
//!   application); with `--mapping dubbo-go`, the S mapping keys `/<root>/mapping/<interface>` = the
//!   application (dubbo-go's, persistent); with `--mapping none`, no mapping key (a Java 3 provider writes none
//!   to etcd: its etcd metadata report does not implement the mapping; consumers name the application with
//!   `provided-by`). A joining instance writes the same revision with a fresh `timestamp`.
//!
//! All instance keys are on one lease kept alive (Java's global lease), put in transactions of at most 64
//! operations at the start.
//!
//! Protocol (lines): stdout `REGISTERED <instances> <revision>` once registered; then, per stdin line
//! `churn <changes per second> <seconds>`: alternately one absent instance joins (its keys put, with a fresh
//! `timestamp`) and one present instance leaves (its keys deleted), each change sent when due (or when the
//! previous one is answered, if later: one at a time); once all are answered, one JSON line per change is
//! appended to `--records` (`{"op","instance","revision","sent_unix_ns","acked_unix_ns"}`) and stdout says
//! `CHURNED <changes> <failed>`. `quit` or end of input revokes the lease (its keys go; the persistent ones
//! stay) and exits 0; errors exit 1.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Parser;
use etcd_client::{Client, PutOptions, Txn, TxnOp};
use mesh_testkit::churn::{bench_interface, bench_services, due_ns, nth_loopback, Change, ChurnPlan};
use mesh_testkit::dubbo_writers::app_level::{
    dubbo_go_instance_value, java33_instance_value, java_revision, mapping_key, AppInstance,
    ServiceDescription,
};
use mesh_testkit::dubbo_writers::{java27_provider, java33_provider, Provider, Registration};

/// Registers Dubbo provider instances in etcd (interface- or application-level) and churns them on command
/// (scale benchmark).
#[derive(Debug, Parser)]
#[command(name = "registry-churn", version)]
struct Args {
    /// etcd endpoint (http://127.0.0.1:2379).
    #[arg(long)]
    etcd: String,
    /// Dubbo's registry root (the registry URL's `group`); under `--model application`, the mapping root.
    #[arg(long, default_value = "/dubbo")]
    root: String,
    /// Interfaces (services) of the estate.
    #[arg(long, default_value_t = 1)]
    interfaces: u32,
    /// Instances per interface (`--model interface --instance-exports one`) or of the application.
    #[arg(long, default_value_t = 5000)]
    instances: u32,
    /// Discovery model: `interface` (Dubbo's interface-level keys) or `application` (Dubbo 3 instances under
    /// `/services/` and the interface-to-application mapping keys).
    #[arg(long, default_value = "interface", value_parser = ["interface", "application"])]
    model: String,
    /// `--model interface`: `one` = S x N addresses, one interface each (one key per instance); `all` = N
    /// addresses exporting all S interfaces (S keys per instance, the application-level estate). Default
    /// `one`; `--model application` is always `all`.
    #[arg(long, value_parser = ["one", "all"])]
    instance_exports: Option<String>,
    /// `--model application`: the instance value's shape, `java-3` (Gson, camelCase) or `dubbo-go`
    /// (PascalCase, with `ServiceMetadata`).
    #[arg(long, default_value = "java-3", value_parser = ["java-3", "dubbo-go"])]
    shape: String,
    /// `--model application`: the interface-to-application mapping keys written at the start, `dubbo-go`
    /// (`/<root>/mapping/<interface>`, as a dubbo-go provider keeps them) or `none` (a Java 3 provider on
    /// etcd writes none).
    #[arg(long, default_value = "dubbo-go", value_parser = ["dubbo-go", "none"])]
    mapping: String,
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
    /// The application: the `application` parameter of the URLs, the instances' service name.
    #[arg(long, default_value = "bench-provider")]
    application: String,
    /// Seed of the churn's choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where each churn appends its per-change records (JSON lines).
    #[arg(long)]
    records: PathBuf,
    /// `--model interface` key layout: `java-2.7` or `java-3.3` (Dubbo's, as each version writes its provider
    /// URLs), or `mesh-v1` (the agents' layout before issue 11, `<root>/<interface>/<ip:port>` = `{}`; for a
    /// before/after comparison only).
    #[arg(long, default_value = "java-2.7", value_parser = ["java-2.7", "java-3.3", "mesh-v1"])]
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

/// Who writes the interface-level keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InterfaceLayout {
    Java27,
    Java33,
    /// The agents' own layout before issue 11.
    MeshV1,
}

/// What an instance writes, per model.
#[derive(Debug)]
enum Estate {
    /// Interface-level: each instance registers `interfaces` (one, or all of them) as Java 2.7 or 3.3 does.
    Interface {
        root: String,
        application: String,
        /// Interfaces per instance (1: interface `i % count`; else all `count`).
        all: bool,
        count: u32,
        layout: InterfaceLayout,
    },
    /// Application-level: one Dubbo 3 instance per address.
    Application {
        application: String,
        services: Vec<ServiceDescription>,
        revision: String,
        go_shape: bool,
        /// dubbo-go's mapping keys written at the start.
        mapping: bool,
    },
}

impl Estate {
    fn new(args: &Args) -> Result<Estate> {
        let root = format!("/{}", args.root.trim_matches('/'));
        let exports = args.instance_exports.as_deref();
        Ok(match args.model.as_str() {
            "application" => {
                if exports == Some("one") {
                    bail!(
                        "--model application: every instance exports all interfaces (--instance-exports all)"
                    );
                }
                if args.layout != "java-2.7" {
                    bail!("--layout is for --model interface");
                }
                let services = bench_services(&args.application, args.interfaces, args.port);
                Estate::Application {
                    application: args.application.clone(),
                    revision: java_revision(&args.application, &services),
                    services,
                    go_shape: args.shape == "dubbo-go",
                    mapping: args.mapping == "dubbo-go",
                }
            }
            _ => Estate::Interface {
                root,
                application: args.application.clone(),
                all: exports == Some("all"),
                count: args.interfaces,
                layout: match args.layout.as_str() {
                    "mesh-v1" => InterfaceLayout::MeshV1,
                    "java-3.3" => InterfaceLayout::Java33,
                    _ => InterfaceLayout::Java27,
                },
            },
        })
    }

    /// Instances registered at the start.
    fn registered(&self, args: &Args) -> Result<u32> {
        match self {
            Estate::Interface { all: false, .. } => args
                .interfaces
                .checked_mul(args.instances)
                .context("too many instances"),
            _ => Ok(args.instances),
        }
    }

    /// Persistent keys written once at the start: Java's interface parents, or the mapping keys.
    fn persistent_keys(&self, args: &Args) -> Vec<(String, String)> {
        match self {
            Estate::Interface {
                layout: InterfaceLayout::MeshV1,
                ..
            } => Vec::new(),
            Estate::Interface {
                root,
                application,
                count,
                layout,
                ..
            } => {
                let addr = SocketAddr::new(args.ip_base.into(), args.port);
                (0..*count)
                    .flat_map(|k| java_url(*layout, root, &bench_interface(k), addr, application, 0).parents)
                    .map(|p| (p.key, p.value))
                    .collect()
            }
            Estate::Application { mapping: false, .. } => Vec::new(),
            Estate::Application { application, .. } => {
                let root = format!("/{}", args.root.trim_matches('/'));
                (0..args.interfaces)
                    .map(|k| (mapping_key(&root, &bench_interface(k)), application.clone()))
                    .collect()
            }
        }
    }

    /// The keys (and values) instance `i` at `addr` writes when it registers at `timestamp_ms`.
    fn instance_keys(
        &self,
        i: u32,
        addr: SocketAddr,
        lease: i64,
        timestamp_ms: u64,
    ) -> Vec<(String, String)> {
        match self {
            Estate::Interface {
                root,
                application,
                all,
                count,
                layout,
            } => {
                let interfaces: Vec<u32> = if *all {
                    (0..*count).collect()
                } else {
                    vec![i % count]
                };
                interfaces
                    .into_iter()
                    .map(|k| {
                        let interface = bench_interface(k);
                        if *layout == InterfaceLayout::MeshV1 {
                            (format!("{root}/{interface}/{addr}"), "{}".to_owned())
                        } else {
                            let key =
                                java_url(*layout, root, &interface, addr, application, timestamp_ms).key;
                            (key, lease.to_string())
                        }
                    })
                    .collect()
            }
            Estate::Application {
                application,
                services,
                revision,
                go_shape,
                ..
            } => {
                let instance = AppInstance {
                    application: application.clone(),
                    host: addr.ip().to_string(),
                    port: addr.port(),
                    revision: revision.clone(),
                    services: services.clone(),
                    timestamp_ms,
                };
                let value = if *go_shape {
                    dubbo_go_instance_value(&instance, true)
                } else {
                    java33_instance_value(&instance)
                };
                let key = mesh_testkit::dubbo_writers::app_level::instance_key(
                    application,
                    &instance.host,
                    instance.port,
                );
                vec![(key, value)]
            }
        }
    }

    /// The revision the instances announce (application-level), for the log.
    fn describe(&self) -> String {
        match self {
            Estate::Interface { all, count, .. } => {
                format!(
                    "interface-level, {} interface(s) per instance",
                    if *all { *count } else { 1 }
                )
            }
            Estate::Application {
                application,
                services,
                revision,
                ..
            } => {
                format!(
                    "application-level, {application} exporting {} services, revision {revision}",
                    services.len()
                )
            }
        }
    }
}

/// One instance: where it listens and, while registered, its keys.
struct Instance {
    addr: SocketAddr,
    keys: Vec<String>,
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
    let estate = Estate::new(&args)?;
    let registered = estate.registered(&args)?;
    let total = registered.checked_add(args.spare).context("too many instances")?;
    let mut instances = Vec::with_capacity(total as usize);
    for i in 0..total {
        let ip = nth_loopback(args.ip_base, i)
            .with_context(|| format!("instance {i} falls outside 127.0.0.0/8 from {}", args.ip_base))?;
        instances.push(Instance {
            addr: SocketAddr::new(ip.into(), args.port),
            keys: Vec::new(),
        });
    }
    eprintln!("registry-churn: {}", estate.describe());

    let mut client = timed("connect", Client::connect([args.etcd.as_str()], None)).await?;
    let lease = timed("lease grant", client.lease_grant(args.lease_ttl, None))
        .await?
        .id();
    let keepalive = tokio::spawn(keep_alive(client.clone(), lease, args.lease_ttl));

    for (key, value) in estate.persistent_keys(&args) {
        timed("put", client.put(key, value, None)).await?;
    }

    let mut revision = 0;
    let mut ops = Vec::with_capacity(TXN_OPS);
    for i in 0..registered {
        let inst = &mut instances[i as usize];
        for (key, value) in estate.instance_keys(i, inst.addr, lease, now_ms()) {
            ops.push(TxnOp::put(
                key.as_str(),
                value.as_str(),
                Some(PutOptions::new().with_lease(lease)),
            ));
            inst.keys.push(key);
            if ops.len() == TXN_OPS {
                let batch = std::mem::take(&mut ops);
                let response = timed("txn", client.txn(Txn::new().and_then(batch))).await?;
                revision = response.header().map_or(0, |h| h.revision());
            }
        }
    }
    if !ops.is_empty() {
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
                let (records, failed) =
                    churn(&client, &mut plan, &mut instances, &estate, lease, rate, seconds).await?;
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
/// then, as soon as it is (one at a time: an instance's keys are never deleted before their put is answered).
/// An instance's keys are put (or deleted) in one transaction. Returns the records of the answered changes
/// and the count of failed ones.
async fn churn(
    client: &Client,
    plan: &mut ChurnPlan,
    instances: &mut [Instance],
    estate: &Estate,
    lease: i64,
    rate: f64,
    seconds: f64,
) -> Result<(Vec<Record>, usize)> {
    let changes = (rate * seconds).round() as u64;
    let start = Instant::now();
    let mut client = client.clone();
    let mut records = Vec::with_capacity(changes as usize);
    let mut failed = 0;
    for n in 0..changes {
        let Some(change) = plan.next_change() else { break };
        tokio::time::sleep_until((start + Duration::from_nanos(due_ns(n, rate))).into()).await;
        let sent = unix_ns();
        let (op, i, ops) = match change {
            Change::Join(i) => {
                let inst = &mut instances[i as usize];
                let keys = estate.instance_keys(i, inst.addr, lease, now_ms());
                inst.keys = keys.iter().map(|(k, _)| k.clone()).collect();
                let ops: Vec<TxnOp> = keys
                    .iter()
                    .map(|(k, v)| {
                        TxnOp::put(k.as_str(), v.as_str(), Some(PutOptions::new().with_lease(lease)))
                    })
                    .collect();
                ("put", i, ops)
            }
            Change::Leave(i) => {
                let keys = std::mem::take(&mut instances[i as usize].keys);
                if keys.is_empty() {
                    bail!("leaving instance {i} has no keys");
                }
                let ops: Vec<TxnOp> = keys.iter().map(|k| TxnOp::delete(k.as_str(), None)).collect();
                ("delete", i, ops)
            }
        };
        let done = timed(op, client.txn(Txn::new().and_then(ops)))
            .await
            .map(|r| record(op, i, r.header().map_or(0, |h| h.revision()), sent));
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

/// `interface` at `addr` registered by a Java 2.7 provider (`mesh_testkit::dubbo_writers`).
fn java_url(
    layout: InterfaceLayout,
    root: &str,
    interface: &str,
    addr: SocketAddr,
    application: &str,
    timestamp_ms: u64,
) -> Registration {
    let mut p = Provider::new(interface, &addr.ip().to_string(), addr.port());
    p.application = application.to_owned();
    p.timestamp_ms = timestamp_ms;
    match layout {
        InterfaceLayout::Java33 => java33_provider(root, &p),
        _ => java27_provider(root, &p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_registry::dubbo::instance::{InstanceKey, InstanceShape, ServiceInstance};
    use mesh_registry::dubbo::mapping::parse_mapping;
    use mesh_testkit::sim::metadata_service::SimMetadata;
    use mesh_testkit::sim::SERVICE;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec![
            "registry-churn",
            "--etcd",
            "e",
            "--port",
            "20880",
            "--records",
            "r",
        ];
        argv.extend_from_slice(&["--interfaces", "10", "--instances", "50"]);
        argv.extend_from_slice(extra);
        Args::parse_from(argv)
    }

    fn addr() -> SocketAddr {
        "127.1.0.9:20880".parse().unwrap()
    }

    #[test]
    fn interface_level_one_interface_per_instance_in_both_layouts() {
        let a = args(&[]);
        let estate = Estate::new(&a).unwrap();
        assert_eq!(estate.registered(&a).unwrap(), 500);
        let keys = estate.instance_keys(13, addr(), 42, 1_700_000_000_000);
        assert_eq!(keys.len(), 1);
        let (java, value) = &keys[0];
        let prefix = format!("/dubbo/{SERVICE}3/providers/dubbo%3A%2F%2F127.1.0.9%3A20880%2F{SERVICE}3%3F");
        assert!(java.starts_with(&prefix), "{java}");
        assert!(java.contains("timestamp%3D1700000000000"), "{java}");
        assert_eq!(value, "42");
        // Java's persistent parents: the service path and its configurators, per interface.
        assert_eq!(estate.persistent_keys(&a).len(), 20);
        // Java 3.3: no pid/anyhost, its own parameters; the same parents.
        let j33 = args(&["--layout", "java-3.3"]);
        let estate33 = Estate::new(&j33).unwrap();
        let (key33, value33) = &estate33.instance_keys(13, addr(), 42, 1_700_000_000_000)[0];
        assert!(key33.starts_with(&prefix), "{key33}");
        assert!(key33.contains("prefer.serialization%3D"), "{key33}");
        assert!(!key33.contains("pid%3D") && java.contains("pid%3D"), "{key33}");
        assert_eq!(value33, "42");
        assert_eq!(estate33.persistent_keys(&j33), estate.persistent_keys(&a));
        let v1 = args(&["--layout", "mesh-v1", "--root", "/dubbomesh/v1"]);
        let keys = Estate::new(&v1).unwrap().instance_keys(13, addr(), 42, 1);
        assert_eq!(
            keys,
            [(
                format!("/dubbomesh/v1/{SERVICE}3/127.1.0.9:20880"),
                "{}".to_owned()
            )]
        );
    }

    #[test]
    fn interface_level_all_interfaces_per_instance() {
        let a = args(&["--instance-exports", "all"]);
        let estate = Estate::new(&a).unwrap();
        assert_eq!(estate.registered(&a).unwrap(), 50);
        let keys = estate.instance_keys(13, addr(), 42, 1);
        assert_eq!(keys.len(), 10);
        for (k, (key, _)) in keys.iter().enumerate() {
            let interface = bench_interface(k as u32);
            assert!(
                key.starts_with(&format!(
                    "/dubbo/{interface}/providers/dubbo%3A%2F%2F127.1.0.9%3A20880%2F{interface}%3F"
                )),
                "{key}"
            );
        }
    }

    #[test]
    fn application_level_instances_and_mapping_read_back_and_match_the_simulator() {
        let a = args(&["--model", "application"]);
        let estate = Estate::new(&a).unwrap();
        assert_eq!(estate.registered(&a).unwrap(), 50);
        let keys = estate.instance_keys(13, addr(), 42, 1_700_000_000_000);
        assert_eq!(keys.len(), 1);
        let (key, value) = &keys[0];
        assert_eq!(key, "/services/bench-provider/127.1.0.9:20880");
        let k = InstanceKey::parse(key).unwrap();
        assert_eq!((k.app.as_str(), k.port), ("bench-provider", 20880));
        let (instance, shape) = ServiceInstance::from_json(value.as_bytes()).unwrap();
        assert_eq!(shape, InstanceShape::Java);
        // The revision provider-sim's MetadataService answers for (same services, same port).
        let sim = SimMetadata::new("bench-provider", &bench_services("bench-provider", 10, 20880));
        assert_eq!(instance.revision(), Some(sim.revision()));
        // A restart (another timestamp) keeps the revision.
        let again = estate.instance_keys(13, addr(), 42, 1_800_000_000_000);
        let (restarted, _) = ServiceInstance::from_json(again[0].1.as_bytes()).unwrap();
        assert_eq!(restarted.revision(), instance.revision());
        assert_ne!(again[0].1, *value);
        let mapping = estate.persistent_keys(&a);
        assert_eq!(mapping.len(), 10);
        assert_eq!(mapping[0].0, format!("/dubbo/mapping/{SERVICE}"));
        assert_eq!(parse_mapping(&mapping[9].1).unwrap(), ["bench-provider"]);
        // A Java 3 estate on etcd: no mapping key, the same instances.
        let none = args(&["--model", "application", "--mapping", "none"]);
        let java_only = Estate::new(&none).unwrap();
        assert!(java_only.persistent_keys(&none).is_empty());
        assert_eq!(java_only.instance_keys(13, addr(), 42, 1_700_000_000_000), keys);

        let go = args(&["--model", "application", "--shape", "dubbo-go"]);
        let keys = Estate::new(&go).unwrap().instance_keys(13, addr(), 42, 1);
        let (instance, shape) = ServiceInstance::from_json(keys[0].1.as_bytes()).unwrap();
        assert_eq!(shape, InstanceShape::Go);
        assert_eq!(instance.inline_metadata.map(|m| m.services.len()), Some(10));

        assert!(Estate::new(&args(&["--model", "application", "--instance-exports", "one"])).is_err());
    }

    #[test]
    fn interface_zero_is_the_benchmark_service() {
        assert_eq!(bench_interface(0), SERVICE);
        assert_eq!(bench_interface(9), format!("{SERVICE}9"));
    }
}
