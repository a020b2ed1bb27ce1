//! What a run is asked to do: the target, the call, the pacing and the whole [`LoadConfig`].

use super::*;

/// The challenge's largest parameter length.
pub const DEFAULT_MAX_LEN: usize = 1024;

/// Where the load goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The consumer agent's HTTP front.
    Http {
        /// Resolved address (loopback).
        addr: SocketAddr,
        /// The `Host` header (`host:port` as given).
        host: String,
        /// Request path, `/` by default.
        path: String,
    },
    /// A Dubbo provider (or provider agent), called directly.
    Dubbo {
        /// Resolved address (loopback).
        addr: SocketAddr,
    },
}

impl Target {
    /// The socket address calls go to.
    pub fn addr(&self) -> SocketAddr {
        match self {
            Target::Http { addr, .. } | Target::Dubbo { addr } => *addr,
        }
    }
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| format!("target {s:?}: expected http://HOST:PORT/ or dubbo://HOST:PORT"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = authority
            .to_socket_addrs()
            .map_err(|e| format!("target {s:?}: cannot resolve {authority:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("target {s:?}: {authority:?} resolves to nothing"))?;
        require_loopback(addr.ip()).map_err(|e| format!("target {s:?}: {e}"))?;
        match scheme.to_ascii_lowercase().as_str() {
            "http" => Ok(Target::Http {
                addr,
                host: authority.to_owned(),
                path: path.to_owned(),
            }),
            "dubbo" => Ok(Target::Dubbo { addr }),
            other => Err(format!("target {s:?}: unknown scheme {other:?} (http or dubbo)")),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Http { host, path, .. } => write!(f, "http://{host}{path}"),
            Target::Dubbo { addr } => write!(f, "dubbo://{addr}"),
        }
    }
}

/// Which method every call invokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Call {
    /// `hash(String)` with a random parameter: the challenge form over HTTP, hessian2 over Dubbo.
    #[default]
    Hash,
    /// `echoUser(User)` with the fixed POJO [`bench_user`]: the JSON API over HTTP, hessian2 over Dubbo.
    User,
}

impl FromStr for Call {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "hash" => Ok(Call::Hash),
            "user" => Ok(Call::User),
            other => Err(format!("unknown call {other:?} (expected hash or user)")),
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Call::Hash => "hash",
            Call::User => "user",
        })
    }
}

/// The POJO every [`Call::User`] call sends.
pub fn bench_user() -> User {
    User {
        id: 42,
        name: "hello".into(),
        age: 30,
        vip: true,
    }
}

/// The JSON API body of a [`Call::User`] call: [`bench_user`] as a POJO (`id` given as a `java.lang.Long`).
pub const USER_JSON_BODY: &str = concat!(
    r#"[{"class":"com.alibaba.dubbo.performance.demo.provider.User","#,
    r#""id":{"class":"java.lang.Long","value":42},"name":"hello","age":30,"vip":true}]"#
);

/// The JSON API path of a [`Call::User`] call (`/{application}/{interface}/{method}`).
pub fn user_json_path() -> String {
    format!("/mesh-bench/{SERVICE}/{USER_METHOD}")
}

/// The JSON answer a [`Call::User`] call over HTTP must get: the map [`user_answer`] of [`bench_user`].
pub fn user_answer_json() -> serde_json::Value {
    let u = bench_user();
    serde_json::json!({
        "id": u.id,
        "name": u.name,
        "age": u.age,
        "vip": u.vip,
        "nameHash": java_string_hash(&u.name),
    })
}

/// How open-loop calls wait for their due time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pacing {
    /// On a timer thread ([`crate::timer`]): released within tens of microseconds of the due time.
    #[default]
    Precise,
    /// tokio's millisecond timer wheel: up to about a millisecond late (the behaviour before `Precise`).
    Coarse,
}

impl FromStr for Pacing {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "precise" => Ok(Pacing::Precise),
            "coarse" => Ok(Pacing::Coarse),
            other => Err(format!("unknown pacing {other:?} (expected precise or coarse)")),
        }
    }
}

impl fmt::Display for Pacing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pacing::Precise => "precise",
            Pacing::Coarse => "coarse",
        })
    }
}

/// Load generator settings.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Where the calls go.
    pub target: Target,
    /// Sockets to open.
    pub connections: usize,
    /// Dubbo target: total calls in flight, split evenly over the connections (0 = one per connection).
    /// HTTP: ignored, each connection carries one call at a time.
    pub concurrency: usize,
    /// Open loop: calls per second in total; `None` = closed loop.
    pub rate: Option<f64>,
    /// How long calls are sent after the warm-up.
    pub duration: Duration,
    /// Stop after this many counted calls.
    pub requests: Option<u64>,
    /// Calls sent during this first period are not counted.
    pub warmup: Duration,
    /// Per-call timeout (and connect timeout).
    pub timeout: Duration,
    /// One live line per second on stderr.
    pub progress: bool,
    /// Longest random parameter.
    pub max_len: usize,
    /// Seed of the parameter generator (random when `None`).
    pub seed: Option<u64>,
    /// Serialization of direct Dubbo calls.
    pub serialization: Serialization,
    /// Open loop: how calls wait for their due time.
    pub pacing: Pacing,
    /// Width of the timeline windows in milliseconds; 0 = no timeline (see [`TimelineReport`]).
    pub timeline_ms: u64,
    /// Which method every call invokes.
    pub call: Call,
}

impl LoadConfig {
    /// Defaults of the CLI for a target: 256 connections, closed loop, 20 s after a 2 s warm-up, 5 s timeout.
    pub fn new(target: Target) -> Self {
        LoadConfig {
            target,
            connections: 256,
            concurrency: 0,
            rate: None,
            duration: Duration::from_secs(20),
            requests: None,
            warmup: Duration::from_secs(2),
            timeout: Duration::from_millis(5000),
            progress: false,
            max_len: DEFAULT_MAX_LEN,
            seed: None,
            serialization: Serialization::Hessian2,
            pacing: Pacing::Precise,
            timeline_ms: 0,
            call: Call::Hash,
        }
    }

    pub(super) fn validate(&self) -> io::Result<()> {
        let bad = |m: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, m.to_owned()));
        if self.connections == 0 || self.connections > 100_000 {
            return bad("connections must be in 1..=100000");
        }
        if self.concurrency > 1_000_000 {
            return bad("concurrency must be at most 1000000");
        }
        if let Some(r) = self.rate {
            if !(r.is_finite() && r > 0.0) {
                return bad("rate must be a positive number of requests per second");
            }
        }
        if self.timeout.is_zero() {
            return bad("timeout must be positive");
        }
        if self.duration > Duration::from_secs(7 * 24 * 3600) || self.warmup > Duration::from_secs(24 * 3600)
        {
            return bad("duration or warmup too long");
        }
        if self.max_len > 1 << 20 {
            return bad("max_len must be at most 1 MiB");
        }
        if self.timeline_ms > 0 {
            // The windows cover the measured period and the wait for the last answers.
            let span_ms = (self.duration + self.timeout).as_millis();
            if span_ms / u128::from(self.timeline_ms) > MAX_TIMELINE_WINDOWS as u128 {
                return bad("timeline_ms too small for the duration: more than 1,000,000 windows");
            }
        }
        require_loopback(self.target.addr().ip())
    }

    /// Calls in flight per connection (Dubbo target), `connections` entries summing to the concurrency.
    pub(super) fn windows(&self) -> Vec<usize> {
        let conc = if self.concurrency == 0 {
            self.connections
        } else {
            self.concurrency
        };
        let n = self.connections.min(conc).max(1);
        (0..n).map(|c| conc / n + usize::from(c < conc % n)).collect()
    }
}

/// Parses `20s`, `500ms`, `2m`, `1h`, `1.5s` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "us" | "µs" => n / 1e6,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("bad duration unit {other:?} in {s:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("bad duration {s:?}"))
}

/// The interface name the HTTP form carries (for servers written in tests).
pub const INTERFACE: &str = SERVICE;
