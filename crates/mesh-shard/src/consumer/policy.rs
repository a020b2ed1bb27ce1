//! How calls are made, per service and method: timeout, retries, idempotence, rate limit; and the
//! shard's token buckets enforcing the rate limits (the clock is passed in).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How calls to one service (or one method of it) are made.
#[derive(Debug, Clone, PartialEq)]
pub struct CallPolicy {
    /// The whole call, from sending to the answer; sent to the provider as Dubbo's `timeout` attachment.
    pub timeout: Duration,
    /// Further sends of the call after one that provably did not run it (connect failure, status 60 or
    /// 100) — or, for an idempotent call, after one whose connection died with the call in flight. One
    /// budget per call, whatever the kind of retry (another provider or the wait queue again).
    pub retries: usize,
    /// Safe to run twice: a call lost with its connection is retried elsewhere.
    pub idempotent: bool,
    /// Calls per second this shard admits for the service or method (a token bucket with one second of
    /// burst); beyond it, 429 at once. `None`: no limit.
    pub rate_limit: Option<f64>,
}

impl Default for CallPolicy {
    fn default() -> Self {
        CallPolicy {
            timeout: Duration::from_millis(5000),
            retries: 2,
            idempotent: true,
            rate_limit: None,
        }
    }
}

/// Call policies: a default, per-service overrides, per-method overrides within a service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policies {
    pub default: CallPolicy,
    /// Keyed by service (interface) name; the inner map by method name.
    pub services: HashMap<String, (Option<CallPolicy>, HashMap<String, CallPolicy>)>,
}

impl Policies {
    /// The policy of `service.method`: the method's, else the service's, else the default.
    pub fn get(&self, service: &str, method: &str) -> &CallPolicy {
        match self.services.get(service) {
            None => &self.default,
            Some((svc, methods)) => methods.get(method).or(svc.as_ref()).unwrap_or(&self.default),
        }
    }
}

/// A token bucket: `rate` tokens per second, at most one second's worth (and at least one token) saved.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket.
    fn full(rate: f64, now: Instant) -> Self {
        Bucket {
            tokens: rate.max(1.0),
            at: now,
        }
    }

    fn take(&mut self, rate: f64, now: Instant) -> bool {
        let burst = rate.max(1.0);
        self.tokens = (self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * rate).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The shard's rate limiters: one token bucket per `service#method` with a rate limit.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    buckets: HashMap<String, Bucket>,
}

impl RateLimiter {
    /// Whether a call of `service.method` may go at `now` under the limit `rate` (calls per second).
    pub(crate) fn admit(&mut self, service: &str, method: &str, rate: Option<f64>, now: Instant) -> bool {
        let Some(rate) = rate else {
            return true;
        };
        self.buckets
            .entry(format!("{service}#{method}"))
            .or_insert_with(|| Bucket::full(rate, now))
            .take(rate, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_then_service_then_default() {
        let svc = CallPolicy {
            retries: 0,
            ..CallPolicy::default()
        };
        let method = CallPolicy {
            idempotent: false,
            ..CallPolicy::default()
        };
        let mut p = Policies::default();
        p.services.insert(
            "S".into(),
            (
                Some(svc.clone()),
                HashMap::from([("m".to_string(), method.clone())]),
            ),
        );
        p.services.insert(
            "T".into(),
            (None, HashMap::from([("m".to_string(), method.clone())])),
        );
        assert_eq!(p.get("S", "m"), &method);
        assert_eq!(p.get("S", "other"), &svc);
        assert_eq!(p.get("T", "other"), &CallPolicy::default());
        assert_eq!(p.get("U", "m"), &CallPolicy::default());
    }

    #[test]
    fn no_rate_limit_admits_everything() {
        let mut l = RateLimiter::default();
        let now = Instant::now();
        assert!((0..10_000).all(|_| l.admit("S", "m", None, now)));
    }

    #[test]
    fn bucket_allows_one_second_of_burst_then_the_rate() {
        let mut l = RateLimiter::default();
        let t0 = Instant::now();
        let admitted = (0..10).filter(|_| l.admit("S", "m", Some(4.0), t0)).count();
        assert_eq!(admitted, 4, "a full bucket holds one second");
        // A quarter second later: one more token.
        let t1 = t0 + Duration::from_millis(250);
        assert!(l.admit("S", "m", Some(4.0), t1));
        assert!(!l.admit("S", "m", Some(4.0), t1));
        // Long idle: refilled to the burst only.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| l.admit("S", "m", Some(4.0), t2)).count(), 4);
        // Methods have buckets of their own.
        assert!(l.admit("S", "n", Some(4.0), t2));
    }

    #[test]
    fn slow_rates_keep_one_token_of_burst() {
        let mut l = RateLimiter::default();
        let t0 = Instant::now();
        assert!(l.admit("S", "m", Some(0.5), t0));
        assert!(!l.admit("S", "m", Some(0.5), t0 + Duration::from_secs(1)));
        assert!(l.admit("S", "m", Some(0.5), t0 + Duration::from_secs(2)));
    }
}
