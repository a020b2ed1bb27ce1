//! The process' resident memory and CPU time, from `/proc/self/statm` and `/proc/self/stat` (Linux).
//! Parsing is pure; [`read`] does the two reads.

use crate::AdminError;

/// Clock ticks per second of `/proc/<pid>/stat`'s times: the kernel's USER_HZ, 100 on every Linux
/// architecture the agent runs on (the ABI fixes it regardless of the kernel's internal HZ).
const USER_HZ: f64 = 100.0;

/// What the process uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    pub resident_bytes: u64,
    /// User plus system CPU time of every thread.
    pub cpu_seconds: f64,
}

/// Both figures, read now.
pub fn read(page_size: u64) -> Result<ProcessStats, AdminError> {
    let io = |file: &'static str| {
        move |e: std::io::Error| AdminError::Proc {
            file,
            why: e.to_string(),
        }
    };
    let statm = std::fs::read_to_string("/proc/self/statm").map_err(io("statm"))?;
    let stat = std::fs::read_to_string("/proc/self/stat").map_err(io("stat"))?;
    Ok(ProcessStats {
        resident_bytes: resident_pages(&statm)? * page_size,
        cpu_seconds: cpu_ticks(&stat)? as f64 / USER_HZ,
    })
}

/// The second field of `statm`: resident pages.
pub fn resident_pages(statm: &str) -> Result<u64, AdminError> {
    statm
        .split_ascii_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| AdminError::Proc {
            file: "statm",
            why: "no resident page count".into(),
        })
}

/// utime + stime (fields 14 and 15) of `stat`, counted after the `)` that ends the command name (which
/// may itself hold spaces and parentheses).
pub fn cpu_ticks(stat: &str) -> Result<u64, AdminError> {
    let bad = || AdminError::Proc {
        file: "stat",
        why: "no utime/stime".into(),
    };
    let (_, rest) = stat.rsplit_once(')').ok_or_else(bad)?;
    // After ")": field 3 (state) is the first; utime is field 14, stime 15.
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next().and_then(|f| f.parse().ok()).ok_or_else(bad)?;
    let stime: u64 = fields.next().and_then(|f| f.parse().ok()).ok_or_else(bad)?;
    Ok(utime + stime)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        assert_eq!(resident_pages("2000 512 100 1 0 300 0\n").unwrap(), 512);
        let stat = "4242 (mesh agent) (x)) S 1 4242 4242 0 -1 4194560 1200 0 0 0 250 75 0 0 20 0 9 0 123 \
                    456789 512 18446744073709551615";
        assert_eq!(cpu_ticks(stat).unwrap(), 325);
        assert!(cpu_ticks("garbage").is_err());
        assert!(resident_pages("").is_err());
    }

    #[test]
    fn reads_this_process() {
        let s = read(4096).unwrap();
        assert!(s.resident_bytes > 0);
        assert!(s.cpu_seconds >= 0.0);
    }
}
