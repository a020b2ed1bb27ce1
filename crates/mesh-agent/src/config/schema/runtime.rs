//! `[runtime]`: shards, their CPUs, buffers.

use serde::{Deserialize, Serialize};

use crate::config::cpus::{default_cores, CoreList};

/// `[runtime]`: shards and their CPUs, buffers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct RuntimeConfig {
    /// CPU ids to pin shards to.
    pub(crate) cores: Vec<usize>,
    /// Number of shards (one executor + listener each); shard `i` runs on `cores[i % cores.len()]`.
    pub(crate) shards: usize,
    pub(crate) read_buffer_bytes: usize,
    pub(crate) max_connections_per_shard: usize,
    pub(crate) io_uring_depth: usize,
}

/// What `[runtime]` says before the computed defaults: `shards` defaults to the number of cores *after*
/// every layer (file, env, flags) had its say on `cores`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRuntime {
    cores: Option<CoreList>,
    shards: Option<usize>,
    read_buffer_bytes: usize,
    max_connections_per_shard: usize,
    io_uring_depth: usize,
}

impl From<RawRuntime> for RuntimeConfig {
    fn from(raw: RawRuntime) -> Self {
        let cores = raw.cores.map_or_else(default_cores, |c| c.0);
        RuntimeConfig {
            shards: raw.shards.unwrap_or(cores.len()),
            cores,
            read_buffer_bytes: raw.read_buffer_bytes,
            max_connections_per_shard: raw.max_connections_per_shard,
            io_uring_depth: raw.io_uring_depth,
        }
    }
}
