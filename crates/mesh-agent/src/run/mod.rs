//! Starting the roles: registry thread + `runtime.shards` glommio shards pinned over `runtime.cores`, signal
//! handling, the admin listener, and the shutdown order (provider: deregister first, then drain; consumer:
//! stop accepting, drain). SIGTERM, SIGINT and the admin's `POST /drain` start the same drain; `/ready`
//! answers 503 from its first moment.

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use mesh_registry::{EtcdAuth, EtcdConfig, EtcdTls};
use mesh_shard::control::{Controller, ShardControl};
use mesh_shard::runtime::{placements, spawn_shard, ShardIo, DEFAULT_IO_MEMORY};

use crate::admin::AgentStatus;
use crate::config::{AgentConfig, EtcdSection};

mod consumer_role;
mod provider_role;

pub(crate) use consumer_role::consumer;
pub(crate) use provider_role::provider;
#[cfg(test)]
pub(crate) use provider_role::provider_urls;

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

/// Wall-clock Unix milliseconds (Dubbo's `timestamp`).
fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
