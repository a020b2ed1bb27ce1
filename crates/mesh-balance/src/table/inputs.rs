//! What a route table is built from and told: providers, the consumer, requests, options, and the
//! changes of a provider list.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::rule::Key;

/// One provider of the service in this epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// Where calls go (the provider agent).
    pub addr: SocketAddr,
    /// Capacity weight. 0, as in Dubbo: no share while any candidate of the call weighs more (a
    /// provider being drained), equal shares when every candidate weighs 0.
    pub weight: u32,
    /// In-flight cap for this consumer (the caller divides a shared cap between its shards).
    pub max_concurrency: Option<u32>,
    /// Static tag (Dubbo's `dubbo.tag` provider parameter).
    pub tag: Option<String>,
    /// Other parameters condition rules can match (`application`, `version`, `group`, ...). A `warmup`
    /// parameter (milliseconds) overrides the table's default warm-up period for this provider.
    pub params: BTreeMap<String, String>,
    /// Registration time in milliseconds on the clock of the `now_ns` passed to picks; `None` = fully warm.
    pub registered_at_ms: Option<u64>,
}

impl Provider {
    /// A provider at `addr` with weight 100 and nothing else.
    pub fn new(addr: SocketAddr) -> Self {
        Provider {
            addr,
            weight: 100,
            max_concurrency: None,
            tag: None,
            params: BTreeMap::new(),
            registered_at_ms: None,
        }
    }

    /// Sets the weight.
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Sets the in-flight cap.
    pub fn with_max_concurrency(mut self, cap: u32) -> Self {
        self.max_concurrency = Some(cap);
        self
    }

    /// Sets the static tag.
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }

    /// Adds a parameter.
    pub fn with_param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.insert(key.into(), value.into());
        self
    }

    /// Sets the registration time (enables warm-up).
    pub fn with_registered_at_ms(mut self, ms: u64) -> Self {
        self.registered_at_ms = Some(ms);
        self
    }
}

/// The consumer's own attributes: the when part's `host`, `application`, ... and `$` references resolve
/// against these once per table, not per request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerInfo {
    /// The consumer's IP (`host`).
    pub host: String,
    /// The consumer's port (`port`), if it has one.
    pub port: Option<u16>,
    /// Default request tag (Dubbo's consumer-URL `dubbo.tag`) for requests that carry none.
    pub tag: Option<String>,
    /// Other parameters (`application`, ...).
    pub params: BTreeMap<String, String>,
}

impl ConsumerInfo {
    pub(crate) fn value(&self, key: &Key) -> Option<String> {
        match key {
            Key::Host => Some(self.host.clone()),
            Key::Port => self.port.map(|p| p.to_string()),
            Key::Address => self.port.map(|p| format!("{}:{p}", self.host)),
            Key::Param(k) => self.lookup(k),
            Key::Method | Key::Argument(_) | Key::Attachment(_) => None,
        }
    }

    pub(crate) fn lookup(&self, k: &str) -> Option<String> {
        match k {
            "host" => Some(self.host.clone()),
            "port" => self.port.map(|p| p.to_string()),
            "tag" | "dubbo.tag" => self.tag.clone(),
            _ => self.params.get(k).cloned(),
        }
    }
}

/// What the routers see of one call.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    /// The invoked method.
    pub method: &'a str,
    /// The `dubbo.tag` attachment, if any (empty = none).
    pub tag: Option<&'a str>,
    /// The `dubbo.force.tag` attachment: never fall back from a requested tag to untagged providers.
    pub force_tag: bool,
    /// The arguments as text, for `arguments[i]` conditions and consistent hashing.
    pub arguments: &'a [&'a str],
    /// Other attachments, for `attachments[name]` conditions.
    pub attachments: &'a [(&'a str, &'a str)],
}

impl<'a> Request<'a> {
    /// A request for `method` with nothing else.
    pub fn new(method: &'a str) -> Self {
        Request {
            method,
            ..Default::default()
        }
    }

    pub(crate) fn value(&self, key: &Key) -> Option<&'a str> {
        match key {
            Key::Method => Some(self.method),
            Key::Argument(i) => self.arguments.get(*i).copied(),
            Key::Attachment(k) => self.attachments.iter().find(|(n, _)| n == k).map(|(_, v)| *v),
            _ => None,
        }
    }
}

/// Tuning of a table; the defaults suit the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableOptions {
    /// Warm-up period for providers with a registration time and no `warmup` param (Dubbo: 10 min).
    pub default_warmup_ms: u64,
    /// While a candidate set has warming providers, its weights are recomputed at most this often.
    pub warmup_refresh_ms: u64,
    /// Candidate sets larger than this pick in groups (least-active, shortest-response, round robin).
    pub group_threshold: usize,
    /// Group size for least-active and shortest-response (round robin uses about `sqrt(n)`).
    pub group_size: usize,
    /// Virtual nodes per provider on the consistent-hash ring (Dubbo: 160); fewer on very large sets so a
    /// ring stays under 2^20 points.
    pub hash_replicas: u32,
    /// Most distinct routes cached; beyond, the cache starts over.
    pub max_cached_routes: usize,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            default_warmup_ms: 600_000,
            warmup_refresh_ms: 1_000,
            group_threshold: 64,
            group_size: 32,
            hash_replicas: 160,
            max_cached_routes: 256,
        }
    }
}

/// One change of a service's provider list, for [`RouteTable::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The provider at this address left (no-op when it is not in the table).
    Remove(SocketAddr),
    /// A provider joined, or the one at its address changed (weight, cap, tag, parameters, registration
    /// time).
    Upsert(Provider),
}

/// What [`RouteTable::apply`] did to one provider index (for [`LiveState::apply`](crate::LiveState::apply)
/// and the caller's own per-index state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Applied {
    /// A new provider took this index (a free one or a new one at the end): fresh per-index state.
    Added(usize),
    /// The provider at this index left; the index is free (never picked, may be taken by a later `Added`).
    Removed(usize),
    /// The provider at this index changed (same address): keep its live state, refresh its cap.
    Updated(usize),
}
