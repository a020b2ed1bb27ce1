//! The log subscriber the roles install at start: which events (`MESH_LOG`, `tracing-subscriber`'s
//! EnvFilter syntax, `info` when unset) and how they are written on stderr (`log.format`: text or JSON
//! lines). Every crate emits `tracing` events; their target is their module (`mesh_registry::etcd`).

use std::io::IsTerminal;

use anyhow::{anyhow, Result};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// The environment variable with the filter.
pub(crate) const MESH_LOG: &str = "MESH_LOG";
/// The filter when `MESH_LOG` is unset or empty.
const DEFAULT_FILTER: &str = "info";

/// The filter `value` (`MESH_LOG`'s, `None` when unset) stands for, or why it does not parse.
pub(crate) fn filter(value: Option<&str>) -> Result<EnvFilter> {
    let spec = match value.map(str::trim) {
        None | Some("") => DEFAULT_FILTER,
        Some(s) => s,
    };
    EnvFilter::builder().parse(spec).map_err(|e| {
        anyhow!("{MESH_LOG}: {spec:?} is not a log filter ({e}); expected e.g. `info,mesh_registry=debug`")
    })
}

/// Installs the process's subscriber: `MESH_LOG`'s filter, lines in `format` on stderr.
pub(crate) fn init(format: LogFormat) -> Result<()> {
    let value = match std::env::var(MESH_LOG) {
        Ok(v) => Some(v),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => return Err(anyhow!("{MESH_LOG}: not UTF-8")),
    };
    let filter = filter(value.as_deref())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true);
    let installed = match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
    installed.map_err(|e| anyhow!("installing the log subscriber: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unset_or_empty_is_info() {
        assert_eq!(filter(None).unwrap().to_string(), "info");
        assert_eq!(filter(Some("  ")).unwrap().to_string(), "info");
    }

    #[test]
    fn targets_and_levels_parse() {
        let f = filter(Some("warn,mesh_registry=debug")).unwrap().to_string();
        assert!(f.contains("mesh_registry=debug") && f.contains("warn"), "{f}");
    }

    #[test]
    fn a_bad_filter_names_the_variable_and_the_value() {
        let e = filter(Some("info,mesh_registry=loud")).unwrap_err().to_string();
        assert!(
            e.starts_with("MESH_LOG: \"info,mesh_registry=loud\" is not a log filter"),
            "{e}"
        );
    }
}
