//! A capacity schedule for the simulator: its thread cap, base latency and knee change over time (the 2019
//! challenge's providers, whose capacity drifts while the consumer balances).
//!
//! Syntax: steps separated by `;` or new lines, each `<time>:<key>=<value>[,<key>=<value>...]`, `#` starts
//! a comment (to the end of the line):
//!
//! ```text
//! 0s:threads=200,latency=50ms; 10s:threads=50,latency=80ms
//! 20s:threads=120          # latency stays 80 ms
//! ```
//!
//! * `<time>`: since the schedule's start (`500ms`, `10s`, `2m`; a bare number is seconds), strictly
//!   ascending from step to step;
//! * keys: `threads` (the thread cap, 0 = none), `latency` (the base latency: `50ms`, `0.05s`; a bare
//!   number is seconds), `knee` (0 = none). A key a step leaves out keeps its value from the step before
//!   (the first step: the simulator's own settings).
//!
//! Before the first step's time the simulator's own settings hold; from the last step on, the last step's.
//! Parsing ([`Schedule::parse`]) and the value in force at a moment ([`Schedule::in_force_at`]) are pure;
//! the simulator applies each step when its time comes.

use std::time::Duration;

use thiserror::Error;

use crate::loadgen::parse_duration;

/// Most steps in one schedule (a bound on what a file can make the simulator hold).
pub const MAX_STEPS: usize = 10_000;

/// Why a schedule does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScheduleError {
    /// No step at all.
    #[error("empty schedule: expected steps like \"0s:threads=200,latency=50ms; 10s:threads=50\"")]
    Empty,
    /// More than [`MAX_STEPS`] steps.
    #[error("{0} steps: at most {MAX_STEPS}")]
    TooManySteps(usize),
    /// One step is wrong.
    #[error("step {step} ({text:?}): {reason}")]
    Step {
        /// 1-based position of the step.
        step: usize,
        /// The step as written.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// What one step sets (`None`: unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StepChange {
    /// Thread cap (0 = none).
    pub threads: Option<usize>,
    /// Base latency.
    pub latency: Option<Duration>,
    /// Capacity knee (0 = none).
    pub knee: Option<usize>,
}

/// One step: from `at` (since the schedule's start) on, `change` applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// When the step starts.
    pub at: Duration,
    /// What it changes.
    pub change: StepChange,
}

/// A simulator's capacity at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Thread cap (0 = none).
    pub threads: usize,
    /// Base latency.
    pub latency: Duration,
    /// Capacity knee (0 = none).
    pub knee: usize,
}

impl Capacity {
    /// Calls per second it can serve at most: threads / latency (`None` without a thread cap or with a zero
    /// latency: unbounded).
    pub fn calls_per_s(&self) -> Option<f64> {
        let lat = self.latency.as_secs_f64();
        (self.threads > 0 && lat > 0.0).then(|| self.threads as f64 / lat)
    }

    /// This capacity with `change` applied.
    pub fn with(self, change: StepChange) -> Capacity {
        Capacity {
            threads: change.threads.unwrap_or(self.threads),
            latency: change.latency.unwrap_or(self.latency),
            knee: change.knee.unwrap_or(self.knee),
        }
    }
}

/// A parsed schedule: steps in strictly ascending time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    steps: Vec<Step>,
}

impl std::str::FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Schedule::parse(s)
    }
}

impl Schedule {
    /// Parses the syntax of the module documentation.
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let mut raw = Vec::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            raw.extend(line.split(';').map(str::trim).filter(|s| !s.is_empty()));
        }
        if raw.is_empty() {
            return Err(ScheduleError::Empty);
        }
        if raw.len() > MAX_STEPS {
            return Err(ScheduleError::TooManySteps(raw.len()));
        }
        let mut steps: Vec<Step> = Vec::with_capacity(raw.len());
        for (i, text) in raw.iter().enumerate() {
            let err = |reason: String| ScheduleError::Step {
                step: i + 1,
                text: (*text).to_owned(),
                reason,
            };
            let step = parse_step(text).map_err(err)?;
            if let Some(prev) = steps.last() {
                if step.at <= prev.at {
                    return Err(err(format!(
                        "starts at {:?}, not after the step before ({:?}): times must ascend",
                        step.at, prev.at
                    )));
                }
            }
            steps.push(step);
        }
        Ok(Schedule { steps })
    }

    /// The steps, in time order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The capacity each step puts in force, starting from `base` (the simulator's own settings).
    pub fn capacities(&self, base: Capacity) -> Vec<Capacity> {
        let mut cur = base;
        self.steps
            .iter()
            .map(|s| {
                cur = cur.with(s.change);
                cur
            })
            .collect()
    }

    /// The index of the step in force `elapsed` after the start (`None` before the first step).
    pub fn step_at(&self, elapsed: Duration) -> Option<usize> {
        // Steps ascend: the last one whose time has come.
        self.steps.partition_point(|s| s.at <= elapsed).checked_sub(1)
    }

    /// The capacity in force `elapsed` after the start, from `base`.
    pub fn in_force_at(&self, base: Capacity, elapsed: Duration) -> Capacity {
        match self.step_at(elapsed) {
            None => base,
            Some(i) => self.steps[..=i].iter().fold(base, |c, s| c.with(s.change)),
        }
    }

    /// When the schedule stops changing (the last step's time).
    pub fn last_change(&self) -> Duration {
        self.steps.last().map_or(Duration::ZERO, |s| s.at)
    }
}

fn parse_step(text: &str) -> Result<Step, String> {
    let Some((at, kvs)) = text.split_once(':') else {
        return Err("expected <time>:<key>=<value>,... (e.g. 10s:threads=50,latency=80ms)".into());
    };
    let at = parse_duration(at).map_err(|e| format!("time: {e}"))?;
    let mut change = StepChange::default();
    for kv in kvs.split(',').map(str::trim) {
        if kv.is_empty() {
            continue;
        }
        let Some((k, v)) = kv.split_once('=') else {
            return Err(format!("{kv:?}: expected <key>=<value>"));
        };
        let (k, v) = (k.trim(), v.trim());
        let count = |what: &str| {
            v.parse::<usize>()
                .map_err(|_| format!("{what} {v:?}: expected a whole number"))
        };
        let dup = |set: bool| {
            if set {
                Err(format!("{k} given twice"))
            } else {
                Ok(())
            }
        };
        match k {
            "threads" => {
                dup(change.threads.is_some())?;
                change.threads = Some(count("threads")?);
            }
            "knee" => {
                dup(change.knee.is_some())?;
                change.knee = Some(count("knee")?);
            }
            "latency" => {
                dup(change.latency.is_some())?;
                let d = parse_duration(v).map_err(|e| format!("latency: {e}"))?;
                if d > Duration::from_secs(3600) {
                    return Err(format!("latency {v:?}: at most 1 h"));
                }
                change.latency = Some(d);
            }
            other => {
                return Err(format!(
                    "unknown key {other:?} (expected threads, latency or knee)"
                ))
            }
        }
    }
    if change == StepChange::default() {
        return Err("sets nothing (expected threads=, latency= or knee=)".into());
    }
    Ok(Step { at, change })
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
    fn parses_steps_and_carries_unset_keys_over() {
        let s = Schedule::parse(
            "0s:threads=200,latency=50ms; 10s:threads=50,latency=80ms\n\
             # a comment line\n\
             20s:threads=120  # latency stays\n\
             1m:knee=30,latency=0.04",
        )
        .unwrap();
        let at: Vec<_> = s.steps().iter().map(|s| s.at.as_secs()).collect();
        assert_eq!(at, [0, 10, 20, 60]);
        let caps = s.capacities(Capacity {
            threads: 1,
            latency: Duration::from_millis(1),
            knee: 7,
        });
        assert_eq!(
            caps.iter()
                .map(|c| (c.threads, c.latency.as_millis(), c.knee))
                .collect::<Vec<_>>(),
            [(200, 50, 7), (50, 80, 7), (120, 80, 7), (120, 40, 30)]
        );
        assert_eq!(s.last_change(), Duration::from_secs(60));
        assert_eq!("5s:threads=3".parse::<Schedule>().unwrap().steps().len(), 1);
    }

    #[test]
    fn the_step_in_force_at_each_moment() {
        let s = Schedule::parse("5s:threads=100; 10s:threads=50,latency=80ms; 20s:threads=0").unwrap();
        let at = |ms| s.in_force_at(base(), Duration::from_millis(ms));
        assert_eq!(s.step_at(Duration::from_millis(4_999)), None);
        assert_eq!(at(4_999), base(), "before the first step: the simulator's own");
        assert_eq!(s.step_at(Duration::from_secs(5)), Some(0));
        assert_eq!(at(5_000).threads, 100);
        assert_eq!(at(9_999).latency, Duration::from_millis(50));
        assert_eq!(s.step_at(Duration::from_secs(10)), Some(1));
        assert_eq!((at(15_000).threads, at(15_000).latency.as_millis()), (50, 80));
        assert_eq!(
            s.step_at(Duration::from_secs(3600)),
            Some(2),
            "the last step stays"
        );
        assert_eq!(
            (at(3_600_000).threads, at(3_600_000).latency.as_millis()),
            (0, 80)
        );
    }

    #[test]
    fn capacity_in_calls_per_second() {
        assert_eq!(base().calls_per_s(), Some(4000.0));
        let no_cap = Capacity { threads: 0, ..base() };
        assert_eq!(no_cap.calls_per_s(), None);
        let instant = Capacity {
            latency: Duration::ZERO,
            ..base()
        };
        assert_eq!(instant.calls_per_s(), None);
    }

    #[test]
    fn errors_say_which_step_and_why() {
        assert_eq!(Schedule::parse(""), Err(ScheduleError::Empty));
        assert_eq!(Schedule::parse(" ; # nothing\n"), Err(ScheduleError::Empty));
        let err = |s: &str| Schedule::parse(s).unwrap_err().to_string();
        assert_eq!(
            err("0s:threads=1; 10s:threads=x"),
            "step 2 (\"10s:threads=x\"): threads \"x\": expected a whole number"
        );
        assert!(err("0s:threads=1;5s:threads=2;5s:threads=3").starts_with("step 3 "));
        assert!(err("10s:threads=1;5s:threads=2").contains("times must ascend"));
        assert!(err("threads=1").contains("expected <time>:<key>=<value>"));
        assert!(err("0s:cores=2").contains("unknown key \"cores\""));
        assert!(err("0s:threads").contains("expected <key>=<value>"));
        assert!(err("0s:latency=fast").starts_with("step 1 (\"0s:latency=fast\"): latency: bad duration"));
        assert!(err("0s:latency=2h").contains("at most 1 h"));
        assert!(err("ten:threads=1").contains("time: bad duration"));
        assert!(err("0s:threads=1,threads=2").contains("threads given twice"));
        assert!(err("0s:").contains("sets nothing"));
        assert!(err("-1s:threads=1").contains("time:"));
        let many = (0..=MAX_STEPS)
            .map(|i| format!("{i}s:threads=1"))
            .collect::<Vec<_>>()
            .join(";");
        assert_eq!(
            Schedule::parse(&many),
            Err(ScheduleError::TooManySteps(MAX_STEPS + 1))
        );
    }
}
