//! Reading the file: spanned untyped TOML tables, each key checked against its section's keys in the key
//! table, defaults filled in from that table, each section deserialized on its own so that a failing value
//! is named by its full key and position.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use toml::Spanned;

use super::error::{invalid, ConfigError, Location};
use super::keys::{defaults_of, keys_of, SECTIONS};
use super::schema::{AdminConfig, ConsumerConfig, EtcdSection, LogConfig, ProviderConfig, RawRuntime};
use super::AgentConfig;

/// The file as untyped tables, every key known, plus where each value sits.
#[derive(Debug, Default)]
pub(super) struct Document {
    table: toml::Table,
    /// `section.key` -> position of the key in the file.
    pub(super) locations: BTreeMap<String, Location>,
}

/// Keys with their positions. Values are not `Spanned`: toml 0.8 fails on a `Spanned<toml::Value>` that is
/// a table made by dotted keys (`consumer.listen = ...`), so positions are those of the keys.
type SpannedTable = BTreeMap<Spanned<String>, toml::Value>;

fn syntax_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let message = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    ConfigError::Syntax {
        message,
        location: e.span().map(|s| Location::at(text, s.start)),
    }
}

fn is_section(name: &str) -> bool {
    SECTIONS.iter().any(|(s, _)| *s == name)
}

fn is_key(section: &str, name: &str) -> bool {
    keys_of(section).iter().any(|k| k.name == name)
}

impl Document {
    pub(super) fn parse(text: &str) -> Result<Document, ConfigError> {
        // Step 1: the root, with positions of its keys: syntax errors, unknown sections, non-tables.
        let root: SpannedTable = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
        let mut root: Vec<_> = root.into_iter().collect();
        root.sort_by_key(|(k, _)| k.span().start);
        for (key, value) in &root {
            let location = Some(Location::at(text, key.span().start));
            let name = key.get_ref();
            if !is_section(name) {
                return Err(ConfigError::UnknownKey {
                    key: name.clone(),
                    hint: root_hint(name),
                    location,
                });
            }
            if !value.is_table() {
                return Err(ConfigError::Invalid {
                    key: name.clone(),
                    message: format!("must be a table (a [{name}] section), got {}", value.type_str()),
                    location,
                });
            }
        }
        // Step 2: every section with the positions of its keys: unknown keys.
        let nested: BTreeMap<String, SpannedTable> =
            toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
        let mut entries: Vec<_> = nested
            .into_iter()
            .flat_map(|(s, t)| t.into_iter().map(move |(k, v)| (s.clone(), k, v)))
            .collect();
        entries.sort_by_key(|(_, k, _)| k.span().start);
        let mut doc = Document::default();
        for (section, key, value) in entries {
            let name = key.get_ref();
            if !is_key(&section, name) {
                return Err(ConfigError::UnknownKey {
                    key: format!("{section}.{name}"),
                    hint: key_hint(&section, name),
                    location: Some(Location::at(text, key.span().start)),
                });
            }
            doc.locations
                .insert(format!("{section}.{name}"), Location::at(text, key.span().start));
            doc.section_mut(&section).insert(name.clone(), value);
        }
        // Empty sections (`[etcd]` alone) still count as present.
        for (key, _) in root {
            doc.section_mut(key.get_ref());
        }
        Ok(doc)
    }

    /// The section's table, added empty when absent.
    pub(super) fn section_mut(&mut self, section: &str) -> &mut toml::Table {
        let entry = self
            .table
            .entry(section.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        match entry {
            toml::Value::Table(t) => t,
            _ => unreachable!("made a table above"),
        }
    }

    /// Writes a value over the file's, forgetting the file position.
    pub(super) fn set(&mut self, section: &str, key: &str, value: toml::Value) {
        self.locations.remove(&format!("{section}.{key}"));
        self.section_mut(section).insert(key.to_owned(), value);
    }

    /// The section's keys over its defaults, or `None` when the section is absent.
    fn take_section(&mut self, section: &str) -> Option<toml::Table> {
        match self.table.remove(section) {
            Some(toml::Value::Table(t)) => {
                let mut full = defaults_of(keys_of(section));
                full.extend(t);
                Some(full)
            }
            _ => None,
        }
    }

    /// Deserializes one section (keys over defaults); on failure finds the key whose value fails on its
    /// own, over the defaults.
    fn typed<T: DeserializeOwned>(&self, section: &str, table: toml::Table) -> Result<T, ConfigError> {
        let err = match table.clone().try_into::<T>() {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let defaults = defaults_of(keys_of(section));
        for (key, value) in &table {
            if defaults.get(key) == Some(value) {
                continue;
            }
            let mut single = defaults.clone();
            single.insert(key.clone(), value.clone());
            if let Err(e) = single.try_into::<T>() {
                let dotted = format!("{section}.{key}");
                let shown = value.to_string();
                let mut message = e.message().trim().to_owned();
                if !message.contains(&shown) {
                    message.push_str(&format!(", got {shown}"));
                }
                let location = self.locations.get(&dotted).copied();
                return Err(invalid(dotted, message).with_location(location));
            }
        }
        Err(invalid(section, err.message().trim()))
    }

    pub(super) fn build(mut self) -> Result<AgentConfig, ConfigError> {
        let runtime = self
            .take_section("runtime")
            .unwrap_or_else(|| defaults_of(keys_of("runtime")));
        let consumer = self.take_section("consumer");
        let provider = self.take_section("provider");
        let etcd = self.take_section("etcd");
        let admin = self.take_section("admin");
        let log = self.take_section("log");
        Ok(AgentConfig {
            runtime: self.typed::<RawRuntime>("runtime", runtime)?.into(),
            consumer: consumer
                .map(|t| self.typed::<ConsumerConfig>("consumer", t))
                .transpose()?,
            provider: provider
                .map(|t| self.typed::<ProviderConfig>("provider", t))
                .transpose()?,
            etcd: etcd.map(|t| self.typed::<EtcdSection>("etcd", t)).transpose()?,
            admin: admin
                .map(|t| self.typed::<AdminConfig>("admin", t))
                .transpose()?
                .unwrap_or_default(),
            log: log
                .map(|t| self.typed::<LogConfig>("log", t))
                .transpose()?
                .unwrap_or_default(),
        })
    }
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = if name.len() <= 4 { 1 } else { 2 };
    candidates
        .into_iter()
        .map(|c| (distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn root_hint(name: &str) -> String {
    if let Some(s) = closest(name, SECTIONS.iter().map(|(s, _)| *s)) {
        return format!("did you mean `[{s}]`?");
    }
    let owners: Vec<String> = SECTIONS
        .iter()
        .filter(|(s, _)| is_key(s, name))
        .map(|(s, _)| format!("`{s}.{name}`"))
        .collect();
    if !owners.is_empty() {
        return format!("keys belong in a section: did you mean {}?", owners.join(" or "));
    }
    let names: Vec<&str> = SECTIONS.iter().map(|(s, _)| *s).collect();
    format!("the sections are {}", names.join(", "))
}

fn key_hint(section: &str, name: &str) -> String {
    let keys = keys_of(section);
    if let Some(k) = closest(name, keys.iter().map(|k| k.name)) {
        return format!("did you mean `{section}.{k}`?");
    }
    if let Some((other, _)) = SECTIONS.iter().find(|(s, _)| is_key(s, name)) {
        return format!("`{name}` belongs in [{other}]: did you mean `{other}.{name}`?");
    }
    let names: Vec<&str> = keys.iter().map(|k| k.name).collect();
    format!("[{section}] keys are {}", names.join(", "))
}
