//! The key reference of docs/config.md, generated from the key table: the text between each section's
//! `BEGIN generated` / `END generated` markers there is [`update_docs`]'s. A test fails when the file
//! differs from the table; `UPDATE_DOCS=1 cargo test -p mesh-agent --bin mesh-agent config::docs` rewrites it.
//! (Test-only: the binary needs the table, not its markdown.)

use std::fmt::Write as _;

use super::keys::{Key, SECTIONS, SERVICE_POLICY, SERVICE_POLICY_SECTION};
use super::reference::{default_text, in_units, rule_text};

/// The markdown table of `keys`.
fn markdown_table(keys: &[Key]) -> String {
    let mut out = String::from(
        "| key | type | default | range / rule | flag | env | what it does |\n|---|---|---|---|---|---|---|\n",
    );
    for k in keys {
        let (flag, env) = match k.flag {
            None => ("–".to_owned(), "–".to_owned()),
            Some(f) => match f.value {
                None => (
                    format!("`--{}` (sets `false`)", f.long),
                    format!("`{}=true`", f.env),
                ),
                Some((v, _)) if f.list => (
                    format!("`--{} {v}` (repeat or comma-separate)", f.long),
                    format!("`{}` (comma-separated)", f.env),
                ),
                Some((v, _)) => (format!("`--{} {v}`", f.long), format!("`{}`", f.env)),
            },
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {flag} | {env} | {} |",
            k.name,
            k.kind,
            default_text(k, true),
            rule_text(k, true),
            k.help
        );
    }
    out
}

/// The generated reference of `section` (`runtime`, ..., or the service policy section).
fn section_reference(section: &str) -> String {
    let keys = if section == SERVICE_POLICY_SECTION {
        SERVICE_POLICY
    } else {
        SECTIONS
            .iter()
            .find(|(s, _)| *s == section)
            .map_or(&[][..], |(_, k)| k)
    };
    markdown_table(keys)
}

fn begin_marker(section: &str) -> String {
    format!("<!-- BEGIN generated: keys of {section} (from crates/mesh-agent/src/config/keys.rs) -->\n")
}

fn end_marker(section: &str) -> String {
    format!("<!-- END generated: keys of {section} -->")
}

/// Every section with a generated reference, in the order of docs/config.md.
fn generated_sections() -> impl Iterator<Item = &'static str> {
    SECTIONS
        .iter()
        .map(|(s, _)| *s)
        .chain(std::iter::once(SERVICE_POLICY_SECTION))
}

/// `docs` with the text between each section's markers replaced by the section's generated reference.
/// Errors name a section whose markers are missing.
fn update_docs(docs: &str) -> Result<String, String> {
    let mut out = docs.to_owned();
    for section in generated_sections() {
        let (begin, end) = (begin_marker(section), end_marker(section));
        let start = out
            .find(&begin)
            .ok_or_else(|| format!("docs/config.md has no marker {begin:?}"))?
            + begin.len();
        let stop = out[start..]
            .find(&end)
            .ok_or_else(|| format!("docs/config.md has no marker {end:?}"))?
            + start;
        out.replace_range(start..stop, &section_reference(section));
    }
    Ok(out)
}

#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::keys::RUNTIME;

    #[test]
    fn markdown_shows_sizes_in_units() {
        let t = markdown_table(RUNTIME);
        assert!(
            t.contains(
                "| `read_buffer_bytes` | integer | 65536 (64 KiB) | 4096 (4 KiB) ..= 16777216 (16 MiB) |"
            ),
            "{t}"
        );
        assert_eq!(in_units(1000), None);
    }

    #[test]
    fn missing_markers_are_named() {
        let e = update_docs("no markers").unwrap_err();
        assert!(e.contains("BEGIN generated: keys of runtime"), "{e}");
    }

    /// docs/config.md's key reference is what the table generates. `UPDATE_DOCS=1` rewrites it.
    #[test]
    fn docs_config_md_matches_the_key_table() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.md");
        let docs = std::fs::read_to_string(&path).unwrap();
        let want = update_docs(&docs).unwrap();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(&path, &want).unwrap();
            return;
        }
        assert!(
            docs == want,
            "docs/config.md differs from the key table; run UPDATE_DOCS=1 cargo test -p mesh-agent --bin \
             mesh-agent config::docs"
        );
    }
}
