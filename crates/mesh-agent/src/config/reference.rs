//! What the key table says, rendered as text: the help of each flag and the list of file-only keys after
//! `--help`. The key reference of docs/config.md is rendered from the same texts by `docs.rs`.

use std::fmt::Write as _;

use super::keys::{Check, DefaultValue, Key, SECTIONS, SERVICE_POLICY};
use super::Role;

/// `8388608` as `8 MiB` when it is a whole number of KiB, MiB or GiB.
pub(super) fn in_units(n: u64) -> Option<String> {
    [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
        .into_iter()
        .find(|(unit, _)| n >= *unit && n.is_multiple_of(*unit))
        .map(|(unit, name)| format!("{} {name}", n / unit))
}

/// A number of `key`, with its size in units for `*_bytes` keys when `markdown`.
pub(super) fn number(key: &Key, n: u64, markdown: bool) -> String {
    match in_units(n) {
        Some(units) if markdown && key.name.ends_with("_bytes") => format!("{n} ({units})"),
        _ => n.to_string(),
    }
}

/// The default, as the help (plain) or the reference (markdown) says it.
pub(super) fn default_text(key: &Key, markdown: bool) -> String {
    let code = |s: String| if markdown { format!("`{s}`") } else { s };
    let plain = |s: &str| {
        if markdown {
            s.to_owned()
        } else {
            s.replace('`', "")
        }
    };
    match key.default {
        DefaultValue::Int(n) => number(key, n, markdown),
        DefaultValue::Bool(b) => code(b.to_string()),
        DefaultValue::Str(s) if markdown => format!("`{s:?}`"),
        DefaultValue::Str(s) => s.to_owned(),
        DefaultValue::Strs(list) if markdown => format!("`{list:?}`"),
        DefaultValue::Strs(list) => list.join(","),
        DefaultValue::EmptyList => code("[]".to_owned()),
        DefaultValue::EmptyTable => code("{}".to_owned()),
        DefaultValue::Unset(s) | DefaultValue::Computed(s) => plain(s),
    }
}

/// The range or allowed values, then the further rules.
pub(super) fn rule_text(key: &Key, markdown: bool) -> String {
    let range = |min, max| {
        let (lo, hi) = (number(key, min, markdown), number(key, max, markdown));
        if markdown {
            format!("{lo} ..= {hi}")
        } else {
            format!("{lo}..={hi}")
        }
    };
    let mut parts = Vec::new();
    match key.check {
        Check::None => {}
        Check::Range(min, max) => parts.push(range(min, max)),
        Check::OffOrRange(min, max) => parts.push(format!("0 (off) or {}", range(min, max))),
        Check::OneOf(names) if markdown => {
            let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            parts.push(names.join(", "));
        }
        Check::OneOf(names) => parts.push(format!("one of {}", names.join(", "))),
    }
    if !key.rule.is_empty() {
        parts.push(if markdown {
            key.rule.to_owned()
        } else {
            key.rule.replace('`', "")
        });
    }
    parts.join(", ")
}

/// The `--help` line of a key's flag: what it does, its range, its key and default.
pub(crate) fn flag_help(key: &Key) -> String {
    let mut help = key.help.replace('`', "");
    if key.flag.is_some_and(|f| f.list) {
        help.push_str("; repeat or comma-separate");
    }
    let rule = rule_text(key, false);
    if !rule.is_empty() {
        let _ = write!(help, "; {rule}");
    }
    let toml = match key.flag.and_then(|f| f.value) {
        Some(_) => key.dotted(),
        None => format!("{} = false", key.dotted()),
    };
    let _ = write!(help, " [TOML: {toml}; default: {}]", default_text(key, false));
    help
}

/// The keys of the sections `role` reads that have no flag, listed after `--help`.
pub(crate) fn file_only_keys(role: Role) -> String {
    let mut out = String::from("Keys set only in the config file (docs/config.md has them all):\n");
    let sections = ["runtime", role.section(), "etcd", "admin", "log"];
    let keys = SECTIONS
        .iter()
        .filter(|(s, _)| sections.contains(s))
        .flat_map(|(_, keys)| keys.iter());
    let policy = SERVICE_POLICY.iter().filter(|_| role == Role::Consumer);
    for k in keys.chain(policy).filter(|k| k.flag.is_none()) {
        let rule = rule_text(k, false);
        let rule = if rule.is_empty() {
            String::new()
        } else {
            format!(", {rule}")
        };
        let _ = writeln!(
            out,
            "  {:<38} {}{rule}, default {}",
            k.dotted(),
            k.help.replace('`', ""),
            default_text(k, false)
        );
    }
    out.push_str("\nPrecedence: flag > environment variable > config file > default.");
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::keys::{CONSUMER, PROVIDER_REGISTER, PROVIDER_SERIALIZATION};

    #[test]
    fn help_lines_come_from_the_table() {
        let k = CONSUMER
            .iter()
            .find(|k| k.name == "upstream_connections")
            .unwrap();
        assert_eq!(
            flag_help(k),
            "connections per shard per provider agent; 1..=64 [TOML: consumer.upstream_connections; \
             default: 2]"
        );
        assert_eq!(
            flag_help(&PROVIDER_SERIALIZATION),
            "serialization the local provider speaks; one of hessian2, fastjson [TOML: \
             provider.serialization; default: hessian2]"
        );
        assert!(flag_help(&PROVIDER_REGISTER).contains("[TOML: provider.register = false; default: true]"));
        let file_only = file_only_keys(Role::Provider);
        assert!(file_only.contains("provider.drain_timeout_ms"), "{file_only}");
        assert!(!file_only.contains("provider.weight"), "{file_only}");
        assert!(!file_only.contains("consumer."), "{file_only}");
        assert!(file_only_keys(Role::Consumer).contains("consumer.services.<service>.rate_limit"));
    }
}
