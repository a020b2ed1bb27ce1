//! The third-party Node.js Dubbo peers of `crates/mesh-dubbo/tests/interop` (npm packages pinned there, installed
//! with `npm ci`) as child processes stopped by PID ([`ChildGuard`]):
//!
//! * [`start_provider`]: `provider.js`, the sofa-rpc-node + dubbo-remoting provider of the challenge's
//!   `IHelloService` and of [`TYPES_INTERFACE`] (one method per Java type, see the folder's README);
//! * [`run_types_consumer`]: `types_consumer.js`, which calls [`TYPES_INTERFACE`] at a port through dubbo2.js or
//!   sofa-rpc-node's RpcClient and prints one JSON line per call (what came back, exactly, and whether hessian.js
//!   reads what travelled as the declared Java types).
//!
//! [`types_cases`] is the list of calls the end-to-end tests make, with the value each must come back as.

use std::io;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::process::ChildGuard;

/// The typed service of the node provider.
pub const TYPES_INTERFACE: &str = "org.apache.dubbo.mesh.TypesService";
/// The methods of the TypesService (provider.js), in declaration order.
pub const TYPES_METHODS: [&str; 11] = [
    "echoInt",
    "echoLong",
    "echoDouble",
    "echoBoolean",
    "echoString",
    "echoBytes",
    "echoList",
    "echoMap",
    "echoPojo",
    "throwException",
    "returnNull",
];
/// The POJO class its `echoPojo` takes and returns.
pub const POJO_CLASS: &str = "org.apache.dubbo.mesh.Pojo";
/// The class of the exception `throwException` answers.
pub const EXCEPTION_CLASS: &str = "java.lang.IllegalArgumentException";

/// The folder with the node scripts and their `node_modules`.
pub fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../mesh-dubbo/tests/interop")
}

/// Fails with the command to run when the npm packages are not installed.
pub fn check_installed() -> io::Result<()> {
    let dir = interop_dir();
    for pkg in [
        "sofa-rpc-node",
        "dubbo-remoting",
        "dubbo2.js",
        "hessian.js",
        "js-to-java",
    ] {
        if !dir.join("node_modules").join(pkg).exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "npm package {pkg} is not installed: run `npm ci` in {} (or `bash scripts/setup.sh`)",
                    dir.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Starts `provider.js` on a free loopback port; returns it and its port (waits at most 20 s).
/// It also stops by itself after `max_lifetime` or when this process dies.
pub fn start_provider(max_lifetime: Duration) -> io::Result<(ChildGuard, u16)> {
    check_installed()?;
    let mut cmd = Command::new("node");
    cmd.args(["provider.js", "0"]).current_dir(interop_dir()).env(
        "INTEROP_MAX_LIFETIME_SECS",
        max_lifetime.as_secs().max(1).to_string(),
    );
    let mut g = ChildGuard::spawn(&mut cmd)?;
    let port = g.listening_port(Duration::from_secs(20))?;
    Ok((g, port))
}

/// A Dubbo client library of the node peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeClient {
    /// dubbo2.js 2.3.9 `DirectlyDubbo` (own framing, hessian.js 2.5).
    Dubbo2js,
    /// sofa-rpc-node 2.10.0 `RpcClient` with dubbo-remoting 2.1.4 (hessian.js 2.11).
    Sofa,
}

impl NodeClient {
    /// Both, for loops.
    pub const ALL: [NodeClient; 2] = [NodeClient::Dubbo2js, NodeClient::Sofa];

    /// The name `types_consumer.js` takes.
    pub fn name(self) -> &'static str {
        match self {
            NodeClient::Dubbo2js => "dubbo2js",
            NodeClient::Sofa => "sofa",
        }
    }
}

/// What a run of `types_consumer.js` printed.
#[derive(Debug)]
pub struct ConsumerRun {
    /// Exit code (`None` if it had to be killed).
    pub code: Option<i32>,
    /// One parsed JSON line per call, in call order.
    pub lines: Vec<Value>,
    /// Its whole stdout, for messages.
    pub stdout: String,
}

/// Runs `types_consumer.js <client> <port> <cases>` against 127.0.0.1:`port` with service `version` (None: the
/// script's default `1.0.0`; `Some("")`: none) and `group` (None: none). `cases` is a JSON array of
/// `{"method", "arg"}`. Waits at most 40 s (the script stops itself within 30 s).
pub fn run_types_consumer(
    client: NodeClient,
    port: u16,
    cases: &Value,
    version: Option<&str>,
    group: Option<&str>,
) -> io::Result<ConsumerRun> {
    check_installed()?;
    let mut cmd = Command::new("node");
    cmd.arg("types_consumer.js")
        .arg(client.name())
        .arg(port.to_string())
        .arg(cases.to_string())
        .current_dir(interop_dir());
    if let Some(v) = version {
        cmd.env("INTEROP_SERVICE_VERSION", v);
    }
    if let Some(g) = group {
        cmd.env("INTEROP_SERVICE_GROUP", g);
    }
    let mut g = ChildGuard::spawn(&mut cmd)?;
    let exited = g.wait_timeout(Duration::from_secs(40))?;
    let done = g.terminate()?;
    let code = exited.and_then(|s| s.code());
    let mut lines = Vec::new();
    for l in done.stdout.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(l)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad line {l:?}: {e}")))?;
        lines.push(v);
    }
    Ok(ConsumerRun {
        code,
        lines,
        stdout: done.stdout,
    })
}

/// One call of the typed service: the method, its Java parameter type (as `parameterTypesString` / JSON `types`
/// name it), the argument as JSON, and what must come back.
#[derive(Debug, Clone)]
pub struct TypesCase {
    /// `echoInt`, ...
    pub method: &'static str,
    /// Java type name of the parameter (`int`, `java.lang.String`, `byte[]`, ...).
    pub java_type: &'static str,
    /// The JVM descriptor of the parameter (`I`, `Ljava/lang/String;`, `[B`, ...).
    pub descriptor: &'static str,
    /// The argument as JSON: what the node consumers take (a long beyond 2^53 as a decimal string, byte[] as
    /// base64, the POJO as an object with a `class` key, Dubbo's generic form).
    pub arg: Value,
    /// What comes back.
    pub expect: Expect,
}

/// What a call of the typed service answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// A value, as exact JSON (longs as integers, byte[] as base64, the POJO with its `class`).
    Value(Value),
    /// `null` (the provider answers flag 2, as Java does).
    Null,
    /// A Java exception of [`EXCEPTION_CLASS`] whose message is this.
    Exception(String),
}

/// The calls every path of the end-to-end tests makes: boundary values of every type, both ways.
pub fn types_cases() -> Vec<TypesCase> {
    let s = "java.lang.String";
    let str_d = "Ljava/lang/String;";
    let pojo = json!({
        "class": POJO_CLASS, "age": 42, "id": 9_007_199_254_740_993_i64, "score": 2.5, "active": true,
        "name": "n\u{1F600}", "tags": ["t1", "t2"]
    });
    let echo = |method, java_type, descriptor, arg: Value| TypesCase {
        method,
        java_type,
        descriptor,
        expect: Expect::Value(arg.clone()),
        arg,
    };
    vec![
        echo("echoInt", "int", "I", json!(0)),
        echo("echoInt", "int", "I", json!(i32::MIN)),
        echo("echoInt", "int", "I", json!(i32::MAX)),
        echo("echoLong", "long", "J", json!(0)),
        echo("echoLong", "long", "J", json!(i64::MAX)),
        echo("echoLong", "long", "J", json!(i64::MIN)),
        echo("echoLong", "long", "J", json!(-5)),
        echo("echoDouble", "double", "D", json!(0.0)),
        echo("echoDouble", "double", "D", json!(-0.1)),
        echo("echoDouble", "double", "D", json!(1e300)),
        echo("echoDouble", "double", "D", json!(12.25)),
        echo("echoBoolean", "boolean", "Z", json!(false)),
        echo("echoBoolean", "boolean", "Z", json!(true)),
        echo("echoString", s, str_d, json!("")),
        echo("echoString", s, str_d, json!("x\u{1F600}y中")),
        echo("echoBytes", "byte[]", "[B", json!("")),
        echo("echoBytes", "byte[]", "[B", json!("AAEC/w==")),
        echo(
            "echoList",
            "java.util.List",
            "Ljava/util/List;",
            json!([1, "two", null, 2.5, true]),
        ),
        echo("echoList", "java.util.List", "Ljava/util/List;", json!([])),
        echo(
            "echoMap",
            "java.util.Map",
            "Ljava/util/Map;",
            json!({"a": 1, "b": "x", "c": null, "d": [1, 2]}),
        ),
        echo("echoPojo", POJO_CLASS, "Lorg/apache/dubbo/mesh/Pojo;", pojo),
        TypesCase {
            method: "throwException",
            java_type: s,
            descriptor: str_d,
            arg: json!("bad input"),
            expect: Expect::Exception("bad input".into()),
        },
        TypesCase {
            method: "returnNull",
            java_type: s,
            descriptor: str_d,
            arg: json!("x"),
            expect: Expect::Null,
        },
    ]
}

/// The cases as the JSON array `types_consumer.js` takes (longs beyond 2^53 as decimal strings, so that
/// JavaScript does not round them).
pub fn consumer_cases(cases: &[TypesCase]) -> Value {
    Value::Array(
        cases
            .iter()
            .map(|c| json!({"method": c.method, "arg": js_safe(&c.arg)}))
            .collect(),
    )
}

fn js_safe(v: &Value) -> Value {
    const SAFE: i64 = 9_007_199_254_740_991;
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(i) if !(-SAFE..=SAFE).contains(&i) => Value::String(i.to_string()),
            _ => v.clone(),
        },
        Value::Array(a) => Value::Array(a.iter().map(js_safe).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (k.clone(), js_safe(x))).collect()),
        _ => v.clone(),
    }
}

/// Checks one line of `types_consumer.js` against its case: the request and the answer decode as the declared
/// Java types (hessian.js), and the value, exception or null is the expected one. Returns why not.
pub fn check_consumer_line(case: &TypesCase, line: &Value) -> Result<(), String> {
    let fail = |why: &str| Err(format!("{} {}: {why}: {line}", case.method, case.arg));
    if line["method"] != case.method {
        return fail("line of another call");
    }
    if line["desc"] != case.descriptor {
        return fail("descriptor");
    }
    if !line["sentOk"].is_null() {
        return fail("the request does not decode as the declared type");
    }
    if line["status"] != 20 {
        return fail("status is not 20");
    }
    match &case.expect {
        Expect::Value(want) => {
            if line["flag"] != 1 && line["flag"] != 4 {
                return fail("not a value answer");
            }
            if !line["typeOk"].is_null() {
                return fail("the answer does not decode as the declared type");
            }
            if !same_json(&line["result"], want) {
                return fail(&format!("result is not {want}"));
            }
        }
        Expect::Null => {
            if line["result"] != Value::Null || line["wire"] != "null" {
                return fail("not null");
            }
        }
        Expect::Exception(msg) => {
            if line["exception"] != EXCEPTION_CLASS || line["message"] != msg.as_str() {
                return fail("not the exception");
            }
            if line["flag"] != 0 && line["flag"] != 3 {
                return fail("not an exception answer");
            }
        }
    }
    Ok(())
}

/// JSON equality where numbers compare by value (`0` == `0.0`; `-0.0` == `0`) and objects ignore key order.
pub fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(i), Some(j)) => i == j,
                _ => x.as_f64() == y.as_f64(),
            },
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_json(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_by_value_and_objects_by_key() {
        assert!(same_json(&json!(0), &json!(0.0)));
        assert!(same_json(
            &json!({"a": 1, "b": [2.5]}),
            &json!({"b": [2.5], "a": 1.0})
        ));
        assert!(!same_json(&json!(i64::MAX), &json!(i64::MAX - 1)));
        assert!(!same_json(&json!({"a": 1}), &json!({"a": 1, "b": null})));
        assert!(!same_json(&json!("1"), &json!(1)));
    }

    #[test]
    fn longs_beyond_2_53_go_to_node_as_strings() {
        let v = js_safe(&json!({"id": 9_007_199_254_740_993_i64, "n": [i64::MIN, 5]}));
        assert_eq!(
            v,
            json!({"id": "9007199254740993", "n": ["-9223372036854775808", 5]})
        );
    }

    #[test]
    fn every_method_has_a_case() {
        let cases = types_cases();
        for m in TYPES_METHODS {
            assert!(cases.iter().any(|c| c.method == m), "{m}");
        }
    }
}
