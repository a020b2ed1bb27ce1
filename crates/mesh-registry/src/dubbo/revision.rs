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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dubbo::metadata_info::MetadataInfo;

    fn service(
        name: &str,
        group: Option<&str>,
        version: Option<&str>,
        protocol: &str,
        port: i32,
        path: Option<&str>,
        params: &[(&str, &str)],
    ) -> ServiceInfo {
        ServiceInfo {
            name: name.into(),
            group: group.map(Into::into),
            version: version.map(Into::into),
            protocol: Some(protocol.into()),
            port,
            path: path.map(Into::into),
            params: params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// Vector 1, derived by hand from `MetadataInfo.calAndGetRevision` / `ServiceInfo.toDescString`:
    /// matchKey `org.apache.dubbo.demo.DemoService:1.0.0:dubbo` (no group), port `20880`, path, then the
    /// `TreeMap` text; the MD5 of `app + desc` was computed outside Rust (`python3 -c 'import hashlib;
    /// print(hashlib.md5(s.encode()).hexdigest())'`).
    #[test]
    fn java_revision_vector_one_service() {
        let s = service(
            "org.apache.dubbo.demo.DemoService",
            None,
            Some("1.0.0"),
            "dubbo",
            20880,
            Some("org.apache.dubbo.demo.DemoService"),
            &[
                ("side", "provider"),
                ("application", "demo-provider"),
                ("methods", "sayHello"),
            ],
        );
        assert_eq!(
            desc_string(&s),
            "org.apache.dubbo.demo.DemoService:1.0.0:dubbo20880org.apache.dubbo.demo.DemoService\
             {application=demo-provider, methods=sayHello, side=provider}"
        );
        let info = MetadataInfo::new("demo-provider", [s]);
        assert_eq!(info.revision, "b612bf80f66627a432bfeeffcb0b62c1");
    }

    /// Vector 2 (same method): two services sorted by key (`g/a.B:tri` before `z.Y:dubbo`), an unset port
    /// (`-1`), a null path (`null`) and empty params (`{}`): `appg/a.B:tri-1null{}z.Y:dubbo20880z.Y{a=1, b=2}`.
    #[test]
    fn java_revision_vector_sorted_services_nulls() {
        let a = service("a.B", Some("g"), None, "tri", -1, None, &[]);
        let z = service(
            "z.Y",
            None,
            Some(""),
            "dubbo",
            20880,
            Some("z.Y"),
            &[("b", "2"), ("a", "1")],
        );
        let info = MetadataInfo::new("app", [z, a]);
        let input = revision_input(Some("app"), &info.services);
        assert_eq!(input, "appg/a.B:tri-1null{}z.Y:dubbo20880z.Y{a=1, b=2}");
        assert_eq!(info.revision, "16b3f5c47bd47a0c75e2bbc19d7994b8");
    }

    #[test]
    fn empty_is_zero_and_changes_change_the_revision() {
        assert_eq!(MetadataInfo::new("app", []).revision, "0");
        let s = service("x.Y", None, None, "dubbo", 1, Some("x.Y"), &[]);
        let one = MetadataInfo::new("app", [s.clone()]).revision;
        let mut s2 = s.clone();
        s2.params.insert("timeout".into(), "5".into());
        assert_ne!(one, MetadataInfo::new("app", [s2]).revision);
        assert_ne!(one, MetadataInfo::new("app2", [s]).revision);
    }

    #[test]
    fn java_order_is_utf16() {
        // U+FF5E (one UTF-16 unit 0xFF5E) sorts after U+1F600 (surrogates 0xD83D..) in Java, before in Rust.
        assert_eq!(java_string_cmp("\u{ff5e}", "\u{1f600}"), Ordering::Greater);
        assert!("\u{ff5e}" < "\u{1f600}");
        let params = [
            ("\u{ff5e}".to_owned(), "1".to_owned()),
            ("\u{1f600}".to_owned(), "2".to_owned()),
        ]
        .into_iter()
        .collect();
        assert_eq!(java_tree_map_string(&params), "{\u{1f600}=2, \u{ff5e}=1}");
    }
}
