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

/// io_uring submission depth of a shard's rings (glommio's default: 128). The kernel sizes its table of armed
/// polls by the completion queue (2 x this): `ilog2(cq) - 5` hash bits, at most 8. At 128 that is 8 buckets,
/// so with thousands of upstream connections (one armed read each) every cancel glommio submits walks hundreds
/// of entries (`io_poll_find`); 4096 gives the maximum of 256 buckets. The rings cost memory by their depth:
/// glommio sets up 3 per shard, each about 100 bytes per entry (64-byte submission entries, two 16-byte
/// completion entries, the index array), all of it resident: 4096 is 1.2 MiB per shard, 1024 is 0.3 MiB.
pub const DEFAULT_RING_DEPTH: usize = 4096;

/// What glommio sets up per shard for io_uring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardIo {
    /// Locked memory for io_uring buffers ([`DEFAULT_IO_MEMORY`]).
    pub io_memory: usize,
    /// Entries of each ring's submission queue ([`DEFAULT_RING_DEPTH`]); the kernel rounds it up to a power
    /// of two.
    pub ring_depth: usize,
}

impl Default for ShardIo {
    fn default() -> Self {
        ShardIo {
            io_memory: DEFAULT_IO_MEMORY,
            ring_depth: DEFAULT_RING_DEPTH,
        }
    }
}

/// Starts one shard: a glommio executor on its own thread, pinned to `spec.core`.
pub fn spawn_shard<G, F, T>(
    spec: ShardSpec,
    name: &str,
    io: ShardIo,
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
        .io_memory(io.io_memory)
        .ring_depth(io.ring_depth)
        .spawn(fut_gen)
        .map_err(|e| {
            std::io::Error::other(format!(
                "cannot start shard {} on core {:?}: {e}",
                spec.index, spec.core
            ))
        })
}

/// Runs `f` to completion on a glommio executor started on the calling thread: for tests of shard code.
#[cfg(test)]
pub(crate) fn run_on_test_shard<T>(f: impl Future<Output = T> + 'static) -> T {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(DEFAULT_IO_MEMORY)
        .make()
        .expect("a test executor")
        .run(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The submission-queue masks (entries - 1) of the io_uring instances this process holds, read from
    /// `/proc/self/fdinfo` (`SqMask:`).
    fn io_uring_sq_masks() -> Vec<u64> {
        let mut masks = Vec::new();
        for fd in std::fs::read_dir("/proc/self/fd")
            .expect("/proc/self/fd")
            .flatten()
        {
            let is_ring =
                std::fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy() == "anon_inode:[io_uring]");
            if !is_ring {
                continue;
            }
            let info =
                std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.file_name().to_string_lossy()))
                    .unwrap_or_default();
            for line in info.lines() {
                if let Some(v) = line.strip_prefix("SqMask:") {
                    if let Ok(m) = u64::from_str_radix(v.trim().trim_start_matches("0x"), 16) {
                        masks.push(m);
                    }
                }
            }
        }
        masks
    }

    #[test]
    fn the_ring_depth_reaches_the_kernel() {
        // 64 entries: no other test asks for that depth (glommio's default is 128, the agent's 4096), so
        // rings with a mask of 63 are this shard's.
        let io = ShardIo {
            ring_depth: 64,
            ..ShardIo::default()
        };
        let spec = ShardSpec { index: 0, core: None };
        let masks = spawn_shard(spec, "ring-depth-test", io, || async { io_uring_sq_masks() })
            .expect("a shard")
            .join()
            .expect("the shard ran");
        assert!(masks.contains(&63), "SqMask of the rings: {masks:?}");
        assert_eq!(ShardIo::default().ring_depth, DEFAULT_RING_DEPTH);
    }
}
