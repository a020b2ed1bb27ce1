//! Agent configuration: a TOML file, command-line flags and environment variables, merged and validated.
//!
//! Precedence, highest first: **flag > environment variable > file > built-in default**. Flags and their
//! environment fallbacks are resolved by clap; what clap yields becomes an [`Overrides`], which [`load`]
//! writes over the file's keys before the typed structs are built, so a value from any layer goes through the
//! same deserialization and the same [`AgentConfig::validate`].
//!
//! Everything below the clap layer works on strings ([`parse_toml`], [`load`], [`merge`]), so every key and
//! every error message is unit-tested without files, environment or a process.
//!
//! Errors ([`ConfigError`]) are one line and name the full dotted key (`consumer.upstream_connections`);
//! errors about values read from the file also give the line and column. toml's own messages name only the
//! last segment of an unknown key and nothing at all for a value of the wrong type ("invalid socket address
//! syntax"), so the file is read in two steps: toml parses it into spanned untyped tables (syntax errors,
//! with toml's position), then each key is checked against the fields of its section's struct and each
//! section is deserialized on its own; when a section fails, its keys are retried one at a time to find the
//! key that fails, whose name and position then go into the error.
//!
//! The reference for every key is `docs/config.md`.

mod cli;
mod consumer;
mod cpus;
mod document;
mod error;
mod etcd;
mod merge;
mod provider;
mod runtime;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
mod validate;

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

pub(crate) use cli::*;
pub(crate) use consumer::*;
pub(crate) use cpus::*;
use document::*;
pub(crate) use error::*;
pub(crate) use etcd::*;
pub(crate) use merge::*;
pub(crate) use provider::*;
pub(crate) use runtime::*;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// The role the process runs as; decides which section is required and which checks apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Consumer,
    Provider,
}

impl Role {
    /// The TOML section of this role.
    pub(crate) fn section(self) -> &'static str {
        match self {
            Role::Consumer => "consumer",
            Role::Provider => "provider",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.section())
    }
}

/// The whole configuration. `consumer` / `provider` are present when the file has the section or when the
/// process runs that role ([`load`] adds the role's section with its defaults); `etcd` only when configured.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentConfig {
    #[serde(default)]
    pub(crate) runtime: RuntimeConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) consumer: Option<ConsumerConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) provider: Option<ProviderConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) etcd: Option<EtcdSection>,
}

fn addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|_| unreachable!("bad built-in address {s}"))
}
