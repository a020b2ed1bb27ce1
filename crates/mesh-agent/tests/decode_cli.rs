//! Runs the built `mesh-agent decode` on the captured third-party vectors of `mesh-dubbo` and on malformed
//! input.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_mesh-agent");

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../mesh-dubbo/tests/vectors")
}

fn frame_hex(name: &str) -> String {
    read_hex(&vectors().join("frames").join(format!("{name}.hex")))
}

fn hessian_hex(file: &str) -> String {
    read_hex(&vectors().join("hessian2-hessianjs").join(file))
}

fn read_hex(path: &std::path::Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the binary with `args`, feeding `stdin` (an empty stdin when `None`).
fn run(args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mesh-agent");
    let mut pipe = child.stdin.take().expect("stdin pipe");
    if let Some(input) = stdin {
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    drop(pipe);
    let out = child.wait_with_output().expect("wait for mesh-agent");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

/// Runs and expects success with JSON on stdout and nothing on stderr.
fn ok(args: &[&str], stdin: Option<&str>) -> Value {
    let r = run(args, stdin);
    assert_eq!(r.code, Some(0), "args {args:?}: stderr {}", r.stderr);
    assert!(r.stderr.is_empty(), "args {args:?}: stderr {}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("args {args:?}: bad JSON ({e}): {}", r.stdout))
}

fn decode_frame(hex: &str) -> Value {
    ok(&["decode", hex], None)
}

fn decode_hessian(hex: &str) -> Value {
    ok(&["decode", "--hessian"], Some(hex))
}

/// Runs and expects exit 2, nothing on stdout, and exactly one `error: ` line (containing `expect`) on stderr.
fn fails(args: &[&str], stdin: Option<&str>, expect: &str) {
    let r = run(args, stdin);
    let shown = format!("args {args:?} stdin {:?}", stdin.map(|s| &s[..s.len().min(80)]));
    assert_eq!(
        r.code,
        Some(2),
        "{shown}: stdout {} stderr {}",
        r.stdout,
        r.stderr
    );
    assert!(!r.stderr.contains("panicked"), "{shown}: {}", r.stderr);
    assert!(r.stdout.is_empty(), "{shown}: stdout {}", r.stdout);
    assert!(r.stderr.starts_with("error: "), "{shown}: {}", r.stderr);
    assert!(
        r.stderr.ends_with('\n') && r.stderr.lines().count() == 1,
        "{shown}: not one line: {:?}",
        r.stderr
    );
    assert!(
        r.stderr.contains(expect),
        "{shown}: {:?} lacks {expect:?}",
        r.stderr
    );
}

/// Either decodes (exit 0, JSON) or fails cleanly (exit 2, one error line): never a panic.
fn never_panics(args: &[&str]) {
    let r = run(args, None);
    assert!(!r.stderr.contains("panicked"), "args {args:?}: {}", r.stderr);
    match r.code {
        Some(0) => {
            assert!(
                serde_json::from_str::<Value>(&r.stdout).is_ok(),
                "args {args:?}: {}",
                r.stdout
            );
        }
        Some(2) => assert!(
            r.stderr.starts_with("error: ") && r.stderr.lines().count() == 1,
            "{}",
            r.stderr
        ),
        other => panic!("args {args:?}: exit {other:?}, stderr {}", r.stderr),
    }
}

const SERVICE: &str = "com.alibaba.dubbo.performance.demo.provider.IHelloService";

#[test]
fn hello_request_from_dubbo2js() {
    let v = decode_frame(&frame_hex("req_dubbo2js_hash_hello"));
    let h = &v["header"];
    assert_eq!(h["magic"], "0xdabb");
    assert_eq!(h["flag"], "0xc2");
    assert_eq!(h["request"], true);
    assert_eq!(h["two_way"], true);
    assert_eq!(h["event"], false);
    assert_eq!(h["serialization"], json!({"id": 2, "name": "hessian2"}));
    assert_eq!(h["status"]["code"], 0);
    assert_eq!(h["id"], 1);
    assert_eq!(h["body_len"], 278);
    let b = &v["body"];
    assert_eq!(b["kind"], "request");
    assert_eq!(b["dubbo_version"], "2.0.2");
    assert_eq!(b["service"], SERVICE);
    assert_eq!(b["version"], "");
    assert_eq!(b["method"], "hash");
    assert_eq!(b["param_types"], "Ljava/lang/String;");
    assert_eq!(b["args"], json!(["hello"]));
    assert_eq!(
        b["attachments"],
        json!({
            "application": "dubbo2.js",
            "interface": SERVICE,
            "path": SERVICE,
            "timeout": 5000,
            "version": "0.0.0",
        })
    );
    assert_eq!(v["trailing_bytes"], 0);
}

#[test]
fn attachments_keep_wire_order() {
    let r = run(
        &[
            "decode",
            &frame_hex("req_sofa-rpc-node_hash_hello_attach-traceid"),
        ],
        None,
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let at = |k: &str| {
        r.stdout
            .find(&format!("\"{k}\":"))
            .unwrap_or_else(|| panic!("no {k}"))
    };
    // Keys are printed in the order of their bytes in the frame. (This provider happens to write them
    // sorted; `hessian_object_field_order_and_trailing` covers an order that is not alphabetical.)
    let hex = frame_hex("req_sofa-rpc-node_hash_hello_attach-traceid");
    let wire = |k: &str| {
        hex.find(&hex_of(k))
            .unwrap_or_else(|| panic!("{k} not on the wire"))
    };
    let mut keys = ["traceid", "path", "dubbo", "group"];
    keys.sort_by_key(|k| wire(k));
    let mut printed = keys;
    printed.sort_by_key(|k| at(k));
    assert_eq!(keys, printed);
}

fn hex_of(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn sofa_request_with_traceid() {
    let v = decode_frame(&frame_hex("req_sofa-rpc-node_hash_hello_attach-traceid"));
    assert_eq!(v["header"]["body_len"], 200);
    let b = &v["body"];
    assert_eq!(b["kind"], "request");
    assert_eq!(b["dubbo_version"], "5.3.0");
    assert_eq!(b["service"], SERVICE);
    assert_eq!(b["args"], json!(["hello"]));
    assert_eq!(b["attachments"]["traceid"], "abc123");
    assert_eq!(b["attachments"]["group"], "SOFA");
    assert_eq!(b["attachments"]["dubbo"], "5.3.0");
}

#[test]
fn value_responses() {
    for (name, value) in [
        ("resp_provider_hash_hello_99162322", 99_162_322),
        ("resp_provider_hash_empty_0", 0),
    ] {
        let v = decode_frame(&frame_hex(name));
        let h = &v["header"];
        assert_eq!(h["flag"], "0x02", "{name}");
        assert_eq!(h["request"], false, "{name}");
        assert_eq!(h["event"], false, "{name}");
        assert_eq!(h["status"], json!({"code": 20, "name": "OK"}), "{name}");
        assert_eq!(h["id"], 0, "{name}");
        let b = &v["body"];
        assert_eq!(b["kind"], "response", "{name}");
        assert_eq!(b["result"], "value", "{name}");
        assert_eq!(b["value"], value, "{name}");
        assert_eq!(b["attachments"], Value::Null, "{name}");
    }
}

#[test]
fn error_responses() {
    let v = decode_frame(&frame_hex("resp_provider_status80_exhausted_id1"));
    assert_eq!(v["header"]["status"], json!({"code": 80, "name": "SERVER_ERROR"}));
    assert_eq!(v["header"]["id"], 1);
    assert_eq!(v["body"]["kind"], "response");
    assert_eq!(v["body"]["result"], "error");
    assert_eq!(v["body"]["status"]["code"], 80);
    assert_eq!(
        v["body"]["message"],
        "Thread pool is EXHAUSTED! (max-concurrency 1)"
    );

    let v = decode_frame(&frame_hex("resp_provider_status80_service_not_found"));
    assert_eq!(v["header"]["status"]["name"], "SERVER_ERROR");
    let msg = v["body"]["message"].as_str().expect("message is a string");
    assert!(msg.starts_with("not found service: "), "{msg}");
}

#[test]
fn heartbeats() {
    let v = decode_frame(&frame_hex("heartbeat_req_sofa-rpc-node_id3"));
    let h = &v["header"];
    assert_eq!(h["flag"], "0xe2");
    assert_eq!(
        (h["request"].clone(), h["two_way"].clone(), h["event"].clone()),
        (json!(true), json!(true), json!(true))
    );
    assert_eq!(h["id"], 3);
    assert_eq!(h["body_len"], 1);
    assert_eq!(v["body"], json!({"kind": "event", "event": "heartbeat"}));

    let v = decode_frame(&frame_hex("heartbeat_resp_provider_id3"));
    let h = &v["header"];
    assert_eq!(h["flag"], "0x22");
    assert_eq!(h["request"], false);
    assert_eq!(h["event"], true);
    assert_eq!(h["status"]["name"], "OK");
    assert_eq!(h["id"], 3);
    assert_eq!(v["body"], json!({"kind": "event", "event": "heartbeat"}));
}

#[test]
fn fastjson_heartbeat_and_unsupported_serialization() {
    // A fastjson (id 6) heartbeat request: body "null\n".
    let v = decode_frame("dabbe600 0000000000000007 00000005 6e756c6c0a");
    assert_eq!(v["header"]["serialization"], json!({"id": 6, "name": "fastjson"}));
    assert_eq!(v["body"], json!({"kind": "event", "event": "heartbeat"}));

    // Serialization 3 (java): the header is shown, the body left as hex.
    let v = decode_frame("dabbc300 0000000000000001 00000002 abcd");
    assert_eq!(
        v["header"]["serialization"],
        json!({"id": 3, "name": "unsupported"})
    );
    assert_eq!(v["body"]["kind"], "undecoded");
    assert_eq!(v["body"]["hex"], "abcd");
}

#[test]
fn every_frame_vector_decodes_from_stdin() {
    let dir = vectors().join("frames");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("frames dir") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_none_or(|e| e != "hex") {
            continue;
        }
        let hex = std::fs::read_to_string(&path).expect("read vector");
        let v = ok(&["decode"], Some(&hex));
        let body_len = v["header"]["body_len"].as_u64().expect("body_len");
        assert_eq!(body_len as usize, hex.trim().len() / 2 - 16, "{}", path.display());
        assert_eq!(v["trailing_bytes"], 0, "{}", path.display());
        assert!(v["body"]["kind"].is_string(), "{}", path.display());
        n += 1;
    }
    assert_eq!(n, 8);
}

#[test]
fn input_forms() {
    let hex = frame_hex("resp_provider_hash_hello_99162322");
    let expect = decode_frame(&hex);
    // stdin, with a 0x prefix and whitespace / newlines anywhere.
    let spaced: String = hex
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 4 == 3 {
                format!("{c} \n\t")
            } else {
                c.to_string()
            }
        })
        .collect();
    assert_eq!(ok(&["decode"], Some(&format!("\n  0x{spaced}\n"))), expect);
    assert_eq!(ok(&["decode", "-"], Some(&hex.to_uppercase())), expect);
    // Several arguments are concatenated; a prefix on the argument works too.
    let (a, b) = hex.split_at(10);
    assert_eq!(ok(&["decode", &format!("0X{a}"), b], None), expect);
}

#[test]
fn trailing_bytes_are_reported() {
    let hex = frame_hex("heartbeat_resp_provider_id3");
    let v = decode_frame(&format!("{hex}dabbc2"));
    assert_eq!(v["trailing_bytes"], 3);
    assert_eq!(v["body"]["event"], "heartbeat");
    // A second whole frame is trailing too: one frame is decoded.
    let v = decode_frame(&format!("{hex}{hex}"));
    assert_eq!(v["trailing_bytes"], 17);
}

#[test]
fn hessian_vectors_match_their_index() {
    let index: Value = serde_json::from_str(
        &std::fs::read_to_string(vectors().join("hessian2-hessianjs/index.json")).expect("index.json"),
    )
    .expect("index.json parses");
    let entries = index.as_array().expect("index is an array");
    assert!(entries.len() >= 40);
    for e in entries {
        let file = e["file"].as_str().expect("file");
        let ty = e["type"].as_str().expect("type");
        let out = decode_hessian(&hessian_hex(file));
        assert_eq!(out["trailing_bytes"], 0, "{file}");
        assert_eq!(out["bytes"], e["bytes"], "{file}");
        let got = &out["value"];
        let expected = match ty {
            "null" | "bool" | "int" | "list" | "map" => e["value"].clone(),
            "long" => match &e["value"] {
                Value::String(s) => json!(s.parse::<i64>().expect("long in a string")),
                other => other.clone(),
            },
            "double" => json!(e["value"].as_f64().expect("double")),
            "string" => match e.get("value_repeat") {
                Some(r) => json!(r[0]
                    .as_str()
                    .expect("repeat str")
                    .repeat(r[1].as_u64().expect("count") as usize)),
                None => e["value"].clone(),
            },
            "date_ms" => json!({"$date": e["value"]}),
            "binary" => json!({"$binary": e["hex"]}),
            "typed_list" => {
                let t = got["$type"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{file}: no $type in {got}"));
                assert!(t.contains(e["elem"].as_str().expect("elem")), "{file}: {t}");
                json!({"$type": t, "items": e["value"]})
            }
            "object" => json!({"$class": e["class"], "fields": e["fields"]}),
            other => panic!("{file}: unknown type {other} in index.json"),
        };
        // Objects inside lists are written {"class", "fields"} in the index.
        let expected = rename_class(expected);
        assert_eq!(got, &expected, "{file}");
        let kind = out["kind"].as_str().expect("kind");
        let want_kind = match ty {
            "date_ms" => "date",
            "typed_list" => "list",
            t => t,
        };
        assert_eq!(kind, want_kind, "{file}");
    }
}

fn rename_class(v: Value) -> Value {
    match v {
        Value::Object(m) if m.contains_key("class") && m.contains_key("fields") && m.len() == 2 => {
            json!({"$class": m["class"], "fields": rename_class(m["fields"].clone())})
        }
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, rename_class(v))).collect()),
        Value::Array(a) => Value::Array(a.into_iter().map(rename_class).collect()),
        other => other,
    }
}

#[test]
fn hessian_object_field_order_and_trailing() {
    let r = run(&["decode", "--hessian", &hessian_hex("object_user.hex")], None);
    assert_eq!(r.code, Some(0));
    let name = r.stdout.find("\"name\"").expect("name field");
    let age = r.stdout.find("\"age\"").expect("age field");
    assert!(name < age, "fields out of class-definition order: {}", r.stdout);

    let v = decode_hessian("4e 4e 4e");
    assert_eq!(v["value"], Value::Null);
    assert_eq!(v["bytes"], 1);
    assert_eq!(v["trailing_bytes"], 2);
    // Non-finite doubles: 'D' + IEEE bits.
    assert_eq!(decode_hessian("44 7ff8000000000000")["value"], "NaN");
    assert_eq!(decode_hessian("44 fff0000000000000")["value"], "-Infinity");
    // A back-reference to the list itself: [ref 0].
    assert_eq!(decode_hessian("79 5190")["value"], json!([{"$ref": 0}]));
}

#[test]
fn malformed_input_fails_cleanly() {
    let too_big = "dabbc200 0000000000000001 40000000"; // claims a 1 GiB body
    let negative = "dabbc200 0000000000000001 80000000";
    let cases: &[(&[&str], Option<&str>, &str)] = &[
        (&["decode", "zz"], None, "invalid hex"),
        (&["decode", "abc"], None, "odd number"),
        (&["decode", "dab\u{e9}"], None, "invalid hex"),
        (&["decode", "dabb"], None, "14 more"),
        (
            &["decode", "cafe00000000000000000000000000000000"],
            None,
            "bad magic 0xcafe",
        ),
        (&["decode", "cafe"], None, "bad magic"),
        (&["decode", too_big], None, "1073741824"),
        (&["decode", negative], None, "exceeds the limit"),
        (
            &["decode", "dabbc200 0000000000000001 0000000a 00"],
            None,
            "9 more bytes",
        ),
        (
            &["decode", "dabbc200 0000000000000001 00000001 ff"],
            None,
            "bad frame body",
        ),
        (
            &["decode", "dabb0250 0000000000000001 00000001 90"],
            None,
            "error message",
        ),
        (&["decode"], Some(""), "empty input"),
        (&["decode"], Some(" \n "), "empty input"),
        (&["decode"], Some("0x"), "empty input"),
        (&["decode", "--hessian", "59"], None, "truncated"),
        (&["decode", "--hessian", "ff"], None, "truncated"),
        (
            &["decode", "--hessian", "5a"],
            None,
            "unexpected hessian tag 0x5a",
        ),
        (&["decode", "--hessian", "5193"], None, "reference 3 out of range"),
        (&["decode", "--hessian"], Some(""), "empty input"),
    ];
    for (args, stdin, expect) in cases {
        fails(args, *stdin, expect);
    }
    // Nesting beyond the codec's limit.
    fails(
        &["decode", "--hessian", &"57".repeat(200)],
        None,
        "nesting deeper",
    );
    let deep = format!("dabbc200 0000000000000001 {:08x} {}", 200, "57".repeat(200));
    fails(&["decode", &deep], None, "bad frame body");
}

#[test]
fn truncated_frames_say_how_much_is_missing() {
    let hex = frame_hex("req_dubbo2js_hash_hello");
    let total = hex.len() / 2;
    for cut in [1, 2, 15, 16, 17, total / 2, total - 1] {
        let missing = total - cut;
        let expect = if cut < 16 {
            format!("at least {} more", 16 - cut)
        } else {
            format!("{missing} more byte")
        };
        fails(&["decode", &hex[..cut * 2]], None, &expect);
    }
}

#[test]
fn corrupted_bodies_never_panic() {
    let hex = frame_hex("req_dubbo2js_hash_hello");
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    // Every body byte replaced by a few troublesome values, and the body truncated at every length
    // (with the header's length patched so the frame itself is whole).
    for i in (16..bytes.len()).step_by(3) {
        for b in [0x00, 0x51, 0xff] {
            let mut m = bytes.clone();
            m[i] = b;
            never_panics(&["decode", &hex_bytes(&m)]);
        }
    }
    for len in (0..bytes.len() - 16).step_by(7) {
        let mut m = bytes[..16 + len].to_vec();
        m[12..16].copy_from_slice(&(len as u32).to_be_bytes());
        never_panics(&["decode", &hex_bytes(&m)]);
    }
}

fn hex_bytes(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn usage_errors_exit_non_zero() {
    let r = run(&["decode", "--no-such-flag"], None);
    assert_eq!(r.code, Some(2));
    assert!(!r.stderr.contains("panicked"));
    let r = run(&[], None);
    assert_ne!(r.code, Some(0));
}
