//! The provider agent's Dubbo 3 application-level registration, end to end with the binary and a real etcd:
//! the instance and the mapping written in `all` mode, and a SIGHUP that re-reads `provider.services`
//! from the file: new revision on the same lease, the new interface's URL key and mapping, the old ones
//! left as they were, and the MetadataService answering the new revision.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine as _;

use bytes::BytesMut;
use mesh_dubbo::{Body, Codec, Decoded, Header, Request, Response, RpcResult, Serialization, Value};
use mesh_registry::dubbo::instance::{InstanceShape, ServiceInstance};
use mesh_registry::dubbo::metadata_info::{MetadataInfo, METADATA_SERVICE_INTERFACE};
use mesh_testkit::etcd::EtcdServer;
use mesh_testkit::process::free_port;

use common::*;

/// The value and lease of `key` (`None` when absent).
fn get(etcd: &EtcdServer, key: &str) -> Option<(String, i64)> {
    let out = etcdctl(etcd, &["get", key, "-w", "json"]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let kv = json["kvs"].as_array()?.first()?.clone();
    let value = base64::engine::general_purpose::STANDARD
        .decode(kv["value"].as_str().unwrap())
        .unwrap();
    let value = String::from_utf8(value).unwrap();
    Some((value, kv["lease"].as_i64().unwrap_or(0)))
}

/// `getMetadataInfo(revision)` on the agent's port as a Java 3 consumer calls it (group = the application,
/// version 1.0.0); the `MetadataInfo` answered, `None` for a null answer.
fn served_metadata(port: u16, application: &str, revision: &str) -> Option<MetadataInfo> {
    let attachments = vec![
        ("path".into(), Value::str(METADATA_SERVICE_INTERFACE)),
        ("interface".into(), Value::str(METADATA_SERVICE_INTERFACE)),
        ("version".into(), Value::str("1.0.0")),
        ("group".into(), Value::from(application.to_owned())),
    ];
    let request = Request {
        dubbo_version: "2.0.2".into(),
        service: METADATA_SERVICE_INTERFACE.into(),
        version: Some("1.0.0".into()),
        method: "getMetadataInfo".into(),
        param_types: "Ljava/lang/String;".into(),
        args: vec![Value::from(revision.to_owned())],
        attachments,
    };
    let codec = Codec::default();
    let mut out = BytesMut::new();
    codec
        .encode_request_message(
            &mut out,
            Header::request(7, Serialization::Hessian2, true),
            &request,
        )
        .unwrap();
    let mut s = TcpStream::connect(addr(port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&out).unwrap();
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 16 * 1024];
    let frame = loop {
        if let Ok(Decoded::Frame(f)) = codec.decode_frame(&mut buf) {
            break f;
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "the agent closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    };
    match codec.decode_body(&frame.header, &frame.body).unwrap() {
        Body::Response(Response::Ok {
            result: RpcResult::Value(Value::Null),
            ..
        }) => None,
        Body::Response(Response::Ok {
            result: RpcResult::Value(v),
            ..
        }) => Some(MetadataInfo::from_value(&v).unwrap()),
        other => panic!("{other:?}"),
    }
}

fn file(etcd: &EtcdServer, services: &str) -> String {
    format!(
        "[provider]\napplication = \"orders\"\nservices = [{services}]\n\
         [etcd]\nendpoints = [\"{}\"]\nlease_ttl_s = 5\n",
        etcd.client_url()
    )
}

#[test]
fn all_mode_registers_the_instance_and_sighup_re_registers_a_new_revision() {
    let etcd = EtcdServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(&dir, &file(&etcd, "\"a.B\""));
    let (listen, dubbo) = (free_port().unwrap(), free_port().unwrap());
    let mut agent = provider_agent(listen, dubbo, &["--config", &path]);
    let instance_key = format!("/services/orders/127.0.0.1:{listen}");
    wait_until("the instance", Duration::from_secs(10), || {
        get(&etcd, &instance_key).is_some()
    });
    let (json, lease) = get(&etcd, &instance_key).unwrap();
    let (instance, shape) = ServiceInstance::from_json(json.as_bytes()).unwrap();
    assert_eq!(shape, InstanceShape::Java);
    assert_eq!(
        (instance.service_name.as_str(), instance.port),
        ("orders", listen)
    );
    let first_revision = instance.revision().unwrap().to_owned();
    assert_ne!(lease, 0, "the instance is on a lease");
    let urls = etcd_keys(&etcd, "/dubbo/a.B/providers/");
    assert_eq!(urls.len(), 1, "all mode: the interface-level key too");
    assert_eq!(get(&etcd, &urls[0]).unwrap().1, lease, "one lease for both");
    wait_until("the mapping of a.B", Duration::from_secs(10), || {
        get(&etcd, "/dubbo/mapping/a.B").is_some()
    });
    assert_eq!(
        get(&etcd, "/dubbo/mapping/a.B").unwrap(),
        ("orders".to_owned(), 0)
    );

    // One more service in the file, then SIGHUP.
    std::fs::write(&path, file(&etcd, "\"a.B\", \"c.D\"")).unwrap();
    agent.signal("HUP").unwrap();
    wait_until("the new revision", Duration::from_secs(10), || {
        get(&etcd, &instance_key).is_some_and(|(json, _)| {
            ServiceInstance::from_json(json.as_bytes()).unwrap().0.revision() != Some(first_revision.as_str())
        })
    });
    let (_, same_lease) = get(&etcd, &instance_key).unwrap();
    assert_eq!(same_lease, lease, "re-registered on the same lease");
    wait_until("c.D registered and mapped", Duration::from_secs(10), || {
        etcd_keys(&etcd, "/dubbo/c.D/providers/").len() == 1
            && get(&etcd, "/dubbo/mapping/c.D").is_some_and(|(v, _)| v == "orders")
    });
    assert_eq!(etcd_keys(&etcd, "/dubbo/a.B/providers/"), urls, "a.B untouched");
    assert!(
        agent.try_wait().unwrap().is_none(),
        "SIGHUP does not stop the provider"
    );
    // The MetadataService serves the revision the instance now carries (and still the first one).
    let (json, _) = get(&etcd, &instance_key).unwrap();
    let (now, _) = ServiceInstance::from_json(json.as_bytes()).unwrap();
    let served = served_metadata(listen, "orders", now.revision().unwrap()).expect("the new revision");
    assert_eq!(served.revision, now.revision().unwrap());
    assert_eq!(
        served.calc_revision(),
        served.revision,
        "the revision of what is served"
    );
    let mut names: Vec<&str> = served.services.values().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["a.B", "c.D"]);
    let old = served_metadata(listen, "orders", &first_revision).expect("the first revision, kept");
    assert_eq!(old.services.len(), 1);

    // A broken file is reported and changes nothing.
    std::fs::write(&path, "[provider\n").unwrap();
    agent.signal("HUP").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(agent.try_wait().unwrap().is_none());
    assert_eq!(etcd_keys(&etcd, "/dubbo/c.D/providers/").len(), 1);

    agent.terminate().unwrap();
    assert!(get(&etcd, &instance_key).is_none(), "deregistered on SIGTERM");
    assert!(etcd_keys(&etcd, "/dubbo/a.B/providers/").is_empty());
    assert_eq!(
        get(&etcd, "/dubbo/mapping/a.B").map(|(v, _)| v),
        Some("orders".to_owned()),
        "mappings stay, as Dubbo's do"
    );
}
