//! `[runtime]`: shards, their CPUs, buffers.

use serde::{Deserialize, Serialize};

use super::*;

/// `[runtime]`: shards and their CPUs, buffers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RawRuntime")]
pub(crate) struct RuntimeConfig {
    /// CPU ids to pin shards to. Default: the CPUs this process may run on (its affinity mask), at most
    /// `std::thread::available_parallelism()` of them (which also honours a cgroup CPU quota).
    pub(crate) cores: Vec<usize>,
    /// Number of shards (one executor + listener each), >= 1. Default: `cores.len()`. When larger than
    /// `cores.len()`, shard `i` runs on `cores[i % cores.len()]`.
    pub(crate) shards: usize,
    /// Per-connection read buffer, 4 KiB..=16 MiB, default 64 KiB.
    pub(crate) read_buffer_bytes: usize,
    /// Accepted connections per shard before new ones are refused, 1..=1_000_000, default 10 000.
    pub(crate) max_connections_per_shard: usize,
}

impl RuntimeConfig {
    /// The CPU shard `i` is pinned to.
    #[allow(dead_code)] // for the shard runtime
    pub(crate) fn core_of_shard(&self, shard: usize) -> usize {
        self.cores[shard % self.cores.len()]
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RawRuntime::default().into()
    }
}

/// What `[runtime]` says before defaults: `shards` defaults to the number of cores *after* every layer
/// (file, env, flags) had its say on `cores`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRuntime {
    cores: Option<CoreList>,
    shards: Option<usize>,
    read_buffer_bytes: Option<usize>,
    max_connections_per_shard: Option<usize>,
}

impl From<RawRuntime> for RuntimeConfig {
    fn from(raw: RawRuntime) -> Self {
        let cores = raw.cores.map_or_else(default_cores, |c| c.0);
        RuntimeConfig {
            shards: raw.shards.unwrap_or(cores.len()),
            cores,
            read_buffer_bytes: raw.read_buffer_bytes.unwrap_or(64 * KIB),
            max_connections_per_shard: raw.max_connections_per_shard.unwrap_or(10_000),
        }
    }
}
