//! One glommio executor per shard, pinned to its core; the CPUs the process may use. The stop/drain
//! control is [`crate::control`].

use std::future::Future;

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

/// Locked memory glommio registers per executor for io_uring buffers (its DMA buffers, used for file IO
/// only). Registering pins the pages, so all of it is resident from the start: 512 KiB per shard was 1 MiB
/// of the consumer's RSS on 2 shards doing no file IO. glommio's default (10 MiB) also exceeds common
/// `ulimit -l` settings; 64 KiB is glommio's minimum.
pub const DEFAULT_IO_MEMORY: usize = 64 * 1024;

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
        .ring_depth(SHARD_RING_DEPTH)
        .spawn(fut_gen)
        .map_err(|e| {
            std::io::Error::other(format!(
                "cannot start shard {} on core {:?}: {e}",
                spec.index, spec.core
            ))
        })
}

/// io_uring submission depth of a shard's rings (glommio's default: 128). The kernel sizes its table of armed
/// polls by the completion queue (2 x this): `ilog2(cq) - 5` hash bits, at most 8. At 128 that is 8 buckets,
/// so with thousands of upstream connections (one armed read each) every cancel glommio submits walks hundreds
/// of entries (`io_poll_find`); 4096 gives the maximum of 256 buckets.
const SHARD_RING_DEPTH: usize = 4096;

/// Runs `f` to completion on a glommio executor started on the calling thread: for tests of shard code.
#[cfg(test)]
pub(crate) fn run_on_test_shard<T>(f: impl Future<Output = T> + 'static) -> T {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(DEFAULT_IO_MEMORY)
        .make()
        .expect("a test executor")
        .run(f)
}
