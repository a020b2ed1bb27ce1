//! The admin endpoints checked by a real Prometheus server (Debian `prometheus`, installed by
//! scripts/setup.sh): it scrapes a consumer agent and two provider agents every second while the testkit's
//! load generator calls through them, and the test asks Prometheus' HTTP query API whether the agents'
//! figures match what the test did: the request rate the load generator measured, the 429s the test
//! caused with a rate limit, the ejection of a provider agent the test killed. `promtool check metrics`
//! passes on both roles' `/metrics`; `/ready` answers 503 once a drain has started.
//!
//! The queries are the ones of the Grafana dashboard in deploy/grafana-mesh-agent.json.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mesh_testkit::etcd::EtcdServer;
use mesh_testkit::loadgen::{run_blocking, LoadConfig};
use mesh_testkit::process::{free_port, wait_for_port, ChildGuard};

mod common;
use common::*;

/// Requests per second the load generator sends (open loop, paced).
const RATE: f64 = 200.0;
/// How long.
const LOAD: Duration = Duration::from_secs(10);
/// A service with a rate limit of 2 calls/s over the agent: the test's bursts to it get 429s.
const LIMITED: &str = "com.example.Limited";

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A real Prometheus on a free loopback port, scraping `targets` (job name, admin ports) every second.
struct Prometheus {
    _process: ChildGuard,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(targets: &[(&str, &[u16])]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let mut config = String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\nscrape_configs:\n");
        for (job, ports) in targets {
            let list: Vec<String> = ports.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
                list.join(", ")
            ));
        }
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config).unwrap();
        let port = free_port().unwrap();
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let process = ChildGuard::spawn(&mut cmd)
            .expect("the Debian package prometheus must be installed (scripts/setup.sh)")
            .with_grace(Duration::from_secs(5));
        wait_for_port(addr(port), Duration::from_secs(30)).unwrap();
        // Prometheus answers 503 until its storage is open.
        wait_until("Prometheus ready", Duration::from_secs(30), || {
            admin_get(port, "/-/ready").0 == 200
        });
        Prometheus {
            _process: process,
            port,
            _dir: dir,
        }
    }

    /// The values of an instant query at `at` (Unix seconds; `None`: now), by their label sets.
    fn query_at(&self, promql: &str, at: Option<f64>) -> Vec<(serde_json::Value, f64)> {
        let mut path = format!("/api/v1/query?query={}", percent_encode(promql));
        if let Some(t) = at {
            path.push_str(&format!("&time={t:.3}"));
        }
        let (status, body) = admin_get(self.port, &path);
        assert_eq!(status, 200, "{promql}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "success", "{promql}: {body}");
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let value = r["value"][1].as_str().unwrap().parse::<f64>().unwrap();
                (r["metric"].clone(), value)
            })
            .collect()
    }

    /// The single value of a query that sums to one series (0 when it has none).
    fn scalar(&self, promql: &str, at: Option<f64>) -> f64 {
        let r = self.query_at(promql, at);
        assert!(r.len() <= 1, "{promql}: {r:?}");
        r.first().map_or(0.0, |(_, v)| *v)
    }

    /// Waits until every target of `job` has been scraped successfully `n` more times from now.
    fn wait_for_scrapes(&self, job: &str, n: f64) {
        let q = format!("min(count_over_time(up{{job=\"{job}\"}}[10m]))");
        let before = self.scalar(&q, None);
        wait_until(&format!("{n} scrapes of {job}"), Duration::from_secs(30), || {
            self.scalar(&q, None) >= before + n
        });
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The dashboard's queries (deploy/grafana-mesh-agent.json), each with its panel's title, its variables
/// filled in as this test names the jobs.
fn dashboard_queries() -> Vec<(String, String)> {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/grafana-mesh-agent.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$consumer_job", "consumer")
                .replace("$provider_job", "provider")
                .replace("$__rate_interval", "1m");
            queries.push((panel["title"].as_str().unwrap_or_default().to_owned(), expr));
        }
    }
    queries
}

#[test]
fn prometheus_sees_the_rate_the_errors_and_the_ejection_the_test_caused() {
    let (_sim_a, sim_a) = sim(&["--latency-ms", "2", "--name", "a"]);
    let (_sim_b, sim_b) = sim(&["--latency-ms", "2", "--name", "b"]);
    let [pa, pb, ca, admin_a, admin_b, admin_c] = std::array::from_fn(|_| free_port().unwrap());
    let admin = |p: u16| format!("127.0.0.1:{p}");
    let (admin_pa, admin_pb, admin_ca) = (admin(admin_a), admin(admin_b), admin(admin_c));
    let agent_a = provider_agent(pa, sim_a, &["--no-register", "--admin-listen", &admin_pa]);
    let agent_b = provider_agent(pb, sim_b, &["--no-register", "--admin-listen", &admin_pb]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(
        &dir,
        // One failure ejects: after the first failed attempt at a killed provider agent, the pool's dial
        // back-off keeps the balancer away from it, so failures do not pile up before the ejection.
        &format!("[consumer]\neject_failures = 1\n[consumer.services.\"{LIMITED}\"]\nrate_limit = 2\n"),
    );
    let providers = format!("{},{}", addr(pa), addr(pb));
    let _consumer = consumer_agent(
        ca,
        &[
            "--provider",
            &providers,
            "--config",
            &cfg,
            "--admin-listen",
            &admin_ca,
        ],
    );
    for port in [admin_a, admin_b, admin_c] {
        wait_for_port(addr(port), Duration::from_secs(10)).unwrap();
    }
    assert_eq!(admin_get(admin_c, "/live").0, 200);
    wait_until("consumer ready", Duration::from_secs(10), || {
        admin_get(admin_c, "/ready").0 == 200
    });
    assert_eq!(admin_get(admin_a, "/ready").0, 200);
    let (status, registry) = admin_get(admin_c, "/registry");
    assert_eq!(status, 200);
    assert!(registry.contains(&addr(pa).to_string()), "{registry}");
    let (_, config) = admin_get(admin_c, "/config");
    assert!(config.contains(&format!("\"listen\":\"{admin_ca}\"")), "{config}");
    let prometheus = Prometheus::start(&[("consumer", &[admin_c]), ("provider", &[admin_a, admin_b])]);
    prometheus.wait_for_scrapes("consumer", 2.0);
    prometheus.wait_for_scrapes("provider", 2.0);

    // 1. A steady paced load: Prometheus' rate over the middle of it is the load generator's rate.
    let mut load = LoadConfig::new(format!("http://127.0.0.1:{ca}/").parse().unwrap());
    load.connections = 8;
    load.rate = Some(RATE);
    load.duration = LOAD;
    load.warmup = Duration::ZERO;
    load.timeout = Duration::from_secs(5);
    let started = unix_now();
    let summary = run_blocking(load, 1).unwrap();
    assert_eq!(summary.error_count(), 0, "{summary:?}");
    prometheus.wait_for_scrapes("consumer", 2.0);
    let rate_query = "sum(rate(mesh_requests_total{job=\"consumer\"}[5s]))";
    for offset in [6.0, 8.0] {
        let seen = prometheus.scalar(rate_query, Some(started + offset));
        assert!(
            (seen - summary.qps).abs() <= 0.15 * summary.qps,
            "Prometheus says {seen:.1}/s at +{offset}s, the load generator measured {:.1}/s",
            summary.qps
        );
    }
    // Every call counted once (the totals agree to the calls in flight when the load generator stopped).
    let total = prometheus.scalar("sum(mesh_requests_total{job=\"consumer\"})", None);
    assert!(
        (total - summary.sent as f64).abs() <= 8.0,
        "counted {total}, sent {}",
        summary.sent
    );
    let forwarded = prometheus.scalar("sum(mesh_forwarded_requests_total{job=\"provider\"})", None);
    assert!(
        forwarded >= summary.ok as f64,
        "forwarded {forwarded}, answered {}",
        summary.ok
    );

    // 2. Errors the test causes: a burst to a service over its rate limit gets 429s; the calls admitted
    // reach a provider that does not export the service (the simulator answers SERVICE_ERROR, status 70).
    let (mut rejected, mut not_exported) = (0u64, 0u64);
    for i in 0..20 {
        let (status, body) = call(ca, LIMITED, &format!("burst-{i}"));
        if status == 429 {
            rejected += 1;
        } else {
            assert!(body.contains("Not found exported service"), "{status} {body}");
            not_exported += 1;
        }
    }
    assert!(
        rejected > 0,
        "the rate limit never answered 429: the check below checks nothing"
    );

    // 3. A provider agent killed under load: the consumer ejects it and says so.
    agent_b.signal("KILL").unwrap();
    let mut load = LoadConfig::new(format!("http://127.0.0.1:{ca}/").parse().unwrap());
    load.connections = 8;
    load.rate = Some(RATE);
    load.duration = Duration::from_secs(3);
    load.warmup = Duration::ZERO;
    let after_kill = run_blocking(load, 1).unwrap();
    assert_eq!(after_kill.error_count(), 0, "retried elsewhere: {after_kill:?}");
    prometheus.wait_for_scrapes("consumer", 2.0);

    let limited = prometheus.scalar(
        &format!(
            "sum(mesh_request_errors_total{{job=\"consumer\",service=\"{LIMITED}\",reason=\"rate_limited\"}})"
        ),
        None,
    );
    assert_eq!(limited, rejected as f64, "429s counted vs seen");
    let rejections = prometheus.scalar(
        "sum(mesh_rejections_total{job=\"consumer\",reason=\"rate_limited\"})",
        None,
    );
    assert_eq!(rejections, rejected as f64);
    let service_errors = prometheus.scalar(
        &format!(
            "sum(mesh_request_errors_total{{job=\"consumer\",service=\"{LIMITED}\",reason=\"provider_service_error\"}})"
        ),
        None,
    );
    assert_eq!(
        service_errors, not_exported as f64,
        "SERVICE_ERROR answers counted vs seen"
    );
    // No other error: the killed provider's calls were retried on the other one.
    let other_errors = prometheus.scalar(
        "sum(mesh_request_errors_total{job=\"consumer\",reason!~\"rate_limited|provider_service_error\"})",
        None,
    );
    assert_eq!(other_errors, 0.0);
    let killed = addr(pb).to_string();
    let ejections = prometheus.scalar(
        &format!("sum(mesh_upstream_ejections_total{{job=\"consumer\",provider=\"{killed}\"}})"),
        None,
    );
    assert!(
        ejections >= 1.0,
        "the killed provider agent {killed} was never ejected: {}",
        admin_get(admin_c, "/metrics")
            .1
            .lines()
            .filter(|l| l.contains(&killed))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let failures = prometheus.scalar(
        &format!(
            "sum(mesh_upstream_attempts_total{{job=\"consumer\",provider=\"{killed}\",result=\"failure\"}})"
        ),
        None,
    );
    assert!(
        failures >= ejections,
        "{failures} failed attempts at the killed provider, {ejections} ejections"
    );
    let survivor = addr(pa).to_string();
    let ejected_survivor = prometheus.scalar(
        &format!("sum(mesh_upstream_ejections_total{{job=\"consumer\",provider=\"{survivor}\"}})"),
        None,
    );
    assert_eq!(ejected_survivor, 0.0);
    // The killed agent's target is down; the other is up.
    assert_eq!(
        prometheus.scalar(&format!("up{{job=\"provider\",instance=\"{admin_pb}\"}}"), None),
        0.0
    );
    // The latency histogram is what the dashboard's quantile reads.
    let p99 = prometheus.scalar(
        "histogram_quantile(0.99, sum by (le) (rate(mesh_request_duration_seconds_bucket{job=\"consumer\"}[1m])))",
        None,
    );
    assert!(p99 > 0.0 && p99 < 5.0, "p99 {p99}");

    // The dashboard's queries (deploy/grafana-mesh-agent.json), its variables filled in: each one is valid
    // PromQL over these metrics and finds series.
    for (title, expr) in dashboard_queries() {
        // This consumer has a static provider list: the etcd panels are checked by the etcd test below.
        if expr.contains("etcd") {
            continue;
        }
        let found = prometheus.query_at(&expr, None);
        assert!(
            !found.is_empty(),
            "dashboard panel {title:?}: {expr} finds nothing"
        );
    }

    // 4. The exposition passes promtool, for both roles.
    let (status, consumer_metrics) = admin_get(admin_c, "/metrics");
    assert_eq!(status, 200);
    promtool_passes(&consumer_metrics);
    let (_, provider_metrics) = admin_get(admin_a, "/metrics");
    assert!(
        provider_metrics.contains("mesh_forwarded_requests_total "),
        "{provider_metrics}"
    );
    promtool_passes(&provider_metrics);

    // 5. POST /drain starts the SIGTERM drain: /ready answers 503 at once, then the agent exits.
    let mut agent_a = agent_a;
    assert_eq!(admin_request(admin_a, "POST", "/drain").0, 202);
    let (status, why) = admin_get(admin_a, "/ready");
    assert_eq!((status, why.as_str()), (503, "not ready: draining\n"));
    let exited = agent_a.wait_timeout(Duration::from_secs(15)).unwrap();
    assert!(exited.is_some_and(|s| s.success()), "{exited:?}");
}

/// The consumer's etcd watch through Prometheus, with the dashboard's etcd panel query: connected (1) while
/// etcd runs, 0 once it is stopped (by PID), 1 again after it restarts; restarts counted. Waits are
/// bounded and generous (scrapes every second, a reconnect within the retry backoff of at most 5 s).
#[test]
fn prometheus_sees_the_etcd_watch_go_and_come_back() {
    let mut etcd = EtcdServer::start().unwrap();
    let [ca, admin_c] = std::array::from_fn(|_| free_port().unwrap());
    let admin_ca = format!("127.0.0.1:{admin_c}");
    let _consumer = consumer_agent(ca, &["--etcd", etcd.client_url(), "--admin-listen", &admin_ca]);
    wait_for_port(addr(admin_c), Duration::from_secs(10)).unwrap();
    let prometheus = Prometheus::start(&[("consumer", &[admin_c])]);
    let (title, connected) = dashboard_queries()
        .into_iter()
        .find(|(_, expr)| expr.contains("mesh_registry_etcd_connected"))
        .expect("the dashboard has an etcd connected panel");
    let value = |q: &str| prometheus.scalar(q, None);
    wait_until(&format!("{title}: 1"), Duration::from_secs(30), || {
        value(&connected) == 1.0
    });
    let (status, registry) = admin_get(admin_c, "/registry");
    assert_eq!(status, 200);
    let registry: serde_json::Value = serde_json::from_str(&registry).unwrap();
    assert_eq!(registry["etcd"]["connected"], true, "{registry}");
    assert_eq!(registry["etcd"]["endpoint"], etcd.client_url(), "{registry}");
    let (_, metrics) = admin_get(admin_c, "/metrics");
    assert!(
        metrics.contains(&format!(
            "mesh_registry_etcd_endpoint_info{{endpoint=\"{}\"}} 1\n",
            etcd.client_url()
        )),
        "{metrics}"
    );
    promtool_passes(&metrics);

    etcd.stop().unwrap();
    wait_until(&format!("{title}: 0"), Duration::from_secs(30), || {
        value(&connected) == 0.0
    });
    assert!(value("sum(mesh_registry_watch_restarts_total{job=\"consumer\"})") >= 1.0);
    assert_eq!(
        admin_get(admin_c, "/ready").0,
        200,
        "serving from the last snapshot"
    );

    etcd.restart().unwrap();
    wait_until(&format!("{title}: 1 again"), Duration::from_secs(60), || {
        value(&connected) == 1.0
    });
    let (_, registry) = admin_get(admin_c, "/registry");
    let registry: serde_json::Value = serde_json::from_str(&registry).unwrap();
    assert_eq!(registry["etcd"]["connected"], true, "{registry}");
}
