//! Interface-to-application mapping (`ServiceNameMapping`): the key `/dubbo/mapping/<interface>`, whose
//! value is the comma-separated names of the applications that export the interface, and the pure "add my
//! application" step of the compare-and-swap loop that writes it.
//!
//! Sources: apache/dubbo-go `metadata/report/etcd/report.go` (`RegisterServiceAppMapping`: path
//! `rootDir + "/" + group + "/" + key` = `/dubbo/mapping/<interface>`, create if absent, else
//! `UpdateWithRev`), `metadata/report/mapping.go` (`MergeServiceAppMapping`, `DecodeServiceAppNames`),
//! `metadata/mapping/metadata/service_name_mapping.go` (10 retries on a CAS conflict); apache/dubbo
//! `dubbo-registry/dubbo-registry-api/.../client/metadata/MetadataServiceNameMapping.java` (`map`: names
//! compared trimmed, the new name appended with `,`, `DEFAULT_CAS_RETRY_TIMES` 10, a random wait below
//! `DEFAULT_CAS_RETRY_WAIT_TIME` 100 ms, `MetadataService` itself never mapped) and
//! `dubbo-metadata/dubbo-metadata-api/.../ServiceNameMapping.java` (`getAppNames`: split on `,`, trimmed,
//! empties dropped). Java's etcd metadata report writes and reads no mapping at all (fact sheet §5).

use super::app_error::{check_application, AppDiscoveryError};

/// The mapping group (`ServiceNameMapping.DEFAULT_MAPPING_GROUP`).
pub const MAPPING_GROUP: &str = "mapping";

/// The default metadata root (`/` + dubbo-go's `metadata-report.group`, default `dubbo`).
pub const DEFAULT_MAPPING_ROOT: &str = "/dubbo";

/// How many compare-and-swap attempts a writer makes (Java `DEFAULT_CAS_RETRY_TIMES`, dubbo-go
/// `retryTimes`: both 10).
pub const MAPPING_CAS_RETRIES: u32 = 10;

/// The longest mapping value read (bytes).
pub const MAX_MAPPING_VALUE: usize = 64 * 1024;

/// The most applications one mapping value may list.
pub const MAX_MAPPED_APPLICATIONS: usize = 1024;

/// Interfaces never mapped (`MetadataServiceNameMapping.IGNORED_SERVICE_INTERFACES`).
pub const IGNORED_INTERFACES: [&str; 1] = ["org.apache.dubbo.metadata.MetadataService"];

/// The mapping key of `interface` under `root` (`/dubbo/mapping/<interface>`; the interface is not
/// escaped, as dubbo-go writes it).
pub fn mapping_key(root: &str, interface: &str) -> String {
    format!("{}/{MAPPING_GROUP}/{interface}", root.trim_end_matches('/'))
}

/// The applications a mapping value lists, in the order written, each once: split on `,`, trimmed, empties
/// dropped (Java `ServiceNameMapping.getAppNames`; dubbo-go `DecodeServiceAppNames` does not trim).
pub fn parse_mapping(value: &str) -> Result<Vec<String>, AppDiscoveryError> {
    if value.len() > MAX_MAPPING_VALUE {
        return Err(AppDiscoveryError::TooLong {
            what: "mapping value",
            len: value.len(),
            max: MAX_MAPPING_VALUE,
        });
    }
    let mut apps: Vec<String> = Vec::new();
    for app in value.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        if !apps.iter().any(|a| a == app) {
            if apps.len() == MAX_MAPPED_APPLICATIONS {
                return Err(AppDiscoveryError::TooLong {
                    what: "mapping application list",
                    len: MAX_MAPPED_APPLICATIONS + 1,
                    max: MAX_MAPPED_APPLICATIONS,
                });
            }
            apps.push(app.to_owned());
        }
    }
    Ok(apps)
}

/// What a writer does with a mapping key it read (one step of the compare-and-swap loop).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappingUpdate {
    /// The key is absent (or empty): create it with this value, only if it is still absent.
    Create(String),
    /// Replace the value with this one, only if the key's revision is still the one read.
    Replace(String),
    /// The application is listed already: nothing to write.
    AlreadyThere,
}

/// Adds `app` to the mapping value read (`None`: no key), as dubbo-go's `MergeServiceAppMapping` and Java's
/// `MetadataServiceNameMapping.map` do: listed already (compared trimmed, as Java) -> nothing; else the old
/// value, unchanged, `,` and `app`. A value over the limits is still appended to (it is not ours to
/// clean), but the name must be one an application can have.
pub fn add_application(current: Option<&str>, app: &str) -> Result<MappingUpdate, AppDiscoveryError> {
    check_application(app)?;
    let current = current.unwrap_or("");
    if current.trim().is_empty() {
        return Ok(MappingUpdate::Create(app.to_owned()));
    }
    if current.split(',').any(|a| a.trim() == app) {
        return Ok(MappingUpdate::AlreadyThere);
    }
    if current.len() + 1 + app.len() > MAX_MAPPING_VALUE {
        return Err(AppDiscoveryError::TooLong {
            what: "mapping value after adding the application",
            len: current.len() + 1 + app.len(),
            max: MAX_MAPPING_VALUE,
        });
    }
    Ok(MappingUpdate::Replace(format!("{current},{app}")))
}

/// Whether a provider maps `interface` at all (not Dubbo's own MetadataService).
pub fn is_mapped_interface(interface: &str) -> bool {
    !interface.is_empty() && !IGNORED_INTERFACES.contains(&interface)
}

/// Reads the interface out of a mapping key under `root` (`None`: not a mapping key).
pub fn interface_of_mapping_key<'k>(root: &str, key: &'k str) -> Option<&'k str> {
    let prefix = format!("{}/{MAPPING_GROUP}/", root.trim_end_matches('/'));
    key.strip_prefix(prefix.as_str())
        .filter(|i| !i.is_empty() && !i.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys() {
        assert_eq!(
            mapping_key(DEFAULT_MAPPING_ROOT, "org.demo.Greeter"),
            "/dubbo/mapping/org.demo.Greeter"
        );
        assert_eq!(mapping_key("/dubbo/", "a.B"), "/dubbo/mapping/a.B");
        assert_eq!(
            interface_of_mapping_key("/dubbo", "/dubbo/mapping/a.B"),
            Some("a.B")
        );
        assert_eq!(interface_of_mapping_key("/dubbo", "/dubbo/mapping/"), None);
        assert_eq!(interface_of_mapping_key("/dubbo", "/dubbo/a.B/providers"), None);
        assert!(!is_mapped_interface("org.apache.dubbo.metadata.MetadataService"));
        assert!(is_mapped_interface("a.B"));
    }

    #[test]
    fn parse_trims_dedupes_and_keeps_order() {
        assert_eq!(parse_mapping("").unwrap(), Vec::<String>::new());
        assert_eq!(parse_mapping("b, a,,b , c").unwrap(), ["b", "a", "c"]);
        assert!(parse_mapping(&"a".repeat(MAX_MAPPING_VALUE + 1)).is_err());
        let many: Vec<String> = (0..=MAX_MAPPED_APPLICATIONS).map(|i| format!("a{i}")).collect();
        assert!(parse_mapping(&many.join(",")).is_err());
    }

    #[test]
    fn add_decisions() {
        assert_eq!(
            add_application(None, "me").unwrap(),
            MappingUpdate::Create("me".into())
        );
        assert_eq!(
            add_application(Some(" "), "me").unwrap(),
            MappingUpdate::Create("me".into())
        );
        assert_eq!(
            add_application(Some("a,b"), "me").unwrap(),
            MappingUpdate::Replace("a,b,me".into())
        );
        assert_eq!(
            add_application(Some("a, me ,b"), "me").unwrap(),
            MappingUpdate::AlreadyThere
        );
        // whole elements only (dubbo-go v3.1's substring check would wrongly say "me" is in "meow")
        assert_eq!(
            add_application(Some("meow"), "me").unwrap(),
            MappingUpdate::Replace("meow,me".into())
        );
        for bad in ["", "a,b", "a/b", " a"] {
            assert!(add_application(Some("x"), bad).is_err(), "{bad:?}");
        }
    }

    /// An etcd key with a modification count, written only if the count read is still current.
    fn cas(key: &mut (Option<String>, u32), read: &(Option<String>, u32), app: &str) -> bool {
        match add_application(read.0.as_deref(), app).unwrap() {
            MappingUpdate::AlreadyThere => true,
            MappingUpdate::Create(v) | MappingUpdate::Replace(v) if read.1 == key.1 => {
                *key = (Some(v), key.1 + 1);
                true
            }
            _ => false,
        }
    }

    /// Two writers adding different names, each retrying on a lost compare-and-swap, end with both names.
    #[test]
    fn concurrent_writers_keep_both_names() {
        let mut key: (Option<String>, u32) = (None, 0);
        // both read the absent key
        let a_read = key.clone();
        let b_read = key.clone();
        assert!(cas(&mut key, &a_read, "a"));
        assert!(
            !cas(&mut key, &b_read, "b"),
            "b's swap must fail: the key changed"
        );
        let b_read = key.clone();
        assert!(cas(&mut key, &b_read, "b"));
        assert_eq!(parse_mapping(key.0.as_deref().unwrap()).unwrap(), ["a", "b"]);
        let again = key.clone();
        assert!(cas(&mut key, &again, "a"));
        assert_eq!(key.1, 2, "an application already listed writes nothing");
    }

    proptest! {
        #[test]
        fn added_app_is_then_listed(names in prop::collection::vec("[a-z][a-z0-9-]{0,8}", 0..8), app in "[a-z][a-z0-9-]{0,8}") {
            let current = names.join(",");
            let after = match add_application(Some(&current), &app).unwrap() {
                MappingUpdate::AlreadyThere => { prop_assert!(names.contains(&app)); current.clone() }
                MappingUpdate::Create(v) | MappingUpdate::Replace(v) => v,
            };
            let listed = parse_mapping(&after).unwrap();
            prop_assert!(listed.contains(&app));
            for n in &names { prop_assert!(listed.contains(n)); }
        }

        #[test]
        fn arbitrary_values_do_not_panic(value in "\\PC{0,64}", app in "\\PC{0,16}") {
            let _ = parse_mapping(&value);
            let _ = add_application(Some(&value), &app);
        }
    }
}
