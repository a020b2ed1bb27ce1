//! The consumer's registry as `/metrics` and `/registry` show it: the registry thread's latest snapshot
//! (providers per service key, the Dubbo 3 migration step and proportion per key) and the etcd watch's state.

use std::sync::Arc;
use std::time::SystemTime;

use mesh_admin::{AdminError, Exposition};
use mesh_registry::{LatestSnapshot, Snapshot, WatchState, WatchStatus};

use super::unix_seconds;

/// Distinct service keys `/metrics` labels in `mesh_registry_providers`; the rest are summed under `other`.
const MAX_REGISTRY_SERIES: usize = 500;

/// The consumer's registry as the admin side sees it: the registry thread's latest snapshot and when it was
/// published, read at scrape time (no thread of its own, nothing done per snapshot).
#[derive(Debug)]
pub(crate) struct RegistryView {
    latest: LatestSnapshot,
    /// The etcd watch's state (`None` for a static provider list).
    watch: Option<WatchState>,
}

impl RegistryView {
    pub(crate) fn new(latest: LatestSnapshot) -> Self {
        RegistryView { latest, watch: None }
    }

    /// With the etcd watch's state (connected, member, restarts) in `/metrics` and `/registry`.
    pub(crate) fn with_watch(self, watch: Option<WatchState>) -> Self {
        RegistryView { watch, ..self }
    }

    pub(super) fn latest(&self) -> Option<(Arc<Snapshot>, SystemTime)> {
        self.latest.get()
    }
}

pub(super) fn registry_metrics(e: &mut Exposition, view: &RegistryView) -> Result<(), AdminError> {
    if let Some(watch) = &view.watch {
        watch_metrics(e, &watch.status())?;
    }
    let latest = view.latest();
    e.counter(
        "mesh_registry_snapshots_total",
        "Registry snapshots published by the registry thread (versions grow by one per snapshot).",
        &[],
        latest.as_ref().map_or(0.0, |(s, _)| s.version as f64),
    )?;
    let Some((snapshot, at)) = latest else {
        return Ok(());
    };
    e.set_gauge(
        "mesh_registry_snapshot_version",
        "Version of the latest registry snapshot (grows by one per change).",
        &[],
        snapshot.version as f64,
    )?;
    e.set_gauge(
        "mesh_registry_etcd_revision",
        "The etcd revision the latest snapshot reflects (0 for a static list).",
        &[],
        snapshot.revision as f64,
    )?;
    e.set_gauge(
        "mesh_registry_last_change_timestamp_seconds",
        "When the registry thread published the latest snapshot, Unix seconds.",
        &[],
        unix_seconds(at),
    )?;
    let help = "Providers listed per service key in the latest snapshot.";
    for (i, (service, providers)) in snapshot.iter().enumerate() {
        let label = service_label(i, service);
        e.gauge(
            "mesh_registry_providers",
            help,
            &[("service", label)],
            providers.len() as f64,
        )?;
    }
    Ok(())
}

/// The `service` label of the `i`-th service key: the key itself for the first [`MAX_REGISTRY_SERIES`],
/// `other` after them.
fn service_label(i: usize, service: &str) -> &str {
    if i < MAX_REGISTRY_SERIES {
        service
    } else {
        mesh_shard::metrics::OTHER
    }
}

/// Dubbo 3 migration (issue 13): per service key the step in force and the address model it uses, 1 per
/// key; over [`MAX_REGISTRY_SERIES`] keys the rest are counted under `service="other"` (labels bounded like
/// `mesh_registry_providers`: keys come from the registry, `step` and `model` from fixed lists).
pub(super) fn migration_metrics(e: &mut Exposition, view: &RegistryView) -> Result<(), AdminError> {
    let Some((snapshot, _)) = view.latest() else {
        return Ok(());
    };
    let help = "Dubbo 3 migration step in force per service key (1), and the address model it uses.";
    for (i, (service, state)) in snapshot.migration().iter().enumerate() {
        let label = service_label(i, service);
        e.gauge(
            "mesh_registry_migration_step",
            help,
            &[
                ("service", label),
                ("step", state.step.as_str()),
                ("model", model_label(state.source)),
            ],
            1.0,
        )?;
    }
    // The rule's `proportion` where it splits a key's calls (the first MAX_REGISTRY_SERIES keys).
    let help = "Dubbo 3 migration proportion in force per split service key: percent of calls on application-level addresses (the rest on interface-level).";
    for (service, split) in snapshot.splits().take(MAX_REGISTRY_SERIES) {
        let labels = [("service", service)];
        e.gauge(
            "mesh_registry_migration_proportion",
            help,
            &labels,
            f64::from(split.percent()),
        )?;
    }
    Ok(())
}

/// The `model` label and JSON field of an address list.
fn model_label(source: mesh_registry::dubbo::migration::Source) -> &'static str {
    match source {
        mesh_registry::dubbo::migration::Source::Application => "application",
        mesh_registry::dubbo::migration::Source::Interface => "interface",
    }
}

/// `/registry`'s `migration` object: per service key the step in force, the model, and a step the rule
/// asks for that is not in force (`waiting` for its delay, or `refused`).
fn migration_json(snapshot: &Snapshot) -> serde_json::Value {
    snapshot
        .migration()
        .iter()
        .map(|(service, state)| {
            let mut v = serde_json::json!({
                "step": state.step.as_str(),
                "model": model_label(state.source),
            });
            if let Some(split) = snapshot.split(service) {
                v["proportion"] = split.percent().into();
            }
            if let Some(asked) = state.asked {
                v["asked"] = serde_json::json!({
                    "step": asked.step.as_str(),
                    "state": if asked.refused { "refused" } else { "waiting" },
                });
            }
            (service.to_string(), v)
        })
        .collect::<serde_json::Map<String, serde_json::Value>>()
        .into()
}

/// The consumer's etcd watch: connected, the member's endpoint (one of the configured: bounded), restarts,
/// when its member last answered.
fn watch_metrics(e: &mut Exposition, w: &WatchStatus) -> Result<(), AdminError> {
    e.set_gauge(
        "mesh_registry_etcd_connected",
        "1 while the consumer's etcd watch is established, 0 from its failure until the next one is.",
        &[],
        f64::from(u8::from(w.connected)),
    )?;
    if let Some(endpoint) = &w.endpoint {
        e.set_gauge(
            "mesh_registry_etcd_endpoint_info",
            "The configured etcd endpoint the watch talks to (or last talked to); always 1.",
            &[("endpoint", endpoint)],
            1.0,
        )?;
    }
    e.counter(
        "mesh_registry_watch_restarts_total",
        "etcd watch sessions that ended (error, silent member) and were started again.",
        &[],
        w.restarts as f64,
    )?;
    if let Some(at) = w.last_heard {
        e.set_gauge(
            "mesh_registry_etcd_last_contact_timestamp_seconds",
            "When the watch's etcd member last answered (events, progress reports: about every second).",
            &[],
            unix_seconds(at),
        )?;
    }
    Ok(())
}

/// The watch's state as `/registry` shows it.
fn watch_json(w: &WatchStatus) -> serde_json::Value {
    serde_json::json!({
        "connected": w.connected,
        "endpoint": w.endpoint,
        "restarts": w.restarts,
        "last_contact_unix_s": w.last_heard.map(unix_seconds),
        "connected_since_unix_s": w.connected_since.map(unix_seconds),
    })
}

pub(super) fn snapshot_json(view: &RegistryView) -> serde_json::Value {
    let etcd = view.watch.as_ref().map(|w| watch_json(&w.status()));
    let Some((snapshot, at)) = view.latest() else {
        return serde_json::json!({ "snapshot": null, "why": "no registry snapshot yet", "etcd": etcd });
    };
    let services: serde_json::Map<String, serde_json::Value> = snapshot
        .iter()
        .map(|(service, providers)| {
            let list: Vec<serde_json::Value> = providers
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "addr": p.addr.to_string(),
                        "id": p.id,
                        "weight": p.weight,
                        "max_concurrency": p.max_concurrency,
                        "tag": p.tag,
                        "registered_at_ms": p.registered_at_ms,
                        "params": p.params,
                    })
                })
                .collect();
            (
                service.to_owned(),
                serde_json::json!({ "epoch": providers.epoch(), "providers": list }),
            )
        })
        .collect();
    serde_json::json!({
        "snapshot": {
            "version": snapshot.version,
            "etcd_revision": snapshot.revision,
            "rules_epoch": snapshot.rules_epoch(),
            "received_unix_s": unix_seconds(at),
            "endpoints": snapshot.endpoint_count(),
            "services": services,
            "migration": migration_json(&snapshot),
        },
        "etcd": etcd,
    })
}
