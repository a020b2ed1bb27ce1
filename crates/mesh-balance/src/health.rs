//! Per-provider health as one shard sees it: outlier ejection with half-open probing, and an adaptive
//! concurrency limit for providers that do not say what their cap is.
//!
//! Pure state machines (time passed in), owned by a shard's connection pool (mesh-shard): no IO, no clock
//! of their own, no locks.

use std::time::{Duration, Instant};

/// Settings of outlier ejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EjectionConfig {
    /// Consecutive failed calls (lost connection, timeout, provider-side error) that eject a provider.
    /// 0 disables ejection.
    pub consecutive_failures: u32,
    /// First ejection period; each ejection in a row doubles it up to `max_ejection`.
    pub base_ejection: Duration,
    pub max_ejection: Duration,
}

impl Default for EjectionConfig {
    fn default() -> Self {
        EjectionConfig {
            consecutive_failures: 5,
            base_ejection: Duration::from_millis(1000),
            max_ejection: Duration::from_secs(30),
        }
    }
}

/// Where a provider stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Healthy,
    /// Out of rotation until the instant given.
    Ejected(Instant),
    /// The ejection expired: one probe call at a time decides between healthy and ejected again.
    Probing,
}

/// Outlier detection for one provider.
#[derive(Debug, Clone)]
pub struct Outlier {
    cfg: EjectionConfig,
    failures: u32,
    /// Ejections in a row without a success in between (drives the back-off).
    streak: u32,
    until: Option<Instant>,
}

impl Outlier {
    pub fn new(cfg: EjectionConfig) -> Self {
        Outlier {
            cfg,
            failures: 0,
            streak: 0,
            until: None,
        }
    }

    pub fn state(&self, now: Instant) -> State {
        match self.until {
            None => State::Healthy,
            Some(t) if now < t => State::Ejected(t),
            Some(_) => State::Probing,
        }
    }

    /// A call answered normally: the provider is healthy again (a successful probe ends the ejection).
    pub fn on_success(&mut self) {
        self.failures = 0;
        self.streak = 0;
        self.until = None;
    }

    /// A call failed in a way that points at the provider. Returns true when this failure ejected it.
    pub fn on_failure(&mut self, now: Instant) -> bool {
        if self.cfg.consecutive_failures == 0 {
            return false;
        }
        match self.state(now) {
            // Already out: calls that were in flight when it was ejected change nothing.
            State::Ejected(_) => false,
            // A failed probe: back out, for longer.
            State::Probing => {
                self.eject(now);
                true
            }
            State::Healthy => {
                self.failures += 1;
                if self.failures >= self.cfg.consecutive_failures {
                    self.eject(now);
                    true
                } else {
                    false
                }
            }
        }
    }

    fn eject(&mut self, now: Instant) {
        let factor = 1u32 << self.streak.min(16);
        let period = self
            .cfg
            .base_ejection
            .saturating_mul(factor)
            .min(self.cfg.max_ejection);
        self.until = Some(now + period);
        self.streak = self.streak.saturating_add(1);
        self.failures = 0;
    }
}

/// An AIMD concurrency limit learned from the provider's own signals: a status-100 rejection (its thread
/// pool is full) cuts the limit to 90% of what was in flight; latency far above the best seen stops it
/// from growing; every answer otherwise lets it grow by about one call per limit's worth of answers.
///
/// Latency only ever holds the limit, never cuts it: the round trip measured by the consumer also holds
/// the agents' own queueing when the box is busy, and cutting on it collapsed the limit under load (a
/// benchmark at full rate drove it to one call per shard).
#[derive(Debug, Clone)]
pub struct AdaptiveLimit {
    limit: f64,
    min: f64,
    max: f64,
    /// Lowest round-trip time seen (decays slowly upwards so a permanent change is learnt).
    rtt_floor: Option<Duration>,
    rtt_ewma: Option<Duration>,
    /// In flight at the last rejection: growth slows down near it (like TCP CUBIC's plateau), so a
    /// learnt cap is probed gently instead of being hit every few round trips.
    w_max: Option<f64>,
}

impl AdaptiveLimit {
    pub fn new(initial: u32, max: u32) -> Self {
        AdaptiveLimit {
            limit: f64::from(initial.max(1)),
            min: 1.0,
            max: f64::from(max.max(1)),
            rtt_floor: None,
            rtt_ewma: None,
            w_max: None,
        }
    }

    /// Calls that may be in flight now.
    pub fn get(&self) -> u32 {
        self.limit.floor().max(1.0) as u32
    }

    /// The provider rejected a call because it was full, with `inflight` calls outstanding.
    pub fn on_overload(&mut self, inflight: u32) {
        let cut = (f64::from(inflight) * 0.9).floor();
        self.limit = cut.min(self.limit * 0.9).max(self.min);
        self.w_max = Some(f64::from(inflight.max(1)));
    }

    /// A call was answered after `rtt` with `inflight` calls outstanding (itself included).
    pub fn on_answer(&mut self, rtt: Duration, inflight: u32) {
        let floor = match self.rtt_floor {
            Some(f) if rtt >= f => f + (rtt - f) / 1000, // creep up so a lasting change is followed
            _ => rtt,
        };
        self.rtt_floor = Some(floor);
        let ewma = match self.rtt_ewma {
            Some(e) => e.mul_f64(0.9) + rtt.mul_f64(0.1),
            None => rtt,
        };
        self.rtt_ewma = Some(ewma);
        // Queueing shows as latency well above the floor: do not push further.
        if ewma > floor * 2 + Duration::from_micros(500) {
            return;
        }
        // Only grow while the limit is what holds calls back: one call per limit's worth of answers, a
        // tenth of that near the last rejection point (which itself creeps up while no rejection comes).
        if f64::from(inflight) + 1.0 >= self.limit {
            let step = match self.w_max {
                Some(w) if self.limit + 1.0 >= w => {
                    self.w_max = Some(w + 0.01 / self.limit);
                    0.1 / self.limit
                }
                _ => 1.0 / self.limit,
            };
            self.limit = (self.limit + step).min(self.max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> EjectionConfig {
        EjectionConfig {
            consecutive_failures: 3,
            base_ejection: Duration::from_millis(100),
            max_ejection: Duration::from_millis(350),
        }
    }

    #[test]
    fn ejects_after_consecutive_failures_and_probes_after_the_period() {
        let t0 = Instant::now();
        let mut o = Outlier::new(cfg());
        assert!(!o.on_failure(t0));
        assert!(!o.on_failure(t0));
        o.on_success(); // a success in between resets the count
        assert!(!o.on_failure(t0));
        assert!(!o.on_failure(t0));
        assert_eq!(o.state(t0), State::Healthy);
        assert!(o.on_failure(t0));
        assert_eq!(o.state(t0), State::Ejected(t0 + Duration::from_millis(100)));
        // Late failures of calls already in flight do not extend it.
        assert!(!o.on_failure(t0 + Duration::from_millis(50)));
        assert_eq!(o.state(t0 + Duration::from_millis(100)), State::Probing);
        // A failed probe ejects again, twice as long; then 4x capped at the maximum.
        let t1 = t0 + Duration::from_millis(100);
        assert!(o.on_failure(t1));
        assert_eq!(o.state(t1), State::Ejected(t1 + Duration::from_millis(200)));
        let t2 = t1 + Duration::from_millis(200);
        assert!(o.on_failure(t2));
        assert_eq!(o.state(t2), State::Ejected(t2 + Duration::from_millis(350)));
        // A successful probe makes it healthy and resets the back-off.
        o.on_success();
        assert_eq!(o.state(t2), State::Healthy);
        for _ in 0..2 {
            o.on_failure(t2);
        }
        assert!(o.on_failure(t2));
        assert_eq!(o.state(t2), State::Ejected(t2 + Duration::from_millis(100)));
    }

    #[test]
    fn zero_threshold_never_ejects() {
        let mut o = Outlier::new(EjectionConfig {
            consecutive_failures: 0,
            ..cfg()
        });
        let t = Instant::now();
        for _ in 0..100 {
            assert!(!o.on_failure(t));
        }
        assert_eq!(o.state(t), State::Healthy);
    }

    #[test]
    fn adaptive_limit_learns_a_hidden_cap() {
        // A provider with 40 threads: it rejects whenever more than 40 calls are in flight. The limit
        // starts at 10, grows while answers come back at a flat latency, and settles just under 40.
        let mut l = AdaptiveLimit::new(10, 1000);
        let rtt = Duration::from_millis(50);
        let mut rejections = 0;
        for _ in 0..20_000 {
            let inflight = l.get();
            if inflight > 40 {
                l.on_overload(inflight);
                rejections += 1;
            } else {
                l.on_answer(rtt, inflight);
            }
        }
        let settled = l.get();
        assert!((30..=41).contains(&settled), "settled at {settled}");
        assert!(rejections > 0 && rejections < 2_000, "{rejections} rejections");
    }

    #[test]
    fn adaptive_limit_holds_while_latency_is_inflated_and_never_collapses() {
        let mut l = AdaptiveLimit::new(100, 1000);
        for _ in 0..300 {
            l.on_answer(Duration::from_millis(10), 100);
        }
        let before = l.get();
        assert!(
            before > 100,
            "grew while answers were fast and the window full: {before}"
        );
        // Slow answers with the window full: no growth (beyond the few answers the EWMA takes to rise),
        // and no cut either: only rejections cut.
        for _ in 0..300 {
            l.on_answer(Duration::from_millis(40), 200);
        }
        assert!(
            l.get() >= before && l.get() <= before + 1,
            "{} vs {before}",
            l.get()
        );
        // The cut on a rejection never goes below one call.
        l.on_overload(0);
        assert_eq!(l.get(), 1);
    }
}
