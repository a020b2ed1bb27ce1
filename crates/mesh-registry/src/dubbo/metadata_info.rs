//! `org.apache.dubbo.metadata.MetadataInfo`: what a provider's MetadataService answers to
//! `getMetadataInfo(revision)`, as a Hessian value tree ([`mesh_dubbo::Value`]) and as dubbo-go's JSON.
//!
//! Sources: apache/dubbo `dubbo-metadata/dubbo-metadata-api/src/main/java/org/apache/dubbo/metadata/
//! MetadataInfo.java` (fields `app`, `revision`, `services`; `ServiceInfo` fields `name`, `group`,
//! `version`, `protocol`, `port` (int, -1 unset), `path`, `params`; `getMatchKey`, `getServiceKey`),
//! apache/dubbo-hessian-lite `hessian-lite/src/main/java/com/alibaba/com/caucho/hessian/io/JavaSerializer.java`
//! and `UnsafeSerializer.java` `introspect` (which field order goes on the wire) and `MapSerializer.java`
//! (which map type), apache/dubbo-go `metadata/info/metadata_info.go` (JSON tags, `JavaClassName`).
//!
//! Field order. hessian-lite collects the non-static, non-transient fields as "primitive" (primitive types
//! and `java.lang.*`) then "compound", and then REVERSES the list (`Collections.reverse(fields)`), so a
//! Java provider writes `MetadataInfo` as `services, revision, app` and `ServiceInfo` as
//! `params, path, port, protocol, version, group, name` (declaration order as `getDeclaredFields` returns
//! it on HotSpot). Readers match fields by name (`JavaDeserializer`), so [`MetadataInfo::from_value`]
//! accepts any order and ignores unknown fields (dubbo-go adds `tag`).
//!
//! Map types. `services` is a `ConcurrentHashMap` (written as a typed map
//! `java.util.concurrent.ConcurrentHashMap`); a provider's `ServiceInfo.params` is a `HashMap` (an untyped
//! map), built by `ServiceInfo.extractServiceParams`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use mesh_dubbo::{Map as HMap, Object as HObject, Value};
use serde_json::{Map as JsonMap, Value as Json};

use super::app_error::{excerpt, AppDiscoveryError};
use super::instance::{json_kind, string_map};
use super::revision::calc_revision;

/// The MetadataService interface (`org.apache.dubbo.metadata.MetadataService`), exported with group =
/// application and version [`METADATA_SERVICE_VERSION`] (`ConfigurableMetadataServiceExporter.exportV1`).
pub const METADATA_SERVICE_INTERFACE: &str = "org.apache.dubbo.metadata.MetadataService";

/// `MetadataService.VERSION`.
pub const METADATA_SERVICE_VERSION: &str = "1.0.0";

/// The method a consumer calls: `MetadataInfo getMetadataInfo(String revision)`.
pub const GET_METADATA_INFO: &str = "getMetadataInfo";

/// The Hessian class of `MetadataInfo`.
pub const METADATA_INFO_CLASS: &str = "org.apache.dubbo.metadata.MetadataInfo";

/// The Hessian class of `MetadataInfo.ServiceInfo`.
pub const SERVICE_INFO_CLASS: &str = "org.apache.dubbo.metadata.MetadataInfo$ServiceInfo";

/// The Hessian type of the `services` map (`MetadataInfo.services` is a `ConcurrentHashMap`).
pub const SERVICES_MAP_TYPE: &str = "java.util.concurrent.ConcurrentHashMap";

/// The most services one `MetadataInfo` may list.
pub const MAX_SERVICES: usize = 4096;

/// The most parameters one `ServiceInfo` may have.
pub const MAX_SERVICE_PARAMS: usize = 1024;

/// The longest string (key, value, name) read from a `MetadataInfo`, in bytes.
pub const MAX_METADATA_STRING: usize = 64 * 1024;

/// The most fields an object may have (Java's classes have 3 and 7; unknown ones are skipped).
const MAX_FIELDS: usize = 64;

/// One exported service (`MetadataInfo.ServiceInfo`). Java strings may be null: `None` here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// The interface (`url.getServiceInterface()`).
    pub name: String,
    /// The group.
    pub group: Option<String>,
    /// The version.
    pub version: Option<String>,
    /// The protocol (`dubbo`, `tri`, ...).
    pub protocol: Option<String>,
    /// The port the service is exported on; -1 unset (Java's default, and absent in 3.0.0's class).
    pub port: i32,
    /// The path (usually the interface).
    pub path: Option<String>,
    /// The provider URL's parameters after `MetadataParamsFilter` (`DefaultMetadataParamsFilter`).
    pub params: BTreeMap<String, String>,
}

impl ServiceInfo {
    /// `ServiceInfo.getServiceKey()`: `URL.buildKey(name, group, version)` =
    /// `BaseServiceMetadata.buildServiceKey`: `group/` when the group is not empty, the name, `:version`
    /// when the version is not empty.
    pub fn service_key(&self) -> String {
        let mut key = String::new();
        if let Some(group) = self.group.as_deref().filter(|g| !g.is_empty()) {
            key.push_str(group);
            key.push('/');
        }
        key.push_str(&self.name);
        if let Some(version) = self.version.as_deref().filter(|v| !v.is_empty()) {
            key.push(':');
            key.push_str(version);
        }
        key
    }

    /// `ServiceInfo.getMatchKey()` (`buildMatchKey`): the service key, then `:protocol` when the protocol
    /// is not empty: the key of `MetadataInfo.services`.
    pub fn match_key(&self) -> String {
        let mut key = self.service_key();
        if let Some(protocol) = self.protocol.as_deref().filter(|p| !p.is_empty()) {
            key.push(':');
            key.push_str(protocol);
        }
        key
    }

    /// The Hessian value hessian-lite writes for this `ServiceInfo` (fields `params, path, port, protocol,
    /// version, group, name`; see the module documentation).
    pub fn to_value(&self) -> Value<'static> {
        let params = Value::Map(HMap {
            type_name: None,
            entries: self
                .params
                .iter()
                .map(|(k, v)| (Value::from(k.clone()), Value::from(v.clone())))
                .collect(),
        });
        Value::Object(HObject {
            class: Cow::Borrowed(SERVICE_INFO_CLASS),
            fields: vec![
                (Cow::Borrowed("params"), params),
                (Cow::Borrowed("path"), opt_string(&self.path)),
                (Cow::Borrowed("port"), Value::Int(self.port)),
                (Cow::Borrowed("protocol"), opt_string(&self.protocol)),
                (Cow::Borrowed("version"), opt_string(&self.version)),
                (Cow::Borrowed("group"), opt_string(&self.group)),
                (Cow::Borrowed("name"), Value::from(self.name.clone())),
            ],
        })
    }

    /// Reads a `ServiceInfo` from a Hessian value: an object of [`SERVICE_INFO_CLASS`] (or a map typed so),
    /// fields matched by name in any order, unknown fields skipped, `port` an int or long (dubbo-go writes
    /// a Go `int` as a long), absent `port` -1.
    pub fn from_value(value: &Value<'_>) -> Result<ServiceInfo, AppDiscoveryError> {
        let fields = object_fields(value, SERVICE_INFO_CLASS)?;
        let mut info = ServiceInfo {
            name: String::new(),
            group: None,
            version: None,
            protocol: None,
            port: -1,
            path: None,
            params: BTreeMap::new(),
        };
        let mut name = None;
        for (field, v) in fields {
            match field {
                "name" => name = hessian_string(v, "ServiceInfo.name")?,
                "group" => info.group = hessian_string(v, "ServiceInfo.group")?,
                "version" => info.version = hessian_string(v, "ServiceInfo.version")?,
                "protocol" => info.protocol = hessian_string(v, "ServiceInfo.protocol")?,
                "path" => info.path = hessian_string(v, "ServiceInfo.path")?,
                "port" => {
                    info.port = match v {
                        Value::Null => -1,
                        other => other
                            .as_i64()
                            .and_then(|p| i32::try_from(p).ok())
                            .ok_or_else(|| bad(format!("ServiceInfo.port is a {}", other.kind())))?,
                    }
                }
                "params" => info.params = hessian_string_map(v, "ServiceInfo.params")?,
                _ => {}
            }
        }
        info.name = name.ok_or_else(|| bad("a ServiceInfo without a name".into()))?;
        Ok(info)
    }
}

/// An application's exported services at one revision (`org.apache.dubbo.metadata.MetadataInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataInfo {
    /// The application.
    pub app: String,
    /// The revision (see [`MetadataInfo::calc_revision`]).
    pub revision: String,
    /// The services, keyed as Java keys them: [`ServiceInfo::match_key`], `group/interface:version:protocol`.
    pub services: BTreeMap<String, ServiceInfo>,
}

impl MetadataInfo {
    /// The metadata of `app` exporting `services`, keyed by their match keys, with the revision Java
    /// computes for them ([`MetadataInfo::calc_revision`]); a later service with the same match key
    /// replaces an earlier one (`MetadataInfo.addService`: `services.put(getMatchKey(), ..)`).
    pub fn new(app: impl Into<String>, services: impl IntoIterator<Item = ServiceInfo>) -> Self {
        let mut info = MetadataInfo {
            app: app.into(),
            revision: String::new(),
            services: services.into_iter().map(|s| (s.match_key(), s)).collect(),
        };
        info.revision = info.calc_revision();
        info
    }

    /// The revision Java 3.3 computes for this app and these services (`MetadataInfo.calAndGetRevision`;
    /// see [`super::revision`]).
    pub fn calc_revision(&self) -> String {
        calc_revision(Some(&self.app), &self.services)
    }

    /// The Hessian value hessian-lite writes for this `MetadataInfo` (fields `services, revision, app`;
    /// `services` a typed `ConcurrentHashMap`).
    pub fn to_value(&self) -> Value<'static> {
        let services = Value::Map(HMap {
            type_name: Some(Cow::Borrowed(SERVICES_MAP_TYPE)),
            entries: self
                .services
                .iter()
                .map(|(k, s)| (Value::from(k.clone()), s.to_value()))
                .collect(),
        });
        Value::Object(HObject {
            class: Cow::Borrowed(METADATA_INFO_CLASS),
            fields: vec![
                (Cow::Borrowed("services"), services),
                (Cow::Borrowed("revision"), Value::from(self.revision.clone())),
                (Cow::Borrowed("app"), Value::from(self.app.clone())),
            ],
        })
    }

    /// Reads a `MetadataInfo` from a Hessian value (a MetadataService answer): an object of
    /// [`METADATA_INFO_CLASS`] (or a map typed so), fields by name in any order, unknown ones skipped;
    /// at most [`MAX_SERVICES`] services of at most [`MAX_SERVICE_PARAMS`] parameters, strings of at most
    /// [`MAX_METADATA_STRING`] bytes; back-references (`Value::Ref`) are refused. The services keep the keys
    /// they were sent under. Null `app`/`revision` read as empty.
    pub fn from_value(value: &Value<'_>) -> Result<MetadataInfo, AppDiscoveryError> {
        let fields = object_fields(value, METADATA_INFO_CLASS)?;
        let mut info = MetadataInfo {
            app: String::new(),
            revision: String::new(),
            services: BTreeMap::new(),
        };
        for (field, v) in fields {
            match field {
                "app" => info.app = hessian_string(v, "MetadataInfo.app")?.unwrap_or_default(),
                "revision" => info.revision = hessian_string(v, "MetadataInfo.revision")?.unwrap_or_default(),
                "services" => info.services = hessian_services(v)?,
                _ => {}
            }
        }
        Ok(info)
    }

    /// dubbo-go's JSON of a `MetadataInfo` (`json` tags `app`, `revision`, `tag`, `services`, each service
    /// `name`, `group`, `version`, `protocol`, `port`, `path`, `params`, all `omitempty`), as found in a
    /// dubbo-go instance's `ServiceMetadata`.
    pub fn to_go_json(&self) -> Json {
        let mut obj = JsonMap::new();
        put_nonempty(&mut obj, "app", Some(&self.app));
        put_nonempty(&mut obj, "revision", Some(&self.revision));
        if !self.services.is_empty() {
            let services = self
                .services
                .iter()
                .map(|(k, s)| {
                    let mut o = JsonMap::new();
                    put_nonempty(&mut o, "name", Some(&s.name));
                    put_nonempty(&mut o, "group", s.group.as_ref());
                    put_nonempty(&mut o, "version", s.version.as_ref());
                    put_nonempty(&mut o, "protocol", s.protocol.as_ref());
                    if s.port != 0 {
                        o.insert("port".into(), s.port.into());
                    }
                    put_nonempty(&mut o, "path", s.path.as_ref());
                    if !s.params.is_empty() {
                        o.insert(
                            "params".into(),
                            Json::Object(
                                s.params
                                    .iter()
                                    .map(|(k, v)| (k.clone(), Json::String(v.clone())))
                                    .collect(),
                            ),
                        );
                    }
                    (k.clone(), Json::Object(o))
                })
                .collect();
            obj.insert("services".into(), Json::Object(services));
        }
        Json::Object(obj)
    }

    /// Reads dubbo-go's JSON of a `MetadataInfo` (see [`MetadataInfo::to_go_json`]); empty strings are
    /// none, an absent port 0 (Go's zero value), unknown fields (`tag`, `lastUpdatedTime`) skipped.
    pub fn from_go_json(json: &Json) -> Result<MetadataInfo, AppDiscoveryError> {
        let Json::Object(obj) = json else {
            return Err(bad(format!("ServiceMetadata is a JSON {}", json_kind(json))));
        };
        let text = |o: &JsonMap<String, Json>, k: &str| -> Result<Option<String>, AppDiscoveryError> {
            match o.get(k) {
                None | Some(Json::Null) => Ok(None),
                Some(Json::String(s)) if s.is_empty() => Ok(None),
                Some(Json::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(bad(format!("{k} is a JSON {}", json_kind(other)))),
            }
        };
        let mut info = MetadataInfo {
            app: text(obj, "app")?.unwrap_or_default(),
            revision: text(obj, "revision")?.unwrap_or_default(),
            services: BTreeMap::new(),
        };
        match obj.get("services") {
            None | Some(Json::Null) => {}
            Some(Json::Object(services)) => {
                check_count(services.len(), MAX_SERVICES, "services")?;
                for (key, s) in services {
                    let Json::Object(s) = s else {
                        return Err(bad(format!(
                            "service {} is a JSON {}",
                            excerpt(key),
                            json_kind(s)
                        )));
                    };
                    let port = match s.get("port") {
                        None | Some(Json::Null) => 0,
                        Some(p) => p
                            .as_i64()
                            .and_then(|p| i32::try_from(p).ok())
                            .ok_or_else(|| bad(format!("bad port in service {}", excerpt(key))))?,
                    };
                    let params = match s.get("params") {
                        None | Some(Json::Null) => BTreeMap::new(),
                        Some(Json::Object(p)) => {
                            check_count(p.len(), MAX_SERVICE_PARAMS, "service params")?;
                            string_map(p)?
                        }
                        Some(other) => return Err(bad(format!("params is a JSON {}", json_kind(other)))),
                    };
                    let service = ServiceInfo {
                        name: text(s, "name")?
                            .ok_or_else(|| bad(format!("service {} has no name", excerpt(key))))?,
                        group: text(s, "group")?,
                        version: text(s, "version")?,
                        protocol: text(s, "protocol")?,
                        port,
                        path: text(s, "path")?,
                        params,
                    };
                    info.services.insert(key.clone(), service);
                }
            }
            Some(other) => return Err(bad(format!("services is a JSON {}", json_kind(other)))),
        }
        Ok(info)
    }
}

fn bad(reason: String) -> AppDiscoveryError {
    AppDiscoveryError::BadMetadataInfo { reason }
}

fn check_count(len: usize, max: usize, what: &'static str) -> Result<(), AppDiscoveryError> {
    if len > max {
        return Err(AppDiscoveryError::TooLong { what, len, max });
    }
    Ok(())
}

fn opt_string(s: &Option<String>) -> Value<'static> {
    s.as_ref().map_or(Value::Null, |s| Value::from(s.clone()))
}

fn put_nonempty(obj: &mut JsonMap<String, Json>, key: &str, value: Option<&String>) {
    if let Some(v) = value.filter(|v| !v.is_empty()) {
        obj.insert(key.to_owned(), Json::String(v.clone()));
    }
}

/// The fields of an object of `class`, or of a map typed `class` with string keys.
fn object_fields<'v>(
    value: &'v Value<'_>,
    class: &'static str,
) -> Result<Vec<(&'v str, &'v Value<'v>)>, AppDiscoveryError> {
    match value {
        Value::Object(o) if o.class == class => {
            check_count(o.fields.len(), MAX_FIELDS, "object fields")?;
            Ok(o.fields.iter().map(|(k, v)| (k.as_ref(), v)).collect())
        }
        Value::Map(m) if m.type_name.as_deref() == Some(class) => {
            check_count(m.entries.len(), MAX_FIELDS, "object fields")?;
            m.entries
                .iter()
                .map(|(k, v)| match k {
                    Value::String(k) => Ok((k.as_ref(), v)),
                    other => Err(bad(format!("a {class} field named by a {}", other.kind()))),
                })
                .collect()
        }
        Value::Object(o) => Err(bad(format!(
            "expected a {class}, got an object of {}",
            excerpt(&o.class)
        ))),
        Value::Ref(_) => Err(bad(format!("a back-reference where a {class} was expected"))),
        other => Err(bad(format!("expected a {class}, got a {}", other.kind()))),
    }
}

/// A string or null, at most [`MAX_METADATA_STRING`] bytes.
fn hessian_string(v: &Value<'_>, what: &'static str) -> Result<Option<String>, AppDiscoveryError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.len() > MAX_METADATA_STRING => Err(AppDiscoveryError::TooLong {
            what,
            len: s.len(),
            max: MAX_METADATA_STRING,
        }),
        Value::String(s) => Ok(Some(s.to_string())),
        other => Err(bad(format!("{what} is a {}", other.kind()))),
    }
}

/// A map of strings (null values dropped) or null (empty).
fn hessian_string_map(
    v: &Value<'_>,
    what: &'static str,
) -> Result<BTreeMap<String, String>, AppDiscoveryError> {
    match v {
        Value::Null => Ok(BTreeMap::new()),
        Value::Map(m) => {
            check_count(m.entries.len(), MAX_SERVICE_PARAMS, what)?;
            let mut out = BTreeMap::new();
            for (k, v) in &m.entries {
                let k = hessian_string(k, what)?.ok_or_else(|| bad(format!("a null key in {what}")))?;
                if let Some(v) = hessian_string(v, what)? {
                    out.insert(k, v);
                }
            }
            Ok(out)
        }
        other => Err(bad(format!("{what} is a {}", other.kind()))),
    }
}

/// `MetadataInfo.services`: a map of match key to `ServiceInfo`, or null (none).
fn hessian_services(v: &Value<'_>) -> Result<BTreeMap<String, ServiceInfo>, AppDiscoveryError> {
    match v {
        Value::Null => Ok(BTreeMap::new()),
        Value::Map(m) => {
            check_count(m.entries.len(), MAX_SERVICES, "MetadataInfo.services")?;
            let mut out = BTreeMap::new();
            for (k, v) in &m.entries {
                let k = hessian_string(k, "a services key")?
                    .ok_or_else(|| bad("a null key in MetadataInfo.services".into()))?;
                out.insert(k, ServiceInfo::from_value(v)?);
            }
            Ok(out)
        }
        other => Err(bad(format!("MetadataInfo.services is a {}", other.kind()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use mesh_dubbo::hessian::{Decoder, Encoder};
    use proptest::prelude::*;

    fn greeter() -> ServiceInfo {
        ServiceInfo {
            name: "org.demo.Greeter".into(),
            group: Some("g".into()),
            version: Some("1.0.0".into()),
            protocol: Some("dubbo".into()),
            port: 20880,
            path: Some("org.demo.Greeter".into()),
            params: [("methods".to_owned(), "greet".to_owned())].into(),
        }
    }

    #[test]
    fn keys_as_java_builds_them() {
        let s = greeter();
        assert_eq!(s.service_key(), "g/org.demo.Greeter:1.0.0");
        assert_eq!(s.match_key(), "g/org.demo.Greeter:1.0.0:dubbo");
        let bare = ServiceInfo {
            group: Some(String::new()),
            version: None,
            protocol: None,
            ..greeter()
        };
        assert_eq!(bare.service_key(), "org.demo.Greeter");
        assert_eq!(bare.match_key(), "org.demo.Greeter");
    }

    #[test]
    fn value_has_hessian_lite_field_order_and_types() {
        let info = MetadataInfo::new("demo", [greeter()]);
        let Value::Object(o) = info.to_value() else {
            panic!("not an object")
        };
        assert_eq!(o.class, METADATA_INFO_CLASS);
        let names: Vec<&str> = o.fields.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(names, ["services", "revision", "app"]);
        let Value::Map(services) = &o.fields[0].1 else {
            panic!("services not a map")
        };
        assert_eq!(services.type_name.as_deref(), Some(SERVICES_MAP_TYPE));
        let Value::Object(s) = &services.entries[0].1 else {
            panic!("not a ServiceInfo")
        };
        assert_eq!(s.class, SERVICE_INFO_CLASS);
        let names: Vec<&str> = s.fields.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(
            names,
            ["params", "path", "port", "protocol", "version", "group", "name"]
        );
        assert_eq!(s.fields[2].1, Value::Int(20880));
        assert!(matches!(&s.fields[0].1, Value::Map(m) if m.type_name.is_none()));
    }

    #[test]
    fn hessian_bytes_round_trip() {
        let info = MetadataInfo::new("demo", [greeter()]);
        let mut buf = BytesMut::new();
        Encoder::new(&mut buf).write_value(&info.to_value()).unwrap();
        let value = Decoder::new(&buf).read_value().unwrap();
        assert_eq!(MetadataInfo::from_value(&value).unwrap(), info);
    }

    #[test]
    fn reads_go_and_typed_map_forms() {
        // dubbo-go: fields in struct order with an extra `tag`, port as a long.
        let go = Value::Object(HObject {
            class: Cow::Borrowed(METADATA_INFO_CLASS),
            fields: vec![
                (Cow::Borrowed("app"), Value::str("go")),
                (Cow::Borrowed("revision"), Value::str("r")),
                (Cow::Borrowed("tag"), Value::str("")),
                (
                    Cow::Borrowed("services"),
                    Value::Map(HMap {
                        type_name: None,
                        entries: vec![(
                            Value::str("k"),
                            Value::Map(HMap {
                                type_name: Some(Cow::Borrowed(SERVICE_INFO_CLASS)),
                                entries: vec![
                                    (Value::str("name"), Value::str("x.Y")),
                                    (Value::str("port"), Value::Long(20000)),
                                ],
                            }),
                        )],
                    }),
                ),
            ],
        });
        let info = MetadataInfo::from_value(&go).unwrap();
        assert_eq!((info.app.as_str(), info.revision.as_str()), ("go", "r"));
        assert_eq!(info.services["k"].port, 20000);
        assert_eq!(info.services["k"].path, None);
    }

    #[test]
    fn refuses_what_is_not_a_metadata_info() {
        let not = [
            Value::Null,
            Value::Ref(0),
            Value::str("x"),
            Value::Object(HObject {
                class: Cow::Borrowed("java.lang.Object"),
                fields: vec![],
            }),
            Value::Object(HObject {
                class: Cow::Borrowed(METADATA_INFO_CLASS),
                fields: vec![(Cow::Borrowed("services"), Value::Int(1))],
            }),
            Value::Object(HObject {
                class: Cow::Borrowed(METADATA_INFO_CLASS),
                fields: vec![(
                    Cow::Borrowed("services"),
                    Value::Map(HMap {
                        type_name: None,
                        entries: vec![(Value::str("k"), Value::Ref(1))],
                    }),
                )],
            }),
        ];
        for v in &not {
            assert!(MetadataInfo::from_value(v).is_err(), "{v:?}");
        }
        let many = Value::Object(HObject {
            class: Cow::Borrowed(METADATA_INFO_CLASS),
            fields: vec![(
                Cow::Borrowed("services"),
                Value::Map(HMap {
                    type_name: None,
                    entries: (0..=MAX_SERVICES)
                        .map(|i| (Value::from(i.to_string()), Value::Null))
                        .collect(),
                }),
            )],
        });
        assert!(matches!(
            MetadataInfo::from_value(&many),
            Err(AppDiscoveryError::TooLong { .. })
        ));
    }

    fn arb_opt() -> impl Strategy<Value = Option<String>> {
        prop::option::of("\\PC{0,12}")
    }

    fn arb_service() -> impl Strategy<Value = ServiceInfo> {
        (
            "[a-zA-Z.]{1,20}",
            arb_opt(),
            arb_opt(),
            arb_opt(),
            any::<i32>(),
            arb_opt(),
            prop::collection::btree_map("\\PC{1,8}", "\\PC{0,12}", 0..5),
        )
            .prop_map(
                |(name, group, version, protocol, port, path, params)| ServiceInfo {
                    name,
                    group,
                    version,
                    protocol,
                    port,
                    path,
                    params,
                },
            )
    }

    fn arb_value(depth: u32) -> BoxedStrategy<Value<'static>> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<i32>().prop_map(Value::Int),
            any::<i64>().prop_map(Value::Long),
            "\\PC{0,10}".prop_map(Value::from),
            any::<u32>().prop_map(Value::Ref),
        ];
        if depth == 0 {
            return leaf.boxed();
        }
        let class = prop_oneof![
            Just(METADATA_INFO_CLASS.to_owned()),
            Just(SERVICE_INFO_CLASS.to_owned()),
            "[a-z]{1,5}".prop_map(String::from),
        ];
        let field = prop_oneof![
            Just("services".to_owned()),
            Just("params".to_owned()),
            Just("name".to_owned()),
            Just("port".to_owned()),
            Just("app".to_owned()),
            "[a-z]{1,5}".prop_map(String::from),
        ];
        prop_oneof![
            leaf,
            (class, prop::collection::vec((field, arb_value(depth - 1)), 0..4)).prop_map(
                |(class, fields)| Value::Object(HObject {
                    class: Cow::Owned(class),
                    fields: fields.into_iter().map(|(k, v)| (Cow::Owned(k), v)).collect(),
                })
            ),
            prop::collection::vec((arb_value(depth - 1), arb_value(depth - 1)), 0..4).prop_map(|entries| {
                Value::Map(HMap {
                    type_name: None,
                    entries,
                })
            }),
        ]
        .boxed()
    }

    proptest! {
        #[test]
        fn value_round_trips(app in "\\PC{0,12}", services in prop::collection::vec(arb_service(), 0..4)) {
            let info = MetadataInfo::new(app, services);
            prop_assert_eq!(MetadataInfo::from_value(&info.to_value()).unwrap(), info.clone());
            let mut buf = BytesMut::new();
            Encoder::new(&mut buf).write_value(&info.to_value()).unwrap();
            let value = Decoder::new(&buf).read_value().unwrap();
            prop_assert_eq!(MetadataInfo::from_value(&value).unwrap(), info);
        }

        #[test]
        fn go_json_round_trips_up_to_empty_strings(app in "[a-z]{1,12}", services in prop::collection::vec(arb_service(), 0..4)) {
            // Go has no null string: None and "" are the same there, so compare with empties as None.
            let norm = |s: ServiceInfo| ServiceInfo {
                group: s.group.filter(|v| !v.is_empty()),
                version: s.version.filter(|v| !v.is_empty()),
                protocol: s.protocol.filter(|v| !v.is_empty()),
                path: s.path.filter(|v| !v.is_empty()),
                ..s
            };
            let info = MetadataInfo::new(app, services.into_iter().map(norm));
            prop_assert_eq!(MetadataInfo::from_go_json(&info.to_go_json()).unwrap(), info);
        }

        #[test]
        fn arbitrary_values_are_errors_not_panics(v in arb_value(3)) {
            let _ = MetadataInfo::from_value(&v);
            let _ = ServiceInfo::from_value(&v);
        }
    }
}
