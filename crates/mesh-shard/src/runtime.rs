//! One glommio executor per shard, pinned to its core, and the stop/drain control shared with the main
//! thread (an atomic flag polled by each shard: control plane only, never touched per request).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

/// Where one shard runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardSpec {
    pub index: usize,
    /// The CPU the shard is pinned to; `None` lets the OS place it.
    pub core: Option<usize>,
}

/// Spreads `shards` over `cores` round-robin (one shard per core when the counts match).
pub fn placements(cores: &[usize], shards: usize) -> Vec<ShardSpec> {
    (0..shards)
        .map(|index| ShardSpec {
            index,
            core: cores.get(index % cores.len().max(1)).copied(),
        })
        .collect()
}

/// The CPUs this process may run on.
pub fn online_cores() -> Vec<usize> {
    core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|c| c.id).collect())
        .unwrap_or_default()
}

/// Locked memory glommio registers per executor for io_uring buffers. glommio's default (10 MiB) exceeds
/// common `ulimit -l` settings; the agent does no file IO, so a small area is enough.
pub const DEFAULT_IO_MEMORY: usize = 512 * 1024;

/// Starts one shard: a glommio executor on its own thread, pinned to `spec.core`.
pub fn spawn_shard<G, F, T>(
    spec: ShardSpec,
    name: &str,
    io_memory: usize,
    fut_gen: G,
) -> std::io::Result<ExecutorJoinHandle<T>>
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let placement = match spec.core {
        Some(c) => Placement::Fixed(c),
        None => Placement::Unbound,
    };
    LocalExecutorBuilder::new(placement)
        .name(&format!("{name}-{}", spec.index))
        .io_memory(io_memory)
        .spawn(fut_gen)
        .map_err(|e| {
            std::io::Error::other(format!(
                "cannot start shard {} on core {:?}: {e}",
                spec.index, spec.core
            ))
        })
}

#[derive(Debug, Default)]
struct ControlInner {
    stop: AtomicBool,
    drain_ms: AtomicU64,
}

/// Held by the main thread: tells every shard to stop accepting and drain.
#[derive(Debug, Clone, Default)]
pub struct Controller(Arc<ControlInner>);

/// Held by each shard.
#[derive(Debug, Clone)]
pub struct ShardControl(Arc<ControlInner>);

impl Controller {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn shard(&self) -> ShardControl {
        ShardControl(self.0.clone())
    }

    /// Stop accepting; finish what is in flight within `drain`, then let the shard exit.
    pub fn stop(&self, drain: Duration) {
        self.0.drain_ms.store(drain.as_millis() as u64, Ordering::Relaxed);
        self.0.stop.store(true, Ordering::Release);
    }
}

const POLL: Duration = Duration::from_millis(20);

impl ShardControl {
    pub fn is_stopping(&self) -> bool {
        self.0.stop.load(Ordering::Acquire)
    }

    /// Resolves once a stop has been requested.
    pub async fn stopped(&self) {
        while !self.is_stopping() {
            glommio::timer::sleep(POLL).await;
        }
    }

    /// After a stop: waits until `idle()` holds or the drain time is over.
    pub async fn drained(&self, idle: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_millis(self.0.drain_ms.load(Ordering::Relaxed));
        while !idle() && Instant::now() < deadline {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
    }
}
