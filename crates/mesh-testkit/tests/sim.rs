//! The provider simulator, driven over TCP with frames built by `mesh_dubbo`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{hash_request, hash_request_version, request, Client};
use mesh_dubbo::message::DUBBO_VERSION;
use mesh_dubbo::{
    java_string_hash, Body, Codec, Event, Header, Response, RpcResult, Serialization, Status, Value,
};
use mesh_testkit::process::ChildGuard;
use mesh_testkit::sim::{self, SerializationMode, SimConfig, Stats, PARAM_TYPES, SERVICE};

fn cfg(latency_ms: u64) -> SimConfig {
    SimConfig {
        name: "test".into(),
        latency: Duration::from_millis(latency_ms),
        ..SimConfig::default()
    }
}

fn expect_value(body: &Body<'_>, want: i32, with_attachments: bool) {
    let Body::Response(Response::Ok { result, attachments }) = body else {
        panic!("not an OK response: {body:?}");
    };
    assert_eq!(result, &RpcResult::Value(Value::Int(want)));
    if with_attachments {
        let atts = attachments.as_ref().expect("attachments");
        assert_eq!(atts.len(), 1);
        assert_eq!(atts[0].0, "dubbo");
        assert_eq!(atts[0].1, Value::str(DUBBO_VERSION));
    } else {
        assert!(attachments.is_none(), "{attachments:?}");
    }
}

fn expect_error(header: &Header, body: &Body<'_>, status: Status, contains: &str) -> String {
    assert_eq!(header.status, status, "{body:?}");
    let Body::Response(Response::Error { status: s, message }) = body else {
        panic!("not an error response: {body:?}");
    };
    assert_eq!(*s, status);
    assert!(message.contains(contains), "{message:?} lacks {contains:?}");
    message.to_string()
}

#[test]
fn hash_in_both_serializations_and_both_result_flags() {
    let sim = sim::spawn(cfg(1)).expect("sim");
    let mut c = Client::connect(sim.addr());
    let mut id = 0;
    for ser in [Serialization::Hessian2, Serialization::FastJson] {
        for arg in ["", "hello", "ünïcødé \u{1F600}", &"x".repeat(1024)] {
            for (version, with) in [
                ("2.0.2", true),
                ("2.0.1", false),
                ("2.0.99", true),
                ("2.6.0", false),
            ] {
                id += 1;
                c.send(&hash_request_version(id, ser, version, arg));
                let (h, body) = c.recv_body();
                assert_eq!(h.id, id);
                assert_eq!(h.status, Status::OK);
                assert_eq!(h.flag, ser.id(), "response flag = serialization id only");
                expect_value(&body, java_string_hash(arg), with);
            }
        }
    }
    let stats = sim.stop();
    assert_eq!(stats.served, id);
    assert_eq!((stats.rejected, stats.errors), (0, 0));
}

#[test]
fn fixed_serialization_answers_others_with_bad_request() {
    let sim = sim::spawn(SimConfig {
        serialization: SerializationMode::Only(Serialization::Hessian2),
        ..cfg(1)
    })
    .expect("sim");
    let mut c = Client::connect(sim.addr());
    c.send(&hash_request(1, Serialization::FastJson, "abc"));
    let (h, body) = c.recv_body();
    assert_eq!(h.id, 1);
    assert_eq!(
        h.serialization_id(),
        Serialization::Hessian2.id(),
        "errors use the configured serialization"
    );
    expect_error(&h, &body, Status::BAD_REQUEST, "Unexpected serialization id:6");
    // Its own serialization still works on the same connection.
    c.send(&hash_request(2, Serialization::Hessian2, "abc"));
    let (h, body) = c.recv_body();
    assert_eq!(h.id, 2);
    expect_value(&body, java_string_hash("abc"), true);
    let stats = sim.stop();
    assert_eq!((stats.served, stats.errors), (1, 1));
}

#[test]
fn unknown_service_method_or_arguments_give_service_error() {
    let sim = sim::spawn(cfg(1)).expect("sim");
    let mut c = Client::connect(sim.addr());
    let h2 = Serialization::Hessian2;
    let cases: Vec<(BytesMut, &str)> = vec![
        (
            request(
                1,
                h2,
                "2.0.2",
                SERVICE,
                "sayHello",
                PARAM_TYPES,
                &[Value::str("a")],
                true,
            ),
            "Not found method \"sayHello\"",
        ),
        (
            request(2, h2, "2.0.2", SERVICE, "hash", "I", &[Value::Int(3)], true),
            "Not found method \"hash\"",
        ),
        (
            request(3, h2, "2.0.2", SERVICE, "hash", PARAM_TYPES, &[Value::Null], true),
            "is a null",
        ),
        (
            request(
                4,
                h2,
                "2.0.2",
                "com.example.Other",
                "hash",
                PARAM_TYPES,
                &[Value::str("a")],
                true,
            ),
            "Not found exported service",
        ),
    ];
    let n = cases.len() as u64;
    for (frame, contains) in cases {
        let id = Header::parse(frame[..16].try_into().expect("16 bytes"))
            .expect("header")
            .id;
        c.send(&frame);
        let (h, body) = c.recv_body();
        assert_eq!(h.id, id);
        expect_error(&h, &body, Status::SERVICE_ERROR, contains);
    }
    let stats = sim.stop();
    assert_eq!((stats.served, stats.errors), (0, n));
}

#[test]
fn heartbeat_is_answered_with_the_same_id() {
    let sim = sim::spawn(cfg(1)).expect("sim");
    let mut c = Client::connect(sim.addr());
    for (id, ser) in [(77u64, Serialization::Hessian2), (78, Serialization::FastJson)] {
        let mut buf = BytesMut::new();
        Codec::default().encode_heartbeat(&mut buf, id, ser, true);
        c.send(&buf);
        let (h, body) = c.recv_body();
        assert_eq!(h.id, id);
        assert_eq!(h.flag, 0x20 | ser.id(), "event response flag");
        assert_eq!(h.status, Status::OK);
        assert_eq!(body, Body::Event(Event::Heartbeat));
    }
    let stats = sim.stop();
    assert_eq!(
        stats,
        Stats {
            name: "test".into(),
            ..Stats::default()
        }
    );
}

#[test]
fn undecodable_body_gets_bad_request_and_the_connection_survives() {
    let sim = sim::spawn(cfg(1)).expect("sim");
    let mut c = Client::connect(sim.addr());
    // A valid header over a body that is not a request (an int where the version string goes).
    let mut frame = BytesMut::new();
    Header {
        body_len: 2,
        ..Header::request(5, Serialization::Hessian2, true)
    }
    .write(&mut frame);
    frame.extend_from_slice(&[0x91, 0x92]);
    c.send(&frame);
    let (h, body) = c.recv_body();
    assert_eq!(h.id, 5);
    expect_error(&h, &body, Status::BAD_REQUEST, "Fail to decode request due to: ");
    // An unsupported serialization id (3, java): 40 as well, answered in hessian2.
    let mut frame = BytesMut::new();
    Header {
        flag: 0xc3,
        body_len: 1,
        ..Header::request(6, Serialization::Hessian2, true)
    }
    .write(&mut frame);
    frame.extend_from_slice(&[0x4e]);
    c.send(&frame);
    let (h, body) = c.recv_body();
    assert_eq!((h.id, h.serialization_id()), (6, 2));
    expect_error(&h, &body, Status::BAD_REQUEST, "Fail to decode request due to: ");
    c.send(&hash_request(7, Serialization::Hessian2, "still here"));
    let (h, body) = c.recv_body();
    assert_eq!(h.id, 7);
    expect_value(&body, java_string_hash("still here"), true);
    let stats = sim.stop();
    assert_eq!((stats.served, stats.errors), (1, 2));
}

#[test]
fn bad_magic_and_oversize_close_the_connection() {
    let sim = sim::spawn(SimConfig {
        max_body: 1024,
        ..cfg(1)
    })
    .expect("sim");
    let mut c = Client::connect(sim.addr());
    c.send(b"GET / HTTP/1.1\r\n\r\n");
    assert!(c.try_recv().is_none(), "connection closed on bad magic");
    let mut c = Client::connect(sim.addr());
    let mut frame = BytesMut::new();
    Header {
        body_len: 4096,
        ..Header::request(1, Serialization::Hessian2, true)
    }
    .write(&mut frame);
    c.send(&frame);
    assert!(c.try_recv().is_none(), "connection closed on an oversize length");
    let stats = sim.stop();
    assert_eq!(stats.errors, 2);
}

#[test]
fn thread_cap_rejects_beyond_t_with_status_100() {
    let sim = sim::spawn(SimConfig {
        threads: 5,
        ..cfg(300)
    })
    .expect("sim");
    let port = sim.port();
    let mut c = Client::connect(sim.addr());
    let mut batch = BytesMut::new();
    for id in 0..10u64 {
        batch.extend_from_slice(&hash_request(id, Serialization::Hessian2, &format!("arg{id}")));
    }
    let start = Instant::now();
    c.send(&batch);
    let (mut ok, mut rejected) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let (h, body) = c.recv_body();
        if h.status == Status::OK {
            expect_value(&body, java_string_hash(&format!("arg{}", h.id)), true);
            ok.push(h.id);
        } else {
            let msg = expect_error(
                &h,
                &body,
                Status::SERVER_THREADPOOL_EXHAUSTED,
                "thread pool is exhausted",
            );
            assert!(
                start.elapsed() < Duration::from_millis(250),
                "rejections are immediate"
            );
            assert!(
                msg.starts_with(&format!("Server side(127.0.0.1,{port}) thread pool is exhausted")),
                "{msg}"
            );
            assert!(
                msg.contains(&format!("Thread Name: DubboServerHandler-127.0.0.1:{port}")),
                "{msg}"
            );
            assert!(
                msg.contains("Pool Size: 5 (active: 5, core: 5, max: 5, largest: 5)"),
                "{msg}"
            );
            rejected.push(h.id);
        }
    }
    ok.sort_unstable();
    rejected.sort_unstable();
    assert_eq!(ok, vec![0, 1, 2, 3, 4]);
    assert_eq!(rejected, vec![5, 6, 7, 8, 9]);
    assert!(start.elapsed() >= Duration::from_millis(290));
    // Once the slots are free, calls go through again.
    c.send(&hash_request(10, Serialization::Hessian2, "again"));
    let (h, _) = c.recv_body();
    assert_eq!((h.id, h.status), (10, Status::OK));
    let stats = sim.stop();
    assert_eq!((stats.served, stats.rejected, stats.max_inflight), (6, 5, 5));
}

#[test]
fn thread_cap_counts_across_connections() {
    let sim = sim::spawn(SimConfig {
        threads: 2,
        ..cfg(300)
    })
    .expect("sim");
    let mut clients: Vec<Client> = (0..4).map(|_| Client::connect(sim.addr())).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(&hash_request(i as u64, Serialization::Hessian2, "x"));
    }
    let mut statuses: Vec<u8> = clients.iter_mut().map(|c| c.recv().header.status.0).collect();
    statuses.sort_unstable();
    // Two calls hold the two "threads" (300 ms); the other two connections are refused at once.
    assert_eq!(statuses, vec![20, 20, 100, 100]);
    sim.stop();
}

#[test]
fn knee_raises_latency_with_inflight() {
    let base = Duration::from_millis(100);
    let sim = sim::spawn(SimConfig {
        knee: 2,
        threads: 0,
        ..cfg(100)
    })
    .expect("sim");
    let mut c = Client::connect(sim.addr());
    // Alone: about the base latency.
    let t = Instant::now();
    c.send(&hash_request(0, Serialization::Hessian2, "alone"));
    c.recv();
    let alone = t.elapsed();
    assert!(alone >= base && alone < base * 3, "alone: {alone:?}");
    // 8 at once = 4x the knee: the later ones start with 5..8 in flight and take 2.5x..4x the base.
    let mut batch = BytesMut::new();
    for id in 1..=8u64 {
        batch.extend_from_slice(&hash_request(id, Serialization::Hessian2, "busy"));
    }
    let t = Instant::now();
    c.send(&batch);
    let mut last = Duration::ZERO;
    for _ in 0..8 {
        assert_eq!(c.recv().header.status, Status::OK);
        last = t.elapsed();
    }
    assert!(last >= base * 2, "8 in flight with knee 2: slowest {last:?}");
    assert!(last < Duration::from_secs(5));
    let stats = sim.stop();
    assert_eq!((stats.served, stats.max_inflight), (9, 8));
}

#[test]
fn many_calls_on_one_connection_are_multiplexed() {
    let sim = sim::spawn(SimConfig {
        threads: 0,
        ..cfg(50)
    })
    .expect("sim");
    let mut c = Client::connect(sim.addr());
    let n = 500u64;
    let mut batch = BytesMut::new();
    for id in 0..n {
        batch.extend_from_slice(&hash_request(id, Serialization::Hessian2, &format!("p{id}")));
    }
    let t = Instant::now();
    c.send(&batch);
    let mut seen = vec![false; n as usize];
    for _ in 0..n {
        let (h, body) = c.recv_body();
        expect_value(&body, java_string_hash(&format!("p{}", h.id)), true);
        assert!(
            !std::mem::replace(&mut seen[h.id as usize], true),
            "duplicate id {}",
            h.id
        );
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(sim.stop().served, n);
}

#[test]
fn one_way_calls_get_no_answer() {
    let sim = sim::spawn(cfg(10)).expect("sim");
    let mut c = Client::connect(sim.addr());
    c.send(&request(
        1,
        Serialization::Hessian2,
        "2.0.2",
        SERVICE,
        "hash",
        PARAM_TYPES,
        &[Value::str("a")],
        false,
    ));
    c.send(&hash_request(2, Serialization::Hessian2, "b"));
    let (h, _) = c.recv_body();
    assert_eq!(h.id, 2, "only the two-way call is answered");
    let deadline = Instant::now() + Duration::from_secs(2);
    while sim.stats().served < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(sim.stop().served, 2);
}

#[test]
fn binary_prints_listening_and_stats_on_sigterm() {
    let mut child = ChildGuard::spawn(Command::new(env!("CARGO_BIN_EXE_provider-sim")).args([
        "--latency-ms",
        "1",
        "--name",
        "bin",
        "--threads",
        "10",
        "--workers",
        "1",
    ]))
    .expect("spawn provider-sim");
    let port = child
        .listening_port(Duration::from_secs(10))
        .expect("LISTENING line");
    let mut c = Client::connect(([127, 0, 0, 1], port).into());
    c.send(&hash_request(1, Serialization::FastJson, "hello"));
    let (h, body) = c.recv_body();
    assert_eq!(h.id, 1);
    expect_value(&body, 99_162_322, true);
    drop(c);
    let done = child.terminate().expect("terminate");
    assert!(done.status.success(), "{:?}", done.status);
    assert!(!done.killed);
    let mut lines = done.stdout.lines();
    assert_eq!(lines.next(), Some(format!("LISTENING {port}").as_str()));
    let stats: Stats = serde_json::from_str(lines.next().expect("stats line")).expect("JSON stats");
    assert_eq!(
        stats,
        Stats {
            name: "bin".into(),
            served: 1,
            rejected: 0,
            errors: 0,
            max_inflight: 1
        }
    );
    assert_eq!(lines.next(), None);
}

#[test]
fn binary_refuses_non_loopback_bind() {
    let out = Command::new(env!("CARGO_BIN_EXE_provider-sim"))
        .args(["--bind", "0.0.0.0"])
        .output()
        .expect("run provider-sim");
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_provider-sim"))
        .args(["--serialization", "kryo"])
        .output()
        .expect("run provider-sim");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn token_is_checked_like_dubbos_token_filter() {
    let sim = sim::spawn(SimConfig {
        token: Some("s3cret".into()),
        ..cfg(1)
    })
    .expect("sim");
    let mut c = Client::connect(sim.addr());
    let send = |c: &mut Client, id: u64, token: Option<&str>| {
        let mut buf = BytesMut::new();
        let head = mesh_dubbo::RequestHead {
            dubbo_version: DUBBO_VERSION,
            service: SERVICE,
            version: None,
            method: "hash",
            param_types: PARAM_TYPES,
        };
        let path = Value::str(SERVICE);
        let tok = token.map(Value::str);
        let mut atts = vec![("path", &path)];
        if let Some(t) = &tok {
            atts.push(("token", t));
        }
        Codec::default()
            .encode_request(
                &mut buf,
                Header::request(id, Serialization::Hessian2, true),
                &head,
                &[Value::str("abc")],
                atts,
            )
            .expect("encode");
        c.send(&buf);
    };
    send(&mut c, 1, None);
    let (h, body) = c.recv_body();
    expect_error(&h, &body, Status::SERVICE_ERROR, "Invalid token!");
    send(&mut c, 2, Some("wrong"));
    let (h, body) = c.recv_body();
    expect_error(&h, &body, Status::SERVICE_ERROR, "incorrect token is wrong");
    send(&mut c, 3, Some("s3cret"));
    let (h, body) = c.recv_body();
    assert_eq!(h.status, Status::OK);
    expect_value(&body, java_string_hash("abc"), true);
    let stats = sim.stop();
    assert_eq!((stats.served, stats.errors), (1, 2));
}

/// `getMetadataInfo(revision)` of the simulator's MetadataService, as a Dubbo 3 consumer sends it (group =
/// the application, version 1.0.0).
fn metadata_request(id: u64, app: &str, revision: &str) -> BytesMut {
    use mesh_testkit::dubbo_writers::app_level::{METADATA_SERVICE, METADATA_SERVICE_VERSION};
    let mut buf = BytesMut::new();
    let head = mesh_dubbo::RequestHead {
        dubbo_version: DUBBO_VERSION,
        service: METADATA_SERVICE,
        version: Some(METADATA_SERVICE_VERSION),
        method: "getMetadataInfo",
        param_types: "Ljava/lang/String;",
    };
    let (path, group, version) = (
        Value::str(METADATA_SERVICE),
        Value::str(app),
        Value::str(METADATA_SERVICE_VERSION),
    );
    Codec::default()
        .encode_request(
            &mut buf,
            Header::request(id, Serialization::Hessian2, true),
            &head,
            &[Value::str(revision)],
            [("path", &path), ("group", &group), ("version", &version)],
        )
        .expect("encode");
    buf
}

#[test]
fn metadata_service_answers_the_metadata_info_of_its_revision_over_tcp() {
    use mesh_registry::dubbo::metadata_info::MetadataInfo;
    use mesh_testkit::churn::bench_services;
    use mesh_testkit::sim::metadata_service::SimMetadata;
    use std::sync::Arc;

    let md = Arc::new(SimMetadata::new(
        "bench-provider",
        &bench_services("bench-provider", 3, 20880),
    ));
    let sim = sim::spawn(SimConfig {
        metadata: Some(Arc::clone(&md)),
        ..cfg(1)
    })
    .expect("sim");
    let mut c = Client::connect(sim.addr());
    c.send(&metadata_request(1, "bench-provider", md.revision()));
    let (h, body) = c.recv_body();
    assert_eq!((h.id, h.status), (1, Status::OK));
    let Body::Response(Response::Ok {
        result: RpcResult::Value(v),
        ..
    }) = body
    else {
        panic!("not a value: {body:?}");
    };
    let info = MetadataInfo::from_value(&v).expect("a MetadataInfo");
    assert_eq!(info.revision, md.revision());
    assert_eq!(info.services.len(), 3);
    assert!(info.services.contains_key(&format!("{SERVICE}2:dubbo")));
    // An unknown revision: null, as Java's MetadataServiceDelegation answers.
    c.send(&metadata_request(2, "bench-provider", "0123"));
    let (_, body) = c.recv_body();
    assert!(
        matches!(
            body,
            Body::Response(Response::Ok {
                result: RpcResult::Null,
                ..
            })
        ),
        "{body:?}"
    );
    // Another application's group: not exported here.
    c.send(&metadata_request(3, "other-app", md.revision()));
    let (h, body) = c.recv_body();
    expect_error(&h, &body, Status::SERVICE_ERROR, "Not found exported service");
    // The hash service still answers.
    c.send(&hash_request(4, Serialization::Hessian2, "hello"));
    let (_, body) = c.recv_body();
    expect_value(&body, java_string_hash("hello"), true);
    assert_eq!(md.calls(), 2);
    sim.stop();
}

#[test]
fn schedule_changes_the_thread_cap_and_latency_when_its_steps_come() {
    // 2 threads at 200 ms until 600 ms after the start, then 4 threads at 20 ms.
    let sim = sim::spawn(SimConfig {
        threads: 2,
        schedule: Some("600ms:threads=4,latency=20ms".parse().expect("schedule")),
        ..cfg(200)
    })
    .expect("sim");
    let started = Instant::now();
    let mut c = Client::connect(sim.addr());
    let statuses = |c: &mut Client, first: u64, n: u64| {
        let mut batch = BytesMut::new();
        for id in first..first + n {
            batch.extend_from_slice(&hash_request(id, Serialization::Hessian2, "x"));
        }
        let t = Instant::now();
        c.send(&batch);
        let mut st: Vec<u8> = (0..n).map(|_| c.recv().header.status.0).collect();
        st.sort_unstable();
        (st, t.elapsed())
    };
    let (before, took) = statuses(&mut c, 0, 3);
    assert!(
        started.elapsed() < Duration::from_millis(550),
        "test too slow to check step 1"
    );
    assert_eq!(before, vec![20, 20, 100], "2 threads before the step");
    assert!(
        took >= Duration::from_millis(190),
        "200 ms before the step: {took:?}"
    );
    std::thread::sleep(Duration::from_millis(700).saturating_sub(started.elapsed()));
    let (after, took) = statuses(&mut c, 10, 5);
    assert_eq!(after, vec![20, 20, 20, 20, 100], "4 threads after the step");
    assert!(
        took < Duration::from_millis(150),
        "20 ms after the step: {took:?}"
    );
    let stats = sim.stop();
    assert_eq!((stats.served, stats.rejected), (6, 2));
}

#[test]
fn schedule_start_in_the_past_applies_the_steps_already_due() {
    let sim = sim::spawn(SimConfig {
        threads: 1,
        schedule: Some("1s:threads=3; 2s:threads=2".parse().expect("schedule")),
        schedule_start: Some(std::time::SystemTime::now() - Duration::from_secs(10)),
        ..cfg(300)
    })
    .expect("sim");
    let mut c = Client::connect(sim.addr());
    let mut batch = BytesMut::new();
    for id in 0..4u64 {
        batch.extend_from_slice(&hash_request(id, Serialization::Hessian2, "x"));
    }
    c.send(&batch);
    let mut st: Vec<u8> = (0..4).map(|_| c.recv().header.status.0).collect();
    st.sort_unstable();
    assert_eq!(
        st,
        vec![20, 20, 100, 100],
        "the last step due (2 threads) is in force"
    );
    sim.stop();
}

#[test]
fn binary_refuses_a_bad_schedule_and_logs_each_step_once() {
    let out = Command::new(env!("CARGO_BIN_EXE_provider-sim"))
        .args(["--schedule", "0s:threads=1; 1s:cores=2"])
        .output()
        .expect("run provider-sim");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("step 2 (\"1s:cores=2\"): unknown key \"cores\""),
        "{err}"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("drift.schedule");
    std::fs::write(&file, "# two steps\n0s:threads=5,latency=2ms\n200ms:threads=7\n").expect("write");
    let log = dir.path().join("stderr.log");
    let mut child = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_provider-sim"))
            .args([
                "--workers".as_ref(),
                "1".as_ref(),
                "--name".as_ref(),
                "drift".as_ref(),
                "--schedule-file".as_ref(),
                file.as_os_str(),
            ])
            .stderr(std::fs::File::create(&log).expect("log file")),
    )
    .expect("spawn provider-sim");
    child
        .listening_port(Duration::from_secs(10))
        .expect("LISTENING line");
    std::thread::sleep(Duration::from_millis(600));
    let done = child.terminate().expect("terminate");
    assert!(done.status.success(), "{:?}", done.status);
    let stderr = std::fs::read_to_string(&log).expect("read log");
    let steps: Vec<&str> = stderr.lines().filter(|l| l.contains("schedule step")).collect();
    assert_eq!(steps.len(), 2, "{stderr}");
    assert!(
        steps[0].contains("step 1/2 at 0ns: threads 5, latency 2ms"),
        "{}",
        steps[0]
    );
    assert!(
        steps[1].contains("step 2/2 at 200ms: threads 7, latency 2ms"),
        "{}",
        steps[1]
    );
}
