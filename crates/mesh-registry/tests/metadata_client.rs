//! The consumer's MetadataService client and resolver against real servers:
//!
//! * `metadata_provider.js` (crates/mesh-dubbo/tests/interop): a MetadataService whose requests are read and
//!   answers written by hessian.js, not by our codec: the `MetadataInfo` as a Java provider writes it,
//!   null for an unknown revision, an exception, a status-80 error when the request is not what a Java
//!   provider needs (service, version, group, method, descriptor);
//! * small tokio servers in this file for what a well-behaved peer never sends (oversize answers, bad
//!   frames, the wrong request id, silence, a closed port).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use bytes::BytesMut;
use mesh_dubbo::{Codec, Decoded, Response, RpcResult, Serialization};
use mesh_registry::app_metadata::{
    CachePolicy, ClientSettings, MetadataResolver, MetadataServiceClient, MetadataTarget, Resolution,
    ResolverConfig, Want,
};
use mesh_registry::dubbo::instance::{ServiceInstance, METADATA_SERVICE_URL_PARAMS_KEY, REVISION_KEY};
use mesh_registry::dubbo::metadata_info::{MetadataInfo, ServiceInfo};
use mesh_registry::dubbo::{AppDiscoveryError, MetadataCallFailure};
use mesh_testkit::node_peers::interop_dir;
use mesh_testkit::process::ChildGuard;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const APP: &str = "demo-provider";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// What the peers serve: two services, one with group/version, one without (null strings on the wire).
fn served() -> MetadataInfo {
    let greeter = ServiceInfo {
        name: "com.example.Greeter".into(),
        group: Some("g1".into()),
        version: Some("1.0.0".into()),
        protocol: Some("dubbo".into()),
        port: 20880,
        path: Some("com.example.Greeter".into()),
        params: BTreeMap::from([
            ("methods".to_owned(), "greet,hello".to_owned()),
            ("side".to_owned(), "provider".to_owned()),
            ("weight".to_owned(), "100".to_owned()),
        ]),
    };
    let echo = ServiceInfo {
        name: "com.example.Echo".into(),
        group: None,
        version: None,
        protocol: Some("dubbo".into()),
        port: -1,
        path: None,
        params: BTreeMap::from([("methods".to_owned(), "echo".to_owned())]),
    };
    MetadataInfo::new(APP, [greeter, echo])
}

/// The peer's argument: the services with absent (not null) optional fields, as the script reads them.
fn served_json(info: &MetadataInfo) -> String {
    let services: serde_json::Map<String, serde_json::Value> = info
        .services
        .iter()
        .map(|(k, s)| {
            let mut o = serde_json::Map::new();
            o.insert("name".into(), s.name.clone().into());
            for (field, v) in [
                ("group", &s.group),
                ("version", &s.version),
                ("protocol", &s.protocol),
                ("path", &s.path),
            ] {
                if let Some(v) = v {
                    o.insert(field.into(), v.clone().into());
                }
            }
            o.insert("port".into(), s.port.into());
            o.insert("params".into(), serde_json::to_value(&s.params).expect("params"));
            (k.clone(), serde_json::Value::Object(o))
        })
        .collect();
    serde_json::json!({"app": info.app, "revision": info.revision, "services": services}).to_string()
}

/// Starts `metadata_provider.js` serving `info`; returns it and its port.
fn start_node_peer(info: &MetadataInfo) -> (ChildGuard, u16) {
    mesh_testkit::node_peers::check_installed().expect("node interop peers installed");
    let mut cmd = Command::new("node");
    cmd.args(["metadata_provider.js", "0", &served_json(info)])
        .current_dir(interop_dir())
        .env("INTEROP_MAX_LIFETIME_SECS", "120");
    let mut peer = ChildGuard::spawn(&mut cmd).expect("start node");
    let port = peer
        .listening_port(Duration::from_secs(20))
        .expect("node peer listening");
    (peer, port)
}

/// An instance of `APP` at 127.0.0.1 whose MetadataService listens on `port`.
fn instance(instance_port: u16, metadata_port: u16, revision: &str) -> ServiceInstance {
    let mut i = ServiceInstance::new(APP, "127.0.0.1", instance_port);
    i.metadata.insert(REVISION_KEY.into(), revision.into());
    i.metadata.insert(
        METADATA_SERVICE_URL_PARAMS_KEY.into(),
        format!(r#"{{"version":"1.0.0","dubbo":"2.0.2","side":"provider","port":"{metadata_port}","protocol":"dubbo"}}"#),
    );
    i
}

fn target(port: u16) -> MetadataTarget {
    MetadataTarget::of(&instance(port, port, "r")).expect("target")
}

fn failure(e: AppDiscoveryError) -> MetadataCallFailure {
    match e {
        AppDiscoveryError::MetadataCall { failure, .. } => failure,
        other => panic!("not a MetadataCall error: {other:?}"),
    }
}

fn client(timeout: Duration) -> MetadataServiceClient {
    MetadataServiceClient::new(ClientSettings {
        timeout,
        ..ClientSettings::default()
    })
}

#[test]
fn reads_the_metadata_info_hessian_js_writes_and_its_refusals() {
    let info = served();
    let (_peer, port) = start_node_peer(&info);
    let rt = runtime();
    let c = client(Duration::from_secs(5));
    rt.block_on(async {
        let got = c
            .get_metadata_info(&target(port), &info.revision)
            .await
            .expect("MetadataInfo");
        assert_eq!(got, info, "decoded exactly what hessian.js wrote");
        assert_eq!(got.calc_revision(), info.revision);

        let unknown = c
            .get_metadata_info(&target(port), "no-such-revision")
            .await
            .unwrap_err();
        assert_eq!(failure(unknown), MetadataCallFailure::Null);

        let thrown = failure(c.get_metadata_info(&target(port), "throw").await.unwrap_err());
        assert_eq!(
            thrown,
            MetadataCallFailure::Exception("java.lang.IllegalStateException: metadata not ready".into())
        );

        // The group is the application: another application's MetadataService does not answer.
        let mut other = target(port);
        other.app = "other-app".into();
        match failure(c.get_metadata_info(&other, &info.revision).await.unwrap_err()) {
            MetadataCallFailure::Status { status: 80, message } => {
                assert!(message.contains("group other-app"), "{message}")
            }
            f => panic!("{f:?}"),
        }

        let closed = failure(c.get_metadata_info(&target(port), "close").await.unwrap_err());
        assert!(matches!(closed, MetadataCallFailure::Io(_)), "{closed:?}");
    });
    let quick = client(Duration::from_millis(300));
    let slow = rt
        .block_on(quick.get_metadata_info(&target(port), "slow"))
        .unwrap_err();
    assert_eq!(
        failure(slow),
        MetadataCallFailure::Timeout(Duration::from_millis(300))
    );
}

#[test]
fn the_resolver_fetches_each_revision_once_and_moves_on_from_a_dead_instance() {
    let info = served();
    let (_peer, port) = start_node_peer(&info);
    // A port nothing listens on: bound, then closed.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let rt = runtime();
    rt.block_on(async {
        let mut r = MetadataResolver::new(ResolverConfig {
            policy: CachePolicy {
                max_in_flight: 4,
                ..CachePolicy::default()
            },
            client: ClientSettings {
                timeout: Duration::from_secs(5),
                ..ClientSettings::default()
            },
        });
        // Three instances of one revision: the first (in key order) has a dead MetadataService.
        assert_eq!(r.want(&instance(1, dead, &info.revision)), Want::Pending);
        assert_eq!(r.want(&instance(2, port, &info.revision)), Want::Pending);
        assert_eq!(r.want(&instance(3, port, &info.revision)), Want::Pending);
        assert!(matches!(r.want(&instance(4, port, "0")), Want::Skip(_)));
        let mut outcomes = Vec::new();
        let resolved = loop {
            let next = tokio::time::timeout(Duration::from_secs(20), r.next()).await.expect("an outcome");
            match next {
                Resolution::Resolved { key, info: got, instances } => break (key, got, instances),
                failed @ Resolution::Failed { .. } => outcomes.push(failed),
            }
        };
        let (key, got, instances) = resolved;
        assert_eq!(key.revision, info.revision);
        assert_eq!(*got, info);
        assert_eq!(instances.len(), 3);
        assert_eq!(outcomes.len(), 1, "{outcomes:?}");
        assert!(matches!(
            &outcomes[0],
            Resolution::Failed { instance, error: AppDiscoveryError::MetadataCall { failure: MetadataCallFailure::Connect(_), .. }, attempts: 1, given_up: false, .. }
                if instance.port == 1
        ));
        let counters = r.counters();
        assert_eq!((counters.calls, counters.failures, counters.resolved), (2, 1, 1));
        // A fourth instance of the same revision: ready at once, no call.
        assert!(matches!(r.want(&instance(5, port, &info.revision)), Want::Ready(_)));
        assert!(
            tokio::time::timeout(Duration::from_millis(200), r.next()).await.is_err(),
            "nothing more to do"
        );
        assert_eq!(r.counters().calls, 2);
        // The wrong revision is never cached: the peer answers null for it, retried with backoff.
        assert_eq!(r.want(&instance(6, port, "other-revision")), Want::Pending);
        let next = tokio::time::timeout(Duration::from_secs(20), r.next()).await.expect("an outcome");
        assert!(
            matches!(&next, Resolution::Failed { error: AppDiscoveryError::MetadataCall { failure: MetadataCallFailure::Null, .. }, .. }),
            "{next:?}"
        );
        assert_eq!(r.get(APP, "other-revision"), None);
        // Forgetting its only instance forgets the revision.
        assert!(r.forget(&instance(6, port, "other-revision").key()).is_some());
        assert_eq!(r.cache().len(), 1);
    });
}

/// A server that reads one request frame and answers with `answer(request id)` raw bytes (then waits for
/// the client to close).
async fn raw_server(answer: impl Fn(u64) -> Vec<u8> + Send + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = BytesMut::new();
            let id = loop {
                if let Ok(Decoded::Frame(f)) = Codec::default().decode_frame(&mut buf) {
                    break f.header.id;
                }
                if socket.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                    break u64::MAX;
                }
            };
            let _ = socket.write_all(&answer(id)).await;
            let mut sink = [0u8; 64];
            let _ = socket.read(&mut sink).await;
        }
    });
    port
}

/// An OK answer to `id` carrying `result`, by our encoder.
fn ok_answer(id: u64, result: RpcResult<'static>) -> Vec<u8> {
    let mut buf = BytesMut::new();
    Codec::default()
        .encode_response(
            &mut buf,
            id,
            Serialization::Hessian2,
            &Response::Ok {
                result,
                attachments: None,
            },
        )
        .expect("encode");
    buf.to_vec()
}

#[test]
fn misbehaving_servers_give_typed_errors() {
    let rt = runtime();
    let c = MetadataServiceClient::new(ClientSettings {
        timeout: Duration::from_secs(2),
        max_answer: 1024,
    });
    rt.block_on(async {
        // A body longer than the limit: refused from the header.
        let port = raw_server(|id| {
            let mut h = vec![0xda, 0xbb, 0x02, 20];
            h.extend_from_slice(&id.to_be_bytes());
            h.extend_from_slice(&(1_000_000u32).to_be_bytes());
            h
        })
        .await;
        let e = failure(c.get_metadata_info(&target(port), "r").await.unwrap_err());
        assert_eq!(
            e,
            MetadataCallFailure::TooLarge {
                len: 1_000_000,
                max: 1024
            }
        );

        // Not Dubbo at all.
        let port = raw_server(|_| b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()).await;
        let e = failure(c.get_metadata_info(&target(port), "r").await.unwrap_err());
        assert!(matches!(e, MetadataCallFailure::Codec(_)), "{e:?}");

        // An answer to another request.
        let port = raw_server(|id| ok_answer(id + 1, RpcResult::Null)).await;
        let e = failure(c.get_metadata_info(&target(port), "r").await.unwrap_err());
        assert!(
            matches!(&e, MetadataCallFailure::Codec(m) if m.contains("instead of")),
            "{e:?}"
        );

        // A value that is not a MetadataInfo.
        let port = raw_server(|id| ok_answer(id, RpcResult::Value(mesh_dubbo::Value::str("hello")))).await;
        let e = c.get_metadata_info(&target(port), "r").await.unwrap_err();
        assert!(matches!(e, AppDiscoveryError::BadMetadataInfo { .. }), "{e:?}");

        // A status other than OK (what a provider without MetadataService answers).
        let port = raw_server(|id| {
            let mut buf = BytesMut::new();
            Codec::default()
                .encode_response(
                    &mut buf,
                    id,
                    Serialization::Hessian2,
                    &Response::Error {
                        status: mesh_dubbo::Status::SERVICE_NOT_FOUND,
                        message: "Not found exported service".into(),
                    },
                )
                .expect("encode");
            buf.to_vec()
        })
        .await;
        let e = failure(c.get_metadata_info(&target(port), "r").await.unwrap_err());
        assert_eq!(
            e,
            MetadataCallFailure::Status {
                status: 60,
                message: "Not found exported service".into()
            }
        );

        // Our own encoder's MetadataInfo (the provider agent's writer) reads back.
        let info = served();
        let value = info.to_value();
        let port = raw_server(move |id| ok_answer(id, RpcResult::Value(value.clone()))).await;
        let big = MetadataServiceClient::new(ClientSettings::default());
        assert_eq!(
            big.get_metadata_info(&target(port), "r").await.expect("info"),
            info
        );

        // Nobody listening.
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let e = failure(c.get_metadata_info(&target(dead), "r").await.unwrap_err());
        assert!(matches!(e, MetadataCallFailure::Connect(_)), "{e:?}");

        // A MetadataService over another protocol is not called.
        let mut tri = instance(1, 1, "r");
        tri.metadata.insert(
            METADATA_SERVICE_URL_PARAMS_KEY.into(),
            r#"{"version":"1.0.0","port":"50051","protocol":"tri"}"#.into(),
        );
        let t = MetadataTarget::of(&tri).expect("target");
        let e = failure(c.get_metadata_info(&t, "r").await.unwrap_err());
        assert!(matches!(e, MetadataCallFailure::Unsupported(_)), "{e:?}");
    });
}

/// dubbo-go with `dubbo.metadata.storage-type=remote` puts its `MetadataInfo` (Go JSON) in the etcd
/// metadata report: `/dubbo/<app>/<rev>` from v3.3.2, `/dubbo/metadata/<app>/<rev>` before v3.3; the
/// resolver reads it from a real etcd once it has a client, and not before.
#[test]
fn remote_metadata_is_read_from_dubbo_gos_report_in_etcd() {
    use mesh_registry::dubbo::instance::STORAGE_TYPE_KEY;
    let etcd = mesh_testkit::etcd::EtcdServer::start().expect("etcd");
    let rt = runtime();
    rt.block_on(async {
        let mut client = etcd_client::Client::connect([etcd.client_url()], None).await.expect("connect");
        let new_layout = MetadataInfo::new("go-app", [served().services.into_values().next().expect("a service")]);
        let old_layout = MetadataInfo::new("go-old", served().services.into_values());
        client
            .put(format!("/dubbo/go-app/{}", new_layout.revision), new_layout.to_go_json().to_string(), None)
            .await
            .expect("put");
        client
            .put(format!("/dubbo/metadata/go-old/{}", old_layout.revision), old_layout.to_go_json().to_string(), None)
            .await
            .expect("put");
        let remote = |app: &str, revision: &str| {
            let mut i = ServiceInstance::new(app, "127.0.0.1", 20000);
            i.metadata.insert(REVISION_KEY.into(), revision.into());
            i.metadata.insert(STORAGE_TYPE_KEY.into(), "remote".into());
            i
        };
        let mut r = MetadataResolver::new(ResolverConfig::default());
        assert!(matches!(r.want(&remote("go-app", &new_layout.revision)), Want::PendingUnaskable(_)));
        assert!(
            tokio::time::timeout(Duration::from_millis(200), r.next()).await.is_err(),
            "no report: not asked"
        );
        r.set_metadata_report(Some(client.kv_client()));
        r.want(&remote("go-old", &old_layout.revision));
        r.want(&remote("go-none", "12345"));
        let mut got = BTreeMap::new();
        let mut missing = None;
        for _ in 0..3 {
            match tokio::time::timeout(Duration::from_secs(10), r.next()).await.expect("an outcome") {
                Resolution::Resolved { key, info, .. } => {
                    got.insert(key.app.clone(), info);
                }
                Resolution::Failed { key, error, .. } => missing = Some((key, error)),
            }
        }
        // Go JSON has no nulls: what was None stays None, an unset port (-1) is kept.
        assert_eq!(*got["go-app"], new_layout);
        assert_eq!(*got["go-old"], old_layout);
        let (key, error) = missing.expect("go-none fails");
        assert_eq!(key.app, "go-none");
        assert!(
            matches!(&error, AppDiscoveryError::MetadataCall { failure: MetadataCallFailure::NotInReport(keys), .. } if keys.contains("/dubbo/go-none/12345")),
            "{error:?}"
        );
    });
}
