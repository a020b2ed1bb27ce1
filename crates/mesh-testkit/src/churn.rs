//! Registry churn for the scale benchmark (binary `registry-churn`): which provider instance leaves or joins
//! next, and where each instance listens. Pure: the binary does the etcd IO.
//!
//! Instances are numbered `0..total`; instance `i` listens on the `i`-th loopback address after a base
//! address (`127.1.0.1`, `127.1.0.2`, ...), all on the same port, so that every registered instance is a real
//! call target (Linux routes all of `127.0.0.0/8` to the loopback interface).

use std::net::Ipv4Addr;

use rand::rngs::StdRng;

use crate::dubbo_writers::app_level::{java33_service, ServiceDescription};
use crate::dubbo_writers::Provider;
use rand::{Rng, SeedableRng};

/// The `i`-th loopback address from `base` (`base` itself for 0), or `None` outside `127.0.0.0/8`.
pub fn nth_loopback(base: Ipv4Addr, i: u32) -> Option<Ipv4Addr> {
    let ip = Ipv4Addr::from(u32::from(base).checked_add(i)?);
    ip.is_loopback().then_some(ip)
}

/// One registry change: an instance's key deleted (it left) or put (it joined, with a fresh timestamp).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Leave(u32),
    Join(u32),
}

/// Alternates a random absent instance joining with a random present one leaving. Instances
/// `0..registered` are registered at the start and `registered..registered + spare` are spares (listening,
/// not registered), so the registry holds `registered` or `registered + 1` instances at any time and a
/// joining instance is one of about `spare + 1` absent ones, not always the one that just left.
/// Deterministic per seed.
#[derive(Debug)]
pub struct ChurnPlan {
    present: Vec<u32>,
    absent: Vec<u32>,
    join_next: bool,
    rng: StdRng,
}

impl ChurnPlan {
    pub fn new(registered: u32, spare: u32, seed: u64) -> Self {
        ChurnPlan {
            present: (0..registered).collect(),
            absent: (registered..registered.saturating_add(spare)).collect(),
            join_next: true,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Instances registered now.
    pub fn present(&self) -> usize {
        self.present.len()
    }

    /// The next change, already applied to the plan's view; `None` when there is nothing to change (no
    /// absent instance to join and at most one present: the last one never leaves).
    pub fn next_change(&mut self) -> Option<Change> {
        let join = self.join_next;
        self.join_next = !join;
        if join && !self.absent.is_empty() {
            return Some(Change::Join(take_random(
                &mut self.absent,
                &mut self.present,
                &mut self.rng,
            )));
        }
        if self.present.len() >= 2 {
            return Some(Change::Leave(take_random(
                &mut self.present,
                &mut self.absent,
                &mut self.rng,
            )));
        }
        if self.absent.is_empty() {
            return None;
        }
        Some(Change::Join(take_random(
            &mut self.absent,
            &mut self.present,
            &mut self.rng,
        )))
    }
}

/// Moves a random element of `from` (not empty) to `to`; returns it.
fn take_random(from: &mut Vec<u32>, to: &mut Vec<u32>, rng: &mut StdRng) -> u32 {
    let at = rng.random_range(0..from.len());
    let moved = from.swap_remove(at);
    to.push(moved);
    moved
}

/// Interface `k` of the benchmark's estate: the challenge's `IHelloService` for 0, `IHelloService<k>` after it
/// (shared by `registry-churn`, which registers them, and `provider-sim`, whose MetadataService lists them).
pub fn bench_interface(k: u32) -> String {
    if k == 0 {
        crate::sim::SERVICE.to_string()
    } else {
        format!("{}{k}", crate::sim::SERVICE)
    }
}

/// The services application `app` exports in the benchmark's application-level estate: interfaces
/// `0..count` ([`bench_interface`]) on `port`, described as a Java 3.3 provider describes them (the host
/// is not part of a description, so every instance of the application has the same ones, and the same
/// revision). `registry-churn` writes the instances' revision from these; `provider-sim`'s MetadataService
/// answers them.
pub fn bench_services(app: &str, count: u32, port: u16) -> Vec<ServiceDescription> {
    (0..count)
        .map(|k| {
            let mut p = Provider::new(&bench_interface(k), "127.0.0.1", port);
            p.application = app.to_owned();
            java33_service(&p)
        })
        .collect()
}

/// When change `n` (from 0) of a run at `rate` changes per second is due, in nanoseconds from the start.
pub fn due_ns(n: u64, rate: f64) -> u64 {
    if rate <= 0.0 {
        return 0;
    }
    (n as f64 * 1e9 / rate) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn loopback_addresses_count_from_the_base_and_stay_in_127_slash_8() {
        let base = Ipv4Addr::new(127, 1, 0, 1);
        assert_eq!(nth_loopback(base, 0), Some(base));
        assert_eq!(nth_loopback(base, 255), Some(Ipv4Addr::new(127, 1, 1, 0)));
        assert_eq!(nth_loopback(base, 4999), Some(Ipv4Addr::new(127, 1, 19, 136)));
        assert_eq!(nth_loopback(Ipv4Addr::new(127, 255, 255, 255), 1), None);
        assert_eq!(nth_loopback(Ipv4Addr::new(255, 255, 255, 255), 1), None);
    }

    #[test]
    fn joins_and_leaves_alternate_and_keep_the_registry_at_its_size_or_one_more() {
        let mut plan = ChurnPlan::new(50, 5, 7);
        let mut registered: HashSet<u32> = (0..50).collect();
        let mut joined = HashSet::new();
        for n in 0..1000 {
            let change = plan.next_change().expect("55 instances always have a change");
            match change {
                Change::Join(i) => {
                    assert_eq!(n % 2, 0, "change {n} should be a join");
                    assert!(i < 55);
                    assert!(registered.insert(i), "instance {i} joined twice");
                    joined.insert(i);
                }
                Change::Leave(i) => {
                    assert_eq!(n % 2, 1, "change {n} should be a leave");
                    assert!(registered.remove(&i), "instance {i} left twice");
                }
            }
            assert!(registered.len() == 50 || registered.len() == 51);
            assert_eq!(plan.present(), registered.len());
        }
        // Joins are drawn among the absent ones, not always the one that just left.
        assert!(
            joined.len() > 20,
            "only {} distinct instances joined",
            joined.len()
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_changes_and_another_seed_others() {
        let run = |seed| {
            let mut p = ChurnPlan::new(5000, 50, seed);
            (0..100).map(|_| p.next_change()).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn the_last_instance_never_leaves() {
        let mut alone = ChurnPlan::new(1, 0, 1);
        assert_eq!(alone.next_change(), None);
        assert_eq!(alone.next_change(), None);
        assert_eq!(alone.present(), 1);
        let mut two = ChurnPlan::new(2, 0, 1);
        assert!(matches!(two.next_change(), Some(Change::Leave(_))));
        assert!(matches!(two.next_change(), Some(Change::Join(_))));
        assert!(matches!(two.next_change(), Some(Change::Leave(_))));
    }

    #[test]
    fn every_instance_of_the_application_has_the_same_services_and_revision() {
        let a = bench_services("app", 10, 20880);
        assert_eq!(a.len(), 10);
        assert_eq!(a[3].name, format!("{}3", crate::sim::SERVICE));
        // Descriptions carry no host, pid or timestamp: a restart (or another host) gives the same revision.
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_eq!(bench_services("app", 10, 20880), a);
        let rev = crate::dubbo_writers::app_level::java_revision("app", &a);
        assert_ne!(
            rev,
            crate::dubbo_writers::app_level::java_revision("app", &bench_services("app", 9, 20880))
        );
        assert_ne!(
            rev,
            crate::dubbo_writers::app_level::java_revision("app", &bench_services("app", 10, 20881))
        );
    }

    #[test]
    fn changes_are_due_at_the_rate() {
        assert_eq!(due_ns(0, 100.0), 0);
        assert_eq!(due_ns(1, 100.0), 10_000_000);
        assert_eq!(due_ns(250, 100.0), 2_500_000_000);
        assert_eq!(due_ns(5, 0.0), 0);
    }
}
