//! The revision of a `MetadataInfo`, computed exactly as Java Dubbo 3.3 does (apache/dubbo
//! `dubbo-metadata/dubbo-metadata-api/src/main/java/org/apache/dubbo/metadata/MetadataInfo.java`
//! `calAndGetRevision` and `ServiceInfo.toDescString`, `RevisionResolver.calRevision`,
//! `dubbo-common/.../utils/MD5Utils.getMd5`):
//!
//! ```text
//! revision = services empty ? "0"
//!          : lowercase hex MD5 of UTF-8( app + Σ over new TreeMap<>(services) [ toDescString() ] )
//! toDescString() = getMatchKey() + port + path + new TreeMap<>(getParams())
//! ```
//!
//! where `port` is the decimal `int` (`-1` when unset), a null `path` or `app` prints as `null`, and
//! `TreeMap.toString()` is `{k1=v1, k2=v2}` (`{}` when empty). Both `TreeMap`s order keys by
//! `String.compareTo` (UTF-16 code units), reproduced by [`java_string_cmp`].
//!
//! dubbo-go computes its own revision differently (v3.3.2+: SHA-512 over `app` and a `|`-separated
//! description, apache/dubbo-go `metadata/info/metadata_info.go` `CalRevision`); revisions are opaque cache
//! keys to every consumer, so the agent follows Java.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::instance::EMPTY_REVISION;
use super::metadata_info::ServiceInfo;

/// Java's `String.compareTo`: lexicographic over UTF-16 code units (differs from Rust's `str` order only
/// when characters at or above U+10000 meet characters from U+E000 to U+FFFF).
pub fn java_string_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// Java's `new TreeMap<>(params).toString()`: `{k1=v1, k2=v2}` in [`java_string_cmp`] order
/// (`java.util.AbstractMap.toString`).
pub fn java_tree_map_string(params: &BTreeMap<String, String>) -> String {
    let mut entries: Vec<(&String, &String)> = params.iter().collect();
    entries.sort_by(|a, b| java_string_cmp(a.0, b.0));
    let mut out = String::with_capacity(2 + params.len() * 16);
    out.push('{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out.push('}');
    out
}

/// `ServiceInfo.toDescString()`: `getMatchKey() + port + path + new TreeMap<>(getParams())`.
pub fn desc_string(service: &ServiceInfo) -> String {
    let mut out = service.match_key();
    let _ = write!(out, "{}", service.port);
    out.push_str(service.path.as_deref().unwrap_or("null"));
    out.push_str(&java_tree_map_string(&service.params));
    out
}

/// The text `MetadataInfo.calAndGetRevision` hashes: `app` (`null` when absent) then each service's
/// [`desc_string`] in the order of the services map's keys (`new TreeMap<>(services)`).
pub fn revision_input<'a>(
    app: Option<&str>,
    services: impl IntoIterator<Item = (&'a String, &'a ServiceInfo)>,
) -> String {
    let mut sorted: Vec<(&String, &ServiceInfo)> = services.into_iter().collect();
    sorted.sort_by(|a, b| java_string_cmp(a.0, b.0));
    let mut out = String::from(app.unwrap_or("null"));
    for (_, service) in sorted {
        out.push_str(&desc_string(service));
    }
    out
}

/// The revision of `app` exporting `services` (keyed as in `MetadataInfo.services`); `"0"` when there are
/// none (`RevisionResolver.EMPTY_REVISION`).
pub fn calc_revision<'a>(
    app: Option<&str>,
    services: impl IntoIterator<Item = (&'a String, &'a ServiceInfo)>,
) -> String {
    let mut services = services.into_iter().peekable();
    if services.peek().is_none() {
        return EMPTY_REVISION.to_owned();
    }
    let input = revision_input(app, services);
    format!("{:x}", md5::compute(input.as_bytes()))
}
