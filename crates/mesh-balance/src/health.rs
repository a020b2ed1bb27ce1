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
    /// Returns true when this ended an ejection (the provider is restored).
    pub fn on_success(&mut self) -> bool {
        self.failures = 0;
        self.streak = 0;
        self.until.take().is_some()
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
/// pool is full) cuts the limit to 90% of what was in flight, once per round trip (the rejections of calls
/// sent before the cut are the same overload: cutting on each of them collapsed the limit to one call when
/// a provider shrank); latency far above the best seen stops it from growing; every answer otherwise, while
/// at least half the limit is in use, lets it grow ([`growth_per_answer`]): by about one call per limit's
/// worth of answers (a round trip), a tenth of that just below the last rejection point, and past that
/// point — no rejection where there was one: the provider's capacity grew — by the distance already
/// climbed past it per round trip, so that the limit catches up with a grown capacity in a few round trips
/// (TCP CUBIC's convex region) instead of creeping up at a tenth of a call per round trip.
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
    /// learnt cap is probed gently instead of being hit every few round trips, and speeds up past it.
    w_max: Option<f64>,
    /// Answers and rejections still to come of the calls in flight at the last cut.
    recovery: u32,
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
            recovery: 0,
        }
    }

    /// Calls that may be in flight now.
    pub fn get(&self) -> u32 {
        self.limit.floor().max(1.0) as u32
    }

    /// The provider rejected a call because it was full, with `inflight` calls outstanding.
    pub fn on_overload(&mut self, inflight: u32) {
        if self.recovery > 0 {
            // A call sent before the last cut: the same overload.
            self.recovery -= 1;
            return;
        }
        let cut = (f64::from(inflight) * 0.9).floor();
        self.limit = cut.min(self.limit * 0.9).max(self.min);
        self.w_max = Some(f64::from(inflight.max(1)));
        self.recovery = inflight.saturating_sub(1);
    }

    /// A call was answered after `rtt` with `inflight` calls outstanding (itself included).
    pub fn on_answer(&mut self, rtt: Duration, inflight: u32) {
        self.recovery = self.recovery.saturating_sub(1);
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
        // Only grow while the limit is in use: at least half of it (a consumer that refills freed slots a
        // little late, on a busy machine, still learns a grown capacity).
        if f64::from(inflight) * 2.0 >= self.limit {
            self.limit = (self.limit + growth_per_answer(self.limit, self.w_max)).min(self.max);
        }
    }
}

/// How much a limit of `limit` grows on one answer while it holds calls back, `w_max` being the in-flight
/// count at the last rejection. Per round trip (`limit` answers):
/// * no rejection yet, or more than one call below the rejection point: one call (additive increase);
/// * from one call below the rejection point up to it: a tenth of a call (the learnt cap is probed gently);
/// * past it by `d` calls: `d` calls (at least a tenth, at most `limit`), i.e. the distance past the old
///   rejection point doubles every round trip until the provider rejects again.
pub fn growth_per_answer(limit: f64, w_max: Option<f64>) -> f64 {
    let limit = limit.max(1.0);
    let per_round_trip = match w_max {
        Some(w) if limit + 1.0 >= w => (limit - w).clamp(0.1, limit),
        _ => 1.0,
    };
    per_round_trip / limit
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
        assert!(!o.on_success()); // a success in between resets the count; nothing to restore
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
        // A successful probe makes it healthy (restored) and resets the back-off.
        assert!(o.on_success());
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

    /// Drives `l` against a provider with `cap` threads for `rounds` round trips: each round sends the
    /// limit's worth of calls at once; those beyond the cap are rejected (their rejections come back first),
    /// the others answered. Returns the rejections.
    fn drive(l: &mut AdaptiveLimit, cap: u32, rounds: usize) -> usize {
        let rtt = Duration::from_millis(50);
        let mut rejections = 0;
        for _ in 0..rounds {
            let window = l.get();
            for _ in cap..window {
                l.on_overload(window);
                rejections += 1;
            }
            for _ in 0..window.min(cap) {
                l.on_answer(rtt, window);
            }
        }
        rejections
    }

    /// Round trips (at most `bound`) until the limit reaches `at_least`, against `cap` threads.
    fn rounds_until(l: &mut AdaptiveLimit, cap: u32, at_least: u32, bound: usize) -> usize {
        let mut rounds = 0;
        while l.get() < at_least && rounds < bound {
            drive(l, cap, 1);
            rounds += 1;
        }
        rounds
    }

    #[test]
    fn growth_per_answer_is_additive_gentle_near_the_last_rejection_and_fast_past_it() {
        // No rejection yet, or well below it: one call per round trip (limit answers).
        assert_eq!(growth_per_answer(50.0, None), 1.0 / 50.0);
        assert_eq!(growth_per_answer(50.0, Some(80.0)), 1.0 / 50.0);
        // Within one call of the last rejection point, and at it: a tenth of a call per round trip.
        assert_eq!(growth_per_answer(79.5, Some(80.0)), 0.1 / 79.5);
        assert_eq!(growth_per_answer(80.0, Some(80.0)), 0.1 / 80.0);
        // Past it by 8 calls: 8 calls per round trip (the distance past it doubles every round trip).
        assert_eq!(growth_per_answer(88.0, Some(80.0)), 8.0 / 88.0);
        assert_eq!(growth_per_answer(300.0, Some(10.0)), 290.0 / 300.0);
        // A limit below one call grows as one call.
        assert_eq!(growth_per_answer(0.5, None), 1.0);
    }

    #[test]
    fn adaptive_limit_catches_up_with_a_grown_capacity_within_a_few_round_trips() {
        // Settled under a 40-thread cap, the provider grows to 160 threads.
        let mut l = AdaptiveLimit::new(10, 1000);
        drive(&mut l, 40, 500);
        assert!((30..=40).contains(&l.get()), "settled at {}", l.get());
        // 150 of the 160 threads are in use within about 30 round trips (the gentle probe at the old cap,
        // then doubling); creeping up at a tenth of a call per round trip (before) took over a thousand.
        let rounds = rounds_until(&mut l, 160, 150, 10_000);
        assert!(rounds < 30, "{rounds} round trips to reach 150");
        // And it settles under the new cap, rejecting now and then.
        let rejections = drive(&mut l, 160, 500);
        assert!((120..=160).contains(&l.get()), "settled at {}", l.get());
        assert!(rejections > 0 && rejections < 500, "{rejections} rejections");
    }

    #[test]
    fn adaptive_limit_follows_a_shrunk_capacity_at_its_first_rejections() {
        let mut l = AdaptiveLimit::new(10, 1000);
        drive(&mut l, 160, 500);
        assert!(l.get() >= 120, "settled at {}", l.get());
        // The provider shrinks to 40 threads: the first round's rejections cut once (not once each: that
        // collapsed the limit to one call), and a cut per round brings it under 40 within a round or two.
        let before = l.get();
        drive(&mut l, 40, 1);
        assert_eq!(
            l.get(),
            (f64::from(before) * 0.9).floor() as u32,
            "one cut for the round"
        );
        let rounds = {
            let mut r = 1;
            while l.get() > 40 && r < 100 {
                drive(&mut l, 40, 1);
                r += 1;
            }
            r
        };
        assert!(rounds <= 15, "{rounds} round trips");
        drive(&mut l, 40, 500);
        assert!((30..=40).contains(&l.get()), "settled at {}", l.get());
    }

    #[test]
    fn adaptive_limit_grows_while_half_of_it_is_in_use_and_not_below() {
        let rtt = Duration::from_millis(50);
        let mut l = AdaptiveLimit::new(100, 1000);
        for _ in 0..1000 {
            l.on_answer(rtt, 49);
        }
        assert_eq!(l.get(), 100, "under half in use: no growth");
        for _ in 0..1000 {
            l.on_answer(rtt, 60);
        }
        assert!(l.get() >= 105, "more than half in use: grows ({})", l.get());
        for _ in 0..10_000 {
            l.on_answer(rtt, 60);
        }
        assert_eq!(l.get(), 120, "up to twice what is in use");
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
