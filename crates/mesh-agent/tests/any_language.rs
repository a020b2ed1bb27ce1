//! Any language in, end to end with real parts and third-party peers nobody here wrote: a real etcd, the
//! sofa-rpc-node provider of `org.apache.dubbo.mesh.TypesService` (one method per Java type: int, long, double,
//! boolean, String, byte[], List, Map, a POJO, a thrown Java exception, null; it checks with hessian.js that
//! every argument arrives as its declared Java type), the real agents, and the dubbo2.js and sofa-rpc-node
//! consumers (which check with hessian.js what comes back). See `mesh_testkit::node_peers` and
//! `crates/mesh-dubbo/tests/interop/README.md`.
//!
//! The provider is reached two ways: behind a provider agent registered in etcd (service version `1.0.0`), and
//! as a plain Dubbo provider found through the keys Java 2.7 writes (`mesh_testkit::dubbo_writers`, version
//! `1.0`, no agent in front). Every method is called with boundary values and every value is checked both ways:
//! * through the HTTP form with typed `parameterTypesString`;
//! * through both JSON shapes: `POST /{application}/{interface}/{method}` with a JSON array and the
//!   `x-dubbo-service-*` headers, and Pixiu's `{"types": ..., "values": [...]}`;
//! * through the consumer agent's Dubbo port (and the provider agent's) with dubbo2.js and sofa-rpc-node.
//!
//! Loopback only; every wait is bounded; every process is stopped by PID when its guard drops.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mesh_testkit::dubbo_writers::{self as dw, put::BlockingWriter, Provider};
use mesh_testkit::etcd::EtcdServer;
use mesh_testkit::node_peers::{
    self as np, same_json, Expect, NodeClient, TypesCase, EXCEPTION_CLASS, TYPES_INTERFACE, TYPES_METHODS,
};
use mesh_testkit::process::{free_port, wait_for_port, ChildGuard};
use serde_json::{json, Value};

mod common;
use common::*;

/// The `{application}` path segment of the JSON API.
const APPLICATION: &str = "any-language-it";
/// The version the provider agent registers the node provider under.
const AGENT_VERSION: &str = "1.0.0";
/// The version the node provider is registered under directly, as a plain Dubbo provider.
const DIRECT_VERSION: &str = "1.0";
/// Both ways to the provider.
const VERSIONS: [&str; 2] = [AGENT_VERSION, DIRECT_VERSION];

/// The parts of one end-to-end setup; dropped consumer first, etcd last.
struct Mesh {
    consumer: Option<ChildGuard>,
    /// The consumer agent's HTTP port.
    http: u16,
    /// The consumer agent's Dubbo port, when started with one.
    dubbo: Option<u16>,
    /// The provider agent's port.
    provider_port: u16,
    _provider: ChildGuard,
    _writer: BlockingWriter,
    _node: ChildGuard,
    etcd: EtcdServer,
}

/// etcd, the node provider, a provider agent registering it as `TypesService:1.0.0`, the node provider registered
/// directly as a Java 2.7 provider of `TypesService:1.0`, and (when `consumer` is set) a consumer agent reading
/// etcd, with a Dubbo port when `dubbo_port` is set. Returns once the provider agent is registered; the tests
/// wait for the consumer's discovery with [`wait_serving`] in the shape they test.
fn mesh(consumer: bool, dubbo_port: bool) -> Mesh {
    let etcd = EtcdServer::start().unwrap();
    let url = etcd.client_url().to_owned();
    let (node, node_port) = np::start_provider(Duration::from_secs(300)).unwrap();

    let provider_port = free_port().unwrap();
    let service = format!("{TYPES_INTERFACE}:{AGENT_VERSION}");
    let provider = provider_agent(provider_port, node_port, &["--etcd", &url, "--service", &service]);

    // The same node process as a plain Dubbo provider, written as Java 2.7 writes it (an hour old, so past
    // Dubbo's warm-up).
    let mut writer = BlockingWriter::connect(&url).unwrap();
    let mut p = Provider::new(TYPES_INTERFACE, "127.0.0.1", node_port).version(DIRECT_VERSION);
    p.methods = TYPES_METHODS.map(str::to_owned).to_vec();
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    p.timestamp_ms = now_ms - 3_600_000;
    writer
        .register(&dw::java27_provider(dw::DEFAULT_ROOT, &p))
        .unwrap();

    let w = watch(&etcd);
    wait_until(
        "the provider agent's registration",
        Duration::from_secs(15),
        || {
            w.latest().is_some_and(|s| {
                s.endpoints(&service)
                    .iter()
                    .any(|e| e.addr == addr(provider_port))
            })
        },
    );

    let mut m = Mesh {
        consumer: None,
        http: 0,
        dubbo: None,
        provider_port,
        _provider: provider,
        _writer: writer,
        _node: node,
        etcd,
    };
    if consumer {
        let http = free_port().unwrap();
        let dubbo = free_port().unwrap();
        let dubbo_addr = addr(dubbo).to_string();
        let mut args = vec!["--etcd", m.etcd.client_url(), "--shards", "1"];
        if dubbo_port {
            args.extend_from_slice(&["--dubbo-listen", &dubbo_addr]);
        }
        let c = consumer_agent(http, &args);
        if dubbo_port {
            wait_for_port(addr(dubbo), Duration::from_secs(10)).unwrap();
            m.dubbo = Some(dubbo);
        }
        m.consumer = Some(c);
        m.http = http;
    }
    m
}

/// Waits until `serves(version)` holds for both versions (discovery is asynchronous).
fn wait_serving(mut serves: impl FnMut(&str) -> bool) {
    for v in VERSIONS {
        wait_until(
            &format!("the consumer serves {TYPES_INTERFACE}:{v}"),
            Duration::from_secs(20),
            || serves(v),
        );
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        // The consumer first, so it never sees its providers go.
        if let Some(mut c) = self.consumer.take() {
            let _ = c.terminate();
        }
    }
}

// ---- the three HTTP shapes ---------------------------------------------------------------------------------

/// `POST /{application}/{interface}/{method}` with the JSON array `[arg]` and the `x-dubbo-service-*` headers.
fn json_call(port: u16, version: &str, method: &str, java_type: &str, arg: &Value) -> HttpAnswer {
    let body = Value::Array(vec![arg.clone()]).to_string();
    http_post(
        port,
        &format!("/{APPLICATION}/{TYPES_INTERFACE}/{method}"),
        &[
            ("x-dubbo-service-version", version),
            ("x-dubbo-service-method-overloading", java_type),
        ],
        "application/json",
        body.as_bytes(),
    )
}

/// The JSON array call with `x-dubbo-generic: true`: Dubbo's `$invoke` with `generic=true`, the provider maps the
/// JSON (the node provider does it as Java's GenericFilter does).
fn generic_call(port: u16, version: &str, method: &str, java_type: &str, arg: &Value) -> HttpAnswer {
    let body = Value::Array(vec![arg.clone()]).to_string();
    http_post(
        port,
        &format!("/{APPLICATION}/{TYPES_INTERFACE}/{method}"),
        &[
            ("x-dubbo-service-version", version),
            ("x-dubbo-service-method-overloading", java_type),
            ("x-dubbo-generic", "true"),
        ],
        "application/json",
        body.as_bytes(),
    )
}

/// The same call with Pixiu's typed body `{"types": "<java type>", "values": [arg]}`.
fn pixiu_call(port: u16, version: &str, method: &str, java_type: &str, arg: &Value) -> HttpAnswer {
    let body = json!({"types": java_type, "values": [arg]}).to_string();
    http_post(
        port,
        &format!("/{APPLICATION}/{TYPES_INTERFACE}/{method}"),
        &[("x-dubbo-service-version", version)],
        "application/json",
        body.as_bytes(),
    )
}

/// The challenge form with a typed `parameterTypesString`: the parameter is the value's text (a string as it
/// is, byte[] as base64, a list, map or POJO as JSON).
fn form_call(port: u16, version: &str, case: &TypesCase) -> HttpAnswer {
    let text = match &case.arg {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let body = form_body(&[
        ("interface", TYPES_INTERFACE),
        ("method", case.method),
        ("parameterTypesString", case.descriptor),
        ("parameter", &text),
        ("version", version),
    ]);
    http_post(
        port,
        "/",
        &[],
        "application/x-www-form-urlencoded",
        body.as_bytes(),
    )
}

/// Checks an HTTP answer against its case: a value or null as a 200 JSON document, an exception as a 500 JSON
/// `{status, exception, message}`.
fn check_http(what: &str, case: &TypesCase, a: &HttpAnswer) -> Result<(), String> {
    let ctx = format!("{what} {}({}): {a:?}", case.method, case.arg);
    let fail = |why: &str| Err(format!("{ctx}: {why}"));
    if !a.content_type.starts_with("application/json") {
        return fail("not application/json");
    }
    let Ok(got) = serde_json::from_str::<Value>(&a.body) else {
        return fail("the body is not JSON");
    };
    match &case.expect {
        Expect::Value(want) => {
            if a.status != 200 || !same_json(&got, want) {
                return fail(&format!("want 200 {want}"));
            }
        }
        Expect::Null => {
            if a.status != 200 || got != Value::Null {
                return fail("want 200 null");
            }
        }
        Expect::Exception(msg) => {
            if a.status != 500
                || got["exception"] != EXCEPTION_CLASS
                || got["message"] != msg.as_str()
                || got["status"].is_null()
            {
                return fail(&format!(
                    "want 500 {{status, exception: {EXCEPTION_CLASS}, message: {msg}}}"
                ));
            }
        }
    }
    Ok(())
}

/// Every case of the typed service through `call`, on both versions; fails listing every wrong answer.
fn all_cases_over_http(what: &str, mut call: impl FnMut(&str, &TypesCase) -> HttpAnswer) {
    let mut wrong = Vec::new();
    let mut n = 0;
    for v in VERSIONS {
        for case in np::types_cases() {
            n += 1;
            if let Err(e) = check_http(&format!("{what}, version {v}"), &case, &call(v, &case)) {
                wrong.push(e);
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {n} calls wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Checks a form answer against its case. The form API answers as it always did (`mesh_http::answer`,
/// `text/plain`): numbers in decimal (doubles as Java's `Double.toString`), strings as they are, byte[], lists,
/// maps and objects as JSON (objects without their class), null as `null`, an exception as a 500
/// `service threw <class>: <message>`.
fn check_form(case: &TypesCase, a: &HttpAnswer) {
    let ctx = format!("form {}({}): {a:?}", case.method, case.arg);
    match &case.expect {
        Expect::Value(want) => {
            assert_eq!(a.status, 200, "{ctx}");
            match (case.java_type, want) {
                ("java.lang.String", Value::String(s)) => assert_eq!(&a.body, s, "{ctx}"),
                ("double", _) => assert_eq!(a.body.parse::<f64>().ok(), want.as_f64(), "{ctx}"),
                _ => {
                    let got: Value = serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                    let mut want = want.clone();
                    if let Some(o) = want.as_object_mut() {
                        o.remove("class");
                    }
                    assert!(same_json(&got, &want), "{ctx}: want {want}");
                }
            }
        }
        Expect::Null => {
            assert_eq!((a.status, a.body.as_str()), (200, "null"), "{ctx}");
        }
        Expect::Exception(msg) => {
            assert_eq!(a.status, 500, "{ctx}");
            // Error answers end with a newline.
            assert_eq!(
                a.body.trim_end(),
                format!("service threw {EXCEPTION_CLASS}: {msg}"),
                "{ctx}"
            );
        }
    }
}

// ---- the tests ------------------------------------------------------------------------------------------

/// The node consumers through `port`: every case, both libraries, both ways checked by hessian.js.
fn node_consumers_get_every_case_back(port: u16, version: &str, what: &str) {
    let cases = np::types_cases();
    let arg = np::consumer_cases(&cases);
    for client in NodeClient::ALL {
        let run = np::run_types_consumer(client, port, &arg, Some(version), None).unwrap();
        assert_eq!(run.code, Some(0), "{what} {client:?}: {}", run.stdout);
        assert_eq!(run.lines.len(), cases.len(), "{what} {client:?}: {}", run.stdout);
        for (case, line) in cases.iter().zip(&run.lines) {
            if let Err(e) = np::check_consumer_line(case, line) {
                panic!("{what} {client:?} version {version}: {e}");
            }
        }
    }
}

#[test]
fn node_consumers_call_the_provider_agents_port_with_every_type() {
    let m = mesh(false, false);
    node_consumers_get_every_case_back(m.provider_port, AGENT_VERSION, "provider agent port");
}

#[test]
fn node_consumers_call_the_consumer_agents_dubbo_port_with_every_type() {
    let m = mesh(true, true);
    let port = m.dubbo.unwrap();
    wait_serving(|v| {
        let arg = json!([{"method": "echoInt", "arg": 1}]);
        np::run_types_consumer(NodeClient::Sofa, port, &arg, Some(v), None)
            .is_ok_and(|r| r.lines.first().is_some_and(|l| l["status"] == 20))
    });
    for v in VERSIONS {
        node_consumers_get_every_case_back(port, v, "consumer agent dubbo port");
    }
    // No provider of this version: the agent's own answer is status 70 with a message naming the service.
    for client in NodeClient::ALL {
        let arg = json!([{"method": "echoInt", "arg": 1}]);
        let run = np::run_types_consumer(client, port, &arg, Some("9.9.9"), None).unwrap();
        assert_eq!(run.code, Some(0), "{client:?}: {}", run.stdout);
        let line = &run.lines[0];
        assert_eq!(line["status"], 70, "{client:?}: {line}");
        assert!(
            line["error"]
                .as_str()
                .is_some_and(|e| e.contains(TYPES_INTERFACE)),
            "{client:?}: {line}"
        );
    }
}

#[test]
fn json_array_with_dubbo_headers_carries_every_type() {
    let m = mesh(true, false);
    wait_serving(|v| json_call(m.http, v, "echoInt", "int", &json!(1)).status == 200);
    all_cases_over_http("json array", |v, c| {
        json_call(m.http, v, c.method, c.java_type, &c.arg)
    });
    // A value that does not fit its declared type is refused before any call, naming the parameter and type.
    let a = json_call(m.http, AGENT_VERSION, "echoInt", "int", &json!(4_294_967_296_i64));
    assert_eq!(a.status, 400, "{a:?}");
    assert!(a.body.contains("int"), "{a:?}");
}

#[test]
fn json_generic_invoke_carries_every_type() {
    // The same answers as the typed mapping: Java's GenericFilter answers POJOs as maps with their `class`
    // (the same JSON), and the JSON answer's exception is the one the service threw (Java wraps it in
    // GenericException{exceptionClass, exceptionMessage}).
    let m = mesh(true, false);
    wait_serving(|v| generic_call(m.http, v, "echoInt", "int", &json!(1)).status == 200);
    all_cases_over_http("json $invoke", |v, c| {
        generic_call(m.http, v, c.method, c.java_type, &c.arg)
    });
}

#[test]
fn pixiu_typed_body_carries_every_type() {
    let m = mesh(true, false);
    wait_serving(|v| pixiu_call(m.http, v, "echoInt", "int", &json!(1)).status == 200);
    all_cases_over_http("pixiu types/values", |v, c| {
        pixiu_call(m.http, v, c.method, c.java_type, &c.arg)
    });
}

#[test]
fn form_with_typed_parameter_types_carries_every_type() {
    let m = mesh(true, false);
    let probe = np::types_cases().remove(0);
    wait_serving(|v| form_call(m.http, v, &probe).status == 200);
    for v in VERSIONS {
        for case in np::types_cases() {
            let a = form_call(m.http, v, &case);
            check_form(&case, &a);
        }
    }
    // A parameter that does not fit its declared type: 400 naming the parameter and the type.
    let bad = TypesCase {
        method: "echoLong",
        java_type: "long",
        descriptor: "J",
        arg: json!("twelve"),
        expect: Expect::Null,
    };
    let a = form_call(m.http, AGENT_VERSION, &bad);
    assert_eq!(a.status, 400, "{a:?}");
}
