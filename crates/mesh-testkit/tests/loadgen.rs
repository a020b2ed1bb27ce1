//! The load generator against the simulator (Dubbo mode) and against a tiny HTTP server written here.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_dubbo::{java_string_hash, Serialization};
use mesh_testkit::loadgen::{self, Call, LoadConfig, Summary, Target};
use mesh_testkit::process::{free_port, ChildGuard};
use mesh_testkit::sim::{self, SimConfig, USER_CLASS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn sim_cfg(latency_ms: u64, threads: usize) -> SimConfig {
    SimConfig {
        name: "lg".into(),
        latency: Duration::from_millis(latency_ms),
        threads,
        ..SimConfig::default()
    }
}

fn dubbo_cfg(port: u16, connections: usize, concurrency: usize, duration_ms: u64) -> LoadConfig {
    LoadConfig {
        connections,
        concurrency,
        duration: Duration::from_millis(duration_ms),
        warmup: Duration::ZERO,
        seed: Some(2018),
        ..LoadConfig::new(format!("dubbo://127.0.0.1:{port}").parse().expect("target"))
    }
}

fn check_consistent(s: &Summary) {
    assert!(s.ok <= s.sent, "{s:?}");
    if s.ok > 0 {
        let l = &s.latency_us;
        assert!(
            l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max,
            "{l:?}"
        );
        assert!(s.qps > 0.0);
    }
}

#[test]
fn dubbo_mode_against_the_sim_has_no_errors() {
    let sim = sim::spawn_on(sim_cfg(5, 0), 0, 1).expect("sim");
    let t = Instant::now();
    let s = loadgen::run_blocking(dubbo_cfg(sim.port(), 8, 64, 2000), 1).expect("run");
    let elapsed = t.elapsed();
    check_consistent(&s);
    assert_eq!(s.error_count(), 0, "{s:?}");
    assert!(s.ok > 0);
    assert_eq!(s.ok, s.sent);
    assert_eq!(s.connections, 8);
    assert!(s.latency_us.p50 >= 5_000, "{s:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    let stats = sim.stop();
    assert_eq!(
        stats.served, s.ok,
        "warm-up 0: every call the sim served was counted"
    );
    assert!(stats.max_inflight <= 64);
}

#[test]
fn dubbo_mode_fastjson() {
    let sim = sim::spawn(sim_cfg(1, 0)).expect("sim");
    let mut cfg = dubbo_cfg(sim.port(), 2, 4, 500);
    cfg.serialization = Serialization::FastJson;
    let s = loadgen::run_blocking(cfg, 0).expect("run");
    assert_eq!(s.error_count(), 0, "{s:?}");
    assert!(s.ok > 0);
}

#[test]
fn requests_limit_and_warmup() {
    let sim = sim::spawn(sim_cfg(1, 0)).expect("sim");
    let mut cfg = dubbo_cfg(sim.port(), 4, 8, 10_000);
    cfg.requests = Some(100);
    cfg.warmup = Duration::from_millis(200);
    let t = Instant::now();
    let s = loadgen::run_blocking(cfg, 0).expect("run");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!((s.sent, s.ok, s.error_count()), (100, 100, 0), "{s:?}");
    let served = sim.stop().served;
    assert!(served > 100, "warm-up calls were made but not counted: {served}");
}

#[test]
fn open_loop_rate_is_kept() {
    let sim = sim::spawn(sim_cfg(10, 0)).expect("sim");
    let mut cfg = dubbo_cfg(sim.port(), 4, 64, 1000);
    cfg.rate = Some(300.0);
    let s = loadgen::run_blocking(cfg, 0).expect("run");
    assert_eq!(s.error_count(), 0, "{s:?}");
    assert!((250..=350).contains(&s.sent), "{s:?}");
    assert_eq!(s.ok, s.sent);
    assert!(s.latency_us.p50 >= 10_000 && s.latency_us.p50 < 200_000, "{s:?}");
}

#[test]
fn thread_cap_shows_as_status_100() {
    let sim = sim::spawn(sim_cfg(50, 4)).expect("sim");
    let s = loadgen::run_blocking(dubbo_cfg(sim.port(), 4, 16, 500), 0).expect("run");
    assert!(s.ok > 0, "{s:?}");
    assert!(s.errors_of("dubbo_status_100") > 0, "{s:?}");
    assert_eq!(s.ok + s.error_count(), s.sent, "{s:?}");
    assert_eq!(sim.stop().rejected, s.errors_of("dubbo_status_100"));
}

#[test]
fn timeouts_are_counted_not_waited_for() {
    let sim = sim::spawn(sim_cfg(3000, 0)).expect("sim");
    let mut cfg = dubbo_cfg(sim.port(), 2, 4, 300);
    cfg.timeout = Duration::from_millis(200);
    let t = Instant::now();
    let s = loadgen::run_blocking(cfg, 0).expect("run");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(s.ok, 0);
    assert!(s.errors_of("timeout") >= 4, "{s:?}");
    assert_eq!(s.errors_of("timeout"), s.sent, "{s:?}");
}

#[test]
fn unreachable_target_counts_connect_errors() {
    let port = free_port().expect("port");
    for target in [
        format!("dubbo://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{port}/"),
    ] {
        let mut cfg = LoadConfig::new(target.parse().expect("target"));
        cfg.connections = 2;
        cfg.warmup = Duration::ZERO;
        cfg.duration = Duration::from_millis(300);
        let t = Instant::now();
        let s = loadgen::run_blocking(cfg, 0).expect("run");
        assert!(t.elapsed() < Duration::from_secs(2));
        assert_eq!((s.ok, s.sent), (0, 0), "{s:?}");
        assert!(s.errors_of("connect") >= 2, "{s:?}");
        assert_eq!(s.errors.len(), 1, "{s:?}");
    }
}

#[test]
fn sim_killed_mid_run_counts_io_errors() {
    let sim = sim::spawn(sim_cfg(200, 0)).expect("sim");
    let port = sim.port();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        sim.stop()
    });
    let t = Instant::now();
    let s = loadgen::run_blocking(dubbo_cfg(port, 2, 8, 800), 0).expect("run");
    assert!(t.elapsed() < Duration::from_secs(3));
    stopper.join().expect("stopper");
    assert!(s.errors_of("io") > 0, "{s:?}");
    assert!(
        s.errors_of("connect") > 0,
        "re-open attempts fail once the sim is gone: {s:?}"
    );
}

/// What the HTTP test server answered.
#[derive(Default)]
struct Answers {
    correct: AtomicU64,
    wrong: AtomicU64,
    status_500: AtomicU64,
    closes: AtomicU64,
    n: AtomicU64,
}

fn form_param(body: &str) -> Option<&str> {
    body.split('&').find_map(|kv| kv.strip_prefix("parameter="))
}

/// Answers: every 5th+1 wrong, every 5th+2 with 500, every 7th+3 correct but closing the connection,
/// every 4th chunked; the rest correct with a content length.
async fn http_server_conn(mut s: TcpStream, answers: Arc<Answers>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        assert!(head.starts_with("POST / HTTP/1.1\r\n"), "{head}");
        assert!(
            head.contains("Content-Type: application/x-www-form-urlencoded"),
            "{head}"
        );
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.trim().parse().ok())
            .expect("content length");
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8(buf[head_end..head_end + len].to_vec()).expect("ascii body");
        buf.drain(..head_end + len);
        assert!(body.starts_with("interface=com.alibaba.dubbo.performance.demo.provider.IHelloService&method=hash&parameterTypesString=Ljava%2Flang%2FString%3B&parameter="), "{body}");
        let param = form_param(&body).expect("parameter");
        assert!(param.len() <= 1024 && param.bytes().all(|b| b.is_ascii_alphanumeric()));
        let hash = java_string_hash(param);
        let n = answers.n.fetch_add(1, Ordering::Relaxed);
        let (status, text, close) = if n % 5 == 1 {
            answers.wrong.fetch_add(1, Ordering::Relaxed);
            (200, hash.wrapping_add(1).to_string(), false)
        } else if n % 5 == 2 {
            answers.status_500.fetch_add(1, Ordering::Relaxed);
            (500, "boom".to_owned(), false)
        } else if n % 7 == 3 {
            answers.correct.fetch_add(1, Ordering::Relaxed);
            answers.closes.fetch_add(1, Ordering::Relaxed);
            (200, hash.to_string(), true)
        } else {
            answers.correct.fetch_add(1, Ordering::Relaxed);
            (200, hash.to_string(), false)
        };
        let reason = if status == 200 {
            "OK"
        } else {
            "Internal Server Error"
        };
        // Chunked in two halves (both non-empty: a zero-size chunk ends the body).
        let resp = if n.is_multiple_of(4) && !close && text.len() >= 2 {
            let (a, b) = text.split_at(text.len() / 2);
            format!(
                "HTTP/1.1 {status} {reason}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                a.len(),
                b.len()
            )
        } else {
            let conn = if close { "Connection: close\r\n" } else { "" };
            format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\n{conn}\r\n{text}",
                text.len()
            )
        };
        s.write_all(resp.as_bytes()).await?;
        if close {
            return Ok(());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_mode_checks_every_answer() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let answers = Arc::new(Answers::default());
    let server_answers = Arc::clone(&answers);
    let server = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                break;
            };
            tokio::spawn(http_server_conn(s, Arc::clone(&server_answers)));
        }
    });
    let target: Target = format!("http://127.0.0.1:{port}/").parse().expect("target");
    let cfg = LoadConfig {
        connections: 4,
        duration: Duration::from_millis(1000),
        warmup: Duration::ZERO,
        timeout: Duration::from_secs(2),
        seed: Some(7),
        ..LoadConfig::new(target)
    };
    let t = Instant::now();
    let s = loadgen::run(cfg).await.expect("run");
    assert!(t.elapsed() < Duration::from_secs(4));
    server.abort();
    let correct = answers.correct.load(Ordering::Relaxed);
    let wrong = answers.wrong.load(Ordering::Relaxed);
    let s500 = answers.status_500.load(Ordering::Relaxed);
    assert!(
        answers.closes.load(Ordering::Relaxed) > 0,
        "the close path was exercised"
    );
    assert!(wrong > 0 && s500 > 0);
    assert_eq!(s.ok, correct, "{s:?}");
    assert_eq!(s.errors_of("wrong_answer"), wrong, "{s:?}");
    assert_eq!(s.errors_of("http_500"), s500, "{s:?}");
    assert_eq!(s.error_count(), wrong + s500, "no other errors: {s:?}");
    assert_eq!(s.sent, correct + wrong + s500);
    assert_eq!(s.target, format!("http://127.0.0.1:{port}/"));
    check_consistent(&s);
}

#[test]
fn binaries_end_to_end_json_summary() {
    let mut sim = ChildGuard::spawn(Command::new(env!("CARGO_BIN_EXE_provider-sim")).args([
        "--latency-ms",
        "2",
        "--workers",
        "1",
        "--name",
        "e2e",
    ]))
    .expect("spawn provider-sim");
    let port = sim.listening_port(Duration::from_secs(10)).expect("LISTENING");
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "--target",
            &format!("dubbo://127.0.0.1:{port}"),
            "--connections",
            "4",
            "--concurrency",
            "16",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
            "--workers",
            "1",
        ])
        .output()
        .expect("run loadgen");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    for key in [
        "target",
        "connections",
        "duration_s",
        "sent",
        "ok",
        "errors",
        "qps",
        "latency_us",
    ] {
        assert!(v.get(key).is_some(), "{key} missing in {v}");
    }
    for key in ["p50", "p90", "p99", "p999", "max", "mean"] {
        assert!(
            v["latency_us"].get(key).is_some(),
            "latency_us.{key} missing in {v}"
        );
    }
    let s: Summary = serde_json::from_str(&stdout).expect("Summary");
    assert_eq!(s.error_count(), 0, "{s:?}");
    assert!(s.ok > 0);
    let done = sim.terminate().expect("terminate");
    assert!(done.status.success());
    assert!(done.stdout.contains("\"name\":\"e2e\""), "{}", done.stdout);
}

#[test]
fn bad_usage_exits_2() {
    for args in [
        vec!["--target", "ftp://127.0.0.1:1"],
        vec!["--target", "http://192.0.2.1:80/"],
        vec!["--target", "dubbo://127.0.0.1:1", "--duration", "soon"],
        vec!["--target", "dubbo://127.0.0.1:1", "--connections", "0"],
        vec![],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(&args)
            .output()
            .expect("run loadgen");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn dubbo_user_mode_against_the_sim_checks_the_map() {
    let sim = sim::spawn(sim_cfg(1, 0)).expect("sim");
    let mut cfg = dubbo_cfg(sim.port(), 2, 8, 500);
    cfg.call = Call::User;
    let s = loadgen::run_blocking(cfg, 0).expect("run");
    check_consistent(&s);
    assert_eq!(s.error_count(), 0, "{s:?}");
    assert!(s.ok > 0);
    let stats = sim.stop();
    assert_eq!(stats.served, s.ok);
    assert_eq!(stats.errors, 0, "{stats:?}");
}

/// Answers JSON API calls: every third one with a wrong map, every third + 1 with text that is no JSON, the
/// others with the right map (its keys in another order than the simulator's).
async fn json_server_conn(mut s: TcpStream, answers: Arc<Answers>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        assert!(
            head.starts_with(&format!("POST {} HTTP/1.1\r\n", loadgen::user_json_path())),
            "{head}"
        );
        assert!(head.contains("Content-Type: application/json\r\n"), "{head}");
        assert!(
            head.contains(&format!("x-dubbo-service-method-overloading: {USER_CLASS}\r\n")),
            "{head}"
        );
        let len = loadgen::USER_JSON_BODY.len();
        assert!(head.contains(&format!("Content-Length: {len}\r\n")), "{head}");
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body: serde_json::Value =
            serde_json::from_slice(&buf[head_end..head_end + len]).expect("JSON body");
        buf.drain(..head_end + len);
        assert_eq!(body[0]["class"], USER_CLASS);
        assert_eq!(body[0]["name"], "hello");
        let n = answers.n.fetch_add(1, Ordering::Relaxed);
        let text = match n % 3 {
            0 => {
                answers.wrong.fetch_add(1, Ordering::Relaxed);
                r#"{"nameHash":1,"vip":true,"age":30,"name":"hello","id":42}"#.to_owned()
            }
            1 => {
                answers.status_500.fetch_add(1, Ordering::Relaxed);
                "99162322".to_owned() + "}"
            }
            _ => {
                answers.correct.fetch_add(1, Ordering::Relaxed);
                r#"{"nameHash":99162322,"vip":true,"age":30,"name":"hello","id":42}"#.to_owned()
            }
        };
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        s.write_all(resp.as_bytes()).await?;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_user_mode_sends_the_json_call_and_checks_the_map() {
    assert_eq!(
        loadgen::user_answer_json(),
        serde_json::json!({"id": 42, "name": "hello", "age": 30, "vip": true, "nameHash": java_string_hash("hello")})
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let answers = Arc::new(Answers::default());
    let server_answers = Arc::clone(&answers);
    let server = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                break;
            };
            tokio::spawn(json_server_conn(s, Arc::clone(&server_answers)));
        }
    });
    let target: Target = format!("http://127.0.0.1:{port}/").parse().expect("target");
    let cfg = LoadConfig {
        connections: 2,
        duration: Duration::from_millis(500),
        warmup: Duration::ZERO,
        timeout: Duration::from_secs(2),
        call: Call::User,
        ..LoadConfig::new(target)
    };
    let s = loadgen::run(cfg).await.expect("run");
    server.abort();
    let correct = answers.correct.load(Ordering::Relaxed);
    let wrong = answers.wrong.load(Ordering::Relaxed);
    let not_json = answers.status_500.load(Ordering::Relaxed);
    assert!(correct > 0 && wrong > 0 && not_json > 0);
    assert_eq!(s.ok, correct, "{s:?}");
    assert_eq!(s.errors_of("wrong_answer"), wrong, "{s:?}");
    assert_eq!(s.errors_of("bad_response"), not_json, "{s:?}");
    assert_eq!(s.sent, correct + wrong + not_json);
    check_consistent(&s);
}
