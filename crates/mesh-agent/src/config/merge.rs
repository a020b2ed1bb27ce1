//! Overrides (flags and environment) written over the file, and loading: merge + validate.

use std::collections::BTreeMap;

#[cfg(test)]
use serde::Serialize;

use super::cpus::online_cpus;
use super::document::Document;
use super::error::{ConfigError, Location};
use super::keys::Key;
use super::{AgentConfig, Role};

/// Values from flags or environment variables, by key, as the file would spell them; a key without one
/// keeps the file's value (or the default).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Overrides(BTreeMap<(&'static str, &'static str), toml::Value>);

impl Overrides {
    /// Sets `key` to `value`.
    pub(crate) fn set(&mut self, key: &Key, value: toml::Value) {
        self.0.insert((key.section, key.name), value);
    }

    /// `self` with `key` set to `value` (which must serialize).
    #[cfg(test)]
    pub(crate) fn with(mut self, key: &Key, value: impl Serialize) -> Overrides {
        let value = toml::Value::try_from(value).unwrap_or_else(|e| panic!("{}: {e}", key.dotted()));
        self.set(key, value);
        self
    }

    /// The value set for `key`, if any.
    #[cfg(test)]
    pub(crate) fn get(&self, key: &Key) -> Option<&toml::Value> {
        self.0.get(&(key.section, key.name))
    }

    fn apply(&self, doc: &mut Document) {
        for ((section, name), value) in &self.0 {
            doc.set(section, name, value.clone());
        }
    }
}

/// Parses a config file's text: unknown keys, wrong types and syntax are errors; absent keys take their
/// defaults; no range checks (see [`AgentConfig::validate_on`]).
#[cfg(test)]
pub(crate) fn parse_toml(s: &str) -> Result<AgentConfig, ConfigError> {
    Document::parse(s)?.build()
}

/// File text (if any) with `overrides` on top, the role's section added with its defaults if absent; not
/// validated.
pub(crate) fn merge(
    file_text: Option<&str>,
    overrides: &Overrides,
    role: Role,
) -> Result<(AgentConfig, BTreeMap<String, Location>), ConfigError> {
    let mut doc = match file_text {
        Some(text) => Document::parse(text)?,
        None => Document::default(),
    };
    overrides.apply(&mut doc);
    doc.section_mut(role.section());
    let locations = doc.locations.clone();
    Ok((doc.build()?, locations))
}

/// [`merge`] + [`AgentConfig::validate_on`] against this machine's CPUs: what a role runs with.
/// Validation errors about a value that came from the file carry its position.
pub(crate) fn load(
    file_text: Option<&str>,
    overrides: &Overrides,
    role: Role,
) -> Result<AgentConfig, ConfigError> {
    load_on(file_text, overrides, role, &online_cpus())
}

/// [`load`] against a given list of online CPUs.
pub(crate) fn load_on(
    file_text: Option<&str>,
    overrides: &Overrides,
    role: Role,
    online: &[usize],
) -> Result<AgentConfig, ConfigError> {
    let (config, locations) = merge(file_text, overrides, role)?;
    config.validate_on(role, online).map_err(|e| {
        let location = e.key().and_then(|k| locations.get(k)).copied();
        e.with_location(location)
    })?;
    Ok(config)
}
