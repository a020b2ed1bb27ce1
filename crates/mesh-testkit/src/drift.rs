//! The drift benchmark's oracle (binary `drift-oracle`): a registry writer that knows every provider's
//! capacity schedule (the same one its simulator follows) and keeps each provider's registration saying its
//! capacity at every moment: `weight` = the calls per second it can serve (threads / latency) and `threads` =
//! its thread cap, so a consumer balancing by registered weights and caps follows the truth.
//!
//! A registration takes a few milliseconds to reach the consumer (an etcd commit, the watch, the consumer's
//! snapshot), while a simulator changes at the step's instant. So that the consumer never believes in
//! capacity the provider no longer has, the oracle announces, from `lead` before each step to the step,
//! the smaller of the two capacities (the lower `threads` and `weight`), then the new one at the step
//! ([`announced_at`]).
//!
//! This module is the pure part: the targets' syntax, what a capacity is announced as at each moment, and
//! when anything changes.

use std::net::SocketAddr;
use std::time::Duration;

use crate::sim::schedule::{Capacity, Schedule};

/// The weight announced for a provider without a thread cap (its capacity is unbounded): Dubbo's default.
pub const UNBOUNDED_WEIGHT: u32 = 100;

/// One provider the oracle registers: its agent's address and its simulator's schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The address registered (the provider agent's).
    pub addr: SocketAddr,
    /// The capacity schedule of the simulator behind it.
    pub schedule: Schedule,
}

impl std::str::FromStr for Target {
    type Err = String;

    /// `<host:port>=<schedule>`, e.g. `127.0.0.1:20880=0s:threads=200;10s:threads=50`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((addr, spec)) = s.split_once('=') else {
            return Err(format!(
                "{s:?}: expected <host:port>=<schedule> (e.g. 127.0.0.1:20880=0s:threads=200)"
            ));
        };
        let addr = addr
            .trim()
            .parse()
            .map_err(|e| format!("{addr:?}: not an address: {e}"))?;
        let schedule = spec.parse().map_err(|e| format!("{addr}: {e}"))?;
        Ok(Target { addr, schedule })
    }
}

/// What a registration says about a capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announced {
    /// `weight`: calls per second (at least 1), or [`UNBOUNDED_WEIGHT`] without a cap.
    pub weight: u32,
    /// `threads`: the thread cap (`None` = no cap).
    pub threads: Option<u32>,
}

/// The registration's view of `cap`.
pub fn announce(cap: Capacity) -> Announced {
    Announced {
        weight: cap.calls_per_s().map_or(UNBOUNDED_WEIGHT, |c| {
            c.round().clamp(1.0, f64::from(u32::MAX)) as u32
        }),
        threads: (cap.threads > 0).then(|| u32::try_from(cap.threads).unwrap_or(u32::MAX)),
    }
}

/// What the oracle registers for `schedule` (from `base`) at `t` after the start: the capacity in force,
/// except in the `lead` before a step, where it is the smaller of the one in force and the coming one.
pub fn announced_at(schedule: &Schedule, base: Capacity, t: Duration, lead: Duration) -> Announced {
    let now = announce(schedule.in_force_at(base, t));
    let next = announce(schedule.in_force_at(base, t + lead));
    // No cap (None) is the larger.
    let threads = match (now.threads, next.threads) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Announced {
        weight: now.weight.min(next.weight),
        threads,
    }
}

/// Every moment (since the schedules' start) at which some target's registration changes, ascending, once
/// each: each step's time, and `lead` before it (not before 0).
pub fn change_times(targets: &[Target], lead: Duration) -> Vec<Duration> {
    let mut at: Vec<Duration> = targets
        .iter()
        .flat_map(|t| t.schedule.steps().iter())
        .flat_map(|s| [s.at.saturating_sub(lead), s.at])
        .collect();
    at.sort_unstable();
    at.dedup();
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Capacity {
        Capacity {
            threads: 200,
            latency: Duration::from_millis(50),
            knee: 0,
        }
    }

    #[test]
    fn targets_parse_with_clear_errors() {
        let t: Target = "127.0.0.1:20880=0s:threads=100;10s:threads=50,latency=80ms"
            .parse()
            .unwrap();
        assert_eq!(t.addr, "127.0.0.1:20880".parse().unwrap());
        assert_eq!(t.schedule.steps().len(), 2);
        assert!("127.0.0.1:1"
            .parse::<Target>()
            .unwrap_err()
            .contains("expected <host:port>="));
        assert!("localhost=0s:threads=1"
            .parse::<Target>()
            .unwrap_err()
            .contains("not an address"));
        let e = "127.0.0.1:1=0s:thread=1".parse::<Target>().unwrap_err();
        assert!(e.starts_with("127.0.0.1:1: step 1"), "{e}");
    }

    #[test]
    fn capacity_is_announced_as_calls_per_second_and_the_cap() {
        assert_eq!(
            announce(base()),
            Announced {
                weight: 4000,
                threads: Some(200)
            }
        );
        let slow = Capacity {
            threads: 50,
            latency: Duration::from_millis(80),
            knee: 0,
        };
        assert_eq!(announce(slow).weight, 625);
        let tiny = Capacity {
            threads: 1,
            latency: Duration::from_secs(10),
            knee: 0,
        };
        assert_eq!(announce(tiny).weight, 1, "never 0 (0 would drain it)");
        let uncapped = Capacity { threads: 0, ..base() };
        assert_eq!(
            announce(uncapped),
            Announced {
                weight: UNBOUNDED_WEIGHT,
                threads: None
            }
        );
    }

    #[test]
    fn before_a_step_the_smaller_capacity_is_announced() {
        let s: Schedule = "0s:threads=200;10s:threads=50,latency=80ms;20s:threads=100,latency=50ms"
            .parse()
            .unwrap();
        let lead = Duration::from_millis(100);
        let at = |ms| announced_at(&s, base(), Duration::from_millis(ms), lead);
        let said = |weight, threads| Announced {
            weight,
            threads: Some(threads),
        };
        assert_eq!(at(0), said(4000, 200));
        assert_eq!(at(9_899), said(4000, 200));
        // Shrinking at 10 s: the smaller one from 9.9 s on.
        assert_eq!(at(9_900), said(625, 50));
        assert_eq!(at(10_000), said(625, 50));
        // Growing at 20 s: still the smaller (current) one until the step itself.
        assert_eq!(at(19_900), said(625, 50));
        assert_eq!(at(20_000), said(2000, 100));
        // An uncapped step is the larger one.
        let u: Schedule = "0s:threads=0;10s:threads=30".parse().unwrap();
        let a = announced_at(&u, base(), Duration::from_millis(9_950), lead);
        assert_eq!(a.threads, Some(30));
    }

    #[test]
    fn change_times_merge_every_targets_steps() {
        let targets: Vec<Target> = [
            "127.0.0.1:1=0s:threads=1;10s:threads=2;30s:threads=3",
            "127.0.0.1:2=10s:threads=1;20s:threads=2",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let secs: Vec<u64> = change_times(&targets, Duration::ZERO)
            .iter()
            .map(Duration::as_secs)
            .collect();
        assert_eq!(secs, [0, 10, 20, 30]);
        let ms: Vec<u128> = change_times(&targets, Duration::from_millis(100))
            .iter()
            .map(Duration::as_millis)
            .collect();
        assert_eq!(ms, [0, 9_900, 10_000, 19_900, 20_000, 29_900, 30_000]);
        // What each target says at each change: the schedule in force there.
        let at20 = |t: &Target| announce(t.schedule.in_force_at(base(), Duration::from_secs(20)));
        assert_eq!(at20(&targets[0]).threads, Some(2));
        assert_eq!(at20(&targets[1]).threads, Some(2));
    }
}
