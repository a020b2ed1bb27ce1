//! CPU lists: the `0-3,6` syntax, and the CPUs this process may run on.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A list of CPU ids: `[0, 1]` in TOML, or the Linux list syntax `"0-3,6"` (TOML string, `--cores`,
/// `MESH_CORES`). Order is kept (shard `i` goes to the `i`-th entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CoreList(pub(crate) Vec<usize>);

impl FromStr for CoreList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid CPU list {s:?}: expected ids and ranges like 0,1 or 0-3 or 0-3,6");
        let mut cores = Vec::new();
        for part in s.split(',').map(str::trim) {
            let (lo, hi) = match part.split_once('-') {
                Some((lo, hi)) => (lo.trim(), hi.trim()),
                None => (part, part),
            };
            let lo: usize = lo.parse().map_err(|_| bad())?;
            let hi: usize = hi.parse().map_err(|_| bad())?;
            if lo > hi || hi - lo >= 4096 {
                return Err(bad());
            }
            cores.extend(lo..=hi);
        }
        Ok(CoreList(cores))
    }
}

impl<'de> Deserialize<'de> for CoreList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CoreList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of CPU ids like [0, 1] or a string like \"0-3\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<CoreList, E> {
                s.parse().map_err(E::custom)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<CoreList, A::Error> {
                let mut cores = Vec::new();
                while let Some(c) = seq.next_element()? {
                    cores.push(c);
                }
                Ok(CoreList(cores))
            }
        }
        d.deserialize_any(V)
    }
}

/// `0,1,2,3,6` as `0-3,6`.
pub(crate) fn format_cpu_list(cpus: &[usize]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if i == j {
            out.push_str(&sorted[i].to_string());
        } else {
            out.push_str(&format!("{}-{}", sorted[i], sorted[j]));
        }
        i = j + 1;
    }
    out
}

/// The CPUs this process may run on: its affinity mask (`sched_getaffinity` through core_affinity, which
/// also reflects a cpuset), else `0..available_parallelism()`. `runtime.cores` is checked against this list.
pub(crate) fn online_cpus() -> Vec<usize> {
    let cpus = mesh_shard::runtime::online_cores();
    if cpus.is_empty() {
        (0..parallelism()).collect()
    } else {
        cpus
    }
}

fn parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Default `runtime.cores`: the first `available_parallelism()` CPUs of [`online_cpus`] (so a CPU quota of 2
/// on a 16-CPU host gives two shards, not sixteen).
pub(crate) fn default_cores() -> Vec<usize> {
    first_cores(online_cpus(), parallelism())
}

/// The first `parallelism` (at least one) of `online`.
fn first_cores(mut online: Vec<usize>, parallelism: usize) -> Vec<usize> {
    online.truncate(parallelism.max(1));
    online
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_and_format() {
        assert_eq!(
            "0-3,6, 8 - 9".parse::<CoreList>().unwrap().0,
            [0, 1, 2, 3, 6, 8, 9]
        );
        for bad in ["", "a", "3-1", "1,", "-1", "0-99999"] {
            assert!(bad.parse::<CoreList>().is_err(), "{bad:?}");
        }
        assert_eq!(format_cpu_list(&[0, 1, 2, 3, 6, 8, 9]), "0-3,6,8-9");
        assert_eq!(format_cpu_list(&[1]), "1");
    }

    #[test]
    fn default_cores_are_cut_to_the_parallelism() {
        assert_eq!(first_cores(vec![2, 3, 5, 7], 2), [2, 3]);
        assert_eq!(first_cores(vec![2, 3], 8), [2, 3]);
        assert_eq!(first_cores(vec![4], 0), [4]);
        let online = online_cpus();
        assert!(!online.is_empty());
        assert!(default_cores().iter().all(|c| online.contains(c)));
    }

    /// core_affinity's list is the affinity mask the kernel reports as `Cpus_allowed_list` (what the agent
    /// read by hand before).
    #[test]
    fn online_cpus_are_the_affinity_mask() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap();
        assert_eq!(online_cpus(), allowed.trim().parse::<CoreList>().unwrap().0);
    }
}
