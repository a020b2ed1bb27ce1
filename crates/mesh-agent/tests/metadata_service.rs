//! The provider agent's own `org.apache.dubbo.metadata.MetadataService` (Dubbo 3 application-level
//! discovery), end to end with real processes: etcd, the provider simulator behind the agent, the agent
//! binary. A Dubbo client calls the agent's port the way a Java Dubbo 3 consumer calls a provider's
//! MetadataService (group = application, version 1.0.0); the answers are read by our codec and, as an
//! independent check, by npm hessian.js (`crates/mesh-dubbo/tests/interop/metadata_service.js`) and two
//! Dubbo client libraries; what is served is checked against what the agent registered in etcd (its
//! provider URLs, and the revision of its Dubbo 3 instance).
//! Loopback only; every wait is bounded; every process is stopped when its guard drops.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use bytes::BytesMut;
use mesh_dubbo::{
    java_string_hash, Body, Codec, Decoded, Frame, Header, Request, Response, RpcResult, Serialization,
    Status, Value,
};
use mesh_registry::dubbo::app_registration::AppRegistration;
use mesh_registry::dubbo::instance::ServiceInstance;
use mesh_registry::dubbo::metadata_info::{MetadataInfo, METADATA_SERVICE_INTERFACE, SERVICE_INFO_CLASS};
use mesh_testkit::etcd::EtcdServer;
use mesh_testkit::node_peers::{check_installed, interop_dir};
use mesh_testkit::process::free_port;
use serde_json::Value as Json;

mod common;
use common::*;

const APP: &str = "demo-app";
const TOKEN: &str = "s3cret";
const OTHER_SERVICE: &str = "g1/org.example.Other:2.0";

/// One call on a fresh connection to the agent: the answer frame's header and decoded response.
fn call(port: u16, req: &Request<'_>) -> (Header, Response<'static>) {
    let codec = Codec::default();
    let mut out = BytesMut::new();
    codec
        .encode_request_message(&mut out, Header::request(42, Serialization::Hessian2, true), req)
        .unwrap();
    let mut s = TcpStream::connect(addr(port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&out).unwrap();
    let f = read_frame(&mut s).expect("an answer");
    assert_eq!(f.header.id, 42);
    match codec.decode_body(&f.header, &f.body).unwrap() {
        Body::Response(r) => (f.header, r.into_owned()),
        other => panic!("{other:?}"),
    }
}

/// The next frame (at most 10 s, the socket's read timeout); `None` when the connection closed.
fn read_frame(s: &mut TcpStream) -> Option<Frame> {
    let codec = Codec::default();
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Ok(Decoded::Frame(f)) = codec.decode_frame(&mut buf) {
            return Some(f);
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A MetadataService call as Java 3's `MetadataUtils` + `DubboInvoker` send it: `path`, `interface`,
/// `version`, `group` (= the application) and `timeout` attachments; no token.
fn metadata_call(
    method: &str,
    desc: &str,
    args: Vec<Value<'static>>,
    group: Option<&str>,
) -> Request<'static> {
    let mut attachments = vec![
        ("path".into(), Value::str(METADATA_SERVICE_INTERFACE)),
        ("interface".into(), Value::str(METADATA_SERVICE_INTERFACE)),
        ("version".into(), Value::str("1.0.0")),
        ("timeout".into(), Value::str("5000")),
    ];
    if let Some(g) = group {
        attachments.push(("group".into(), Value::from(g.to_owned())));
    }
    Request {
        dubbo_version: "2.0.2".into(),
        service: METADATA_SERVICE_INTERFACE.into(),
        version: Some("1.0.0".into()),
        method: method.to_owned().into(),
        param_types: desc.to_owned().into(),
        args,
        attachments,
    }
}

/// `hash(arg)` to the challenge's interface, with the token when given.
fn hash_call(arg: &str, token: Option<&str>) -> Request<'static> {
    let mut attachments = vec![("path".into(), Value::str(IFACE))];
    if let Some(t) = token {
        attachments.push(("token".into(), Value::from(t.to_owned())));
    }
    Request {
        dubbo_version: "2.0.2".into(),
        service: IFACE.into(),
        version: Some("0.0.0".into()),
        method: "hash".into(),
        param_types: "Ljava/lang/String;".into(),
        args: vec![Value::from(arg.to_owned())],
        attachments,
    }
}

/// The result value of an OK answer, with the check that it carries Java 3's answer attachments.
fn ok_value(resp: &Response<'static>) -> Option<Value<'static>> {
    match resp {
        Response::Ok { result, attachments } => {
            let atts = attachments
                .as_ref()
                .expect("flags 3 to 5 for protocol version 2.0.2");
            assert_eq!(atts, &vec![("dubbo".into(), Value::str("2.0.2"))]);
            match result {
                RpcResult::Value(v) => Some(v.clone()),
                RpcResult::Null => None,
                RpcResult::Exception(e) => panic!("exception {e:?}"),
            }
        }
        Response::Error { status, message } => panic!("status {status:?}: {message}"),
    }
}

/// What the agent's `getMetadataInfo` must answer: the `MetadataInfo` Java builds from the provider URLs the
/// agent registered (read back from etcd), with Java's revision.
fn expected_metadata(etcd: &EtcdServer, port: u16) -> MetadataInfo {
    AppRegistration {
        application: APP.into(),
        host: "127.0.0.1".into(),
        port,
        provider_urls: registered_provider_urls(etcd),
    }
    .metadata_info()
}

#[test]
fn the_provider_agent_answers_metadata_service_calls_itself_and_forwards_the_rest() {
    let etcd = EtcdServer::start().unwrap();
    let (_sim, sim_port) = sim(&["--latency-ms", "1"]);
    let port = free_port().unwrap();
    let _agent = provider_agent(
        port,
        sim_port,
        &[
            "--etcd",
            etcd.client_url(),
            "--application",
            APP,
            "--token",
            TOKEN,
            "--service",
            IFACE,
            "--service",
            OTHER_SERVICE,
        ],
    );
    wait_until("both provider URLs in etcd", Duration::from_secs(15), || {
        registered_provider_urls(&etcd).len() == 2
    });
    let expected = expected_metadata(&etcd, port);
    assert_eq!(expected.services.len(), 2);
    assert_ne!(expected.revision, "0");
    // The instance the agent registered (register_mode `all`, the default) advertises that revision.
    let instance_key = format!("/services/{APP}/127.0.0.1:{port}");
    let mut advertised = String::new();
    wait_until("the instance in etcd", Duration::from_secs(15), || {
        advertised = etcdctl(&etcd, &["get", &instance_key, "--print-value-only"]);
        !advertised.trim().is_empty()
    });
    let (instance, _) = ServiceInstance::from_json(advertised.trim().as_bytes()).unwrap();
    assert_eq!(
        instance.revision(),
        Some(expected.revision.as_str()),
        "{advertised}"
    );

    // getMetadataInfo(revision): the application's MetadataInfo, no token needed.
    let req = metadata_call(
        "getMetadataInfo",
        "Ljava/lang/String;",
        vec![Value::from(expected.revision.clone())],
        Some(APP),
    );
    let (h, resp) = call(port, &req);
    assert_eq!(
        (h.status, h.serialization().unwrap()),
        (Status::OK, Serialization::Hessian2)
    );
    let info = MetadataInfo::from_value(&ok_value(&resp).expect("a MetadataInfo")).unwrap();
    assert_eq!(info, expected);
    assert_eq!(
        info.revision,
        info.calc_revision(),
        "the revision is Java's for what is served"
    );
    let keys: Vec<&str> = info.services.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            format!("{IFACE}:dubbo").as_str(),
            "g1/org.example.Other:2.0:dubbo"
        ]
    );

    // An unknown or blank revision: null, as Java's MetadataServiceDelegation answers.
    for revision in ["0123456789abcdef", ""] {
        let req = metadata_call(
            "getMetadataInfo",
            "Ljava/lang/String;",
            vec![Value::from(revision.to_owned())],
            Some(APP),
        );
        assert_eq!(ok_value(&call(port, &req).1), None, "{revision:?}");
    }
    // The cheap methods.
    assert_eq!(
        ok_value(&call(port, &metadata_call("serviceName", "", vec![], Some(APP))).1),
        Some(Value::str(APP))
    );
    assert_eq!(
        ok_value(&call(port, &metadata_call("version", "", vec![], Some(APP))).1),
        Some(Value::str("1.0.0"))
    );
    match ok_value(&call(port, &metadata_call("getMetadataInfos", "", vec![], Some(APP))).1) {
        Some(Value::List(l)) => {
            assert_eq!(l.items.len(), 1);
            assert_eq!(MetadataInfo::from_value(&l.items[0]).unwrap(), expected);
        }
        other => panic!("{other:?}"),
    }
    // A method the agent does not serve: an UnsupportedOperationException result.
    match call(port, &metadata_call("getExportedURLs", "", vec![], Some(APP))).1 {
        Response::Ok {
            result: RpcResult::Exception(Value::Object(o)),
            attachments: Some(_),
        } => assert_eq!(o.class, "java.lang.UnsupportedOperationException"),
        other => panic!("{other:?}"),
    }
    // Java's errors: wrong or missing group, 70 (not found exported service); unknown method, 40.
    for group in [Some("other-app"), None] {
        match call(port, &metadata_call("serviceName", "", vec![], group)).1 {
            Response::Error { status, message } => {
                assert_eq!(status, Status::SERVICE_ERROR, "{group:?}");
                assert!(message.contains("Not found exported service"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
    match call(
        port,
        &metadata_call("nope", "Ljava/lang/String;", vec![Value::str("x")], Some(APP)),
    )
    .1
    {
        Response::Error { status, message } => {
            assert_eq!(status, Status::BAD_REQUEST);
            assert!(
                message.contains("Service not found:org.apache.dubbo.metadata.MetadataService, nope"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }

    // Every other call still goes to the local provider, under the token.
    match call(port, &hash_call("hello", Some(TOKEN))).1 {
        Response::Ok {
            result: RpcResult::Value(v),
            ..
        } => assert_eq!(v, Value::Int(java_string_hash("hello"))),
        other => panic!("{other:?}"),
    }
    match call(port, &hash_call("hello", None)).1 {
        Response::Error { status, message } => {
            assert_eq!(status, Status::BAD_REQUEST);
            assert!(message.contains("Invalid token"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    // The independent check: hessian.js writes the call and reads the answer; then two Dubbo client
    // libraries call it as a reference to the MetadataService.
    hessian_js_reads_the_metadata_info(port, &expected);
    for client in ["sofa", "dubbo2js"] {
        node_libraries_call_it(client, port, &expected);
    }
}

/// Runs `metadata_service.js <port> <group> <method> [arg]`; its one JSON line.
fn node_call(port: u16, group: &str, method: &str, arg: Option<&str>) -> Json {
    node_run(None, port, group, method, arg)
}

/// The same through a Dubbo client library (`METADATA_CLIENT`); `None`: hessian.js alone.
fn node_run(client: Option<&str>, port: u16, group: &str, method: &str, arg: Option<&str>) -> Json {
    check_installed().unwrap();
    let mut cmd = Command::new("node");
    if let Some(c) = client {
        cmd.env("METADATA_CLIENT", c);
    }
    cmd.arg("metadata_service.js")
        .arg(port.to_string())
        .arg(group)
        .arg(method)
        .args(arg)
        .current_dir(interop_dir());
    let out = cmd.output().expect("node must be installed");
    assert!(
        out.status.success(),
        "metadata_service.js: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A string field as hessian.js read it with types (strings come back bare, null as null).
fn js_str(v: &Json) -> Option<String> {
    match v {
        Json::Null => None,
        Json::String(s) => Some(s.clone()),
        other => panic!("not a string: {other}"),
    }
}

fn hessian_js_reads_the_metadata_info(port: u16, expected: &MetadataInfo) {
    let out = node_call(port, APP, "getMetadataInfo", Some(&expected.revision));
    assert_eq!(
        (out["status"].as_u64(), out["flag"].as_u64()),
        (Some(20), Some(4)),
        "{out}"
    );
    assert_eq!(out["attachments"], serde_json::json!({"dubbo": "2.0.2"}));
    // The class definitions, in hessian-lite's field order.
    assert_eq!(
        out["classes"],
        serde_json::json!([
            {"name": "org.apache.dubbo.metadata.MetadataInfo", "fields": ["services", "revision", "app"]},
            {"name": SERVICE_INFO_CLASS, "fields": ["params", "path", "port", "protocol", "version", "group", "name"]},
        ])
    );
    let v = &out["value"];
    assert_eq!(v["$class"], "org.apache.dubbo.metadata.MetadataInfo");
    assert_eq!(js_str(&v["$"]["app"]).as_deref(), Some(APP));
    assert_eq!(
        js_str(&v["$"]["revision"]).as_deref(),
        Some(expected.revision.as_str())
    );
    let services = &v["$"]["services"];
    assert_eq!(services["$class"], "java.util.concurrent.ConcurrentHashMap");
    let services = services["$"].as_object().unwrap();
    assert_eq!(services.len(), expected.services.len());
    for (key, want) in &expected.services {
        let s = &services[key.as_str()];
        assert_eq!(s["$class"], SERVICE_INFO_CLASS, "{key}");
        let f = &s["$"];
        assert_eq!(js_str(&f["name"]), Some(want.name.clone()), "{key}");
        assert_eq!(js_str(&f["group"]), want.group, "{key}");
        assert_eq!(js_str(&f["version"]), want.version, "{key}");
        assert_eq!(js_str(&f["protocol"]), want.protocol, "{key}");
        assert_eq!(js_str(&f["path"]), want.path, "{key}");
        assert_eq!(f["port"].as_i64(), Some(i64::from(want.port)), "{key}");
        assert_eq!(f["params"]["$class"], "java.util.HashMap", "{key}");
        let params: BTreeMap<String, String> = f["params"]["$"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), js_str(v).unwrap()))
            .collect();
        assert_eq!(params, want.params, "{key}");
    }
    // Unknown revision: flag 5 (null with attachments); a wrong group: status 70, as Java.
    let out = node_call(port, APP, "getMetadataInfo", Some("nope"));
    assert_eq!(
        (out["status"].as_u64(), out["flag"].as_u64()),
        (Some(20), Some(5)),
        "{out}"
    );
    let out = node_call(port, "other-app", "getMetadataInfo", Some(&expected.revision));
    assert_eq!(out["status"].as_u64(), Some(70), "{out}");
    let out = node_call(port, APP, "getExportedURLs", None);
    assert_eq!(out["flag"].as_u64(), Some(3), "{out}");
    assert_eq!(out["value"]["$class"], "java.lang.UnsupportedOperationException");
}

/// sofa-rpc-node's RpcClient or dubbo2.js calls the MetadataService as a reference with group = the
/// application and version 1.0.0: the `MetadataInfo` it gets (untyped, as the library returns it) has
/// every field; an unknown revision is null; a wrong group is an error.
fn node_libraries_call_it(client: &str, port: u16, expected: &MetadataInfo) {
    let out = node_run(
        Some(client),
        port,
        APP,
        "getMetadataInfo",
        Some(&expected.revision),
    );
    assert_eq!(out["ok"], true, "{client}: {out}");
    let v = &out["value"];
    assert_eq!(js_str(&v["app"]).as_deref(), Some(APP), "{client}");
    assert_eq!(
        js_str(&v["revision"]).as_deref(),
        Some(expected.revision.as_str()),
        "{client}"
    );
    let services = v["services"].as_object().unwrap();
    assert_eq!(services.len(), expected.services.len(), "{client}");
    for (key, want) in &expected.services {
        let f = &services[key.as_str()];
        assert_eq!(js_str(&f["name"]), Some(want.name.clone()), "{client} {key}");
        assert_eq!(js_str(&f["group"]), want.group, "{client} {key}");
        assert_eq!(js_str(&f["version"]), want.version, "{client} {key}");
        assert_eq!(js_str(&f["path"]), want.path, "{client} {key}");
        assert_eq!(f["port"].as_i64(), Some(i64::from(want.port)), "{client} {key}");
        let params: BTreeMap<String, String> = f["params"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), js_str(v).unwrap()))
            .collect();
        assert_eq!(params, want.params, "{client} {key}");
    }
    let out = node_run(Some(client), port, APP, "getMetadataInfo", Some("nope"));
    assert_eq!(
        (&out["ok"], &out["value"]),
        (&Json::Bool(true), &Json::Null),
        "{client}: {out}"
    );
    let out = node_run(Some(client), port, "other-app", "serviceName", None);
    assert_eq!(out["ok"], false, "{client}: {out}");
    assert!(
        out["error"]
            .as_str()
            .unwrap()
            .contains("Not found exported service"),
        "{client}: {out}"
    );
}
