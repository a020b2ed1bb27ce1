//! The JSON work itself, in process (issue 12 item 5): what the consumer agent does per call for the JSON API
//! (`echoUser(User)`, a POJO argument and a map answer: the `generic` scenario's `json` variant) next to what it
//! does for the challenge form (`hash("")`, the `form` variant), with the same functions the agent calls:
//!
//! * `form_request`: `mesh_http::parse_request` + `parse_form` + the Dubbo request encoded (`Codec::encode_request`
//!   with the agent's attachments `path`, `interface`, `timeout`);
//! * `json_request`: `parse_request` + `parse_json_call` (JSON parse, JSON -> Hessian values by the declared type)
//!   + the same encoding;
//! * `form_answer`: `decode_frame` + `decode_body` of the simulator's answer + `mesh_http::answer::render`;
//! * `json_answer`: the same decode + `json_answer::render_json` (Hessian map -> JSON text).
//!
//! Per case: the median of 41 batches of about 5 ms each, in ns per operation. `json_work_ns` = (json_request +
//! json_answer) - (form_request + form_answer): the CPU the JSON API adds per call over the form.
//! With `--bench` (what `cargo bench` passes) one JSON line goes to stdout and to `$MESH_BENCH_OUT`
//! (default `target/bench/generic_json.json`); without it (`cargo test --benches`) every case runs a few
//! times and is checked, nothing is written.

// A bench binary reports on stdout and unwraps its own fixtures (a failure there is a bug the run must stop on).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mesh_dubbo::message::DUBBO_VERSION;
use mesh_dubbo::{Codec, Decoded, Header, RequestHead, Response, RpcResult, Serialization, Value};
use mesh_http::generic::to_json::RenderLimits;
use mesh_http::{
    answer, json_answer, parse_form, parse_json_call, parse_request, HttpRequest, Limits, Parse,
};
use mesh_testkit::loadgen::{bench_user, user_json_path, USER_JSON_BODY};
use mesh_testkit::sim::{user_answer, SERVICE, USER_CLASS};

const FORM_BODY: &str = "interface=com.alibaba.dubbo.performance.demo.provider.IHelloService&method=hash\
                         &parameterTypesString=Ljava%2Flang%2FString%3B&parameter=";

fn form_http() -> Vec<u8> {
    format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{FORM_BODY}",
        FORM_BODY.len()
    )
    .into_bytes()
}

fn json_http() -> Vec<u8> {
    format!(
        "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         x-dubbo-service-method-overloading: {USER_CLASS}\r\nContent-Length: {}\r\n\r\n{USER_JSON_BODY}",
        user_json_path(),
        USER_JSON_BODY.len()
    )
    .into_bytes()
}

fn request<'a>(bytes: &'a [u8], limits: &Limits) -> HttpRequest<'a> {
    match parse_request(bytes, limits).unwrap() {
        Parse::Complete(r) => r,
        Parse::Partial { .. } => panic!("partial request"),
    }
}

/// The agent's request encoding (as `form_call::encode_call`): head, arguments, `path`/`interface`/`timeout`.
fn encode(codec: &Codec, buf: &mut BytesMut, inv: &mesh_http::Invocation<'_>) -> usize {
    let head = RequestHead {
        dubbo_version: DUBBO_VERSION,
        service: &inv.interface,
        version: Some(inv.version.as_deref().unwrap_or("0.0.0")),
        method: &inv.method,
        param_types: &inv.param_types,
    };
    let path = Value::str(&inv.interface);
    let timeout = Value::str("5000");
    let atts = [("path", &path), ("interface", &path), ("timeout", &timeout)];
    buf.clear();
    codec
        .encode_request(
            buf,
            Header::request(7, Serialization::Hessian2, true),
            &head,
            &inv.args,
            atts,
        )
        .unwrap();
    buf.len()
}

/// The simulator's answer frame for `value` (with the `dubbo` attachment, as to a 2.0.2 consumer).
fn answer_frame(codec: &Codec, value: Value<'static>) -> Vec<u8> {
    let mut buf = BytesMut::new();
    let resp = Response::Ok {
        result: RpcResult::Value(value),
        attachments: Some(vec![("dubbo".into(), Value::str(DUBBO_VERSION))]),
    };
    codec
        .encode_response(&mut buf, 7, Serialization::Hessian2, &resp)
        .unwrap();
    buf.to_vec()
}

fn decode_and<R>(codec: &Codec, frame: &[u8], render: impl FnOnce(&Codec, &mesh_dubbo::Frame) -> R) -> R {
    let mut buf = BytesMut::from(frame);
    let Decoded::Frame(f) = codec.decode_frame(&mut buf).unwrap() else {
        panic!("incomplete frame");
    };
    render(codec, &f)
}

/// Median ns per operation of 41 batches of about 5 ms each.
fn measure(mut op: impl FnMut() -> usize) -> f64 {
    let mut n = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..n {
            black_box(op());
        }
        if t.elapsed() >= Duration::from_millis(5) {
            break;
        }
        n *= 2;
    }
    let mut per = Vec::with_capacity(41);
    for _ in 0..41 {
        let t = Instant::now();
        for _ in 0..n {
            black_box(op());
        }
        per.push(t.elapsed().as_nanos() as f64 / n as f64);
    }
    per.sort_by(f64::total_cmp);
    per[per.len() / 2]
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let codec = Codec::default();
    let limits = Limits::default();
    let render_limits = RenderLimits::default();
    let form = form_http();
    let json = json_http();
    let form_answer_frame = answer_frame(&codec, Value::Int(0));
    let json_answer_frame = answer_frame(&codec, user_answer(&bench_user()));
    let mut buf = BytesMut::with_capacity(4096);

    // Check every case once: the right call, the right answer.
    {
        let form_req = request(&form, &limits);
        let inv = parse_form(form_req.body.as_ref(), &limits).unwrap();
        assert_eq!(
            (inv.method.as_ref(), inv.args.as_slice()),
            ("hash", &[Value::str("")][..])
        );
        let call = parse_json_call(&request(&json, &limits)).unwrap().unwrap();
        assert_eq!(call.invocation.interface, SERVICE);
        assert_eq!(call.invocation.args, vec![bench_user().to_value()]);
        assert!(encode(&codec, &mut buf, &call.invocation) > 0);
        let a = decode_and(&codec, &form_answer_frame, |c, f| {
            answer::render(c.decode_body(&f.header, &f.body))
        });
        assert_eq!((a.status, a.body.as_ref()), (200, "0"));
        let j = decode_and(&codec, &json_answer_frame, |c, f| {
            json_answer::render_json(c.decode_body(&f.header, &f.body), &render_limits)
        });
        assert_eq!(j.status, 200);
        let v: serde_json::Value = serde_json::from_str(&j.body).unwrap();
        assert_eq!(v, mesh_testkit::loadgen::user_answer_json());
    }
    if !full {
        println!("generic_json: smoke test passed (run with `cargo bench` to measure)");
        return;
    }

    let form_request = measure(|| {
        let req = request(&form, &limits);
        let inv = parse_form(req.body.as_ref(), &limits).unwrap();
        encode(&codec, &mut buf, &inv)
    });
    let json_request = measure(|| {
        let req = request(&json, &limits);
        let call = parse_json_call(&req).unwrap().unwrap();
        encode(&codec, &mut buf, &call.invocation)
    });
    let form_answer = measure(|| {
        decode_and(&codec, &form_answer_frame, |c, f| {
            answer::render(c.decode_body(&f.header, &f.body)).body.len()
        })
    });
    let json_answer = measure(|| {
        decode_and(&codec, &json_answer_frame, |c, f| {
            json_answer::render_json(c.decode_body(&f.header, &f.body), &render_limits)
                .body
                .len()
        })
    });
    let r1 = |x: f64| (x * 10.0).round() / 10.0;
    let out = serde_json::json!({
        "bench": "generic_json",
        "unit": "ns per operation (median of 41 batches of ~5 ms)",
        "form_request_ns": r1(form_request),
        "json_request_ns": r1(json_request),
        "form_answer_ns": r1(form_answer),
        "json_answer_ns": r1(json_answer),
        "json_work_ns": r1(json_request + json_answer - form_request - form_answer),
        "json_body": USER_JSON_BODY,
        "json_request_bytes": json.len(),
        "form_request_bytes": form.len(),
    });
    let line = out.to_string();
    println!("{line}");
    let path = std::env::var("MESH_BENCH_OUT").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/bench/generic_json.json"
        )
        .to_owned()
    });
    if let Some(dir) = std::path::Path::new(&path).parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(&path, line + "\n").unwrap();
}
