//! The provider role: its shards, its registration in etcd (interface- and application-level), SIGHUP
//! reload of what shapes the registration, and the deregister-then-drain shutdown.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use mesh_dubbo::Codec;
use mesh_registry::dubbo::{simplify_provider_url, DubboUrl, DubboVersion, ProviderRegistration, ServiceKey};
use mesh_registry::spawn_registrations;
use mesh_shard::metrics::ShardMetrics;
use mesh_shard::provider;
use mesh_shard::tls::ServerTls;
use mesh_shard::upstream::UpstreamConfig;

use crate::admin::{self, AdminState, AgentStatus};
use crate::config::{AgentConfig, ProviderConfig, Role};
use crate::provider_registration::{
    app_registration, registrations, reload as reload_provider, Reload, RELOADED_KEYS,
};

/// Runs the provider role until SIGTERM/SIGINT. On SIGHUP the configuration is read again with `reload`
/// and what shapes the registration ([`crate::provider_registration::RELOADED_KEYS`]) is applied: new
/// `MetadataInfo` served, registrations updated (new revision, URL keys added and removed).
use super::{
    etcd_config, join_all, now_unix_ms, signal_runtime, start_shards, wait, Ready, DEREGISTER_GRACE,
};

pub(crate) fn provider(cfg: &AgentConfig, reload: impl Fn() -> Result<AgentConfig>) -> Result<()> {
    let p = cfg.provider.clone().context("provider: section missing")?;
    let advertise: SocketAddr = p.advertise_addr();
    let settings = provider::ProviderSettings {
        listen: p.listen,
        dubbo: p.dubbo,
        serialization: p.serialization.codec(),
        upstream: UpstreamConfig {
            connections: p.upstream_connections,
            request_timeout: Duration::from_millis(p.request_timeout_ms),
            codec: Codec {
                max_body: p.max_frame_bytes,
                ..Codec::default()
            },
            read_buffer: cfg.runtime.read_buffer_bytes,
            ..UpstreamConfig::default()
        },
        max_connections: cfg.runtime.max_connections_per_shard,
        read_buffer: cfg.runtime.read_buffer_bytes,
        limit: p
            .max_concurrency
            .map(|m| Arc::new(provider::ConcurrencyLimit::new(m as usize))),
        queue_limit: p.queue_limit,
        queue_timeout: Duration::from_millis(p.queue_timeout_ms),
        max_inflight_per_connection: p.max_inflight_per_connection,
        token: p.token.clone(),
        shards: cfg.runtime.shards,
        tls: match (&p.tls_cert, &p.tls_key) {
            (Some(cert), Some(key)) => Some(
                ServerTls::new(cert, key, p.tls_client_ca.as_deref())
                    .context("provider.tls_cert / tls_key / tls_client_ca")?,
            ),
            _ => None,
        },
    };
    // Once: the URLs' `timestamp` (a reload keeps it, as a running Dubbo provider does).
    let started_ms = now_unix_ms();
    let app = app_registration(&p, advertise, provider_urls(&p, advertise, started_ms));
    // The MetadataService the shards answer: this application's MetadataInfo (Dubbo 3 discovery); the
    // registered instance carries its revision.
    let info = app.metadata_info();
    let (mut metadata, receivers) =
        provider::MetadataPublisher::new(p.application.clone(), cfg.runtime.shards);
    metadata.publish(info.clone());
    let rt = signal_runtime()?;
    let metrics =
        ShardMetrics::for_shards_recording(cfg.runtime.shards, admin::recording(cfg, Role::Provider));
    let status = Arc::new(AgentStatus::default());
    let shown_registrations = Arc::new(Mutex::new(registrations_json(
        &provider_urls(&p, advertise, started_ms),
        &info.revision,
        p.register,
    )));
    let (drain_tx, mut drain_rx) = tokio::sync::mpsc::unbounded_channel();
    let makers: Vec<_> = receivers
        .into_iter()
        .zip(metrics.clone())
        .map(|(receiver, metrics)| {
            let settings = settings.clone();
            move |control, ready: Ready| async move {
                provider::run(settings, receiver, metrics, control, || ready.signal()).await
            }
        })
        .collect();
    let (controller, mut exits, n) = start_shards(&rt, cfg, "provider", makers)?;
    status.serving.store(true, Ordering::Release);
    // After the shards listen: a role that cannot start says only why.
    let admin = admin::start(
        cfg.admin
            .listen_for(Role::Provider)
            .map_err(|e| anyhow!("admin.listen: {e}"))?,
        AdminState {
            role: Role::Provider,
            shards: metrics.clone(),
            status: status.clone(),
            registry: None,
            registrations: shown_registrations.clone(),
            local_limit: settings.limit.clone(),
            config_json: admin::config_json(cfg),
            drain: drain_tx,
            started: std::time::SystemTime::now(),
        },
    )?;
    // Listening before registering: consumers must never be sent to a closed port.
    let registrar = match (&cfg.etcd, p.register) {
        (Some(e), true) => Some(
            spawn_registrations(etcd_config(e), registrations(&p, e, &app, &info))
                .context("starting the registrar")?,
        ),
        (None, true) => {
            bail!("etcd: required for the provider to register (or set provider.register = false)")
        }
        (_, false) => None,
    };
    let registering = if registrar.is_some() {
        p.register_mode.name()
    } else {
        "nothing"
    };
    tracing::info!(
        listen = %p.listen,
        %advertise,
        shards = n,
        upstream = %p.dubbo,
        registering,
        revision = %info.revision,
        "provider listening on {} (advertised {advertise}) with {n} shard(s), upstream {}, registering \
         {registering} (metadata revision {})",
        p.listen,
        p.dubbo,
        info.revision
    );
    status.registers.store(registrar.is_some(), Ordering::Relaxed);
    let mut running = p.clone();
    let mut revision = info.revision;
    let sample = || {
        if let Some(r) = &registrar {
            status.sample_registration(r.is_registered(), r.lease_id());
        }
    };
    let waited = wait(
        &rt,
        &mut exits,
        &mut drain_rx,
        &status,
        || {
            let new = match reload().map(|c| c.provider) {
                Ok(Some(new)) => new,
                Ok(None) => {
                    return tracing::warn!(
                        "SIGHUP: the configuration has no provider section; nothing changed"
                    )
                }
                Err(e) => return tracing::warn!("SIGHUP: configuration not reloaded: {e:#}"),
            };
            let Reload {
                config: next,
                need_restart,
            } = reload_provider(&running, &new);
            if !need_restart.is_empty() {
                tracing::warn!(
                    "SIGHUP: {} changed; those take effect at the next start (a reload applies provider.{{{}}})",
                    need_restart.join(", "),
                    RELOADED_KEYS.join(",")
                );
            }
            if next == running {
                return tracing::info!("SIGHUP: nothing to re-register");
            }
            let app = app_registration(&next, advertise, provider_urls(&next, advertise, started_ms));
            let info = app.metadata_info();
            // Served before it is registered: a consumer that sees the new revision can fetch it.
            metadata.publish(info.clone());
            if let (Some(r), Some(e)) = (&registrar, &cfg.etcd) {
                if let Err(err) = r.update(registrations(&next, e, &app, &info)) {
                    return tracing::error!(error = %err, "SIGHUP: registrations not updated");
                }
            }
            tracing::info!(
                services = next.services.len(),
                revision = %info.revision,
                "SIGHUP: reloaded {} service(s); metadata revision {revision} -> {}",
                next.services.len(),
                info.revision
            );
            if let Ok(mut shown) = shown_registrations.lock() {
                *shown = registrations_json(
                    &provider_urls(&next, advertise, started_ms),
                    &info.revision,
                    next.register,
                );
            }
            revision = info.revision;
            running = next;
        },
        sample,
    );
    // Planned stop: leave the registry first so consumers move away, keep serving briefly, then drain.
    let deregistered = match registrar {
        Some(r) => {
            let res = r
                .deregister(Duration::from_secs(3))
                .map_err(|e| anyhow!("deregistering: {e}"));
            std::thread::sleep(DEREGISTER_GRACE);
            res
        }
        None => Ok(()),
    };
    let drain = Duration::from_millis(p.drain_timeout_ms);
    controller.stop(drain);
    let joined = join_all(&rt, &mut exits, n, drain + Duration::from_secs(2));
    tracing::info!("provider stopped");
    if let Some(a) = admin {
        a.stop();
    }
    waited.and(deregistered).and(joined)
}

/// What the provider's `/registry` shows: the URLs it registers and its metadata revision.
fn registrations_json(urls: &[DubboUrl], revision: &str, register: bool) -> serde_json::Value {
    serde_json::json!({
        "registers": register,
        "metadata_revision": revision,
        "urls": urls.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

/// The provider URLs this agent registers, one per service key of `provider.services`, as a Dubbo
/// provider writes them (simplified when `provider.simplified`), started at `started_ms`.
pub(crate) fn provider_urls(p: &ProviderConfig, advertise: SocketAddr, started_ms: u64) -> Vec<DubboUrl> {
    p.services
        .iter()
        .map(|service| {
            let url = ProviderRegistration {
                service: ServiceKey::parse(service),
                addr: advertise,
                application: p.application.clone(),
                weight: p.weight,
                threads: p.max_concurrency,
                tag: p.tag.clone(),
                warmup_ms: p.warmup_ms,
                timestamp_ms: started_ms,
                token: p.token.clone(),
                methods: Vec::new(),
                params: p.params.clone(),
            }
            .url();
            if p.simplified {
                let mut extra: Vec<&str> = ProviderRegistration::agent_keys().to_vec();
                extra.extend(p.extra_keys.iter().map(String::as_str));
                simplify_provider_url(&url, DubboVersion::default(), &extra)
            } else {
                url
            }
        })
        .collect()
}
