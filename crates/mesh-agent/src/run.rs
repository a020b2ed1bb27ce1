//! Starting the roles: registry thread + `runtime.shards` glommio shards pinned over `runtime.cores`, signal
//! handling, the admin listener, and the shutdown order (provider: deregister first, then drain; consumer:
//! stop accepting, drain). SIGTERM, SIGINT and the admin's `POST /drain` start the same drain; `/ready`
//! answers 503 from its first moment.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use mesh_dubbo::Codec;
use mesh_registry::dubbo::migration::MigrationStep;
use mesh_registry::dubbo::{
    simplify_consumer_url, simplify_provider_url, ConsumerRegistration, DubboUrl, DubboVersion,
    ProviderRegistration, ServiceKey,
};
use mesh_registry::{
    spawn_registrar, spawn_registrations, spawn_watcher, AppDiscoveryConfig, Endpoint, EtcdAuth, EtcdConfig,
    EtcdTls, MigrationDefaults, Registration, Snapshot, Source, SubsetSettings,
};
use mesh_shard::control::{Controller, ShardControl};
use mesh_shard::health::EjectionConfig;
use mesh_shard::metrics::ShardMetrics;
use mesh_shard::runtime::{placements, spawn_shard, ShardIo, DEFAULT_IO_MEMORY};
use mesh_shard::tls::{ClientTls, ServerTls};
use mesh_shard::upstream::UpstreamConfig;
use mesh_shard::{consumer, provider};

use crate::admin::{self, AdminState, AgentStatus, RegistryView};
use crate::config::{
    AgentConfig, BalancerName, CallPolicyConfig, ConsumerConfig, EtcdSection, ProviderConfig, Role,
};
use crate::provider_registration::{
    app_registration, registrations, reload as reload_provider, Reload, RELOADED_KEYS,
};

/// How long a provider keeps serving after deregistering, so that consumers see the removal before it
/// stops taking calls (their watch delivers it in milliseconds; calls already on the wire still land).
const DEREGISTER_GRACE: Duration = Duration::from_millis(500);

fn etcd_config(e: &EtcdSection) -> EtcdConfig {
    EtcdConfig {
        endpoints: e.endpoints.clone(),
        root: e.root.clone(),
        tls: e.ca_file.as_ref().map(|ca| EtcdTls {
            ca_file: ca.clone(),
            cert_file: e.cert_file.clone(),
            key_file: e.key_file.clone(),
        }),
        auth: e
            .user
            .as_ref()
            .zip(e.password.as_ref())
            .map(|(user, password)| EtcdAuth::new(user, password.expose())),
        publish_interval: Duration::from_millis(e.publish_interval_ms),
        ..EtcdConfig::default()
    }
}

/// Shard results arrive here as each shard thread ends.
type Exits = tokio::sync::mpsc::UnboundedReceiver<(usize, Result<()>)>;

/// Starts one shard per maker (each maker moves its own state, e.g. its snapshot receiver, into its shard)
/// and returns once every shard is listening, or with the first shard's error.
fn start_shards<M, Fut>(
    rt: &tokio::runtime::Runtime,
    cfg: &AgentConfig,
    name: &'static str,
    makers: Vec<M>,
) -> Result<(Controller, Exits, usize)>
where
    M: FnOnce(ShardControl, Ready) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = std::io::Result<()>> + 'static,
{
    let controller = Controller::new();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let specs = placements(&cfg.runtime.cores, makers.len());
    let n = specs.len();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
    for (spec, make) in specs.into_iter().zip(makers) {
        let control = controller.shard();
        let ready = Ready(ready_tx.clone());
        let io = ShardIo {
            io_memory: DEFAULT_IO_MEMORY,
            ring_depth: cfg.runtime.io_uring_depth,
        };
        let handle = spawn_shard(spec, name, io, move || make(control, ready))?;
        let tx = tx.clone();
        std::thread::Builder::new()
            .name(format!("{name}-join-{}", spec.index))
            .spawn(move || {
                let res = match handle.join() {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(anyhow!("shard {} (core {:?}): {e}", spec.index, spec.core)),
                    Err(e) => Err(anyhow!("shard {} (core {:?}) failed: {e}", spec.index, spec.core)),
                };
                let _ = tx.send((spec.index, res));
            })?;
    }
    drop(ready_tx);
    let mut rx = rx;
    rt.block_on(async {
        for _ in 0..n {
            tokio::select! {
                r = ready_rx.recv() => if r.is_none() {
                    // Every shard that is not ready has ended: report why.
                    return match rx.recv().await {
                        Some((_, Err(e))) => Err(e),
                        _ => Err(anyhow!("a shard ended before it was ready")),
                    };
                },
                Some((_, res)) = rx.recv() => {
                    res?;
                    bail!("a shard ended before it was ready");
                }
                _ = tokio::time::sleep(Duration::from_secs(10)) => bail!("shards not ready within 10 s"),
            }
        }
        Ok(())
    })?;
    Ok((controller, rx, n))
}

/// Handed to each shard: signals the main thread once the shard's listener is bound.
struct Ready(tokio::sync::mpsc::UnboundedSender<()>);

impl Ready {
    fn signal(self) {
        let _ = self.0.send(());
    }
}

/// How often the main thread samples the registrar's state for the admin side.
const STATUS_SAMPLE: Duration = Duration::from_secs(1);

/// Blocks until SIGTERM/SIGINT or `POST /drain` (`Ok(())`) or until a shard ends on its own (an error),
/// calling `on_hangup` on every SIGHUP (the provider's configuration reload) and `on_tick` every
/// [`STATUS_SAMPLE`]. Marks `status` draining as it returns.
fn wait(
    rt: &tokio::runtime::Runtime,
    exits: &mut Exits,
    drain: &mut tokio::sync::mpsc::UnboundedReceiver<()>,
    status: &AgentStatus,
    mut on_hangup: impl FnMut(),
    mut on_tick: impl FnMut(),
) -> Result<()> {
    let waited = rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut hangup = signal(SignalKind::hangup())?;
        let mut tick = tokio::time::interval(STATUS_SAMPLE);
        loop {
            tokio::select! {
                _ = term.recv() => {
                    tracing::info!(signal = "SIGTERM", "draining");
                    return Ok(());
                }
                _ = tokio::signal::ctrl_c() => {
                    tracing::info!(signal = "SIGINT", "draining");
                    return Ok(());
                }
                Some(()) = drain.recv() => {
                    tracing::info!("drain requested on the admin listener");
                    return Ok(());
                }
                _ = hangup.recv() => on_hangup(),
                _ = tick.tick() => on_tick(),
                Some((i, res)) = exits.recv() => {
                    res?;
                    bail!("shard {i} stopped unexpectedly")
                }
            }
        }
    });
    status.draining.store(true, Ordering::Release);
    waited
}

fn join_all(rt: &tokio::runtime::Runtime, exits: &mut Exits, n: usize, limit: Duration) -> Result<()> {
    rt.block_on(async {
        let mut first_err = None;
        for _ in 0..n {
            match tokio::time::timeout(limit, exits.recv()).await {
                Ok(Some((_, Err(e)))) => {
                    first_err.get_or_insert(e);
                }
                Ok(Some((_, Ok(())))) => {}
                Ok(None) => break,
                Err(_) => bail!("shards did not stop within {} ms", limit.as_millis()),
            }
        }
        first_err.map_or(Ok(()), Err)
    })
}

fn signal_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal runtime")
}

pub(crate) fn consumer(cfg: &AgentConfig) -> Result<()> {
    let c = cfg.consumer.clone().context("consumer: section missing")?;
    let shards = cfg.runtime.shards;
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..shards)
        .map(|_| crossbeam_channel::unbounded::<Arc<Snapshot>>())
        .unzip();
    let source = if c.providers.is_empty() {
        let e = cfg
            .etcd
            .as_ref()
            .context("etcd: required when consumer.providers is empty")?;
        Source::Etcd(EtcdConfig {
            app_discovery: app_discovery(&c, e).map(Box::new),
            provider_subset: provider_subset(&c, default_route_ip),
            ..etcd_config(e)
        })
    } else {
        // A static list serves every service (`*`).
        Source::Static(
            c.providers
                .iter()
                .map(|a| ("*".to_owned(), Endpoint::new(*a).with_id(a.to_string())))
                .collect(),
        )
    };
    let watcher = spawn_watcher(source, txs).context("starting the registry thread")?;
    // The admin side reads the registry thread's latest snapshot when asked (readiness, /registry, metrics).
    let registry_view =
        Arc::new(RegistryView::new(watcher.latest_snapshot()).with_watch(watcher.watch_state()));
    let upstream = UpstreamConfig {
        connections: c.upstream_connections,
        connect_timeout: Duration::from_millis(c.connect_timeout_ms),
        request_timeout: Duration::from_millis(c.request_timeout_ms),
        codec: Codec {
            max_body: c.max_frame_bytes,
            ..Codec::default()
        },
        read_buffer: cfg.runtime.read_buffer_bytes,
        heartbeat: (c.heartbeat_ms > 0).then(|| Duration::from_millis(c.heartbeat_ms)),
        tls: match &c.tls_ca {
            None => None,
            Some(ca) => {
                let identity = c.tls_cert.as_deref().zip(c.tls_key.as_deref());
                Some(
                    ClientTls::new(ca, identity, c.tls_server_name.as_deref())
                        .context("consumer.tls_ca / tls_cert / tls_key / tls_server_name")?,
                )
            }
        },
        ..UpstreamConfig::default()
    };
    let ejection = EjectionConfig {
        consecutive_failures: c.eject_failures,
        base_ejection: Duration::from_millis(c.eject_base_ms),
        max_ejection: Duration::from_millis(c.eject_max_ms),
    };
    let settings = consumer::ConsumerSettings {
        listen: c.listen,
        http: mesh_http::Limits {
            max_head_bytes: c.max_head_bytes,
            max_headers: c.max_headers,
            max_body_bytes: c.max_body_bytes,
            max_form_fields: c.max_form_fields,
        },
        upstream,
        max_connections: cfg.runtime.max_connections_per_shard,
        read_buffer: cfg.runtime.read_buffer_bytes,
        policies: policies(&c, shards),
        token: c.token.clone(),
        shards,
        queue_limit: c.queue_limit,
        queue_timeout: Duration::from_millis(c.queue_timeout_ms),
        idle_timeout: Duration::from_millis(c.idle_timeout_ms),
        request_read_timeout: Duration::from_millis(c.request_read_timeout_ms),
        dubbo: c.dubbo_listen.map(|listen| consumer::DubboPortSettings {
            listen,
            max_inflight_per_connection: c.dubbo_max_inflight_per_connection,
            idle_timeout: Duration::from_millis(c.dubbo_idle_timeout_ms),
        }),
    };
    let host = c.host_or(default_route_ip);
    let opts = consumer::UpstreamsOptions {
        shards,
        shard: 0,
        ejection,
        cap_headroom: f64::from(c.cap_headroom_pct) / 100.0,
        balancer: shard_balancer(c.balancer)?,
        rules: c.routing.clone().into_iter().collect(),
        consumer: consumer_identity(&c, host),
    };
    let rt = signal_runtime()?;
    let metrics = ShardMetrics::for_shards_recording(shards, admin::recording(cfg, Role::Consumer));
    let status = Arc::new(AgentStatus::default());
    let (drain_tx, mut drain_rx) = tokio::sync::mpsc::unbounded_channel();
    let makers: Vec<_> = rxs
        .into_iter()
        .zip(metrics.clone())
        .enumerate()
        .map(|(shard, (rx, metrics))| {
            let settings = settings.clone();
            let opts = consumer::UpstreamsOptions {
                shard,
                ..opts.clone()
            };
            move |control, ready: Ready| async move {
                let upstreams = consumer::Upstreams::new(rx, settings.upstream.clone(), opts);
                consumer::run(settings, upstreams, metrics, control, || ready.signal()).await
            }
        })
        .collect();
    let (controller, mut exits, n) = start_shards(&rt, cfg, "consumer", makers)?;
    status.serving.store(true, Ordering::Release);
    // After the shards listen: a role that cannot start says only why.
    let admin = admin::start(
        cfg.admin
            .listen_for(Role::Consumer)
            .map_err(|e| anyhow!("admin.listen: {e}"))?,
        AdminState {
            role: Role::Consumer,
            shards: metrics.clone(),
            status: status.clone(),
            registry: Some(registry_view),
            registrations: Arc::new(Mutex::new(serde_json::Value::Null)),
            local_limit: None,
            config_json: admin::config_json(cfg),
            drain: drain_tx,
            started: std::time::SystemTime::now(),
        },
    )?;
    let dubbo_port = c
        .dubbo_listen
        .map_or(String::new(), |d| format!(", Dubbo port on {d}"));
    tracing::info!(
        listen = %c.listen,
        shards = n,
        host = %opts.consumer.host,
        "consumer listening on {}{dubbo_port} with {n} shard(s), host {} for routing rules",
        c.listen,
        opts.consumer.host
    );
    let registrar = match (&cfg.etcd, c.register_services.is_empty()) {
        (Some(e), false) => {
            let ttl = Duration::from_secs(e.lease_ttl_s);
            let regs = consumer_urls(&c, host, now_unix_ms())
                .into_iter()
                .map(|u| Registration::new(u).with_ttl(ttl))
                .collect();
            Some(spawn_registrar(etcd_config(e), regs).context("starting the consumer's registrar")?)
        }
        _ => None,
    };
    status.registers.store(registrar.is_some(), Ordering::Relaxed);
    let waited = wait(
        &rt,
        &mut exits,
        &mut drain_rx,
        &status,
        || {},
        || {
            if let Some(r) = &registrar {
                status.sample_registration(r.is_registered(), r.lease_id());
            }
        },
    );
    if let Some(r) = registrar {
        if let Err(e) = r.deregister(Duration::from_secs(3)) {
            tracing::warn!(error = %e, "deregistering the consumer URLs failed");
        }
    }
    controller.stop(Duration::from_millis(c.request_timeout_ms));
    let joined = join_all(
        &rt,
        &mut exits,
        n,
        Duration::from_millis(c.request_timeout_ms + 2000),
    );
    let _ = watcher.stop();
    if let Some(a) = admin {
        a.stop();
    }
    waited.and(joined)
}

/// Runs the provider role until SIGTERM/SIGINT. On SIGHUP the configuration is read again with `reload`
/// and what shapes the registration ([`crate::provider_registration::RELOADED_KEYS`]) is applied: new
/// `MetadataInfo` served, registrations updated (new revision, URL keys added and removed).
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

/// Wall-clock Unix milliseconds (Dubbo's `timestamp`).
fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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

/// The consumer URLs this agent registers, one per service key of `consumer.register_services`, as a Java
/// consumer writes them (simplified when `consumer.simplified`).
fn consumer_urls(c: &ConsumerConfig, host: IpAddr, started_ms: u64) -> Vec<DubboUrl> {
    c.register_services
        .iter()
        .map(|service| {
            let url = ConsumerRegistration {
                service: ServiceKey::parse(service),
                host,
                application: c
                    .application
                    .clone()
                    .unwrap_or_else(|| "dubbo-mesh-agent".to_owned()),
                timestamp_ms: started_ms,
            }
            .url();
            if c.simplified {
                simplify_consumer_url(&url)
            } else {
                url
            }
        })
        .collect()
}

/// `consumer.services` as the shard's lookup table: method over service over the consumer's defaults.
fn policies(c: &ConsumerConfig, shards: usize) -> consumer::Policies {
    let default = consumer::CallPolicy {
        timeout: Duration::from_millis(c.request_timeout_ms),
        retries: c.retries,
        idempotent: c.idempotent,
        rate_limit: None,
    };
    let services = c
        .services
        .iter()
        .map(|(name, s)| {
            let svc = overlay(&default, s, shards);
            let methods = s
                .methods
                .iter()
                .map(|(m, p)| (m.clone(), overlay(&svc, p, shards)))
                .collect();
            (name.clone(), (Some(svc), methods))
        })
        .collect();
    consumer::Policies { default, services }
}

/// `over`'s keys over `base`. A rate is for the whole agent, taken in equal parts by its shards.
fn overlay(base: &consumer::CallPolicy, over: &CallPolicyConfig, shards: usize) -> consumer::CallPolicy {
    consumer::CallPolicy {
        timeout: over.timeout_ms.map_or(base.timeout, Duration::from_millis),
        retries: over.retries.unwrap_or(base.retries),
        idempotent: over.idempotent.unwrap_or(base.idempotent),
        rate_limit: over
            .rate_limit
            .map(|r| r as f64 / shards.max(1) as f64)
            .or(base.rate_limit),
    }
}

/// The shard runtime's balancer for the configured name (the names are the shard's: a unit test checks
/// every one).
fn shard_balancer(name: BalancerName) -> Result<mesh_shard::Balancer> {
    mesh_shard::balancer_named(name.name())
        .with_context(|| format!("consumer.balancer: {name} is not known to the shard runtime"))
}

/// The consumer's Dubbo 3 application-level discovery and migration: `None` (interface-level only, as
/// before) when the step is FORCE_INTERFACE and no migration rule can change it (no `consumer.application`).
fn app_discovery(c: &ConsumerConfig, e: &EtcdSection) -> Option<AppDiscoveryConfig> {
    let step = c.migration_step.step();
    if step == MigrationStep::ForceInterface && c.application.is_none() {
        return None;
    }
    Some(AppDiscoveryConfig {
        services_root: e.services_root.clone(),
        mapping_root: e.mapping_root.clone(),
        provided_by: c.provided_by_apps(),
        migration: MigrationDefaults {
            step,
            threshold: c.migration_threshold.map(|t| t as f32),
        },
        application: c.application.clone(),
        ..AppDiscoveryConfig::default()
    })
}

/// `consumer.provider_subset`: the size (0 with a consistent-hashing balancer, which must see every
/// provider) and the consumer's identity (`subset_seed`, else application, hostname, host and listen port).
fn provider_subset(c: &ConsumerConfig, route_ip: impl FnOnce() -> Option<IpAddr>) -> SubsetSettings {
    let mut size = c.provider_subset;
    if size > 0 && c.balancer == BalancerName::ConsistentHash {
        tracing::warn!("consumer.provider_subset = {size} ignored: consistent hashing needs every provider");
        size = 0;
    }
    let identity = c.subset_seed.clone().unwrap_or_else(|| {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let ip = c.host.or_else(route_ip).unwrap_or(c.listen.ip());
        let app = c.application.as_deref().unwrap_or("");
        format!("{app}@{}/{ip}:{}", hostname.trim(), c.listen.port())
    });
    if size > 0 {
        tracing::info!("provider subset: at most {size} providers per service, identity {identity:?}");
    }
    SubsetSettings {
        size,
        identity,
        consumer_application: c.application.clone(),
        configured_rules: c.routing.keys().cloned().collect(),
    }
}

/// What condition routing rules see as the consumer: `host`, and `application` when configured.
fn consumer_identity(c: &ConsumerConfig, host: IpAddr) -> mesh_balance::ConsumerInfo {
    let params: BTreeMap<String, String> = c
        .application
        .iter()
        .map(|a| ("application".to_owned(), a.clone()))
        .collect();
    mesh_balance::ConsumerInfo {
        host: host.to_string(),
        params,
        ..Default::default()
    }
}

/// This machine's IPv4 address towards its default route: a UDP socket "connected" to an address outside
/// the machine (192.0.2.1, TEST-NET-1): the kernel picks the source address of the route; nothing is sent.
/// `None` without a route.
fn default_route_ip() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    socket.local_addr().ok().map(|a| a.ip())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::{load, Overrides, Role};

    fn consumer_config(text: &str) -> ConsumerConfig {
        let text = format!("[consumer]\nproviders = [\"10.0.0.1:30000\"]\n{text}");
        load(Some(&text), &Overrides::default(), Role::Consumer)
            .unwrap()
            .consumer
            .unwrap()
    }

    #[test]
    fn condition_rules_see_the_configured_identity() {
        let c = consumer_config("application = \"orders\"\nhost = \"10.1.2.3\"\n");
        let info = consumer_identity(&c, c.host_or(|| None));
        assert_eq!(info.host, "10.1.2.3");
        assert_eq!(info.params.get("application").map(String::as_str), Some("orders"));

        let c = consumer_config("");
        let info = consumer_identity(&c, c.host_or(|| None));
        assert_eq!(info.host, "127.0.0.1");
        assert!(info.params.is_empty());
    }

    #[test]
    fn consumer_host_defaults() {
        let c = consumer_config("listen = \"10.9.8.7:20000\"\n");
        assert_eq!(c.host_or(|| None).to_string(), "10.9.8.7");
        let c = consumer_config("listen = \"0.0.0.0:20000\"\n");
        let route = || Some("172.16.0.5".parse().unwrap());
        assert_eq!(c.host_or(route).to_string(), "172.16.0.5");
        assert_eq!(c.host_or(|| None).to_string(), "127.0.0.1");
        assert_eq!(
            c.host_or(|| Some("127.0.0.1".parse().unwrap())).to_string(),
            "127.0.0.1"
        );
        assert!(default_route_ip().is_none_or(|ip| !ip.is_unspecified()));
    }

    #[test]
    fn provider_subset_settings() {
        let c = consumer_config("");
        assert_eq!(provider_subset(&c, || None).size, 0);
        let c = consumer_config(
            "provider_subset = 64\napplication = \"web\"\nlisten = \"0.0.0.0:20000\"\n\
             [consumer.routing]\n\"com.x.S\" = '{\"conditions\": [\"=> host = 10.0.0.1\"]}'\n",
        );
        let s = provider_subset(&c, || Some("10.1.2.3".parse().unwrap()));
        assert_eq!(s.size, 64);
        assert!(
            s.identity.starts_with("web@") && s.identity.ends_with("/10.1.2.3:20000"),
            "{}",
            s.identity
        );
        assert_eq!(s.consumer_application.as_deref(), Some("web"));
        assert!(s.configured_rules.contains("com.x.S"));
        let c = consumer_config("provider_subset = 64\nsubset_seed = \"pod-7\"\n");
        assert_eq!(provider_subset(&c, || None).identity, "pod-7");
        let c = consumer_config("provider_subset = 64\nbalancer = \"consistent_hash\"\n");
        assert_eq!(provider_subset(&c, || None).size, 0);
    }

    #[test]
    fn call_policies_fall_back_method_to_service_to_consumer() {
        let c = consumer_config(
            "retries = 1\n[consumer.services.S]\ntimeout_ms = 800\nrate_limit = 100\n\
             [consumer.services.S.methods.get]\nretries = 3\n",
        );
        let p = policies(&c, 4);
        assert_eq!((p.default.retries, p.default.rate_limit), (1, None));
        let (svc, methods) = &p.services["S"];
        let svc = svc.clone().unwrap();
        assert_eq!((svc.timeout, svc.retries), (Duration::from_millis(800), 1));
        assert_eq!(svc.rate_limit, Some(25.0));
        let get = &methods["get"];
        assert_eq!(
            (get.timeout, get.retries, get.rate_limit),
            (svc.timeout, 3, Some(25.0))
        );
        assert_eq!(get.idempotent, c.idempotent);
    }

    #[test]
    fn app_discovery_follows_the_consumer_keys() {
        let etcd = |text: &str| {
            let text = format!("[consumer]\n{text}\n[etcd]\nendpoints = [\"http://127.0.0.1:2379\"]\n");
            let cfg = load(Some(&text), &Overrides::default(), Role::Consumer).unwrap();
            (cfg.consumer.unwrap(), cfg.etcd.unwrap())
        };
        let (c, e) = etcd("");
        let apps = app_discovery(&c, &e).unwrap();
        assert_eq!(apps.migration.step, MigrationStep::ApplicationFirst);
        assert_eq!(apps.migration.threshold, None);
        assert_eq!(
            (apps.services_root.as_str(), apps.mapping_root.as_str()),
            ("/services", "/dubbo")
        );
        let (c, e) = etcd("migration_step = \"FORCE_INTERFACE\"");
        assert!(
            app_discovery(&c, &e).is_none(),
            "FORCE_INTERFACE without a rule: interface-level only"
        );
        let (c, e) = etcd(
            "migration_step = \"FORCE_INTERFACE\"\napplication = \"web\"\nmigration_threshold = 0.5\n\
             [consumer.provided_by]\n\"a.Cart\" = \"shop, shop-canary\"",
        );
        let apps = app_discovery(&c, &e).unwrap();
        assert_eq!(apps.application.as_deref(), Some("web"));
        assert_eq!(apps.migration.threshold, Some(0.5));
        assert_eq!(apps.provided_by["a.Cart"], ["shop", "shop-canary"]);
        assert!(apps.validate().is_ok());
        for bad in [
            "migration_step = \"application_first\"",
            "migration_threshold = -1.0",
            "[consumer.provided_by]\n\"a.Cart\" = \" , \"",
            "[consumer.provided_by]\n\"a/Cart\" = \"shop\"",
        ] {
            let text = format!("[consumer]\n{bad}\n[etcd]\nendpoints = [\"http://127.0.0.1:2379\"]\n");
            assert!(
                load(Some(&text), &Overrides::default(), Role::Consumer).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn every_balancer_maps_to_the_shard() {
        for name in BalancerName::NAMES {
            assert!(shard_balancer(name.parse().unwrap()).is_ok(), "{name}");
        }
    }
}
