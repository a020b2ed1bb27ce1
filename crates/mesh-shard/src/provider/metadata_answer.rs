//! The provider agent's answers to `org.apache.dubbo.metadata.MetadataService` calls, as a Java Dubbo 3.3
//! provider gives them (pure: a decoded request and the served metadata in, a response out).
//!
//! Sources (apache/dubbo, branch 3.3):
//! * `dubbo-registry/dubbo-registry-api/src/main/java/org/apache/dubbo/registry/client/metadata/
//!   MetadataServiceDelegation.java`: `getMetadataInfo(revision)` answers null for a blank or unknown
//!   revision; `getMetadataInfos()` the current `MetadataInfo`; `serviceName()` the application;
//!   `getServiceDefinition(..)` `""`; `version()` (a default method of `MetadataService.java`) `1.0.0`.
//! * `dubbo-config/dubbo-config-api/src/main/java/org/apache/dubbo/config/bootstrap/builders/
//!   InternalServiceConfigBuilder.java`: exported with group = application, version `1.0.0`, and
//!   `filter = "-default"`: no default filter runs, so no `TokenFilter` (the provider token does not
//!   apply), no `EchoFilter` and no `GenericFilter` (`$echo` and `$invoke` fail like unknown methods).
//! * `dubbo-rpc/dubbo-rpc-dubbo/src/main/java/org/apache/dubbo/rpc/protocol/dubbo/
//!   DecodeableRpcInvocation.java` (`decode`, `drawPts`): a method name and descriptor that match no
//!   method of the interface (unless generic or echo) break the request: status 40 `Fail to decode
//!   request due to: java.lang.IllegalArgumentException: Service not found:<path>, <method>`
//!   (`HeaderExchangeHandler.handleRequest`). The `path` and `version` attachments are set from the body
//!   and then overridden by the request's own attachments.
//! * `.../DubboProtocol.java` `getInvoker`: the exporter is looked up by `group/path:version:port`
//!   (`ProtocolUtils.serviceKey`, `GroupServiceKeyCache`: no group part when the group is empty, no
//!   version part when it is empty, `0.0.0` or `*`) from the `path`, `version` and `group` attachments;
//!   none: status 70 "Not found exported service: .. may be version or group mismatch ..".
//! * `dubbo-rpc/dubbo-rpc-api/src/main/java/org/apache/dubbo/rpc/proxy/AbstractProxyInvoker.java` and
//!   `dubbo-common/.../bytecode/Wrapper.java`: a method the class lacks (reachable only with an empty
//!   descriptor, or as `$echo`/`$invoke`): status 70 "Failed to invoke remote proxy method ..".
//! * `.../DubboCodec.java` `encodeResponseData`: result flags with attachments iff the request's protocol
//!   version is in 2.0.2..=2.0.99 (`Version.isSupportResponseAttachment`); the answer's attachments are
//!   then `dubbo` = `2.0.2` (no filter adds any other).
//!
//! Where the agent differs: Java's error messages end with a stack trace and the invocation; the
//! agent's stop after the first line. MetadataService methods Java implements with data the agent does
//! not keep (`getMetadataURL`, `getExportedURLs`, `getSubscribedURLs`, `getExportedServiceURLs`,
//! `exportInstanceMetadata`, `getInstanceMetadataChangedListenerMap`, `getAndListenInstanceMetadata`)
//! answer a `java.lang.UnsupportedOperationException`, as Java's own `MetadataService.getSubscribedURLs`
//! default does.

use std::borrow::Cow;
use std::net::SocketAddr;

use mesh_dubbo::message::supports_response_attachments;
use mesh_dubbo::{List, Object, Request, Response, RpcResult, Status, Value};
use mesh_registry::dubbo::metadata_info::{
    GET_METADATA_INFO, METADATA_SERVICE_INTERFACE, METADATA_SERVICE_VERSION,
};

use super::metadata_service::ServedMetadata;

/// The protocol version a provider writes into its answers' attachments (`Version.getProtocolVersion`).
const PROTOCOL_VERSION: &str = "2.0.2";

/// The class Java's MetadataService is implemented by (named in "not found method" answers).
const DELEGATION_CLASS: &str = "org.apache.dubbo.registry.client.metadata.MetadataServiceDelegation";

/// The descriptor of one `String` parameter.
const STRING: &str = "Ljava/lang/String;";

/// What a MetadataService method does at the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    GetMetadataInfo,
    GetMetadataInfos,
    ServiceName,
    Version,
    /// `getServiceDefinition(..)`: `""` in Java's `MetadataServiceDelegation`.
    EmptyServiceDefinition,
    /// A method of the interface the agent does not serve.
    Unsupported,
}

/// The methods of `org.apache.dubbo.metadata.MetadataService` (3.3): name, JVM descriptor, what the agent
/// does. Java matches name and descriptor exactly (`ServiceDescriptor.getMethod(name, desc)`).
const METHODS: [(&str, &str, Method); 17] = [
    (GET_METADATA_INFO, STRING, Method::GetMetadataInfo),
    ("getMetadataInfos", "", Method::GetMetadataInfos),
    ("serviceName", "", Method::ServiceName),
    ("version", "", Method::Version),
    (
        "getServiceDefinition",
        "Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;",
        Method::EmptyServiceDefinition,
    ),
    ("getServiceDefinition", STRING, Method::EmptyServiceDefinition),
    ("getMetadataURL", "", Method::Unsupported),
    ("getSubscribedURLs", "", Method::Unsupported),
    ("getExportedURLs", "", Method::Unsupported),
    ("getExportedURLs", STRING, Method::Unsupported),
    (
        "getExportedURLs",
        "Ljava/lang/String;Ljava/lang/String;",
        Method::Unsupported,
    ),
    (
        "getExportedURLs",
        "Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;",
        Method::Unsupported,
    ),
    (
        "getExportedURLs",
        "Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;",
        Method::Unsupported,
    ),
    ("getExportedServiceURLs", "", Method::Unsupported),
    ("exportInstanceMetadata", STRING, Method::Unsupported),
    ("getInstanceMetadataChangedListenerMap", "", Method::Unsupported),
    (
        "getAndListenInstanceMetadata",
        "Ljava/lang/String;Lorg/apache/dubbo/metadata/InstanceMetadataChangedListener;",
        Method::Unsupported,
    ),
];

/// The descriptor of a generic call (`$invoke`), which Java's decoder lets through for any service.
const GENERIC_DESC: &str = "Ljava/lang/String;[Ljava/lang/String;[Ljava/lang/Object;";

/// Where a call arrived: the agent's listening address (its port is the exporter's port) and the peer.
#[derive(Debug, Clone, Copy)]
pub(super) struct CallSite {
    pub listen: SocketAddr,
    pub peer: Option<SocketAddr>,
}

/// The first string attachment with this key.
fn text_attachment<'r>(req: &'r Request<'_>, key: &str) -> Option<&'r str> {
    req.attachment(key).and_then(Value::as_str)
}

/// Is this a call to the MetadataService (by the body's service path or the `path` attachment)? Such
/// calls are answered by the agent and never forwarded.
pub(super) fn is_metadata_service_call(req: &Request<'_>) -> bool {
    req.service == METADATA_SERVICE_INTERFACE
        || text_attachment(req, "path") == Some(METADATA_SERVICE_INTERFACE)
}

/// Java's exporter key (`ProtocolUtils.serviceKey`): `group/path:version:port`, without the group when
/// it is empty and without the version when it is empty, `0.0.0` or `*`.
fn exporter_key(group: Option<&str>, path: &str, version: Option<&str>, port: u16) -> String {
    let mut key = String::new();
    if let Some(g) = group.filter(|g| !g.is_empty()) {
        key.push_str(g);
        key.push('/');
    }
    key.push_str(path);
    if let Some(v) = version.filter(|v| !v.is_empty() && *v != "0.0.0" && *v != "*") {
        key.push(':');
        key.push_str(v);
    }
    key.push(':');
    key.push_str(itoa::Buffer::new().format(port));
    key
}

/// A `java.lang.UnsupportedOperationException` as hessian-lite writes a Throwable: fields
/// `suppressedExceptions` (the empty sentinel list), `stackTrace` (empty here), `cause` (the exception
/// itself: back-reference 0, as Java's unset cause is), `detailMessage`.
fn unsupported_operation(message: String) -> Value<'static> {
    Value::Object(Object {
        class: Cow::Borrowed("java.lang.UnsupportedOperationException"),
        fields: vec![
            (
                Cow::Borrowed("suppressedExceptions"),
                Value::List(List {
                    type_name: Some(Cow::Borrowed("java.util.Collections$EmptyList")),
                    items: Vec::new(),
                }),
            ),
            (
                Cow::Borrowed("stackTrace"),
                Value::List(List {
                    type_name: Some(Cow::Borrowed("[java.lang.StackTraceElement")),
                    items: Vec::new(),
                }),
            ),
            (Cow::Borrowed("cause"), Value::Ref(0)),
            (Cow::Borrowed("detailMessage"), Value::from(message)),
        ],
    })
}

fn error(status: Status, message: String) -> Response<'static> {
    Response::Error {
        status,
        message: Cow::Owned(message),
    }
}

/// `/ip:port`, as Java prints an `InetSocketAddress`.
fn java_addr(a: Option<SocketAddr>) -> String {
    a.map_or_else(|| "null".to_owned(), |a| format!("/{a}"))
}

/// The answer to a MetadataService call (see [`is_metadata_service_call`]), given what is served
/// (`None`: nothing published, so no MetadataService is exported).
pub(super) fn answer(
    req: &Request<'_>,
    served: Option<&ServedMetadata>,
    site: CallSite,
) -> Response<'static> {
    let method: &str = &req.method;
    let desc: &str = &req.param_types;
    // 1. Decoding (`drawPts`): the method must exist unless the descriptor is empty, generic or echo.
    let known = METHODS
        .iter()
        .find(|(name, d, _)| *name == method && *d == desc)
        .map(|(_, _, m)| *m);
    let generic_or_echo = (desc == GENERIC_DESC && (method == "$invoke" || method == "$invokeAsync"))
        || (desc == "Ljava/lang/Object;" && method == "$echo");
    if known.is_none() && !desc.is_empty() && !generic_or_echo {
        return error(
            Status::BAD_REQUEST,
            format!(
                "Fail to decode request due to: java.lang.IllegalArgumentException: Service not found:{}, {method}",
                req.service
            ),
        );
    }
    // 2. The exporter (`DubboProtocol.getInvoker`): path, version and group from the attachments (the
    // body's path and version unless the attachments say otherwise).
    let path = text_attachment(req, "path").unwrap_or(&req.service);
    let version = text_attachment(req, "version").or(req.version.as_deref());
    let group = text_attachment(req, "group");
    let port = site.listen.port();
    let wanted = exporter_key(group, path, version, port);
    let exported = served.map(|s| {
        exporter_key(
            Some(s.application()),
            METADATA_SERVICE_INTERFACE,
            Some(METADATA_SERVICE_VERSION),
            port,
        )
    });
    let served = match served {
        Some(s) if exported.as_deref() == Some(wanted.as_str()) => s,
        _ => {
            return error(
                Status::SERVICE_ERROR,
                format!(
                "org.apache.dubbo.remoting.RemotingException: Not found exported service: {wanted} in [{}], \
                     may be version or group mismatch , channel: consumer: {} --> provider: {}",
                exported.unwrap_or_default(),
                java_addr(site.peer),
                java_addr(Some(site.listen)),
            ),
            )
        }
    };
    // 3. The invocation.
    let Some(known) = known else {
        return error(
            Status::SERVICE_ERROR,
            format!(
                "org.apache.dubbo.rpc.RpcException: Failed to invoke remote proxy method {method} to \
                 dubbo://{}/{METADATA_SERVICE_INTERFACE}?group={}&version={METADATA_SERVICE_VERSION}, cause: \
                 Not found method \"{method}\" in class {DELEGATION_CLASS}.",
                site.listen,
                served.application()
            ),
        );
    };
    let result = match known {
        Method::GetMetadataInfo => match req.args.first().and_then(Value::as_str) {
            Some(revision) if !revision.is_empty() => served
                .find(revision)
                .map_or(RpcResult::Null, |info| RpcResult::Value(info.to_value())),
            _ => RpcResult::Null,
        },
        Method::GetMetadataInfos => RpcResult::Value(Value::List(List {
            type_name: None,
            items: served.current().map(|i| i.to_value()).into_iter().collect(),
        })),
        Method::ServiceName => RpcResult::Value(Value::from(served.application().to_owned())),
        Method::Version => RpcResult::Value(Value::str(METADATA_SERVICE_VERSION)),
        Method::EmptyServiceDefinition => RpcResult::Value(Value::str("")),
        Method::Unsupported => RpcResult::Exception(unsupported_operation(format!(
            "{METADATA_SERVICE_INTERFACE}.{method} is not served by the provider agent"
        ))),
    };
    let attachments = supports_response_attachments(&req.dubbo_version)
        .then(|| vec![(Cow::Borrowed("dubbo"), Value::str(PROTOCOL_VERSION))]);
    Response::Ok { result, attachments }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::metadata_service::MetadataPublisher;
    use mesh_registry::dubbo::metadata_info::{MetadataInfo, ServiceInfo};
    use proptest::prelude::*;

    const SITE: CallSite = CallSite {
        listen: SocketAddr::V4(std::net::SocketAddrV4::new(
            std::net::Ipv4Addr::new(127, 0, 0, 1),
            30000,
        )),
        peer: None,
    };

    fn info(services: &[&str]) -> MetadataInfo {
        MetadataInfo::new(
            "demo",
            services.iter().map(|s| ServiceInfo {
                name: (*s).to_owned(),
                group: None,
                version: None,
                protocol: Some("dubbo".into()),
                port: 30000,
                path: Some((*s).to_owned()),
                params: [("side".to_owned(), "provider".to_owned())].into(),
            }),
        )
    }

    fn served(infos: &[MetadataInfo]) -> ServedMetadata {
        let (mut publisher, _) = MetadataPublisher::new("demo", 0);
        for i in infos {
            publisher.publish(i.clone());
        }
        publisher.served().clone()
    }

    /// A Java 3 consumer's `getMetadataInfo(revision)` call (DubboInvoker's attachments).
    fn call(method: &str, desc: &str, args: Vec<Value<'static>>) -> Request<'static> {
        Request {
            dubbo_version: "2.0.2".into(),
            service: METADATA_SERVICE_INTERFACE.into(),
            version: Some(METADATA_SERVICE_VERSION.into()),
            method: method.to_owned().into(),
            param_types: desc.to_owned().into(),
            args,
            attachments: vec![
                ("path".into(), Value::str(METADATA_SERVICE_INTERFACE)),
                ("interface".into(), Value::str(METADATA_SERVICE_INTERFACE)),
                ("version".into(), Value::str(METADATA_SERVICE_VERSION)),
                ("group".into(), Value::str("demo")),
                ("timeout".into(), Value::str("5000")),
            ],
        }
    }

    fn value<'a>(resp: &'a Response<'a>) -> &'a Value<'a> {
        match resp {
            Response::Ok {
                result: RpcResult::Value(v),
                ..
            } => v,
            other => panic!("{other:?}"),
        }
    }

    fn with_attachment(
        mut req: Request<'static>,
        key: &'static str,
        v: Option<Value<'static>>,
    ) -> Request<'static> {
        req.attachments.retain(|(k, _)| k != key);
        if let Some(v) = v {
            req.attachments.push((key.into(), v));
        }
        req
    }

    #[test]
    fn metadata_service_calls_are_told_by_the_path_or_the_path_attachment() {
        assert!(is_metadata_service_call(&call("serviceName", "", vec![])));
        let mut other = call("hash", STRING, vec![Value::str("x")]);
        other.service = "com.example.Hello".into();
        let other = with_attachment(other, "path", Some(Value::str("com.example.Hello")));
        assert!(!is_metadata_service_call(&other));
        let by_attachment = with_attachment(other, "path", Some(Value::str(METADATA_SERVICE_INTERFACE)));
        assert!(is_metadata_service_call(&by_attachment));
    }

    #[test]
    fn get_metadata_info_answers_every_revision_still_kept_and_null_otherwise() {
        let (old, new) = (info(&["a.A"]), info(&["a.A", "b.B"]));
        let served = served(&[old.clone(), new.clone()]);
        for want in [&old, &new] {
            let resp = answer(
                &call(
                    GET_METADATA_INFO,
                    STRING,
                    vec![Value::from(want.revision.clone())],
                ),
                Some(&served),
                SITE,
            );
            assert_eq!(MetadataInfo::from_value(value(&resp)).unwrap(), *want);
            match &resp {
                Response::Ok { attachments, .. } => {
                    assert_eq!(
                        attachments.as_deref(),
                        Some(&[("dubbo".into(), Value::str("2.0.2"))][..])
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        for revision in [Value::str("0123"), Value::str(""), Value::Null, Value::Int(7)] {
            let resp = answer(
                &call(GET_METADATA_INFO, STRING, vec![revision]),
                Some(&served),
                SITE,
            );
            assert!(
                matches!(
                    resp,
                    Response::Ok {
                        result: RpcResult::Null,
                        attachments: Some(_)
                    }
                ),
                "{resp:?}"
            );
        }
    }

    #[test]
    fn the_result_flags_follow_the_callers_protocol_version() {
        let served = served(&[info(&["a.A"])]);
        for (version, with) in [
            ("2.0.2", true),
            ("2.0.99", true),
            ("2.0.1", false),
            ("2.7.0", false),
            ("x", false),
        ] {
            let mut req = call("version", "", vec![]);
            req.dubbo_version = version.into();
            match answer(&req, Some(&served), SITE) {
                Response::Ok {
                    result: RpcResult::Value(v),
                    attachments,
                } => {
                    assert_eq!(v, Value::str("1.0.0"));
                    assert_eq!(attachments.is_some(), with, "{version}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn the_cheap_methods_answer_what_java_answers() {
        let current = info(&["a.A"]);
        let served = served(&[info(&["z.Z"]), current.clone()]);
        let name = answer(&call("serviceName", "", vec![]), Some(&served), SITE);
        assert_eq!(value(&name), &Value::str("demo"));
        let infos = answer(&call("getMetadataInfos", "", vec![]), Some(&served), SITE);
        match value(&infos) {
            Value::List(List {
                type_name: None,
                items,
            }) => {
                assert_eq!(items.len(), 1);
                assert_eq!(MetadataInfo::from_value(&items[0]).unwrap(), current);
            }
            other => panic!("{other:?}"),
        }
        let def = answer(
            &call("getServiceDefinition", STRING, vec![Value::str("a.A")]),
            Some(&served),
            SITE,
        );
        assert_eq!(value(&def), &Value::str(""));
    }

    #[test]
    fn methods_the_agent_does_not_serve_answer_an_unsupported_operation_exception() {
        let served = served(&[info(&["a.A"])]);
        let resp = answer(&call("getExportedURLs", "", vec![]), Some(&served), SITE);
        match resp {
            Response::Ok {
                result: RpcResult::Exception(Value::Object(o)),
                attachments: Some(_),
            } => {
                assert_eq!(o.class, "java.lang.UnsupportedOperationException");
                let names: Vec<&str> = o.fields.iter().map(|(k, _)| k.as_ref()).collect();
                assert_eq!(
                    names,
                    ["suppressedExceptions", "stackTrace", "cause", "detailMessage"]
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn group_and_version_are_matched_as_javas_exporter_key() {
        let served = served(&[info(&["a.A"])]);
        let ok = |req: &Request<'_>| matches!(answer(req, Some(&served), SITE), Response::Ok { .. });
        let base = call("serviceName", "", vec![]);
        assert!(ok(&base));
        // No group attachment, another group, another or no version: not found, status 70.
        for (key, v) in [
            ("group", None),
            ("group", Some(Value::str("other"))),
            ("version", Some(Value::str("2.0.0"))),
            ("version", Some(Value::str("0.0.0"))),
        ] {
            let req = with_attachment(base.clone(), key, v.clone());
            match answer(&req, Some(&served), SITE) {
                Response::Error { status, message } => {
                    assert_eq!(status, Status::SERVICE_ERROR, "{key}={v:?}");
                    assert!(message.contains("Not found exported service"), "{message}");
                    assert!(
                        message.contains("[demo/org.apache.dubbo.metadata.MetadataService:1.0.0:30000]"),
                        "{message}"
                    );
                }
                other => panic!("{key}={v:?}: {other:?}"),
            }
        }
        // The version attachment is optional when the body carries it (Java sets it from the body).
        assert!(ok(&with_attachment(base.clone(), "version", None)));
        // Nothing published: nothing exported.
        assert!(matches!(
            answer(&base, None, SITE),
            Response::Error {
                status: Status::SERVICE_ERROR,
                ..
            }
        ));
    }

    #[test]
    fn unknown_methods_fail_in_decoding_or_at_invocation_as_in_java() {
        let served = served(&[info(&["a.A"])]);
        let status = |m: &str, d: &str, args| match answer(&call(m, d, args), Some(&served), SITE) {
            Response::Error { status, message } => (status, message.into_owned()),
            other => panic!("{other:?}"),
        };
        // A descriptor no method has: the request cannot be decoded, 40, whatever the group.
        let (s, why) = status("getMetadataInfo", "I", vec![Value::Int(1)]);
        assert_eq!(s, Status::BAD_REQUEST);
        assert!(why.contains("Service not found:org.apache.dubbo.metadata.MetadataService, getMetadataInfo"));
        assert_eq!(
            status("nope", STRING, vec![Value::str("x")]).0,
            Status::BAD_REQUEST
        );
        // No parameters, or echo / generic (no filter serves them): decoded, then not found at the
        // invocation, 70.
        for (m, d, args) in [
            ("nope", "", vec![]),
            ("$echo", "Ljava/lang/Object;", vec![Value::str("x")]),
            (
                "$invoke",
                GENERIC_DESC,
                vec![Value::str("serviceName"), Value::Null, Value::Null],
            ),
        ] {
            let (s, why) = status(m, d, args);
            assert_eq!(s, Status::SERVICE_ERROR, "{m}");
            assert!(why.contains(&format!("Not found method \"{m}\"")), "{why}");
        }
    }

    #[test]
    fn exporter_keys_are_javas() {
        assert_eq!(
            exporter_key(Some("g"), "a.B", Some("1.0.0"), 20880),
            "g/a.B:1.0.0:20880"
        );
        assert_eq!(exporter_key(None, "a.B", Some("0.0.0"), 1), "a.B:1");
        assert_eq!(exporter_key(Some(""), "a.B", Some("*"), 1), "a.B:1");
    }

    #[test]
    fn every_answer_goes_through_the_codec_and_back() {
        use bytes::BytesMut;
        use mesh_dubbo::{Body, Codec, Decoded, Serialization};
        let current = info(&["a.A", "b.B"]);
        let served = served(std::slice::from_ref(&current));
        let codec = Codec::default();
        let calls = [
            call(
                GET_METADATA_INFO,
                STRING,
                vec![Value::from(current.revision.clone())],
            ),
            call(GET_METADATA_INFO, STRING, vec![Value::str("unknown")]),
            call("getMetadataInfos", "", vec![]),
            call("getMetadataURL", "", vec![]),
            call("nope", STRING, vec![Value::str("x")]),
        ];
        for req in &calls {
            let resp = answer(req, Some(&served), SITE);
            let mut buf = BytesMut::new();
            codec
                .encode_response(&mut buf, 7, Serialization::Hessian2, &resp)
                .unwrap();
            let Ok(Decoded::Frame(f)) = codec.decode_frame(&mut buf) else {
                panic!("no frame")
            };
            let Body::Response(back) = codec.decode_body(&f.header, &f.body).unwrap() else {
                panic!("not a response")
            };
            assert_eq!(back, resp, "{}", req.method);
        }
    }
    fn arb_value() -> impl Strategy<Value = Value<'static>> {
        prop_oneof![
            Just(Value::Null),
            any::<i32>().prop_map(Value::Int),
            any::<bool>().prop_map(Value::Bool),
            "\\PC{0,40}".prop_map(Value::from),
            any::<u32>().prop_map(Value::Ref),
            prop::collection::vec("\\PC{0,8}".prop_map(Value::from), 0..3).prop_map(|items| Value::List(
                List {
                    type_name: None,
                    items
                }
            )),
        ]
    }

    fn arb_text(known: &'static [&'static str]) -> impl Strategy<Value = String> {
        prop_oneof![prop::sample::select(known).prop_map(str::to_owned), "\\PC{0,24}"]
    }

    proptest! {
        /// Whatever arrives (method, descriptor, arguments, attachments of any type), an answer comes
        /// back without a panic, and it encodes.
        #[test]
        fn any_call_gets_an_answer_that_encodes(
            method in arb_text(&["getMetadataInfo", "getMetadataInfos", "serviceName", "version", "getExportedURLs", "$echo", "$invoke"]),
            desc in arb_text(&["", "Ljava/lang/String;", "Ljava/lang/Object;", GENERIC_DESC]),
            dubbo_version in arb_text(&["2.0.2", "2.0.1", "2.7.0"]),
            args in prop::collection::vec(arb_value(), 0..3),
            group in prop::option::of(prop_oneof![Just(Value::str("demo")), arb_value()]),
            version in prop::option::of(prop_oneof![Just(Value::str("1.0.0")), arb_value()]),
            path in prop::option::of(prop_oneof![Just(Value::str(METADATA_SERVICE_INTERFACE)), arb_value()]),
            served_or_not in any::<bool>(),
        ) {
            use bytes::BytesMut;
            use mesh_dubbo::{Codec, Serialization};
            let mut req = call(&method, &desc, args);
            req.dubbo_version = dubbo_version.into();
            for (key, v) in [("group", group), ("version", version), ("path", path)] {
                req = with_attachment(req, key, v);
            }
            let served = served(&[info(&["a.A"])]);
            let resp = answer(&req, served_or_not.then_some(&served), SITE);
            let mut buf = BytesMut::new();
            prop_assert!(Codec::default().encode_response(&mut buf, 1, Serialization::Hessian2, &resp).is_ok());
        }
    }
}
