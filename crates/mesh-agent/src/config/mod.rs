//! Agent configuration: a TOML file, command-line flags and environment variables, merged and validated.
//!
//! Precedence, highest first: **flag > environment variable > file > built-in default**. Flags and their
//! environment fallbacks are resolved by clap; what clap yields becomes an [`Overrides`], which [`load`]
//! writes over the file's keys before the typed structs are built, so a value from any layer goes through the
//! same deserialization and the same [`AgentConfig::validate_on`].
//!
//! Every key is defined once, in the key table of [`keys`]: its type, default, range or allowed values,
//! flag, environment variable and help. The file reader fills defaults from it, validation checks its
//! ranges, `--help` (`reference.rs`) and the key reference in docs/config.md (`docs.rs`) are generated
//! from it.
//!
//! The files, in the order a value goes through them:
//! - `cli.rs`: the clap arguments of each role, their help, and [`Overrides`] from them;
//! - `document.rs`: the file read into spanned untyped tables, unknown keys and syntax errors with their
//!   position, defaults filled in, each section typed on its own so a failing value is named by its key;
//! - `merge.rs`: overrides written over the file, [`load`] = merge + validate;
//! - `schema/`: the typed sections; `names.rs`: the keys that are one of a few names, as enums;
//!   `cpus.rs`: CPU lists and the CPUs this process may run on;
//! - `validate.rs`: the table's ranges, then the rules between keys;
//! - `error.rs`: [`ConfigError`], one line naming the dotted key, with the file position when there is one.
//!
//! Everything below the clap layer works on strings, so every key and every error message is unit-tested
//! without files, environment or a process.

mod cli;
mod cpus;
#[cfg(test)]
mod docs;
mod document;
mod error;
mod keys;
mod merge;
mod names;
mod reference;
mod schema;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
mod validate;

use std::fmt;

use serde::Serialize;

pub(crate) use cli::{ConsumerArgs, ProviderArgs};
#[cfg(test)]
pub(crate) use merge::{load, Overrides};
pub(crate) use names::BalancerName;
pub(crate) use schema::{
    AdminConfig, AdminListen, CallPolicyConfig, ConsumerConfig, EtcdSection, LogConfig, LogFormat,
    ProviderConfig, RuntimeConfig,
};

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct AgentConfig {
    pub(crate) runtime: RuntimeConfig,
    pub(crate) consumer: Option<ConsumerConfig>,
    pub(crate) provider: Option<ProviderConfig>,
    pub(crate) etcd: Option<EtcdSection>,
    pub(crate) admin: AdminConfig,
    pub(crate) log: LogConfig,
}

impl AgentConfig {
    /// The configuration as TOML (what `--print-config` prints): itself a valid config file.
    pub(crate) fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }
}
