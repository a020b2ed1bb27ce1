//! The command line of each role, made from the key table: every key with a flag becomes a clap argument
//! (its long name, environment variable, value name and help from the table), and what clap yields becomes
//! [`Overrides`] for exactly that key. Plus `--config` / `--print-config` and loading the file.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::builder::BoolishValueParser;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};

use super::cpus::CoreList;
use super::error::ConfigError;
use super::keys::{keys_of, Key, Parse};
use super::merge::{load, Overrides};
use super::names::SerializationName;
use super::reference::{file_only_keys, flag_help};
use super::{AgentConfig, Role};

/// `--config` and `--print-config`.
#[derive(Debug, Args)]
struct FileArgs {
    /// TOML config file; every key is optional (see docs/config.md).
    #[arg(long, env = "MESH_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Print the effective configuration (defaults, file, env and flags merged, validated) as TOML and exit.
    /// No environment variable on purpose: a stray one would turn a deployment into a no-op.
    #[arg(long)]
    print_config: bool,
}

/// The keys a role's command line sets: its own section's, then etcd's, runtime's, admin's and log's.
fn flag_keys(role: Role) -> impl Iterator<Item = &'static Key> {
    [role.section(), "etcd", "runtime", "admin", "log"]
        .into_iter()
        .flat_map(keys_of)
        .filter(|k| k.flag.is_some())
}

/// A flag's value parsed as `parse` says, as the file would spell it. Surrounding whitespace is ignored
/// except for text.
fn parse_value(parse: Parse, s: &str) -> Result<toml::Value, String> {
    fn text<T: std::str::FromStr>(s: &str) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        s.trim().parse().map_err(|e: T::Err| e.to_string())
    }
    Ok(match parse {
        Parse::Addr => toml::Value::String(text::<SocketAddr>(s)?.to_string()),
        Parse::Ip => toml::Value::String(text::<IpAddr>(s)?.to_string()),
        Parse::Int => {
            let n = text::<u64>(s)?;
            toml::Value::Integer(i64::try_from(n).map_err(|_| format!("{n} is too large"))?)
        }
        Parse::Text => toml::Value::String(s.to_owned()),
        Parse::Cores => toml::Value::Array(
            text::<CoreList>(s)?
                .0
                .into_iter()
                .map(|c| toml::Value::Integer(i64::try_from(c).unwrap_or(i64::MAX)))
                .collect(),
        ),
        Parse::Serialization => toml::Value::String(text::<SerializationName>(s)?.name().to_owned()),
    })
}

/// One occurrence of a list flag, or its environment variable: comma-separated, items trimmed, empty items
/// skipped (so `MESH_PROVIDERS=` means no items, i.e. no override).
fn parse_list(parse: Parse, s: &str) -> Result<Vec<toml::Value>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| parse_value(parse, item).map_err(|e| format!("{item:?}: {e}")))
        .collect()
}

/// The clap argument of a key with a flag (its id is the flag's long name: unique among a role's flags,
/// where key names are not: `consumer.listen` and `admin.listen`).
fn arg_of(key: &'static Key) -> Option<Arg> {
    let flag = key.flag?;
    let arg = Arg::new(flag.long)
        .long(flag.long)
        .env(flag.env)
        .help(flag_help(key))
        .hide_env_values(flag.secret);
    Some(match flag.value {
        None => arg
            .action(ArgAction::SetTrue)
            .value_parser(BoolishValueParser::new()),
        Some((name, parse)) if flag.list => arg
            .value_name(name)
            .action(ArgAction::Append)
            .value_parser(move |s: &str| parse_list(parse, s)),
        Some((name, parse)) => arg
            .value_name(name)
            .value_parser(move |s: &str| parse_value(parse, s)),
    })
}

/// What the arguments of `role` say, as overrides of their keys.
fn overrides_of(matches: &ArgMatches, role: Role) -> Overrides {
    let mut overrides = Overrides::default();
    for key in flag_keys(role) {
        let Some(id) = key.flag.map(|f| f.long) else {
            continue;
        };
        let value = match key.flag.and_then(|f| f.value) {
            // A switch sets its key to false.
            None => matches.get_flag(id).then_some(toml::Value::Boolean(false)),
            Some(_) if key.flag.is_some_and(|f| f.list) => {
                let items: Vec<toml::Value> = matches
                    .get_many::<Vec<toml::Value>>(id)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .cloned()
                    .collect();
                (!items.is_empty()).then_some(toml::Value::Array(items))
            }
            Some(_) => matches.get_one::<toml::Value>(id).cloned(),
        };
        if let Some(v) = value {
            overrides.set(key, v);
        }
    }
    overrides
}

/// A role's command line: `--config`, `--print-config` and the flags of its keys.
#[derive(Debug)]
struct RoleArgs {
    file: FileArgs,
    overrides: Overrides,
}

impl RoleArgs {
    fn augment(cmd: Command, role: Role) -> Command {
        FileArgs::augment_args(cmd)
            .args(flag_keys(role).filter_map(arg_of))
            .after_help(file_only_keys(role))
    }

    fn from_matches(matches: &ArgMatches, role: Role) -> Result<RoleArgs, clap::Error> {
        Ok(RoleArgs {
            file: FileArgs::from_arg_matches(matches)?,
            overrides: overrides_of(matches, role),
        })
    }

    /// Reads `--config`, merges env and flags, validates.
    fn load(&self, role: Role) -> anyhow::Result<AgentConfig> {
        load_file(self.file.config.as_deref(), &self.overrides, role)
    }
}

/// The clap glue of one role's arguments: `mesh-agent consumer` / `mesh-agent provider`.
macro_rules! role_args {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub(crate) struct $name(RoleArgs);

        impl $name {
            /// Reads `--config`, merges env and flags, validates.
            pub(crate) fn load(&self) -> anyhow::Result<AgentConfig> {
                self.0.load($role)
            }

            /// `--print-config`.
            pub(crate) fn print_config(&self) -> bool {
                self.0.file.print_config
            }

            /// What the flags and environment variables set.
            #[cfg(test)]
            pub(crate) fn overrides(&self) -> &Overrides {
                &self.0.overrides
            }
        }

        impl Args for $name {
            fn augment_args(cmd: Command) -> Command {
                RoleArgs::augment(cmd, $role)
            }
            fn augment_args_for_update(cmd: Command) -> Command {
                RoleArgs::augment(cmd, $role)
            }
        }

        impl FromArgMatches for $name {
            fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
                RoleArgs::from_matches(matches, $role).map($name)
            }
            fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
                self.0 = RoleArgs::from_matches(matches, $role)?;
                Ok(())
            }
        }
    };
}

role_args!(
    /// `mesh-agent consumer`.
    ConsumerArgs,
    Role::Consumer
);
role_args!(
    /// `mesh-agent provider`.
    ProviderArgs,
    Role::Provider
);

/// [`load`] with the file read from `path`; errors located in the file are prefixed with its path.
fn load_file(path: Option<&Path>, overrides: &Overrides, role: Role) -> anyhow::Result<AgentConfig> {
    let text = match path {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
            path: p.to_owned(),
            source,
        })?),
        None => None,
    };
    load(text.as_deref(), overrides, role).map_err(|e| match path {
        Some(p) if e.is_in_file() => anyhow::Error::new(e).context(p.display().to_string()),
        _ => e.into(),
    })
}
