//! Deterministic subsetting of large provider lists over the consumer agent's shards.
//!
//! Every shard dials the providers it picks, so without subsetting each of S shards holds a connection to
//! every provider of a large service, and each provider joining or leaving the registry makes every shard
//! dial or close one (and re-arm its reader, writer and heartbeat). With subsetting, each provider belongs
//! to exactly one shard (a hash of its address, the same on every shard and every restart): a shard's table
//! of a large service holds only its own providers, so a change touches one shard's connections and table,
//! not S, and each shard holds N/S connections instead of N.
//!
//! The rule: a service's table on a shard holds only that shard's providers when all of these hold
//! (otherwise every shard holds every provider, as without subsetting):
//! * the agent has more than one shard, and the service lists at least [`ENTER_PER_SHARD`] x S providers
//!   (128 on 2 shards, 512 on 8); a subset table is rebuilt whole again when the list falls below
//!   [`LEAVE_PER_SHARD`] x S (hysteresis: a list around the threshold does not flip at every change);
//! * nothing routes among the providers: no condition rule and no tag rule applies to the service and no
//!   provider registers a `dubbo.tag` (a rule or tag that selects a few providers must see all of them on
//!   every shard, or a call would find no provider on one shard and one on another);
//! * the balancer is not consistent hashing (the same argument must reach the same provider from every
//!   shard).
//!
//! Why balancing and failover stay correct: a subset holds about N/S >= 64 providers, so the balancer still
//! spreads a shard's calls over many providers, retries (`exclude`) and outlier ejection find another
//! provider in the same subset, and every provider gets the calls of exactly one shard. Its announced cap is
//! then that shard's whole (not split S ways), and its in-flight count is seen whole by the one shard that
//! sends to it (P2C compares true loads). What it gives up: the load per provider follows the load per
//! shard; when the listener spreads client connections unevenly over the shards, the providers of the
//! busier shard get more calls (at >= 64 providers per shard each takes a small share either way).

use std::net::SocketAddr;

use mesh_balance::hash::address_hash;
use mesh_balance::{Policy, RuleSet};
use mesh_registry::Endpoint;

use super::Balancer;

/// A service keeps a subset per shard from this many providers per shard.
pub(crate) const ENTER_PER_SHARD: usize = 64;
/// A subset table is rebuilt whole below this many providers per shard.
pub(crate) const LEAVE_PER_SHARD: usize = 32;

/// Which shard this is, of how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Subsetting {
    shard: u32,
    shards: u32,
}

impl Subsetting {
    pub(crate) fn new(shard: usize, shards: usize) -> Self {
        let shards = u32::try_from(shards.max(1)).unwrap_or(u32::MAX);
        let shard = u32::try_from(shard).unwrap_or(0).min(shards - 1);
        Subsetting { shard, shards }
    }

    /// Whether `addr` is this shard's provider.
    pub(crate) fn is_home(&self, addr: SocketAddr) -> bool {
        home_shard(addr, self.shards) == self.shard
    }

    /// Whether routing and balancing let a service be subset: no rule, no tagged provider, no hashing.
    pub(crate) fn allowed(&self, rules: &RuleSet, eps: &[&Endpoint], balancer: Balancer) -> bool {
        self.shards > 1
            && rules.tag.is_none()
            && rules.conditions.is_empty()
            && balancer != Balancer::Fixed(Policy::ConsistentHash)
            && !eps.iter().any(|e| e.tag.is_some())
    }

    /// Whether a list of `n` providers is large enough to become subset.
    pub(crate) fn enters(&self, n: usize) -> bool {
        self.shards > 1 && n >= ENTER_PER_SHARD * self.shards as usize
    }

    /// Whether a subset table of a list of `n` providers stays subset.
    pub(crate) fn stays(&self, n: usize) -> bool {
        n >= LEAVE_PER_SHARD * self.shards as usize
    }
}

/// The shard of `shards` that provider `addr` belongs to: a 64-bit hash of its address, modulo `shards`.
pub(crate) fn home_shard(addr: SocketAddr, shards: u32) -> u32 {
    (address_hash(addr) % u64::from(shards.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: usize) -> Vec<SocketAddr> {
        // As the registry benchmark registers them: 127.1.x.y on one port.
        (0..n)
            .map(|i| SocketAddr::from(([127, 1, (i / 250) as u8, (i % 250) as u8 + 1], 20880)))
            .collect()
    }

    #[test]
    fn every_provider_belongs_to_exactly_one_shard_and_the_shares_are_even() {
        for shards in [2usize, 3, 8] {
            let all = addrs(5000);
            let mut sizes = vec![0usize; shards];
            for a in &all {
                let homes: Vec<usize> = (0..shards)
                    .filter(|&s| Subsetting::new(s, shards).is_home(*a))
                    .collect();
                assert_eq!(homes.len(), 1, "{a} on {homes:?}");
                sizes[homes[0]] += 1;
            }
            let even = 5000 / shards;
            for s in sizes {
                // Binomial spread: within 5 standard deviations of an even share.
                let sd = ((5000.0 / shards as f64) * (1.0 - 1.0 / shards as f64)).sqrt();
                assert!(
                    (s as f64 - even as f64).abs() < 5.0 * sd,
                    "{shards} shards: {s} vs {even}"
                );
            }
        }
    }

    #[test]
    fn ports_of_one_host_spread_too() {
        let mut on = [0usize; 2];
        for port in 20000..20400u16 {
            on[home_shard(SocketAddr::from(([10, 0, 0, 1], port)), 2) as usize] += 1;
        }
        assert!(on[0] > 150 && on[1] > 150, "{on:?}");
    }

    #[test]
    fn subsets_only_large_lists_without_rules_tags_or_hashing_on_several_shards() {
        let two = Subsetting::new(1, 2);
        assert!(!two.enters(127) && two.enters(128));
        assert!(two.stays(64) && !two.stays(63));
        assert!(!Subsetting::new(0, 1).enters(10_000));
        let plain = Endpoint::new(addrs(1)[0]);
        let tagged = Endpoint::new(addrs(2)[1]).with_tag("gray");
        let none = RuleSet::default();
        assert!(two.allowed(&none, &[&plain], Balancer::Auto));
        assert!(!two.allowed(&none, &[&plain, &tagged], Balancer::Auto));
        assert!(!two.allowed(&none, &[&plain], Balancer::Fixed(Policy::ConsistentHash)));
        let rules = RuleSet::from_json(r#"{"conditions":["=> host != 10.0.0.5"]}"#).unwrap();
        assert!(!two.allowed(&rules, &[&plain], Balancer::Auto));
        assert!(!Subsetting::new(0, 1).allowed(&none, &[&plain], Balancer::Auto));
    }
}
