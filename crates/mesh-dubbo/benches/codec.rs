//! Codec micro-benchmarks on the 2018 challenge workload: `IHelloService.hash(String)` with one 512-char
//! alphanumeric argument, answered with `RESPONSE_VALUE` + `Int(java_string_hash(arg))`, in both
//! serializations (hessian2, fastjson).
//!
//! Per serialization, four operations:
//! * `encode_request` / `encode_response`: into one reused `BytesMut`, cleared before each frame;
//! * `decode_request` / `decode_response`: `decode_frame` + `decode_body` off a read buffer that holds
//!   pre-encoded frames back to back (as a socket read buffer does). The buffer is refilled from a template
//!   outside the timed sections, into its own reclaimed allocation, so a decode costs no copy of the frame.
//!
//! Three measurements per case:
//! 1. criterion (`iter_custom`, modest sample size / measurement time);
//! 2. our own median of 41 batches of ~5 ms each, in ns per operation;
//! 3. heap allocations per operation. The workspace forbids `unsafe_code` (a command-line `forbid` that a
//!    bench cannot `allow`), so a counting `#[global_allocator]` cannot be written here. Instead the bench
//!    re-runs itself under `valgrind` (memcheck) in a probe mode that builds and warms up every case, then
//!    runs `n` operations of one case: once with `n = 0` (a baseline shared by all cases) and once per case
//!    with `n = ALLOC_PROBE_OPS`. The difference of the "total heap usage" lines divided by
//!    `ALLOC_PROBE_OPS` is allocations (malloc/calloc/realloc/memalign calls) and bytes requested per
//!    operation. Without valgrind these fields are `null`.
//!
//! At the end one JSON line is printed to stdout and written to `target/bench/codec.json`.
//! `cargo test --benches` / `cargo bench -- --test` only run each case a few times (smoke test, no JSON).

// A bench binary reports on stdout, and unwraps its own fixtures and encode/decode results (a failure
// there is a bug the run must stop on).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput};
use mesh_dubbo::{
    java_string_hash, Body, Codec, Decoded, Header, Request, RequestHead, Response, RpcResult, Serialization,
    Value,
};
use serde::Serialize;

const INTERFACE: &str = "com.alibaba.dubbo.performance.demo.provider.IHelloService";
const METHOD: &str = "hash";
const PARAM_TYPES: &str = "Ljava/lang/String;";
const DUBBO_VERSION: &str = "2.0.2";
const SERVICE_VERSION: &str = "0.0.0";
/// The challenge drew lengths in 0..1024; the bench uses the middle.
const ARG_LEN: usize = 512;
const SEED: u64 = 2018;
/// Frames per refill of a decode case's read buffer.
const FRAMES_PER_FILL: usize = 256;

const OWN_BATCHES: usize = 41;
const OWN_BATCH_TARGET: Duration = Duration::from_millis(5);
const WARM_UP: Duration = Duration::from_millis(200);
const WARM_UP_OPS_PROBE: u64 = 1000;
const ALLOC_PROBE_OPS: u64 = 1000;
const PROBE_ENV: &str = "MESH_CODEC_ALLOC_PROBE";

/// One benchmarked operation with its state.
trait Case {
    fn ser(&self) -> Serialization;
    fn op(&self) -> &'static str;
    /// Size of one whole frame (header + body) this case writes or reads.
    fn frame_bytes(&self) -> usize;
    /// Runs the operation `n` times; returns the time spent in the operations only.
    fn run(&mut self, n: u64) -> Duration;

    fn name(&self) -> String {
        format!("{}/{}", self.ser().name(), self.op())
    }
}

/// Deterministic alphanumeric text (splitmix64), standing in for the challenge's random parameter.
fn random_alnum(len: usize, seed: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            char::from(ALPHABET[(z % ALPHABET.len() as u64) as usize])
        })
        .collect()
}

fn head() -> RequestHead<'static> {
    RequestHead {
        dubbo_version: DUBBO_VERSION,
        service: INTERFACE,
        version: Some(SERVICE_VERSION),
        method: METHOD,
        param_types: PARAM_TYPES,
    }
}

fn encode_request(codec: &Codec, buf: &mut BytesMut, id: u64, ser: Serialization, arg: &str) {
    let path = Value::str(INTERFACE);
    let args = [Value::str(arg)];
    codec
        .encode_request(
            buf,
            Header::request(id, ser, true),
            &head(),
            &args,
            [("path", &path)],
        )
        .unwrap();
}

fn value_response(hash: i32) -> Response<'static> {
    Response::Ok {
        result: RpcResult::Value(Value::Int(hash)),
        attachments: None,
    }
}

struct EncodeRequest {
    codec: Codec,
    ser: Serialization,
    arg: String,
    buf: BytesMut,
    id: u64,
}

impl Case for EncodeRequest {
    fn ser(&self) -> Serialization {
        self.ser
    }
    fn op(&self) -> &'static str {
        "encode_request"
    }
    fn frame_bytes(&self) -> usize {
        let mut buf = BytesMut::new();
        encode_request(&self.codec, &mut buf, 0, self.ser, &self.arg);
        buf.len()
    }
    fn run(&mut self, n: u64) -> Duration {
        let Self {
            codec,
            ser,
            arg,
            buf,
            id,
        } = self;
        let head = head();
        let path = Value::str(INTERFACE);
        let args = [Value::str(arg)];
        let start = Instant::now();
        for _ in 0..n {
            *id = id.wrapping_add(1);
            buf.clear();
            codec
                .encode_request(
                    buf,
                    Header::request(*id, *ser, true),
                    &head,
                    &args,
                    [("path", &path)],
                )
                .unwrap();
            black_box(&*buf);
        }
        start.elapsed()
    }
}

struct EncodeResponse {
    codec: Codec,
    ser: Serialization,
    response: Response<'static>,
    buf: BytesMut,
    id: u64,
}

impl Case for EncodeResponse {
    fn ser(&self) -> Serialization {
        self.ser
    }
    fn op(&self) -> &'static str {
        "encode_response"
    }
    fn frame_bytes(&self) -> usize {
        let mut buf = BytesMut::new();
        self.codec
            .encode_response(&mut buf, 0, self.ser, &self.response)
            .unwrap();
        buf.len()
    }
    fn run(&mut self, n: u64) -> Duration {
        let Self {
            codec,
            ser,
            response,
            buf,
            id,
        } = self;
        let start = Instant::now();
        for _ in 0..n {
            *id = id.wrapping_add(1);
            buf.clear();
            codec.encode_response(buf, *id, *ser, response).unwrap();
            black_box(&*buf);
        }
        start.elapsed()
    }
}

/// `decode_frame` + `decode_body` of frames read off a buffer holding `FRAMES_PER_FILL` of them.
struct Decode {
    codec: Codec,
    ser: Serialization,
    op: &'static str,
    template: Bytes,
    frame_len: usize,
    rx: BytesMut,
}

impl Decode {
    fn new(
        codec: Codec,
        ser: Serialization,
        op: &'static str,
        mut encode: impl FnMut(&mut BytesMut, u64),
    ) -> Self {
        let mut template = BytesMut::new();
        for id in 0..FRAMES_PER_FILL as u64 {
            encode(&mut template, id);
        }
        let frame_len = template.len() / FRAMES_PER_FILL;
        assert_eq!(
            frame_len * FRAMES_PER_FILL,
            template.len(),
            "frames of one case must have one size"
        );
        let template = template.freeze();
        let mut rx = BytesMut::with_capacity(template.len());
        rx.extend_from_slice(&template);
        Decode {
            codec,
            ser,
            op,
            template,
            frame_len,
            rx,
        }
    }

    /// Decodes one frame (outside any timing) and hands its body to `check`.
    fn check(&self, check: impl FnOnce(&Body<'_>)) {
        let mut buf = BytesMut::from(&self.template[..self.frame_len]);
        let Decoded::Frame(frame) = self.codec.decode_frame(&mut buf).unwrap() else {
            panic!("partial frame")
        };
        check(&self.codec.decode_body(&frame.header, &frame.body).unwrap());
    }
}

impl Case for Decode {
    fn ser(&self) -> Serialization {
        self.ser
    }
    fn op(&self) -> &'static str {
        self.op
    }
    fn frame_bytes(&self) -> usize {
        self.frame_len
    }
    fn run(&mut self, n: u64) -> Duration {
        let mut left = n;
        let mut spent = Duration::ZERO;
        while left > 0 {
            if self.rx.is_empty() {
                // Every frame split off earlier has been dropped, so this reclaims the same allocation.
                self.rx.reserve(self.template.len());
                self.rx.extend_from_slice(&self.template);
            }
            let k = left.min((self.rx.len() / self.frame_len) as u64);
            let start = Instant::now();
            for _ in 0..k {
                let Decoded::Frame(frame) = self.codec.decode_frame(&mut self.rx).unwrap() else {
                    panic!("partial frame")
                };
                let body = self.codec.decode_body(&frame.header, &frame.body).unwrap();
                black_box(&body);
            }
            spent += start.elapsed();
            left -= k;
        }
        spent
    }
}

fn cases() -> Vec<Box<dyn Case>> {
    let codec = Codec::default();
    let arg = random_alnum(ARG_LEN, SEED);
    let hash = java_string_hash(&arg);
    let mut cases: Vec<Box<dyn Case>> = Vec::new();
    for ser in [Serialization::Hessian2, Serialization::FastJson] {
        cases.push(Box::new(EncodeRequest {
            codec,
            ser,
            arg: arg.clone(),
            buf: BytesMut::new(),
            id: 0,
        }));

        let decode_req = Decode::new(codec, ser, "decode_request", |buf, id| {
            encode_request(&codec, buf, id, ser, &arg)
        });
        decode_req.check(|body| {
            let Body::Request(req) = body else {
                panic!("not a request: {body:?}")
            };
            let expected = Request {
                dubbo_version: DUBBO_VERSION.into(),
                service: INTERFACE.into(),
                version: Some(SERVICE_VERSION.into()),
                method: METHOD.into(),
                param_types: PARAM_TYPES.into(),
                args: vec![Value::str(&arg)],
                attachments: vec![("path".into(), Value::str(INTERFACE))],
            };
            assert_eq!(*req, expected);
        });
        cases.push(Box::new(decode_req));

        cases.push(Box::new(EncodeResponse {
            codec,
            ser,
            response: value_response(hash),
            buf: BytesMut::new(),
            id: 0,
        }));

        let decode_resp = Decode::new(codec, ser, "decode_response", |buf, id| {
            codec
                .encode_response(buf, id, ser, &value_response(hash))
                .unwrap();
        });
        decode_resp.check(|body| assert_eq!(*body, Body::Response(value_response(hash))));
        cases.push(Box::new(decode_resp));
    }
    cases
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bench,
    /// `cargo test --benches`, `cargo bench -- --test`: criterion runs each routine once.
    Test,
    /// `--list`, `--profile-time`: leave it all to criterion.
    CriterionOnly,
}

/// The same decision criterion makes from its arguments.
fn mode() -> Mode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |flag: &str| {
        args.iter()
            .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
    };
    if has("--list") || has("--profile-time") {
        Mode::CriterionOnly
    } else if !has("--bench") || has("--test") {
        Mode::Test
    } else {
        Mode::Bench
    }
}

fn run_criterion(cases: &mut [Box<dyn Case>]) {
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500))
        .nresamples(20_000)
        .configure_from_args();
    for ser in [Serialization::Hessian2, Serialization::FastJson] {
        let mut group = c.benchmark_group(ser.name());
        for case in cases.iter_mut().filter(|c| c.ser() == ser) {
            group.throughput(Throughput::Bytes(case.frame_bytes() as u64));
            group.bench_function(case.op(), |b| b.iter_custom(|iters| case.run(iters)));
        }
        group.finish();
    }
    c.final_summary();
}

/// Median (and best) ns/op over `OWN_BATCHES` batches of about `OWN_BATCH_TARGET` each, after a warm-up.
fn own_ns_per_op(case: &mut dyn Case) -> (f64, f64, u64) {
    let warm = Instant::now();
    let mut n = 1u64;
    let mut t = Duration::ZERO;
    while warm.elapsed() < WARM_UP {
        t = case.run(n);
        if t < Duration::from_millis(1) {
            n *= 2;
        }
    }
    let per_op = t.as_secs_f64() / n as f64;
    let ops = ((OWN_BATCH_TARGET.as_secs_f64() / per_op) as u64).max(1);
    let mut samples: Vec<f64> = (0..OWN_BATCHES)
        .map(|_| case.run(ops).as_nanos() as f64 / ops as f64)
        .collect();
    samples.sort_by(f64::total_cmp);
    (samples[samples.len() / 2], samples[0], ops)
}

/// Probe mode (the child under valgrind): build and warm up every case, then run `n` operations of case
/// number `index`, nothing else. With `n = 0` the run is the same whatever the index: one shared baseline.
fn probe(spec: &str) {
    let (index, n) = spec.split_once(':').unwrap();
    let (index, n): (usize, u64) = (index.parse().unwrap(), n.parse().unwrap());
    let mut cases = cases();
    for case in &mut cases {
        case.run(WARM_UP_OPS_PROBE);
    }
    cases[index].run(n);
}

/// The probe's argument, fixed-width so that reading it allocates the same bytes in every run.
fn probe_spec(index: usize, n: u64) -> String {
    format!("{index:03}:{n:010}")
}

/// `(allocs, bytes)` of one probe run, from valgrind's summary
/// `==pid==   total heap usage: 1,234 allocs, 1,200 frees, 56,789 bytes allocated`.
fn run_probe(spec: &str) -> Option<(u64, u64)> {
    let exe = std::env::current_exe().ok()?;
    let out = Command::new("valgrind")
        .args(["--tool=memcheck", "--leak-check=no"])
        .arg(exe)
        .env(PROBE_ENV, spec)
        .output()
        .ok()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        eprintln!("alloc probe {spec} failed: {stderr}");
        return None;
    }
    let line = stderr.lines().find_map(|l| l.split_once("total heap usage:"))?.1;
    let num = |s: &str| s.trim().replace(',', "").parse::<u64>().ok();
    let allocs = num(line.split("allocs").next()?)?;
    let bytes = num(line.split("frees,").nth(1)?.split("bytes").next()?)?;
    Some((allocs, bytes))
}

/// Allocations and bytes per operation of case `index`: its probe minus the baseline, / `ALLOC_PROBE_OPS`.
fn allocs_per_op(index: usize, baseline: (u64, u64)) -> Option<(f64, f64)> {
    let (allocs, bytes) = run_probe(&probe_spec(index, ALLOC_PROBE_OPS))?;
    let per = |x: u64, base: u64| x.saturating_sub(base) as f64 / ALLOC_PROBE_OPS as f64;
    Some((per(allocs, baseline.0), per(bytes, baseline.1)))
}

#[derive(Debug, Serialize)]
struct CaseResult {
    case: String,
    ns_per_op: f64,
    ns_per_op_min: f64,
    allocs_per_op: Option<f64>,
    bytes_alloc_per_op: Option<f64>,
    frame_bytes: usize,
    ops_per_batch: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    bench: &'static str,
    arg_len: usize,
    timing: String,
    alloc_method: &'static str,
    results: Vec<CaseResult>,
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn main() {
    if let Ok(spec) = std::env::var(PROBE_ENV) {
        return probe(&spec);
    }
    let mode = mode();
    let mut cases = cases();
    run_criterion(&mut cases);
    match mode {
        Mode::CriterionOnly => {}
        Mode::Test => {
            for case in &mut cases {
                case.run(3);
            }
            eprintln!("codec bench smoke run: {} cases ok", cases.len());
        }
        Mode::Bench => report(&mut cases),
    }
}

fn report(cases: &mut [Box<dyn Case>]) {
    let have_valgrind = Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let baseline = if have_valgrind {
        run_probe(&probe_spec(0, 0))
    } else {
        None
    };
    if baseline.is_none() {
        eprintln!("valgrind not usable: allocs_per_op and bytes_alloc_per_op will be null");
    }
    let mut results = Vec::new();
    for (index, case) in cases.iter_mut().enumerate() {
        let name = case.name();
        let (ns, ns_min, ops) = own_ns_per_op(case.as_mut());
        let allocs = baseline.and_then(|base| allocs_per_op(index, base));
        let frame_bytes = case.frame_bytes();
        eprintln!(
            "{name:<26} {ns:>8.1} ns/op median (min {ns_min:.1}, {OWN_BATCHES} x {ops} ops)  \
             allocs/op, bytes/op: {allocs:?}  frame {frame_bytes} B"
        );
        results.push(CaseResult {
            case: name,
            ns_per_op: round(ns, 1),
            ns_per_op_min: round(ns_min, 1),
            allocs_per_op: allocs.map(|a| round(a.0, 3)),
            bytes_alloc_per_op: allocs.map(|a| round(a.1, 1)),
            frame_bytes,
            ops_per_batch: ops,
        });
    }
    let report = Report {
        bench: "codec",
        arg_len: ARG_LEN,
        timing: format!(
            "median of {OWN_BATCHES} batches of ~{} ms",
            OWN_BATCH_TARGET.as_millis()
        ),
        alloc_method: if baseline.is_some() {
            "valgrind memcheck 'total heap usage': (warm-up + 1000 ops) minus (warm-up + 0 ops), / 1000"
        } else {
            "unavailable"
        },
        results,
    };
    let json = serde_json::to_string(&report).unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("codec.json"), format!("{json}\n")).unwrap();
    println!("{json}");
}
