//! Dubbo 3 service instances on etcd: the key `/services/<app>/<host>:<port>` and its JSON value, in Java's
//! shape (Gson over `DefaultServiceInstance`, camelCase) and in dubbo-go's (`encoding/json` over
//! `DefaultServiceInstance` without tags, PascalCase), both read into one [`ServiceInstance`]; the agent
//! writes Java's shape. Then what a consumer reads from an instance's `metadata`: the revision, the storage
//! type, where its MetadataService listens and the ports of its protocols; and whether to use it at all.
//!
//! Sources (fact sheet `shared/dubbo-discovery.md` §4): apache/dubbo-spi-extensions
//! `dubbo-registry-extensions/dubbo-registry-etcd3/.../EtcdServiceDiscovery.java` (key, Gson value),
//! apache/dubbo `dubbo-registry/dubbo-registry-api/.../client/DefaultServiceInstance.java` (fields),
//! `.../client/metadata/ServiceInstanceMetadataUtils.java` (metadata keys and readers), apache/dubbo-go
//! `registry/etcdv3/service_discovery.go` (`toPath`, `jsonutil.EncodeJSON`) and `registry/service_instance.go`
//! (`DefaultServiceInstance`, `Endpoint`).

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map as JsonMap, Value as Json};

use super::app_error::{check_application, excerpt, AppDiscoveryError};
use super::metadata_info::MetadataInfo;

/// The root of instance keys (`EtcdServiceDiscovery.root`, dubbo-go `ROOT`).
pub const INSTANCES_ROOT: &str = "/services";

/// `dubbo.metadata.revision` (`ServiceInstanceMetadataUtils.EXPORTED_SERVICES_REVISION_PROPERTY_NAME`).
pub const REVISION_KEY: &str = "dubbo.metadata.revision";

/// The revision's name in Dubbo 2.7.8 (`dubbo.exported-services.revision`), read when the 3.x name is absent.
pub const REVISION_KEY_2_7_8: &str = "dubbo.exported-services.revision";

/// `dubbo.metadata.storage-type` (`METADATA_STORAGE_TYPE_PROPERTY_NAME`): `local` (default) or `remote`.
pub const STORAGE_TYPE_KEY: &str = "dubbo.metadata.storage-type";

/// `dubbo.metadata-service.url-params` (`METADATA_SERVICE_URL_PARAMS_PROPERTY_NAME`): a JSON object.
pub const METADATA_SERVICE_URL_PARAMS_KEY: &str = "dubbo.metadata-service.url-params";

/// `dubbo.endpoints` (`ENDPOINTS`): a JSON list of `{"port":..,"protocol":..}`.
pub const ENDPOINTS_KEY: &str = "dubbo.endpoints";

/// `meta-v`: the MetadataService version a provider serves (3.3: `1.0.0`, or `2.0.0` for the Triple-only V2).
pub const META_VERSION_KEY: &str = "meta-v";

/// The revision of an application with no services (`RevisionResolver.EMPTY_REVISION`).
pub const EMPTY_REVISION: &str = "0";

/// The longest instance value read (bytes). A Java instance is well under 2 KiB; a dubbo-go one carries its
/// whole `MetadataInfo` (`ServiceMetadata`), a few KiB per service.
pub const MAX_INSTANCE_JSON: usize = 1024 * 1024;

/// The most `metadata` entries an instance may have.
pub const MAX_METADATA_ENTRIES: usize = 1024;

/// The most entries of `dubbo.endpoints`.
pub const MAX_ENDPOINTS: usize = 64;

/// The longest application name.
pub const MAX_APPLICATION_LEN: usize = 1024;

/// The longest host read from a key or value.
const MAX_HOST_LEN: usize = 255;

/// Where an instance lives: `/services/<app>/<host>:<port>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceKey {
    /// The application (`serviceName`).
    pub app: String,
    /// The host, as written (an IP for the agents, without brackets for IPv6, as Java writes it).
    pub host: String,
    /// The port.
    pub port: u16,
}

impl InstanceKey {
    /// The key prefix of an application's instances, `/services/<app>/`, for a prefix watch.
    /// Java: `EtcdServiceDiscovery.toParentPath` (+ `/`); dubbo-go: `toParentPath`.
    pub fn app_prefix(app: &str) -> String {
        format!("{INSTANCES_ROOT}/{app}/")
    }

    /// Reads a key, as Java's `EtcdServiceDiscovery.getInstances` finds them (exactly one `/` after the
    /// application) and dubbo-go's `toPath` writes them (`host:port`; the last `:` splits an IPv6 host).
    pub fn parse(key: &str) -> Result<InstanceKey, AppDiscoveryError> {
        let bad = |reason| AppDiscoveryError::BadInstanceKey {
            key: excerpt(key),
            reason,
        };
        if key.len() > MAX_APPLICATION_LEN + MAX_HOST_LEN + 16 {
            return Err(bad("too long"));
        }
        let rest = key
            .strip_prefix(INSTANCES_ROOT)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| bad("not under /services/"))?;
        let (app, address) = rest
            .split_once('/')
            .ok_or_else(|| bad("no /<host>:<port> after the application"))?;
        if address.contains('/') {
            return Err(bad("more than one segment after the application"));
        }
        check_application(app).map_err(|_| bad("bad application segment"))?;
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| bad("no ':' between host and port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.len() > MAX_HOST_LEN {
            return Err(bad("empty or too long host"));
        }
        let port = port
            .parse::<u16>()
            .map_err(|_| bad("the port is not a number from 0 to 65535"))?;
        Ok(InstanceKey {
            app: app.to_owned(),
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for InstanceKey {
    /// `/services/<app>/<host>:<port>` (Java: `toPath`, `root + "/" + serviceName + "/" + host + ":" + port`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{INSTANCES_ROOT}/{}/{}:{}", self.app, self.host, self.port)
    }
}

/// Which implementation's JSON an instance value was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceShape {
    /// Java Dubbo 3 (Gson, camelCase: `serviceName`, `host`, `port`, `enabled`, `healthy`, `metadata`).
    Java,
    /// dubbo-go (PascalCase: `ID`, `ServiceName`, `Host`, `Port`, `Weight`, `Enable`, `Healthy`, `Metadata`,
    /// `ServiceMetadata`, `Address`, `GroupName`, `Tag`).
    Go,
}

/// Where an instance's metadata is kept (`dubbo.metadata.storage-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataStorage {
    /// `local` (the default): served by the instance's own MetadataService.
    Local,
    /// `remote`: in a metadata report (Java's etcd report stores none; dubbo-go's at `/dubbo/<app>/<rev>`).
    Remote,
}

/// One entry of `dubbo.endpoints` (`DefaultServiceInstance.Endpoint`: `port`, `protocol`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceEndpoint {
    /// The port the protocol listens on.
    pub port: u16,
    /// The protocol (`dubbo`, `tri`, ...).
    pub protocol: String,
}

/// Where an instance's MetadataService listens, from `dubbo.metadata-service.url-params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataServiceParams {
    /// The protocol (`protocol` in 3.x's flat map; the outer key in 2.7's nested one).
    pub protocol: String,
    /// The port, when the parameters name one.
    pub port: Option<u16>,
    /// All the parameters (3.x: `version`, `dubbo`, `release`, `side`, `port`, `protocol`, ...).
    pub params: BTreeMap<String, String>,
}

/// Whether a consumer uses an instance, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceUse<'a> {
    /// Use it: fetch (or reuse) the `MetadataInfo` of this revision.
    Use {
        /// The revision.
        revision: &'a str,
    },
    /// Skip it; the reason is for one log line.
    Skip(&'static str),
}

/// A Dubbo 3 service instance, whichever implementation wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceInstance {
    /// The application (`serviceName` / `ServiceName`).
    pub service_name: String,
    /// The host.
    pub host: String,
    /// The instance port (the first exported protocol's, `ServiceInstanceHostPortCustomizer`).
    pub port: u16,
    /// `enabled` (Java, default true) / `Enable` (dubbo-go).
    pub enabled: bool,
    /// `healthy` / `Healthy`.
    pub healthy: bool,
    /// The metadata map (strings).
    pub metadata: BTreeMap<String, String>,
    /// dubbo-go's `ServiceMetadata`: the whole `MetadataInfo` inside the instance, when it was written there.
    pub inline_metadata: Option<MetadataInfo>,
}

impl ServiceInstance {
    /// An enabled, healthy instance with no metadata.
    pub fn new(service_name: impl Into<String>, host: impl Into<String>, port: u16) -> Self {
        ServiceInstance {
            service_name: service_name.into(),
            host: host.into(),
            port,
            enabled: true,
            healthy: true,
            metadata: BTreeMap::new(),
            inline_metadata: None,
        }
    }

    /// Its etcd key (Java `EtcdServiceDiscovery.toPath`, dubbo-go `toPath`).
    pub fn key(&self) -> InstanceKey {
        InstanceKey {
            app: self.service_name.clone(),
            host: self.host.clone(),
            port: self.port,
        }
    }

    /// Reads an instance value in Java's or dubbo-go's shape (see [`InstanceShape`]). Java's Gson reads
    /// names case-sensitively; dubbo-go's `encoding/json` case-insensitively, so it reads Java's JSON except
    /// `enabled` (its field is `Enable`). Here each field is taken under Java's name if present, else under
    /// dubbo-go's. Absent `enabled`/`healthy` are true (Java's defaults); numbers and booleans in `metadata`
    /// are read as their text and nulls dropped (Gson's `String` adapter does the same).
    pub fn from_json(value: &[u8]) -> Result<(ServiceInstance, InstanceShape), AppDiscoveryError> {
        if value.len() > MAX_INSTANCE_JSON {
            return Err(AppDiscoveryError::TooLong {
                what: "instance value",
                len: value.len(),
                max: MAX_INSTANCE_JSON,
            });
        }
        let bad = |reason: String| AppDiscoveryError::BadInstance { reason };
        let json: Json = serde_json::from_slice(value).map_err(|e| bad(format!("not JSON: {e}")))?;
        let Json::Object(obj) = json else {
            return Err(bad("not a JSON object".into()));
        };
        let shape = if ["serviceName", "host", "port"]
            .iter()
            .any(|k| obj.contains_key(*k))
        {
            InstanceShape::Java
        } else if ["ServiceName", "Host", "Port"]
            .iter()
            .any(|k| obj.contains_key(*k))
        {
            InstanceShape::Go
        } else {
            return Err(bad(
                "neither Java's (serviceName, host, port) nor dubbo-go's (ServiceName, Host, Port) fields"
                    .into(),
            ));
        };
        let field = |java: &str, go: &str| -> Option<&Json> {
            obj.get(java)
                .filter(|v| !v.is_null())
                .or_else(|| obj.get(go).filter(|v| !v.is_null()))
        };
        let service_name = json_string(field("serviceName", "ServiceName"), "serviceName")?
            .ok_or_else(|| bad("no serviceName".into()))?;
        check_application(&service_name).map_err(|e| bad(e.to_string()))?;
        let host = json_string(field("host", "Host"), "host")?.ok_or_else(|| bad("no host".into()))?;
        if host.is_empty() || host.len() > MAX_HOST_LEN {
            return Err(bad("empty or too long host".into()));
        }
        let port = match field("port", "Port") {
            None => return Err(bad("no port".into())),
            Some(p) => json_port(p).ok_or_else(|| bad(format!("bad port {}", excerpt(&p.to_string()))))?,
        };
        let enabled = json_bool(field("enabled", "Enable"), "enabled")?.unwrap_or(true);
        let healthy = json_bool(field("healthy", "Healthy"), "healthy")?.unwrap_or(true);
        let metadata = match field("metadata", "Metadata") {
            None => BTreeMap::new(),
            Some(Json::Object(m)) => string_map(m)?,
            Some(other) => return Err(bad(format!("metadata is a JSON {}", json_kind(other)))),
        };
        let inline_metadata = match obj.get("ServiceMetadata") {
            None | Some(Json::Null) => None,
            Some(m) => Some(MetadataInfo::from_go_json(m)?),
        };
        Ok((
            ServiceInstance {
                service_name,
                host,
                port,
                enabled,
                healthy,
                metadata,
                inline_metadata,
            },
            shape,
        ))
    }

    /// The value as Java Dubbo 3 writes it: Gson over `DefaultServiceInstance`, fields in declaration order
    /// (`serviceName`, `host`, `port`, `enabled`, `healthy`, `metadata`; `rawAddress` is null and omitted).
    pub fn to_java_json(&self) -> String {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Java<'a> {
            service_name: &'a str,
            host: &'a str,
            port: u16,
            enabled: bool,
            healthy: bool,
            metadata: &'a BTreeMap<String, String>,
        }
        serde_json::to_string(&Java {
            service_name: &self.service_name,
            host: &self.host,
            port: self.port,
            enabled: self.enabled,
            healthy: self.healthy,
            metadata: &self.metadata,
        })
        .unwrap_or_default()
    }

    /// The value as dubbo-go writes it (`jsonutil.EncodeJSON` of `registry.DefaultServiceInstance`: field
    /// names as declared, `ID` = `host:port`, `Weight` 0, empty `Address`/`GroupName`/`Tag`), with
    /// `ServiceMetadata` when [`ServiceInstance::inline_metadata`] is set. For tests that play dubbo-go.
    pub fn to_go_json(&self) -> String {
        let mut obj = JsonMap::new();
        obj.insert("ID".into(), format!("{}:{}", self.host, self.port).into());
        obj.insert("ServiceName".into(), self.service_name.clone().into());
        obj.insert("Host".into(), self.host.clone().into());
        obj.insert("Port".into(), self.port.into());
        obj.insert("Weight".into(), 0.into());
        obj.insert("Enable".into(), self.enabled.into());
        obj.insert("Healthy".into(), self.healthy.into());
        obj.insert(
            "Metadata".into(),
            Json::Object(
                self.metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), Json::String(v.clone())))
                    .collect(),
            ),
        );
        obj.insert(
            "ServiceMetadata".into(),
            self.inline_metadata
                .as_ref()
                .map_or(Json::Null, MetadataInfo::to_go_json),
        );
        obj.insert("Address".into(), "".into());
        obj.insert("GroupName".into(), "".into());
        obj.insert("Tag".into(), "".into());
        Json::Object(obj).to_string()
    }

    /// The revision: `dubbo.metadata.revision`, else 2.7.8's `dubbo.exported-services.revision`; empty counts
    /// as absent. Java: `ServiceInstanceMetadataUtils.getExportedServicesRevision` (which prefers the
    /// revision of an attached `MetadataInfo`, here [`ServiceInstance::inline_metadata`]).
    pub fn revision(&self) -> Option<&str> {
        self.inline_metadata
            .as_ref()
            .map(|m| m.revision.as_str())
            .filter(|r| !r.is_empty())
            .or_else(|| self.meta(REVISION_KEY))
            .or_else(|| self.meta(REVISION_KEY_2_7_8))
    }

    /// `dubbo.metadata.storage-type`: `remote` is remote, anything else local (Java
    /// `ServiceInstanceMetadataUtils.getMetadataStorageType`, compared with `REMOTE_METADATA_STORAGE_TYPE`).
    pub fn storage_type(&self) -> MetadataStorage {
        match self.meta(STORAGE_TYPE_KEY) {
            Some("remote") => MetadataStorage::Remote,
            _ => MetadataStorage::Local,
        }
    }

    /// `dubbo.metadata-service.url-params`, in 3.x's flat shape (`{"version":"1.0.0",..,"port":"20880",
    /// "protocol":"dubbo"}`, Java `ServiceInstanceMetadataUtils.getMetadataServiceParameter`, dubbo-go
    /// `metadata_service_url_params_customizer.go`) or 2.7's nested one (`{"dubbo":{"version":..,"port":..}}`,
    /// 2.7.x `getMetadataServiceParameter`; the `dubbo` entry is taken, else the first). `None` when absent
    /// or empty (Java then calls the instance port with the `dubbo` protocol:
    /// `StandardMetadataServiceURLBuilder.generateUrlWithoutMetadata`).
    pub fn metadata_service_params(&self) -> Result<Option<MetadataServiceParams>, AppDiscoveryError> {
        let Some(raw) = self.meta(METADATA_SERVICE_URL_PARAMS_KEY) else {
            return Ok(None);
        };
        let bad = |reason: String| AppDiscoveryError::BadInstanceMetadata {
            key: METADATA_SERVICE_URL_PARAMS_KEY,
            reason,
        };
        let json: Json = serde_json::from_str(raw).map_err(|e| bad(format!("not JSON: {e}")))?;
        let Json::Object(obj) = json else {
            return Err(bad("not a JSON object".into()));
        };
        if obj.is_empty() {
            return Ok(None);
        }
        let nested = obj.values().all(Json::is_object);
        let (params, outer_protocol) = if nested {
            let (protocol, inner) = obj
                .get_key_value("dubbo")
                .or_else(|| obj.iter().next())
                .ok_or_else(|| bad("empty".into()))?;
            let Json::Object(inner) = inner else {
                return Err(bad("nested entry is not an object".into()));
            };
            (string_map(inner)?, Some(protocol.clone()))
        } else {
            (string_map(&obj)?, None)
        };
        let protocol = params
            .get("protocol")
            .cloned()
            .or(outer_protocol)
            .unwrap_or_else(|| "dubbo".to_owned());
        let port = match params.get("port") {
            None => None,
            Some(p) => Some(
                p.trim()
                    .parse::<u16>()
                    .map_err(|_| bad(format!("bad port {}", excerpt(p))))?,
            ),
        };
        Ok(Some(MetadataServiceParams {
            protocol,
            port,
            params,
        }))
    }

    /// Where to call this instance's MetadataService: `(protocol, port)` from
    /// `dubbo.metadata-service.url-params`, else `("dubbo", instance port)` (apache/dubbo
    /// `dubbo-registry/dubbo-registry-api/.../client/metadata/StandardMetadataServiceURLBuilder.java`
    /// `build`: `generateWithMetadata` needs `port`, `generateUrlWithoutMetadata` falls back to the instance
    /// port). The call is `org.apache.dubbo.metadata.MetadataService`, group = the application, version =
    /// the parameters' `version` or `1.0.0`.
    pub fn metadata_service_address(&self) -> Result<(String, u16), AppDiscoveryError> {
        match self.metadata_service_params()? {
            None => Ok(("dubbo".to_owned(), self.port)),
            Some(p) => {
                let port = p.port.filter(|&port| port > 0).ok_or_else(|| {
                    AppDiscoveryError::BadInstanceMetadata {
                        key: METADATA_SERVICE_URL_PARAMS_KEY,
                        reason: "no port".into(),
                    }
                })?;
                Ok((p.protocol, port))
            }
        }
    }

    /// `dubbo.endpoints` (Java `ProtocolPortsMetadataCustomizer` writes it, `ServiceInstanceMetadataUtils
    /// .getEndpoints` reads it; dubbo-go `protocol_ports_metadata_customizer.go`); empty when absent.
    pub fn endpoints(&self) -> Result<Vec<InstanceEndpoint>, AppDiscoveryError> {
        let Some(raw) = self.meta(ENDPOINTS_KEY) else {
            return Ok(Vec::new());
        };
        let bad = |reason: String| AppDiscoveryError::BadInstanceMetadata {
            key: ENDPOINTS_KEY,
            reason,
        };
        let json: Json = serde_json::from_str(raw).map_err(|e| bad(format!("not JSON: {e}")))?;
        let Json::Array(items) = json else {
            return Err(bad("not a JSON list".into()));
        };
        if items.len() > MAX_ENDPOINTS {
            return Err(AppDiscoveryError::TooLong {
                what: "dubbo.endpoints",
                len: items.len(),
                max: MAX_ENDPOINTS,
            });
        }
        items
            .iter()
            .map(|item| {
                let port = item
                    .get("port")
                    .and_then(json_port)
                    .ok_or_else(|| bad("an entry without a port from 0 to 65535".into()))?;
                let protocol = item
                    .get("protocol")
                    .and_then(Json::as_str)
                    .ok_or_else(|| bad("an entry without a protocol".into()))?;
                Ok(InstanceEndpoint {
                    port,
                    protocol: protocol.to_owned(),
                })
            })
            .collect()
    }

    /// The port of `protocol` in `dubbo.endpoints` (`ServiceInstanceMetadataUtils.getEndpoint`); `None` when
    /// absent or unreadable.
    pub fn endpoint_port(&self, protocol: &str) -> Option<u16> {
        self.endpoints()
            .ok()?
            .into_iter()
            .find(|e| e.protocol == protocol)
            .map(|e| e.port)
    }

    /// Whether a consumer uses this instance. Java's `ServiceInstancesChangedListener.doOnEvent` skips an
    /// instance whose revision is missing or `"0"`; it does not look at `enabled`/`healthy` (registries such
    /// as Nacos filter those server-side; dubbo-go's etcd `GetHealthyInstances` filters `Healthy`), so on
    /// etcd, where nothing filters, the agent skips disabled and unhealthy instances itself.
    pub fn usability(&self) -> InstanceUse<'_> {
        if !self.enabled {
            return InstanceUse::Skip("disabled (enabled=false)");
        }
        if !self.healthy {
            return InstanceUse::Skip("unhealthy (healthy=false)");
        }
        if self.port == 0 {
            return InstanceUse::Skip("no port");
        }
        match self.revision() {
            None => InstanceUse::Skip("no dubbo.metadata.revision (no service metadata)"),
            Some(EMPTY_REVISION) => InstanceUse::Skip("revision \"0\" (no exported services)"),
            Some(revision) => InstanceUse::Use { revision },
        }
    }

    /// A metadata value; empty counts as absent (Java's `StringUtils.isNotEmpty` checks).
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// A JSON string field (numbers and booleans read as their text, as Gson's `String` adapter does).
fn json_string(v: Option<&Json>, what: &str) -> Result<Option<String>, AppDiscoveryError> {
    match v {
        None => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(Json::Number(n)) => Ok(Some(n.to_string())),
        Some(Json::Bool(b)) => Ok(Some(b.to_string())),
        Some(other) => Err(AppDiscoveryError::BadInstance {
            reason: format!("{what} is a JSON {}", json_kind(other)),
        }),
    }
}

/// A JSON boolean field (Gson also reads the strings `"true"`/`"false"`).
fn json_bool(v: Option<&Json>, what: &str) -> Result<Option<bool>, AppDiscoveryError> {
    match v {
        None => Ok(None),
        Some(Json::Bool(b)) => Ok(Some(*b)),
        Some(Json::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Json::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(other) => Err(AppDiscoveryError::BadInstance {
            reason: format!("{what} is not a boolean: {}", excerpt(&other.to_string())),
        }),
    }
}

/// A port: a JSON integer or a numeric string from 0 to 65535.
fn json_port(v: &Json) -> Option<u16> {
    match v {
        Json::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
        Json::String(s) => s.trim().parse::<u16>().ok(),
        _ => None,
    }
}

/// A JSON object of strings, at most [`MAX_METADATA_ENTRIES`] entries.
pub(crate) fn string_map(obj: &JsonMap<String, Json>) -> Result<BTreeMap<String, String>, AppDiscoveryError> {
    if obj.len() > MAX_METADATA_ENTRIES {
        return Err(AppDiscoveryError::TooLong {
            what: "metadata map",
            len: obj.len(),
            max: MAX_METADATA_ENTRIES,
        });
    }
    let mut out = BTreeMap::new();
    for (k, v) in obj {
        if v.is_null() {
            continue;
        }
        if let Some(v) = json_string(Some(v), k)? {
            out.insert(k.clone(), v);
        }
    }
    Ok(out)
}

/// The JSON kind's name, for error messages.
pub(crate) fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "list",
        Json::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The Java 3 instance of the fact sheet §4.2 (field list from `DefaultServiceInstance`).
    const JAVA_INSTANCE: &str = r#"{"serviceName":"demo-provider","host":"192.168.1.10","port":20880,"enabled":true,"healthy":true,
 "metadata":{"dubbo.metadata.revision":"9f1c","dubbo.metadata.storage-type":"local","meta-v":"1.0.0",
  "dubbo.metadata-service.url-params":"{\"version\":\"1.0.0\",\"dubbo\":\"2.0.2\",\"release\":\"3.3.1\",\"side\":\"provider\",\"port\":\"20881\",\"protocol\":\"dubbo\"}",
  "dubbo.endpoints":"[{\"port\":20880,\"protocol\":\"dubbo\"},{\"port\":50051,\"protocol\":\"tri\"}]","timestamp":"1700000000000"}}"#;

    /// A dubbo-go instance, field names from apache/dubbo-go `registry/service_instance.go`.
    const GO_INSTANCE: &str = r#"{"ID":"10.0.0.7:20000","ServiceName":"go-app","Host":"10.0.0.7","Port":20000,"Weight":0,
 "Enable":true,"Healthy":true,"Metadata":{"dubbo.metadata.revision":"12345","dubbo.metadata.storage-type":"local"},
 "ServiceMetadata":{"app":"go-app","revision":"12345","services":{"com.x.Greeter::tri":{"name":"com.x.Greeter","protocol":"tri","port":20000,"path":"com.x.Greeter","params":{"methods":"Greet"}}}},
 "Address":"","GroupName":"","Tag":""}"#;

    #[test]
    fn keys_parse_and_format() {
        let k = InstanceKey::parse("/services/demo-provider/192.168.1.10:20880").unwrap();
        assert_eq!(
            k,
            InstanceKey {
                app: "demo-provider".into(),
                host: "192.168.1.10".into(),
                port: 20880
            }
        );
        assert_eq!(k.to_string(), "/services/demo-provider/192.168.1.10:20880");
        // Java writes IPv6 hosts without brackets: the last ':' is the port's.
        let v6 = InstanceKey::parse("/services/a/fe80::1:20880").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("fe80::1", 20880));
        assert_eq!(InstanceKey::app_prefix("a"), "/services/a/");
        for bad in [
            "/services/a",
            "/services/a/",
            "/services//1.2.3.4:1",
            "/services/a/b/1.2.3.4:1",
            "/services/a/1.2.3.4",
            "/services/a/1.2.3.4:99999",
            "/services/a/:1",
            "/dubbo/a/1.2.3.4:1",
            "/servicesx/a/1.2.3.4:1",
        ] {
            assert!(InstanceKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_java_shape() {
        let (i, shape) = ServiceInstance::from_json(JAVA_INSTANCE.as_bytes()).unwrap();
        assert_eq!(shape, InstanceShape::Java);
        assert_eq!(
            (i.service_name.as_str(), i.host.as_str(), i.port),
            ("demo-provider", "192.168.1.10", 20880)
        );
        assert!(i.enabled && i.healthy);
        assert_eq!(i.revision(), Some("9f1c"));
        assert_eq!(i.storage_type(), MetadataStorage::Local);
        assert_eq!(i.endpoint_port("tri"), Some(50051));
        assert_eq!(i.endpoint_port("rest"), None);
        let ms = i.metadata_service_params().unwrap().unwrap();
        assert_eq!((ms.protocol.as_str(), ms.port), ("dubbo", Some(20881)));
        assert_eq!(ms.params.get("version").map(String::as_str), Some("1.0.0"));
        assert_eq!(i.metadata_service_address().unwrap(), ("dubbo".to_owned(), 20881));
        let bare = ServiceInstance::new("a", "1.2.3.4", 7);
        assert_eq!(bare.metadata_service_address().unwrap(), ("dubbo".to_owned(), 7));
        assert_eq!(i.usability(), InstanceUse::Use { revision: "9f1c" });
        assert_eq!(i.key().to_string(), "/services/demo-provider/192.168.1.10:20880");
    }

    #[test]
    fn reads_go_shape_with_inline_metadata() {
        let (i, shape) = ServiceInstance::from_json(GO_INSTANCE.as_bytes()).unwrap();
        assert_eq!(shape, InstanceShape::Go);
        assert_eq!(
            (i.service_name.as_str(), i.host.as_str(), i.port),
            ("go-app", "10.0.0.7", 20000)
        );
        let inline = i.inline_metadata.as_ref().unwrap();
        assert_eq!(inline.app, "go-app");
        let s = &inline.services["com.x.Greeter::tri"];
        assert_eq!(
            (s.name.as_str(), s.protocol.as_deref(), s.port),
            ("com.x.Greeter", Some("tri"), 20000)
        );
        assert_eq!(i.revision(), Some("12345"));
        // Go's `Enable` (not Java's `enabled`) is read.
        let off = GO_INSTANCE.replace("\"Enable\":true", "\"Enable\":false");
        let (i, _) = ServiceInstance::from_json(off.as_bytes()).unwrap();
        assert_eq!(i.usability(), InstanceUse::Skip("disabled (enabled=false)"));
    }

    #[test]
    fn writes_java_shape_in_gson_field_order() {
        let mut i = ServiceInstance::new("app", "10.0.0.1", 20880);
        i.metadata.insert(REVISION_KEY.into(), "abc".into());
        assert_eq!(
            i.to_java_json(),
            r#"{"serviceName":"app","host":"10.0.0.1","port":20880,"enabled":true,"healthy":true,"metadata":{"dubbo.metadata.revision":"abc"}}"#
        );
        let go = i.to_go_json();
        // serde_json writes the keys sorted, dubbo-go in declaration order: JSON readers do not care.
        assert!(
            go.contains(r#""ID":"10.0.0.1:20880""#) && go.contains(r#""Enable":true"#),
            "{go}"
        );
        assert_eq!(
            ServiceInstance::from_json(go.as_bytes()).unwrap(),
            (i, InstanceShape::Go)
        );
    }

    #[test]
    fn skip_rules_say_why() {
        let mut i = ServiceInstance::new("app", "10.0.0.1", 20880);
        assert!(matches!(i.usability(), InstanceUse::Skip(r) if r.contains("no dubbo.metadata.revision")));
        i.metadata.insert(REVISION_KEY.into(), "0".into());
        assert!(matches!(i.usability(), InstanceUse::Skip(r) if r.contains("\"0\"")));
        i.metadata.insert(REVISION_KEY.into(), String::new());
        i.metadata.insert(REVISION_KEY_2_7_8.into(), "old".into());
        assert_eq!(i.usability(), InstanceUse::Use { revision: "old" });
        i.healthy = false;
        assert!(matches!(i.usability(), InstanceUse::Skip(r) if r.contains("unhealthy")));
        i.healthy = true;
        i.port = 0;
        assert!(matches!(i.usability(), InstanceUse::Skip("no port")));
    }

    #[test]
    fn url_params_flat_nested_and_absent() {
        let mut i = ServiceInstance::new("app", "10.0.0.1", 20880);
        assert_eq!(i.metadata_service_params().unwrap(), None);
        i.metadata.insert(
            METADATA_SERVICE_URL_PARAMS_KEY.into(),
            r#"{"dubbo":{"version":"1.0.0","port":"20890","dubbo":"2.0.2"}}"#.into(),
        );
        let p = i.metadata_service_params().unwrap().unwrap();
        assert_eq!((p.protocol.as_str(), p.port), ("dubbo", Some(20890)));
        i.metadata
            .insert(METADATA_SERVICE_URL_PARAMS_KEY.into(), r#"{"port":"x"}"#.into());
        assert!(i.metadata_service_params().is_err());
        i.metadata
            .insert(METADATA_SERVICE_URL_PARAMS_KEY.into(), "[1]".into());
        assert!(i.metadata_service_params().is_err());
        i.metadata
            .insert(ENDPOINTS_KEY.into(), r#"[{"port":-1,"protocol":"dubbo"}]"#.into());
        assert!(i.endpoints().is_err());
        assert_eq!(i.endpoint_port("dubbo"), None);
        i.metadata.insert(STORAGE_TYPE_KEY.into(), "remote".into());
        assert_eq!(i.storage_type(), MetadataStorage::Remote);
    }

    #[test]
    fn refuses_bad_values() {
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"serviceName":"a","host":"h"}"#,
            r#"{"serviceName":"a","host":"h","port":70000}"#,
            r#"{"serviceName":"a/b","host":"h","port":1}"#,
            r#"{"serviceName":"a","host":"h","port":1,"metadata":[1]}"#,
            r#"{"serviceName":"a","host":"h","port":1,"metadata":{"k":{"x":1}}}"#,
            r#"{"serviceName":"a","host":"h","port":1,"enabled":"maybe"}"#,
            r#"{"ServiceName":"a","Host":"h","Port":1,"ServiceMetadata":{"services":{"k":{}}}}"#,
        ] {
            assert!(ServiceInstance::from_json(bad.as_bytes()).is_err(), "{bad}");
        }
        let big = vec![b' '; MAX_INSTANCE_JSON + 1];
        assert!(matches!(
            ServiceInstance::from_json(&big),
            Err(AppDiscoveryError::TooLong { .. })
        ));
    }

    fn arb_instance() -> impl Strategy<Value = ServiceInstance> {
        (
            "[a-z][a-z0-9.-]{0,20}",
            "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
            any::<u16>(),
            any::<bool>(),
            any::<bool>(),
            prop::collection::btree_map("[a-z.-]{1,12}", "\\PC{0,20}", 0..6),
        )
            .prop_map(|(app, host, port, enabled, healthy, metadata)| ServiceInstance {
                service_name: app,
                host,
                port,
                enabled,
                healthy,
                metadata,
                inline_metadata: None,
            })
    }

    proptest! {
        #[test]
        fn java_json_round_trips(i in arb_instance()) {
            let json = i.to_java_json();
            prop_assert_eq!(ServiceInstance::from_json(json.as_bytes()).unwrap(), (i.clone(), InstanceShape::Java));
            let key = i.key().to_string();
            prop_assert_eq!(InstanceKey::parse(&key).unwrap(), i.key());
        }

        #[test]
        fn go_json_round_trips(i in arb_instance()) {
            let json = i.to_go_json();
            prop_assert_eq!(ServiceInstance::from_json(json.as_bytes()).unwrap(), (i, InstanceShape::Go));
        }

        #[test]
        fn arbitrary_input_is_an_error_not_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..256), key in "\\PC{0,64}") {
            let _ = ServiceInstance::from_json(&bytes);
            let _ = InstanceKey::parse(&key);
        }

        #[test]
        fn arbitrary_metadata_is_an_error_not_a_panic(raw in "\\PC{0,64}") {
            let mut i = ServiceInstance::new("a", "1.2.3.4", 1);
            i.metadata.insert(METADATA_SERVICE_URL_PARAMS_KEY.into(), raw.clone());
            i.metadata.insert(ENDPOINTS_KEY.into(), raw);
            let _ = i.metadata_service_params();
            let _ = i.endpoints();
        }
    }
}
