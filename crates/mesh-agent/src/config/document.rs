//! Reading the file: spanned untyped TOML tables, each key checked against its section's struct, each
//! section deserialized on its own so that a failing value is named by its full key and position.

use std::collections::BTreeMap;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

use super::*;
use toml::Spanned;

/// The sections and their keys, taken from the serde structs themselves (see [`struct_fields`]).
pub(super) fn sections() -> [(&'static str, &'static [&'static str]); 4] {
    [
        ("runtime", struct_fields::<RawRuntime>()),
        ("consumer", struct_fields::<ConsumerConfig>()),
        ("provider", struct_fields::<ProviderConfig>()),
        ("etcd", struct_fields::<EtcdSection>()),
    ]
}

/// The field names serde's derive gives a struct (it passes them to `deserialize_struct`), so the list of
/// known keys cannot drift from the structs.
pub(super) fn struct_fields<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("probe"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
            unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// The file as untyped tables, every key known, plus where each value sits.
#[derive(Debug, Default)]
pub(super) struct Document {
    pub(super) table: toml::Table,
    /// `section.key` -> position of the key in the file.
    pub(super) locations: BTreeMap<String, Location>,
}

/// Keys with their positions. Values are not `Spanned`: toml 0.8 fails on a `Spanned<toml::Value>` that is
/// a table made by dotted keys (`consumer.listen = ...`), so positions are those of the keys.
pub(super) type SpannedTable = BTreeMap<Spanned<String>, toml::Value>;

pub(super) fn syntax_error(text: &str, e: &toml::de::Error) -> ConfigError {
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

impl Document {
    pub(super) fn parse(text: &str) -> Result<Document, ConfigError> {
        let sections = sections();
        // Step 1: the root, with positions of its keys: syntax errors, unknown sections, non-tables.
        let root: SpannedTable = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
        let mut root: Vec<_> = root.into_iter().collect();
        root.sort_by_key(|(k, _)| k.span().start);
        for (key, value) in &root {
            let location = Some(Location::at(text, key.span().start));
            let name = key.get_ref();
            if !sections.iter().any(|(s, _)| s == name) {
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
            let fields = sections
                .iter()
                .find(|(s, _)| *s == section)
                .map_or(&[][..], |(_, f)| *f);
            if !fields.contains(&name.as_str()) {
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

    pub(super) fn take_section(&mut self, section: &str) -> Option<toml::Table> {
        match self.table.remove(section) {
            Some(toml::Value::Table(t)) => Some(t),
            _ => None,
        }
    }

    /// Deserializes one section; on failure finds the key whose value fails on its own.
    pub(super) fn typed<T: DeserializeOwned>(
        &self,
        section: &str,
        table: toml::Table,
    ) -> Result<T, ConfigError> {
        let err = match table.clone().try_into::<T>() {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        for (key, value) in &table {
            let single: toml::Table = [(key.clone(), value.clone())].into_iter().collect();
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
        let runtime = self.take_section("runtime").unwrap_or_default();
        let consumer = self.take_section("consumer");
        let provider = self.take_section("provider");
        let etcd = self.take_section("etcd");
        Ok(AgentConfig {
            runtime: self.typed("runtime", runtime)?,
            consumer: consumer.map(|t| self.typed("consumer", t)).transpose()?,
            provider: provider.map(|t| self.typed("provider", t)).transpose()?,
            etcd: etcd.map(|t| self.typed("etcd", t)).transpose()?,
        })
    }
}

/// Levenshtein distance, for "did you mean".
pub(super) fn distance(a: &str, b: &str) -> usize {
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

pub(super) fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = if name.len() <= 4 { 1 } else { 2 };
    candidates
        .into_iter()
        .map(|c| (distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

pub(super) fn root_hint(name: &str) -> String {
    let sections = sections();
    if let Some(s) = closest(name, sections.iter().map(|(s, _)| *s)) {
        return format!("did you mean `[{s}]`?");
    }
    let owners: Vec<String> = sections
        .iter()
        .filter(|(_, fields)| fields.contains(&name))
        .map(|(s, _)| format!("`{s}.{name}`"))
        .collect();
    if !owners.is_empty() {
        return format!("keys belong in a section: did you mean {}?", owners.join(" or "));
    }
    let names: Vec<&str> = sections.iter().map(|(s, _)| *s).collect();
    format!("the sections are {}", names.join(", "))
}

pub(super) fn key_hint(section: &str, name: &str) -> String {
    let sections = sections();
    let fields = sections
        .iter()
        .find(|(s, _)| *s == section)
        .map_or(&[][..], |(_, f)| *f);
    if let Some(k) = closest(name, fields.iter().copied()) {
        return format!("did you mean `{section}.{k}`?");
    }
    if let Some((other, _)) = sections.iter().find(|(_, f)| f.contains(&name)) {
        return format!("`{name}` belongs in [{other}]: did you mean `{other}.{name}`?");
    }
    format!("[{section}] keys are {}", fields.join(", "))
}
