//! Dubbo 3 migration's `proportion` per call (issue 13): for a service key the snapshot splits
//! ([`mesh_registry::Split`]), which of its two lists one call is routed in. Java 3.3
//! (`MigrationInvoker.invoke`, apache/dubbo `3.3` at 324c6255,
//! `dubbo-registry/dubbo-registry-api/src/main/java/org/apache/dubbo/registry/client/migration/MigrationInvoker.java`
//! lines 284-297) sends a call to the interface-level invoker when
//! `ThreadLocalRandom.current().nextDouble(100) > promotion`, else to the preferred (application-level) one:
//! `promotion`% of the calls on application-level. Here a uniform integer in 0..100 below `percent` keeps
//! the call on the key's own list: exactly `percent`% in expectation, 0 never and 100 always. The draw uses
//! the shard's own generator (no lock, nothing shared between shards).

use mesh_balance::Rng;

/// Which of a service key's lists a route table follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// The key's own list (application-level when the key is split).
    Own,
    /// The interface-level list of the key's split.
    InterfaceLevel,
}

/// The list one call of a key split at `percent` (0..=100) goes to.
pub(crate) fn draw_lane(rng: &mut impl Rng, percent: u8) -> Lane {
    // Lemire's multiply-shift: a uniform integer in 0..100 (bias below 100 / 2^64).
    let x = ((u128::from(rng.next_u64()) * 100) >> 64) as u8;
    if x < percent {
        Lane::Own
    } else {
        Lane::InterfaceLevel
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_balance::XorShift64;

    fn own_share(percent: u8, draws: u32, seed: u64) -> f64 {
        let mut rng = XorShift64::new(seed);
        let own = (0..draws)
            .filter(|_| draw_lane(&mut rng, percent) == Lane::Own)
            .count();
        own as f64 / f64::from(draws)
    }

    #[test]
    fn zero_and_a_hundred_are_exact() {
        for seed in [1, 7, 0xdead_beef] {
            assert_eq!(own_share(0, 100_000, seed), 0.0);
            assert_eq!(own_share(100, 100_000, seed), 1.0);
        }
    }

    #[test]
    fn the_share_of_calls_on_the_own_list_is_the_percentage() {
        // 200,000 draws: the standard deviation of the share is at most 0.0012; 0.005 is over 4 of them.
        for percent in [1u8, 30, 50, 70, 99] {
            let share = own_share(percent, 200_000, 42);
            let want = f64::from(percent) / 100.0;
            assert!((share - want).abs() < 0.005, "percent {percent}: share {share}");
        }
    }

    #[test]
    fn every_percentage_is_reachable_and_monotonic() {
        // The same draws: a higher percentage keeps every call a lower one kept.
        let mut a = XorShift64::new(9);
        let mut b = XorShift64::new(9);
        for _ in 0..10_000 {
            let (x, y) = (draw_lane(&mut a, 40), draw_lane(&mut b, 41));
            assert!(!(x == Lane::Own && y == Lane::InterfaceLevel));
        }
    }
}
