//! The simulator's Dubbo 3 MetadataService: `org.apache.dubbo.metadata.MetadataService`, group = the
//! application, version `1.0.0`, method `MetadataInfo getMetadataInfo(String revision)`, as a Java 3.3
//! provider exports it (`ConfigurableMetadataServiceExporter.exportV1`, `MetadataServiceDelegation
//! .getMetadataInfo`: the `MetadataInfo` of that revision, or null when the revision is not this instance's).
//!
//! The simulator is a benchmark peer, not a proof: the answer is built with mesh-registry's model
//! (`MetadataInfo::new` for Java's revision, `MetadataInfo::to_value` for hessian-lite's field order) from
//! the services' descriptions of [`crate::dubbo_writers::app_level`], the same descriptions the registry
//! load tool writes the instances from, so the revision a consumer reads in etcd is the one answered here.
//! Every answered `getMetadataInfo` call is counted ([`SimMetadata::calls`]).

use std::sync::atomic::{AtomicU64, Ordering};

use mesh_dubbo::{Request, RpcResult, Value};
use mesh_registry::dubbo::metadata_info::{MetadataInfo, ServiceInfo};

use crate::dubbo_writers::app_level::{ServiceDescription, METADATA_SERVICE, METADATA_SERVICE_VERSION};

/// The method a consumer calls.
pub const GET_METADATA_INFO: &str = "getMetadataInfo";
/// Its parameter types.
pub const GET_METADATA_INFO_TYPES: &str = "Ljava/lang/String;";

/// What the simulator's MetadataService answers, shared by all its listeners.
#[derive(Debug)]
pub struct SimMetadata {
    app: String,
    info: MetadataInfo,
    answer: Value<'static>,
    calls: AtomicU64,
}

/// A MetadataService call's outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataAnswer {
    /// Not a MetadataService call: the caller handles it.
    NotMine,
    /// The answer (a `MetadataInfo`, or null for an unknown revision).
    Answer(RpcResult<'static>),
    /// A Java provider's error message (status 70, SERVICE_ERROR).
    Error(String),
}

impl SimMetadata {
    /// The MetadataService of `app` exporting `services`.
    pub fn new(app: &str, services: &[ServiceDescription]) -> SimMetadata {
        let info = MetadataInfo::new(app, services.iter().map(service_info));
        SimMetadata {
            app: app.to_owned(),
            answer: info.to_value(),
            info,
            calls: AtomicU64::new(0),
        }
    }

    /// The revision it serves (Java's, of its services).
    pub fn revision(&self) -> &str {
        &self.info.revision
    }

    /// `getMetadataInfo` calls answered so far (with the info or with null).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Answers `req` if it is a call of this MetadataService (path or `interface` attachment, `group` = the
    /// application, version `1.0.0` or none).
    pub fn answer(&self, req: &Request<'_>) -> MetadataAnswer {
        let text = |k: &str| req.attachment(k).and_then(Value::as_str);
        let is_metadata_service =
            req.service == METADATA_SERVICE || text("interface") == Some(METADATA_SERVICE);
        if !is_metadata_service {
            return MetadataAnswer::NotMine;
        }
        let group = text("group").unwrap_or("");
        let version = req.version.as_deref().or(text("version")).unwrap_or("");
        if group != self.app || !(version.is_empty() || version == METADATA_SERVICE_VERSION) {
            return MetadataAnswer::Error(format!(
                "org.apache.dubbo.remoting.RemotingException: Not found exported service: \
                 {group}/{METADATA_SERVICE}:{version} in [{}/{METADATA_SERVICE}:{METADATA_SERVICE_VERSION}], \
                 may be version or group mismatch",
                self.app
            ));
        }
        if req.method != GET_METADATA_INFO || req.param_types != GET_METADATA_INFO_TYPES {
            return MetadataAnswer::Error(format!(
                "org.apache.dubbo.rpc.RpcException: Failed to invoke remote proxy method {} to {METADATA_SERVICE}, \
                 cause: org.apache.dubbo.common.bytecode.NoSuchMethodException: Not found method \"{}\" with \
                 parameter types \"{}\" in class {METADATA_SERVICE}.",
                req.method, req.method, req.param_types
            ));
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        match req.args.as_slice() {
            [Value::String(r)] if *r == self.info.revision => {
                MetadataAnswer::Answer(RpcResult::Value(self.answer.clone()))
            }
            _ => MetadataAnswer::Answer(RpcResult::Null),
        }
    }
}

/// The registry model's `ServiceInfo` of a description.
fn service_info(s: &ServiceDescription) -> ServiceInfo {
    ServiceInfo {
        name: s.name.clone(),
        group: s.group.clone(),
        version: s.version.clone(),
        protocol: Some(s.protocol.clone()),
        port: i32::from(s.port),
        path: Some(s.path.clone()),
        params: s.params.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dubbo_writers::app_level::{java33_service, java_revision};
    use crate::dubbo_writers::Provider;
    use bytes::BytesMut;
    use mesh_dubbo::{Body, Codec, Decoded, Response, Serialization};

    fn services() -> Vec<ServiceDescription> {
        ["a.B", "c.D"]
            .iter()
            .map(|i| java33_service(&Provider::new(i, "127.1.0.1", 20880)))
            .collect()
    }

    fn call(
        service: &str,
        group: &str,
        method: &str,
        types: &str,
        args: Vec<Value<'static>>,
    ) -> Request<'static> {
        Request {
            dubbo_version: "2.0.2".into(),
            service: service.to_owned().into(),
            version: Some(METADATA_SERVICE_VERSION.into()),
            method: method.to_owned().into(),
            param_types: types.to_owned().into(),
            args,
            attachments: vec![("group".into(), Value::from(group.to_owned()))],
        }
    }

    /// The answer goes through the Dubbo codec (hessian2) and back, then mesh-registry's reader.
    #[test]
    fn answer_decodes_as_the_metadata_info_of_the_written_revision() {
        let s = services();
        let md = SimMetadata::new("bench-app", &s);
        assert_eq!(md.revision(), java_revision("bench-app", &s));
        let req = call(
            METADATA_SERVICE,
            "bench-app",
            GET_METADATA_INFO,
            GET_METADATA_INFO_TYPES,
            vec![Value::from(md.revision().to_owned())],
        );
        let MetadataAnswer::Answer(result) = md.answer(&req) else {
            panic!("no answer")
        };
        let codec = Codec::default();
        let mut buf = BytesMut::new();
        codec
            .encode_response(
                &mut buf,
                7,
                Serialization::Hessian2,
                &Response::Ok {
                    result,
                    attachments: None,
                },
            )
            .unwrap();
        let Ok(Decoded::Frame(frame)) = codec.decode_frame(&mut buf) else {
            panic!("no frame")
        };
        let Body::Response(Response::Ok {
            result: RpcResult::Value(v),
            ..
        }) = codec.decode_body(&frame.header, &frame.body).unwrap()
        else {
            panic!("not a value")
        };
        let info = MetadataInfo::from_value(&v).unwrap();
        assert_eq!(
            (info.app.as_str(), info.revision.as_str()),
            ("bench-app", md.revision())
        );
        let keys: Vec<&str> = info.services.keys().map(String::as_str).collect();
        assert_eq!(keys, ["a.B:dubbo", "c.D:dubbo"]);
        assert_eq!(info.services["c.D:dubbo"].port, 20880);
        assert_eq!(info.services["a.B:dubbo"].params, s[0].params);
        assert_eq!(md.calls(), 1);
    }

    #[test]
    fn unknown_revision_is_null_other_calls_are_errors_or_not_mine() {
        let md = SimMetadata::new("bench-app", &services());
        let unknown = call(
            METADATA_SERVICE,
            "bench-app",
            GET_METADATA_INFO,
            GET_METADATA_INFO_TYPES,
            vec![Value::from("nope".to_owned())],
        );
        assert_eq!(md.answer(&unknown), MetadataAnswer::Answer(RpcResult::Null));
        assert_eq!(md.calls(), 1);
        let wrong_group = call(
            METADATA_SERVICE,
            "other",
            GET_METADATA_INFO,
            GET_METADATA_INFO_TYPES,
            vec![],
        );
        assert!(
            matches!(md.answer(&wrong_group), MetadataAnswer::Error(m) if m.contains("Not found exported service"))
        );
        let other_method = call(METADATA_SERVICE, "bench-app", "getMetadataInfos", "", vec![]);
        assert!(
            matches!(md.answer(&other_method), MetadataAnswer::Error(m) if m.contains("getMetadataInfos"))
        );
        let hello = call("com.x.Hello", "", "hash", "Ljava/lang/String;", vec![]);
        assert_eq!(md.answer(&hello), MetadataAnswer::NotMine);
        assert_eq!(md.calls(), 1);
    }
}
