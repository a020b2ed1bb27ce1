//! The process's open-file limit. Every connection is a descriptor: a shard admits up to
//! `max_connections_per_shard` (10,000 by default) of them, while many systems start processes with a
//! soft limit of 1,024 (and a much higher hard one). As Go's runtime does, the agent raises its soft limit
//! to the hard limit once, when its first listener binds; it never lowers it.

use std::io;
use std::sync::Once;

use rlimit::Resource;

/// The soft limit to set given the current `(soft, hard)` limits: the hard limit when it is higher.
pub fn raised_soft_limit(soft: u64, hard: u64) -> Option<u64> {
    (hard > soft).then_some(hard)
}

/// Raises the soft open-file limit to the hard limit; returns the soft limit now in force.
pub fn raise_to_hard_limit() -> io::Result<u64> {
    let (soft, hard) = rlimit::getrlimit(Resource::NOFILE)?;
    match raised_soft_limit(soft, hard) {
        Some(to) => rlimit::setrlimit(Resource::NOFILE, to, hard).map(|()| to),
        None => Ok(soft),
    }
}

/// [`raise_to_hard_limit`] once per process (a failure leaves the limit as it was: connections over it
/// fail to be accepted, and the listener pauses on that error as on any other).
pub fn raise_once() {
    static RAISED: Once = Once::new();
    RAISED.call_once(|| {
        let _ = raise_to_hard_limit();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_goes_up_to_the_hard_one_never_down() {
        assert_eq!(raised_soft_limit(1024, 524_288), Some(524_288));
        assert_eq!(raised_soft_limit(20_000, 20_000), None);
        assert_eq!(raised_soft_limit(u64::MAX, u64::MAX), None);
        assert_eq!(raised_soft_limit(1024, u64::MAX), Some(u64::MAX));
    }

    #[test]
    fn raising_leaves_the_soft_limit_at_the_hard_one() {
        let soft = raise_to_hard_limit().unwrap();
        let (now_soft, hard) = rlimit::getrlimit(Resource::NOFILE).unwrap();
        assert_eq!((soft, now_soft), (hard, hard));
    }
}
