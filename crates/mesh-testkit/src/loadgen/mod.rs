//! The 2018 challenge's consumer as a load generator.
//!
//! Two targets:
//!
//! * `http://127.0.0.1:PORT/`: the consumer agent's HTTP front. Each request is a keep-alive
//!   `POST` of `interface=...IHelloService&method=hash&parameterTypesString=Ljava%2Flang%2FString%3B&parameter=<s>`
//!   (`application/x-www-form-urlencoded`, `s` random alphanumeric of a length uniform in `0..=max_len`);
//!   the answer must be `200` with the body exactly `java_string_hash(s)` in decimal.
//! * `dubbo://127.0.0.1:PORT`: a provider (or the provider agent) called directly with hessian2 `hash(s)`:
//!   `connections` sockets, each with up to `concurrency / connections` calls in flight matched by request
//!   id; the answer must be status 20 with the value `java_string_hash(s)`. This is the "direct path" the
//!   agents' overhead is measured against.
//!
//! With [`Call::User`] (`--call user`) every call is instead `echoUser(User)` with the fixed POJO
//! [`bench_user`] (a POJO argument, a map result: the cost benchmark of the JSON API):
//!
//! * on an HTTP target, a keep-alive `POST /mesh-bench/<interface>/echoUser` with the fixed JSON body
//!   [`USER_JSON_BODY`] (`Content-Type: application/json`, the types in `x-dubbo-service-method-overloading`);
//!   the answer must be `200` with a JSON object equal to [`user_answer_json`];
//! * on a Dubbo target, the hessian2 `echoUser` request; the answer must be status 20 with the value
//!   [`user_answer`] of that POJO.
//!
//! Closed loop by default (each in-flight slot sends its next call as soon as the previous one is answered);
//! with a `rate` it is an open loop: call `k` is due at `start + k / rate`, spread round-robin over the
//! connections, and its latency is measured from that intended time, so a stalled server shows up in the
//! latencies instead of silently lowering the offered load (no coordinated omission).
//!
//! Open-loop pacing is precise by default ([`Pacing::Precise`]): calls wait for their due time on a
//! [`PreciseTimer`] thread and are released within tens of microseconds of it, instead of tokio's millisecond
//! wheel ([`Pacing::Coarse`], up to about a millisecond late). The summary reports, next to the latency from
//! the intended time (`latency_us`), the latency from the actual send time (`sent_latency_us`) and how late
//! calls were sent (`pacing_late_us`), so pacing lateness and server stalls can be told apart.
//!
//! With `timeline_ms` > 0 the summary also says what happened over time ([`TimelineReport`]): counted calls
//! by the window they completed in, the longest interval without any successful completion, and when the
//! first and last failures happened. Each connection appends completion times to its own vectors (under the
//! lock its counters already take); they are merged once at the end.
//!
//! Every failure is counted by kind: `connect` (a failed connection attempt), `timeout`, `http_<status>`,
//! `dubbo_status_<n>`, `dubbo_exception`, `wrong_answer`, `bad_response` (an answer that cannot be parsed) and
//! `io` (connection reset or closed with the call outstanding). Broken connections are re-opened with a
//! backoff (10 ms doubling to 500 ms, at most 50 failures in a row per connection); nothing waits longer than
//! the per-call timeout. Only calls sent after the warm-up count; sending stops at the end of the duration
//! (or after `requests` calls) and the calls still outstanding are awaited (each at most its timeout).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{self, IsTerminal};
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use hdrhistogram::Histogram;
use mesh_dubbo::{java_string_hash, Body, Codec, Decoded, Response, RpcResult, Serialization};
use rand::distr::Alphanumeric;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::sim::{
    encode_hash_request, encode_user_request, require_loopback, user_answer, User, SERVICE, USER_CLASS,
    USER_METHOD,
};
use crate::timer::PreciseTimer;

mod config;
mod dubbo;
mod http;
mod summary;
mod timeline;

pub use config::{
    bench_user, parse_duration, user_answer_json, user_json_path, Call, LoadConfig, Pacing, Target,
    DEFAULT_MAX_LEN, INTERFACE, USER_JSON_BODY,
};
use dubbo::dubbo_conn;
use http::http_conn;
pub(crate) use http::{http_request, HttpConn};
use summary::percentiles;
pub use summary::{Latency, Summary};
pub use timeline::{build_timeline, Timeline, TimelineReport, MAX_LISTED_GAPS, MAX_TIMELINE_WINDOWS};

/// Counters of one connection.
struct ConnStats {
    /// Latency from the intended time (closed loop: from the send time).
    hist: Histogram<u64>,
    /// Latency from the send time.
    sent_hist: Histogram<u64>,
    /// Open loop: send time − intended time.
    late_hist: Histogram<u64>,
    sent: u64,
    ok: u64,
    errors: BTreeMap<Cow<'static, str>, u64>,
    /// With a timeline: when counted calls succeeded, µs after the measured start.
    ok_at: Vec<u64>,
    /// With a timeline: when counted calls failed, and how.
    failed_at: Vec<(u64, Cow<'static, str>)>,
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 1 h at 3 significant digits; the bounds are valid constants.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid constant histogram bounds")
}

impl ConnStats {
    fn new() -> Self {
        ConnStats {
            hist: new_histogram(),
            sent_hist: new_histogram(),
            late_hist: new_histogram(),
            sent: 0,
            ok: 0,
            errors: BTreeMap::new(),
            ok_at: Vec::new(),
            failed_at: Vec::new(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a call came to.
type Outcome = Result<(), Cow<'static, str>>;

/// One call to make.
#[derive(Debug, Clone, Copy)]
struct Ticket {
    /// Open loop: when it was due (latency is measured from here).
    intended: Option<Instant>,
    /// Sent after the warm-up.
    counted: bool,
}

enum Next {
    Go(Ticket),
    Later(Instant),
    Stop,
}

/// The schedule and the counters of a run.
struct Plan {
    cfg: LoadConfig,
    conns: usize,
    start: Instant,
    measure_start: Instant,
    end: Instant,
    claimed: AtomicU64,
    exhausted: AtomicBool,
    stats: Vec<Mutex<ConnStats>>,
    seed: u64,
    /// Open loop with [`Pacing::Precise`].
    timer: Option<PreciseTimer>,
}

impl Plan {
    /// Whether call `j` of connection `c` may go at `now` (claims one of `requests` when it may).
    fn ticket(&self, c: usize, j: u64, now: Instant) -> Next {
        if self.exhausted.load(Ordering::Relaxed) || now >= self.end {
            return Next::Stop;
        }
        let (intended, at) = match self.cfg.rate {
            Some(rate) => {
                let k = c as f64 + j as f64 * self.conns as f64;
                let t = self.start + Duration::from_secs_f64(k / rate);
                if t >= self.end {
                    return Next::Stop;
                }
                if t > now {
                    return Next::Later(t);
                }
                (Some(t), t)
            }
            None => (None, now),
        };
        let counted = at >= self.measure_start;
        if counted {
            if let Some(n) = self.cfg.requests {
                if self.claimed.fetch_add(1, Ordering::Relaxed) >= n {
                    self.exhausted.store(true, Ordering::Relaxed);
                    return Next::Stop;
                }
            }
        }
        Next::Go(Ticket { intended, counted })
    }

    /// Waits until call `j` of connection `c` is due; `None` when the run is over.
    async fn next(&self, c: usize, j: u64) -> Option<Ticket> {
        loop {
            match self.ticket(c, j, Instant::now()) {
                Next::Go(t) => return Some(t),
                Next::Stop => return None,
                Next::Later(at) => match &self.timer {
                    Some(timer) => timer.sleep_until(at.into_std()).await,
                    None => tokio::time::sleep_until(at).await,
                },
            }
        }
    }

    fn over(&self) -> bool {
        self.exhausted.load(Ordering::Relaxed) || Instant::now() >= self.end
    }

    /// Records the outcome of a call: latency from `from` (the intended time in open loop) and from `sent_at`
    /// (when it was written; `None` if it never was).
    fn record(&self, c: usize, counted: bool, from: Instant, sent_at: Option<Instant>, outcome: Outcome) {
        if !counted {
            return;
        }
        let now = Instant::now();
        let timeline = self.cfg.timeline_ms > 0;
        let at = micros(now.saturating_duration_since(self.measure_start));
        let mut s = lock(&self.stats[c]);
        match outcome {
            Ok(()) => {
                s.hist
                    .saturating_record(micros(now.saturating_duration_since(from)).max(1));
                let sent_at = sent_at.unwrap_or(from);
                s.sent_hist
                    .saturating_record(micros(now.saturating_duration_since(sent_at)).max(1));
                s.ok += 1;
                if timeline {
                    s.ok_at.push(at);
                }
            }
            Err(kind) => {
                if timeline {
                    s.failed_at.push((at, kind.clone()));
                }
                *s.errors.entry(kind).or_insert(0) += 1;
            }
        }
    }

    /// Counts a call written at `at`; in open loop, records how late that was after `intended`.
    fn sent(&self, c: usize, counted: bool, intended: Option<Instant>, at: Instant) {
        if counted {
            let mut s = lock(&self.stats[c]);
            s.sent += 1;
            if let Some(i) = intended {
                // 0 = on time (the histogram's lowest bucket is 1 µs: recorded as "at most 1 µs late").
                s.late_hist
                    .saturating_record(micros(at.saturating_duration_since(i)).max(1));
            }
        }
    }

    fn rng(&self, c: usize) -> StdRng {
        StdRng::seed_from_u64(self.seed ^ (c as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    /// Totals over all connections.
    fn totals(&self) -> Totals {
        let mut t = Totals {
            sent: 0,
            ok: 0,
            errors: BTreeMap::new(),
            hist: new_histogram(),
            sent_hist: new_histogram(),
            late_hist: new_histogram(),
        };
        for s in &self.stats {
            let s = lock(s);
            t.sent += s.sent;
            t.ok += s.ok;
            for (k, v) in &s.errors {
                *t.errors.entry(k.to_string()).or_insert(0) += v;
            }
            let _ = t.hist.add(&s.hist);
            let _ = t.sent_hist.add(&s.sent_hist);
            let _ = t.late_hist.add(&s.late_hist);
        }
        t
    }
}

impl Plan {
    /// The timeline of the run (takes the per-connection completion times), `None` without one.
    fn timeline(&self, finished: Instant) -> Option<TimelineReport> {
        if self.cfg.timeline_ms == 0 {
            return None;
        }
        let mut ok_at = Vec::new();
        let mut failed_at = Vec::new();
        for s in &self.stats {
            let mut s = lock(s);
            ok_at.append(&mut s.ok_at);
            failed_at.append(&mut s.failed_at);
        }
        // Sending stops at the end of the duration (or earlier, after `requests` calls).
        let period = finished
            .min(self.end)
            .saturating_duration_since(self.measure_start);
        Some(build_timeline(
            self.cfg.timeline_ms,
            &mut ok_at,
            &failed_at,
            micros(period),
        ))
    }
}

/// Counters summed over the connections.
struct Totals {
    sent: u64,
    ok: u64,
    errors: BTreeMap<String, u64>,
    hist: Histogram<u64>,
    sent_hist: Histogram<u64>,
    late_hist: Histogram<u64>,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Connection backoff: 10 ms doubling to 500 ms, at most 50 failures in a row.
struct Backoff {
    delay: Duration,
    failures: u32,
}

impl Backoff {
    const MAX_FAILURES: u32 = 50;

    fn new() -> Self {
        Backoff {
            delay: Duration::from_millis(10),
            failures: 0,
        }
    }

    fn reset(&mut self) {
        *self = Backoff::new();
    }

    /// Sleeps before the next attempt; `false` when the connection should be given up.
    async fn wait(&mut self, plan: &Plan) -> bool {
        self.failures += 1;
        if self.failures > Self::MAX_FAILURES {
            return false;
        }
        let until = (Instant::now() + self.delay).min(plan.end);
        tokio::time::sleep_until(until).await;
        self.delay = (self.delay * 2).min(Duration::from_millis(500));
        !plan.over()
    }
}

pub(crate) async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let s = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    s.set_nodelay(true)?;
    Ok(s)
}

fn random_param(rng: &mut StdRng, max_len: usize, out: &mut String) {
    out.clear();
    let len = rng.random_range(0..=max_len);
    out.extend((0..len).map(|_| char::from(rng.sample(Alphanumeric))));
}

fn io_kind(e: &io::Error) -> Cow<'static, str> {
    match e.kind() {
        io::ErrorKind::InvalidData => Cow::Borrowed("bad_response"),
        io::ErrorKind::TimedOut => Cow::Borrowed("timeout"),
        _ => Cow::Borrowed("io"),
    }
}

/// An answer that cannot be parsed.
fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

// ---------------------------------------------------------------------------------------------------------
// Run

fn summarize(plan: &Plan, finished: Instant) -> Summary {
    let t = plan.totals();
    let duration = finished.saturating_duration_since(plan.measure_start);
    let secs = duration.as_secs_f64();
    let qps = if secs > 0.0 { t.ok as f64 / secs } else { 0.0 };
    let pacing = match plan.cfg.rate {
        Some(_) => plan.cfg.pacing.to_string(),
        None => "closed".to_owned(),
    };
    Summary {
        target: plan.cfg.target.to_string(),
        connections: plan.conns,
        duration_s: (secs * 1000.0).round() / 1000.0,
        sent: t.sent,
        ok: t.ok,
        errors: t.errors,
        qps: (qps * 10.0).round() / 10.0,
        latency_us: percentiles(&t.hist),
        sent_latency_us: percentiles(&t.sent_hist),
        pacing_late_us: percentiles(&t.late_hist),
        pacing,
        timeline: plan.timeline(finished),
    }
}

async fn progress(plan: Arc<Plan>) {
    let mut tick = tokio::time::interval_at(plan.start + Duration::from_secs(1), Duration::from_secs(1));
    let mut last_ok = 0;
    loop {
        tick.tick().await;
        let Totals {
            sent,
            ok,
            errors,
            hist,
            ..
        } = plan.totals();
        let nerr: u64 = errors.values().sum();
        let elapsed = plan.start.elapsed().as_secs_f64();
        let phase = if Instant::now() < plan.measure_start {
            " (warm-up)"
        } else {
            ""
        };
        let p99 = if hist.is_empty() {
            0.0
        } else {
            hist.value_at_quantile(0.99) as f64 / 1000.0
        };
        eprintln!(
            "{elapsed:6.1}s{phase}  qps {:>8}  sent {sent}  ok {ok}  errors {nerr}  p99 {p99:.2} ms",
            ok - last_ok
        );
        last_ok = ok;
    }
}

/// Runs the load and returns the summary. Fails only on bad settings; failed calls are counted.
pub async fn run(cfg: LoadConfig) -> io::Result<Summary> {
    cfg.validate()?;
    let windows = match cfg.target {
        Target::Dubbo { .. } => cfg.windows(),
        Target::Http { .. } => vec![1; cfg.connections],
    };
    let conns = windows.len();
    let start = Instant::now();
    let measure_start = start + cfg.warmup;
    let seed = cfg.seed.unwrap_or_else(rand::random);
    let timer = match (cfg.rate, cfg.pacing) {
        (Some(_), Pacing::Precise) => Some(PreciseTimer::start("loadgen-pacer")?),
        _ => None,
    };
    let plan = Arc::new(Plan {
        conns,
        start,
        measure_start,
        end: measure_start + cfg.duration,
        claimed: AtomicU64::new(0),
        exhausted: AtomicBool::new(false),
        stats: (0..conns).map(|_| Mutex::new(ConnStats::new())).collect(),
        seed,
        timer,
        cfg,
    });
    let progress_task = plan
        .cfg
        .progress
        .then(|| tokio::spawn(progress(Arc::clone(&plan))));
    let mut tasks = JoinSet::new();
    for (c, w) in windows.into_iter().enumerate() {
        let p = Arc::clone(&plan);
        match p.cfg.target {
            Target::Http { .. } => tasks.spawn(http_conn(p, c)),
            Target::Dubbo { .. } => tasks.spawn(dubbo_conn(p, c, w)),
        };
    }
    while tasks.join_next().await.is_some() {}
    let finished = Instant::now();
    if let Some(t) = progress_task {
        t.abort();
    }
    Ok(summarize(&plan, finished))
}

/// [`run`] on a runtime of its own with `workers` threads (0 = current thread), for synchronous callers.
pub fn run_blocking(cfg: LoadConfig, workers: usize) -> io::Result<Summary> {
    let rt = crate::runtime(workers, "loadgen")?;
    rt.block_on(run(cfg))
}

/// Is stderr a terminal (progress lines on by default)?
pub fn stderr_is_tty() -> bool {
    io::stderr().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn targets() {
        let t: Target = "http://127.0.0.1:8087/".parse().expect("http target");
        assert_eq!(t.to_string(), "http://127.0.0.1:8087/");
        assert_eq!(t.addr().port(), 8087);
        let t: Target = "dubbo://127.0.0.1:20880".parse().expect("dubbo target");
        assert!(matches!(t, Target::Dubbo { .. }));
        assert!("ftp://127.0.0.1:1".parse::<Target>().is_err());
        assert!("http://10.1.2.3:80/".parse::<Target>().is_err());
        assert!("127.0.0.1:80".parse::<Target>().is_err());
    }

    #[test]
    fn windows_split_concurrency() {
        let mut cfg = LoadConfig::new("dubbo://127.0.0.1:1".parse().expect("target"));
        cfg.connections = 4;
        cfg.concurrency = 10;
        assert_eq!(cfg.windows(), vec![3, 3, 2, 2]);
        cfg.concurrency = 2;
        assert_eq!(cfg.windows(), vec![1, 1]);
        cfg.concurrency = 0;
        assert_eq!(cfg.windows(), vec![1, 1, 1, 1]);
    }

    fn us(ms: u64) -> u64 {
        ms * 1000
    }

    #[test]
    fn timeline_windows_gaps_and_failures() {
        let mut ok = vec![us(600), us(50), us(130), us(650), us(120)]; // any order (several connections)
        let failures = vec![
            (us(310), Cow::Borrowed("http_503")),
            (us(300), Cow::Borrowed("io")),
            (us(320), Cow::Borrowed("io")),
        ];
        let r = build_timeline(100, &mut ok, &failures, us(700));
        let t = &r.timeline;
        assert_eq!(t.window_ms, 100);
        assert_eq!(t.ok, vec![1, 2, 0, 0, 0, 0, 2]);
        assert_eq!(t.failed, vec![0, 0, 0, 3, 0, 0, 0]);
        assert!(t
            .failed_kinds
            .iter()
            .enumerate()
            .all(|(i, k)| (i == 3) != k.is_empty()));
        assert_eq!(
            t.failed_kinds[3],
            BTreeMap::from([("http_503".to_owned(), 1), ("io".to_owned(), 2)])
        );
        assert_eq!(r.longest_gap_ms, 470.0);
        assert_eq!(t.gap_min_ms, 10.0);
        assert_eq!(
            t.gaps,
            vec![
                [0.0, 50.0],
                [50.0, 70.0],
                [120.0, 10.0],
                [130.0, 470.0],
                [600.0, 50.0],
                [650.0, 50.0]
            ]
        );
        assert_eq!(r.first_failure_ms, Some(300.0));
        assert_eq!(r.last_failure_ms, Some(320.0));
    }

    #[test]
    fn timeline_without_completions_is_one_gap() {
        let r = build_timeline(100, &mut [], &[], us(1500));
        assert!(
            r.timeline.ok.is_empty() && r.timeline.failed.is_empty() && r.timeline.failed_kinds.is_empty()
        );
        assert_eq!(r.longest_gap_ms, 1500.0);
        assert_eq!(r.timeline.gaps, vec![[0.0, 1500.0]]);
        assert_eq!((r.first_failure_ms, r.last_failure_ms), (None, None));
    }

    #[test]
    fn answers_after_the_period_do_not_shorten_the_last_gap() {
        // Sending stopped at 500 ms; an answer at 900 ms still counts in its window.
        let mut ok = vec![us(100), 900_123];
        let r = build_timeline(250, &mut ok, &[(us(950), Cow::Borrowed("timeout"))], us(500));
        assert_eq!(r.longest_gap_ms, 400.0);
        assert_eq!(r.timeline.ok, vec![1, 0, 0, 1]);
        assert_eq!(r.timeline.failed, vec![0, 0, 0, 1]);
        assert_eq!(r.timeline.gaps, vec![[0.0, 100.0], [100.0, 400.0]]);
        // Sub-millisecond precision of the gap.
        let mut ok = vec![1_500, 4_250];
        let r = build_timeline(10, &mut ok, &[], 5_000);
        assert_eq!(r.longest_gap_ms, 2.75);
    }

    #[test]
    fn listed_gaps_are_the_longest_in_start_order() {
        // 3,000 gaps of 2..=3001 ms... in a shuffled order of lengths, then sorted by start in the list.
        let mut t = 0u64;
        let mut ok = Vec::new();
        for i in 0..3000u64 {
            t += us(2 + (i * 7919) % 3000);
            ok.push(t);
        }
        let r = build_timeline(10, &mut ok, &[], t);
        let g = &r.timeline.gaps;
        assert_eq!(g.len(), MAX_LISTED_GAPS);
        assert!(g.windows(2).all(|w| w[0][0] < w[1][0]), "start order");
        assert!(g.iter().all(|x| x[1] >= 2001.0), "only the 1,000 longest");
        assert_eq!(r.longest_gap_ms, 3001.0);
        assert_eq!(r.timeline.ok.iter().sum::<u64>(), 3000);
    }

    #[test]
    fn timeline_fields_are_top_level_and_optional() {
        let mut s = Summary {
            target: "http://127.0.0.1:1/".into(),
            connections: 1,
            duration_s: 1.0,
            sent: 2,
            ok: 1,
            errors: BTreeMap::from([("io".to_owned(), 1)]),
            qps: 1.0,
            latency_us: Latency::default(),
            sent_latency_us: Latency::default(),
            pacing_late_us: Latency::default(),
            pacing: "closed".into(),
            timeline: None,
        };
        let v = serde_json::to_value(&s).expect("json");
        for k in [
            "timeline",
            "longest_gap_ms",
            "first_failure_ms",
            "last_failure_ms",
        ] {
            assert!(v.get(k).is_none(), "{k} without a timeline: {v}");
        }
        assert_eq!(serde_json::from_value::<Summary>(v).expect("back"), s);
        s.timeline = Some(build_timeline(100, &mut [us(20)], &[], us(1000)));
        let v = serde_json::to_value(&s).expect("json");
        assert_eq!(v["longest_gap_ms"], 980.0);
        assert!(v["first_failure_ms"].is_null() && v["last_failure_ms"].is_null());
        assert_eq!(v["timeline"]["ok"], serde_json::json!([1]));
        assert_eq!(v["timeline"]["failed_kinds"], serde_json::json!([{}]));
        assert_eq!(serde_json::from_value::<Summary>(v).expect("back"), s);
    }

    #[test]
    fn timeline_window_count_is_bounded() {
        let mut cfg = LoadConfig::new("dubbo://127.0.0.1:1".parse().expect("target"));
        cfg.timeline_ms = 1;
        cfg.duration = Duration::from_secs(3600);
        assert!(cfg.validate().is_err());
        cfg.timeline_ms = 100;
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn http_request_form() {
        let mut out = Vec::new();
        http_request(&mut out, "127.0.0.1:1", "/", "abc");
        let text = String::from_utf8(out).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head");
        assert!(head.starts_with("POST / HTTP/1.1\r\n"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert_eq!(
            body,
            "interface=com.alibaba.dubbo.performance.demo.provider.IHelloService&method=hash\
             &parameterTypesString=Ljava%2Flang%2FString%3B&parameter=abc"
        );
    }
}
