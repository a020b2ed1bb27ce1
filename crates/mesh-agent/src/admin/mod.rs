//! The agent's admin endpoints (`admin.listen`): what the admin thread answers, from state the role's main
//! thread and the shards keep. Routing and the HTTP server are mesh-admin's; this module gathers the figures
//! (the consumer's registry and etcd watch: `registry_view.rs`).
//!
//! - `/metrics`: every shard's [`ShardMetrics`] (read without locking), the registry view, the agent's
//!   status and the process' RSS and CPU, as Prometheus text;
//! - `/ready`: 200 once serving (shards listening) and registered (provider) or holding a registry
//!   snapshot (consumer), 503 before and from the moment a drain starts;
//! - `/live`: 200 while the admin thread runs;
//! - `/registry`: the consumer's latest snapshot, or the provider's registrations, as JSON;
//! - `/config`: the effective configuration as JSON, tokens and passwords redacted;
//! - `POST /drain`: the drain SIGTERM starts (the role's main thread does it, see `run/`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use mesh_admin::server::AdminHandle;
use mesh_admin::{AdminError, AdminServer, Answer, Exposition, Route};
use mesh_shard::metrics::{Recording, ShardMetrics};
use mesh_shard::provider::ConcurrencyLimit;

use crate::config::{AdminListen, AgentConfig, Role};

mod registry_view;

pub(crate) use registry_view::RegistryView;
use registry_view::{migration_metrics, registry_metrics, snapshot_json};

/// Page size for `/proc/self/statm` (every Linux target the agent ships on uses 4 KiB pages).
const PAGE_SIZE: u64 = 4096;
/// What replaces a secret in `/config`.
const REDACTED: &str = "<redacted>";
/// Keys whose values `/config` never shows.
const SECRET_KEYS: [&str; 2] = ["token", "password"];

/// What the role's main thread tells the admin side (atomics: read at any time).
#[derive(Debug, Default)]
pub(crate) struct AgentStatus {
    /// Every shard is listening.
    pub(crate) serving: AtomicBool,
    /// A drain has started (SIGTERM, SIGINT or `POST /drain`).
    pub(crate) draining: AtomicBool,
    /// Registered in etcd now (provider; consumer with `register_services`), sampled every second.
    pub(crate) registered: AtomicBool,
    /// Whether this agent registers anything (else readiness does not wait for it).
    pub(crate) registers: AtomicBool,
    /// The lease the registrations were last put with (0: none).
    pub(crate) lease_id: AtomicI64,
    /// Leases granted after the first (each a re-registration after a lost lease).
    pub(crate) lease_regrants: AtomicU64,
    /// When the current lease was first seen (within the one-second sampling), Unix milliseconds; 0: none.
    pub(crate) lease_seen_unix_ms: AtomicU64,
}

impl AgentStatus {
    /// Called every second with what the registrar says: counts each new lease after the first.
    pub(crate) fn sample_registration(&self, registered: bool, lease: Option<i64>) {
        self.registered.store(registered, Ordering::Relaxed);
        let lease = lease.unwrap_or(0);
        let before = self.lease_id.swap(lease, Ordering::Relaxed);
        if lease != 0 && before != 0 && lease != before {
            self.lease_regrants.fetch_add(1, Ordering::Relaxed);
        }
        if lease != 0 && lease != before {
            let now = SystemTime::now().duration_since(UNIX_EPOCH);
            let ms = now.map_or(1, |d| d.as_millis() as u64);
            self.lease_seen_unix_ms.store(ms, Ordering::Relaxed);
        }
    }

    /// The lease as `/registry` shows it.
    fn lease_json(&self) -> serde_json::Value {
        let seen = self.lease_seen_unix_ms.load(Ordering::Relaxed);
        serde_json::json!({
            "registered": self.registered.load(Ordering::Relaxed),
            "lease_id": Some(self.lease_id.load(Ordering::Relaxed)).filter(|&l| l != 0),
            "regrants": self.lease_regrants.load(Ordering::Relaxed),
            "granted_unix_s": (seen != 0).then(|| seen as f64 / 1e3),
        })
    }
}

/// Everything the admin thread answers from.
#[derive(Debug)]
pub(crate) struct AdminState {
    pub(crate) role: Role,
    pub(crate) shards: Vec<Arc<ShardMetrics>>,
    pub(crate) status: Arc<AgentStatus>,
    /// The consumer's registry view (`None` for the provider).
    pub(crate) registry: Option<Arc<RegistryView>>,
    /// The provider's registrations, as `/registry` shows them (updated on SIGHUP).
    pub(crate) registrations: Arc<Mutex<serde_json::Value>>,
    /// The local provider's cap (provider agent with `max_concurrency`).
    pub(crate) local_limit: Option<Arc<ConcurrencyLimit>>,
    /// `/config`'s answer, computed once.
    pub(crate) config_json: String,
    /// Wakes the role's main thread to drain.
    pub(crate) drain: tokio::sync::mpsc::UnboundedSender<()>,
    pub(crate) started: SystemTime,
}

impl AdminState {
    /// The answer to `route`.
    pub(crate) fn answer(&self, route: Route) -> Answer {
        match route {
            Route::Metrics => match self.metrics() {
                Ok(text) => Answer::metrics(text),
                Err(e) => Answer::text(500, format!("metrics: {e}\n")),
            },
            Route::Live => Answer::text(200, "live\n"),
            Route::Ready => match self.not_ready() {
                None => Answer::text(200, "ready\n"),
                Some(why) => Answer::text(503, format!("not ready: {why}\n")),
            },
            Route::Registry => Answer::json(200, self.registry_json().to_string()),
            Route::Config => Answer::json(200, self.config_json.clone()),
            Route::Drain => {
                let first = !self.status.draining.swap(true, Ordering::AcqRel);
                let _ = self.drain.send(());
                Answer::text(202, if first { "draining\n" } else { "already draining\n" })
            }
        }
    }

    /// Why the agent should not get traffic now, if it should not.
    fn not_ready(&self) -> Option<&'static str> {
        let s = &self.status;
        if s.draining.load(Ordering::Acquire) {
            return Some("draining");
        }
        if !s.serving.load(Ordering::Acquire) {
            return Some("shards not listening yet");
        }
        if let Some(view) = &self.registry {
            if view.latest().is_none() {
                return Some("no registry snapshot yet");
            }
        }
        if self.role == Role::Provider
            && s.registers.load(Ordering::Relaxed)
            && !s.registered.load(Ordering::Relaxed)
        {
            return Some("not registered in etcd");
        }
        None
    }

    fn metrics(&self) -> Result<String, AdminError> {
        let mut e = Exposition::new();
        let now = Instant::now();
        for shard in &self.shards {
            shard.export(&mut e, now)?;
        }
        self.agent_metrics(&mut e)?;
        if let Some(view) = &self.registry {
            registry_metrics(&mut e, view)?;
            migration_metrics(&mut e, view)?;
        }
        if let Some(limit) = &self.local_limit {
            e.set_gauge(
                "mesh_local_provider_concurrency_limit",
                "Provider agent: the local provider's thread cap (provider.max_concurrency).",
                &[],
                limit.cap() as f64,
            )?;
            e.set_gauge(
                "mesh_local_provider_concurrency_in_use",
                "Provider agent: calls holding room under that cap now.",
                &[],
                limit.in_use() as f64,
            )?;
        }
        let p = mesh_admin::process::read(PAGE_SIZE)?;
        e.set_gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            &[],
            p.resident_bytes as f64,
        )?;
        e.counter(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            &[],
            p.cpu_seconds,
        )?;
        e.set_gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            &[],
            unix_seconds(self.started),
        )?;
        Ok(e.render())
    }

    fn agent_metrics(&self, e: &mut Exposition) -> Result<(), AdminError> {
        let s = &self.status;
        e.set_gauge(
            "mesh_agent_info",
            "The agent's role and version (always 1).",
            &[
                ("role", self.role.section()),
                ("version", env!("CARGO_PKG_VERSION")),
            ],
            1.0,
        )?;
        e.set_gauge(
            "mesh_agent_ready",
            "1 when /ready answers 200.",
            &[],
            f64::from(u8::from(self.not_ready().is_none())),
        )?;
        e.set_gauge(
            "mesh_agent_draining",
            "1 once a drain has started.",
            &[],
            f64::from(u8::from(s.draining.load(Ordering::Relaxed))),
        )?;
        if s.registers.load(Ordering::Relaxed) {
            let seen = s.lease_seen_unix_ms.load(Ordering::Relaxed);
            if seen != 0 {
                e.set_gauge(
                    "mesh_registry_lease_granted_timestamp_seconds",
                    "When the current lease was first seen in use (sampled every second), Unix seconds.",
                    &[],
                    seen as f64 / 1e3,
                )?;
            }
            e.set_gauge(
                "mesh_registry_registered",
                "1 while every registration is in etcd under a live lease (sampled every second).",
                &[],
                f64::from(u8::from(s.registered.load(Ordering::Relaxed))),
            )?;
            e.set_gauge(
                "mesh_registry_lease_id",
                "The etcd lease the registrations were last put with (0: none).",
                &[],
                s.lease_id.load(Ordering::Relaxed) as f64,
            )?;
            e.counter(
                "mesh_registry_lease_regrants_total",
                "New leases after the first: re-registrations after a lost lease.",
                &[],
                s.lease_regrants.load(Ordering::Relaxed) as f64,
            )?;
        }
        Ok(())
    }

    fn registry_json(&self) -> serde_json::Value {
        match &self.registry {
            Some(view) => snapshot_json(view),
            None => {
                let mut shown = self
                    .registrations
                    .lock()
                    .map_or(serde_json::Value::Null, |r| r.clone());
                if let Some(map) = shown.as_object_mut() {
                    if self.status.registers.load(Ordering::Relaxed) {
                        map.insert("lease".to_owned(), self.status.lease_json());
                    }
                }
                shown
            }
        }
    }
}

/// What `role`'s shards record: metrics as `admin.metrics` (and `admin.listen`) say, the access log of
/// `log.access_every` (consumer calls only).
pub(crate) fn recording(cfg: &AgentConfig, role: Role) -> Recording {
    Recording {
        metrics: cfg.admin.records_metrics(),
        access_log_every: match role {
            Role::Consumer => cfg.log.access_every,
            Role::Provider => 0,
        },
    }
}

/// The effective configuration as JSON with every secret replaced by [`REDACTED`].
pub(crate) fn config_json(cfg: &AgentConfig) -> String {
    let mut value = serde_json::to_value(cfg).unwrap_or(serde_json::Value::Null);
    redact(&mut value);
    value.to_string()
}

fn redact(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if SECRET_KEYS.contains(&k.as_str()) && !val.is_null() {
                    *val = serde_json::Value::String(REDACTED.to_owned());
                } else {
                    redact(val);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Starts the admin listener as `listen` says; `None` when off (or when the default address is taken:
/// then `log` says so). Logs where it listens.
pub(crate) fn start(listen: AdminListen, state: AdminState) -> Result<Option<AdminHandle>> {
    let (addr, explicit): (SocketAddr, bool) = match listen {
        AdminListen::Off => return Ok(None),
        AdminListen::Default(a) => (a, false),
        AdminListen::Configured(a) => (a, true),
    };
    let server = match AdminServer::bind(addr) {
        Ok(s) => s,
        Err(e) if !explicit => {
            tracing::warn!(
                %addr,
                "admin listener not started: {e} (set admin.listen / --admin-listen to another address, or off)"
            );
            return Ok(None);
        }
        Err(e) => return Err(e).context("admin.listen"),
    };
    let at = server.local_addr();
    let handle = server
        .spawn(move |route| state.answer(route))
        .context("starting the admin thread")?;
    tracing::info!(
        listen = %at,
        "admin on http://{at}: /metrics /ready /live /registry /config, POST /drain"
    );
    Ok(Some(handle))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::{load, Overrides};
    use mesh_registry::{LatestSnapshot, Snapshot, WatchState};

    fn state(
        role: Role,
        registry: Option<Arc<RegistryView>>,
    ) -> (AdminState, tokio::sync::mpsc::UnboundedReceiver<()>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let state = AdminState {
            role,
            shards: ShardMetrics::for_shards(2),
            status: Arc::new(AgentStatus::default()),
            registry,
            registrations: Arc::new(Mutex::new(serde_json::json!({"urls": []}))),
            local_limit: Some(Arc::new(ConcurrencyLimit::new(8))),
            config_json: "{}".into(),
            drain: tx,
            started: SystemTime::now(),
        };
        (state, rx)
    }

    #[test]
    fn ready_waits_for_a_snapshot_and_flips_on_drain() {
        let latest = LatestSnapshot::default();
        let view = Arc::new(RegistryView::new(latest.clone()));
        let (s, mut drains) = state(Role::Consumer, Some(view));
        assert_eq!(s.answer(Route::Ready).status, 503);
        s.status.serving.store(true, Ordering::Release);
        let not_yet = s.answer(Route::Ready);
        assert_eq!(
            (not_yet.status, not_yet.body.as_str()),
            (503, "not ready: no registry snapshot yet\n")
        );
        latest.set(Arc::new(Snapshot::new(
            1,
            [(
                "a.S".to_owned(),
                mesh_registry::Endpoint::new("10.0.0.1:1".parse().unwrap()),
            )],
        )));
        assert_eq!(s.answer(Route::Ready).status, 200);
        let registry = s.answer(Route::Registry);
        assert!(registry.body.contains("\"10.0.0.1:1\""), "{}", registry.body);
        let metrics = s.answer(Route::Metrics).body;
        assert!(
            metrics.contains("mesh_registry_providers{service=\"a.S\"} 1\n"),
            "{metrics}"
        );
        assert!(metrics.contains("mesh_agent_ready 1\n"), "{metrics}");
        assert_eq!(s.answer(Route::Drain).status, 202);
        assert!(drains.try_recv().is_ok());
        assert_eq!(s.answer(Route::Ready).status, 503);
        assert!(s.answer(Route::Metrics).body.contains("mesh_agent_draining 1\n"));
    }

    #[test]
    fn the_migration_step_per_service_is_a_gauge_and_in_registry_json() {
        use mesh_registry::dubbo::migration::{
            AskedStep, MigrationStates, MigrationStep, Source, StepInForce,
        };
        let mut states = MigrationStates::new();
        states.insert(
            Arc::from("g/a.S:1.0.0"),
            StepInForce {
                step: MigrationStep::ApplicationFirst,
                source: Source::Interface,
                asked: Some(AskedStep {
                    step: MigrationStep::ForceApplication,
                    refused: true,
                }),
            },
        );
        states.insert(
            Arc::from("b.T"),
            StepInForce {
                step: MigrationStep::ForceApplication,
                source: Source::Application,
                asked: None,
            },
        );
        let mut builder = mesh_registry::SnapshotBuilder::new();
        builder.upsert(
            "g/a.S:1.0.0",
            mesh_registry::Endpoint::new("10.0.0.1:1".parse().unwrap()),
        );
        builder.set_migration(states);
        builder.set_split("b.T", Some(30));
        builder.split_upsert("b.T", mesh_registry::Endpoint::new("10.0.0.2:1".parse().unwrap()));
        let latest = LatestSnapshot::default();
        latest.set(Arc::new(builder.publish(1).unwrap()));
        let (s, _drains) = state(Role::Consumer, Some(Arc::new(RegistryView::new(latest))));
        let m = s.answer(Route::Metrics).body;
        assert!(
            m.contains(
                "mesh_registry_migration_step{model=\"interface\",service=\"g/a.S:1.0.0\",step=\"APPLICATION_FIRST\"} 1\n"
            ),
            "{m}"
        );
        assert!(
            m.contains(
                "mesh_registry_migration_step{model=\"application\",service=\"b.T\",step=\"FORCE_APPLICATION\"} 1\n"
            ),
            "{m}"
        );
        assert!(m.contains("# TYPE mesh_registry_migration_step gauge\n"), "{m}");
        assert!(
            m.contains("mesh_registry_migration_proportion{service=\"b.T\"} 30\n"),
            "{m}"
        );
        assert!(
            !m.contains("mesh_registry_migration_proportion{service=\"g/a.S:1.0.0\"}"),
            "{m}"
        );
        let json: serde_json::Value = serde_json::from_str(&s.answer(Route::Registry).body).unwrap();
        let migration = &json["snapshot"]["migration"];
        assert_eq!(migration["b.T"]["model"], "application");
        assert_eq!(migration["g/a.S:1.0.0"]["step"], "APPLICATION_FIRST");
        assert_eq!(migration["g/a.S:1.0.0"]["asked"]["step"], "FORCE_APPLICATION");
        assert_eq!(migration["g/a.S:1.0.0"]["asked"]["state"], "refused");
        assert!(migration["b.T"].get("asked").is_none());
        assert_eq!(migration["b.T"]["proportion"], 30);
        assert!(migration["g/a.S:1.0.0"].get("proportion").is_none());
    }

    #[test]
    fn provider_readiness_waits_for_registration() {
        let (s, _drains) = state(Role::Provider, None);
        s.status.serving.store(true, Ordering::Release);
        s.status.registers.store(true, Ordering::Release);
        assert_eq!(s.answer(Route::Ready).status, 503);
        s.status.sample_registration(true, Some(7));
        assert_eq!(s.answer(Route::Ready).status, 200);
        s.status.sample_registration(false, Some(7));
        s.status.sample_registration(true, Some(9));
        let m = s.answer(Route::Metrics).body;
        assert!(m.contains("mesh_registry_lease_regrants_total 1\n"), "{m}");
        assert!(m.contains("mesh_local_provider_concurrency_limit 8\n"), "{m}");
        assert!(m.contains("process_resident_memory_bytes "), "{m}");
        assert!(m.contains("# TYPE mesh_requests_total counter") || !m.contains("mesh_requests_total{"));
    }

    #[test]
    fn the_etcd_watch_shows_in_metrics_and_registry() {
        let watch = WatchState::new(&["http://127.0.0.1:2379".to_owned()]);
        let view = RegistryView::new(LatestSnapshot::default()).with_watch(Some(watch));
        let (s, _drains) = state(Role::Consumer, Some(Arc::new(view)));
        let m = s.answer(Route::Metrics).body;
        assert!(m.contains("mesh_registry_etcd_connected 0\n"), "{m}");
        assert!(m.contains("mesh_registry_watch_restarts_total 0\n"), "{m}");
        assert!(
            !m.contains("mesh_registry_etcd_endpoint_info"),
            "no member yet: {m}"
        );
        let r: serde_json::Value = serde_json::from_str(&s.answer(Route::Registry).body).unwrap();
        assert_eq!(r["etcd"]["connected"], false, "{r}");
        assert_eq!(r["etcd"]["restarts"], 0, "{r}");
        // A static list has no watch: nothing about etcd.
        let view = RegistryView::new(LatestSnapshot::default());
        let (s, _drains) = state(Role::Consumer, Some(Arc::new(view)));
        assert!(!s
            .answer(Route::Metrics)
            .body
            .contains("mesh_registry_etcd_connected"));
    }

    #[test]
    fn provider_registry_shows_the_lease() {
        let (s, _drains) = state(Role::Provider, None);
        s.status.registers.store(true, Ordering::Release);
        let r: serde_json::Value = serde_json::from_str(&s.answer(Route::Registry).body).unwrap();
        assert_eq!(r["lease"]["lease_id"], serde_json::Value::Null, "{r}");
        assert!(!s.answer(Route::Metrics).body.contains("lease_granted"));
        s.status.sample_registration(true, Some(42));
        let r: serde_json::Value = serde_json::from_str(&s.answer(Route::Registry).body).unwrap();
        assert_eq!(r["lease"]["lease_id"], 42, "{r}");
        assert_eq!(r["lease"]["registered"], true, "{r}");
        assert!(r["lease"]["granted_unix_s"].as_f64().unwrap() > 1.7e9, "{r}");
        assert!(r["urls"].is_array(), "the registrations stay: {r}");
        let m = s.answer(Route::Metrics).body;
        assert!(
            m.contains("mesh_registry_lease_granted_timestamp_seconds "),
            "{m}"
        );
    }

    #[test]
    fn config_hides_tokens_and_passwords() {
        let text = "[consumer]\nproviders = [\"10.0.0.1:30000\"]\ntoken = \"s3cret\"\n\
                    [etcd]\nendpoints = [\"http://127.0.0.1:2379\"]\nuser = \"u\"\npassword = \"pw\"\n";
        let cfg = load(Some(text), &Overrides::default(), Role::Consumer).unwrap();
        let json = config_json(&cfg);
        assert!(!json.contains("s3cret") && !json.contains("\"pw\""), "{json}");
        assert!(json.contains("\"token\":\"<redacted>\""), "{json}");
        assert!(json.contains("10.0.0.1:30000"), "{json}");
    }
}
