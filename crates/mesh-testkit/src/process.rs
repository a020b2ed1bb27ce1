//! Child processes for tests: they die with the test, announce readiness on stdout, and are found in the
//! workspace's target directory.
//!
//! * [`ChildGuard`]: spawns a command with stdout captured line by line; [`ChildGuard::wait_for_line`] waits
//!   for a readiness line; [`ChildGuard::terminate`] sends SIGTERM, then SIGKILL after a grace period, and
//!   returns the exit status with everything printed on stdout. Dropping the guard terminates the child.
//! * [`free_port`], [`wait_for_port`]: loopback ports.
//! * [`wait_for_line`]: the same readiness wait over any reader.
//! * [`cargo_bin`]: a workspace binary next to the running test executable (integration tests of this crate
//!   can use `env!("CARGO_BIN_EXE_provider-sim")` instead).

use std::io::{self, BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// Grace period between SIGTERM and SIGKILL by default.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// How a terminated child ended.
#[derive(Debug)]
pub struct Terminated {
    /// Its exit status (a signal if it had to be killed).
    pub status: ExitStatus,
    /// Everything it printed on stdout, readiness lines included.
    pub stdout: String,
    /// Whether it had to be killed with SIGKILL after the grace period.
    pub killed: bool,
}

/// A child process that is terminated (SIGTERM, then SIGKILL) when the guard is dropped.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
    name: String,
    grace: Duration,
    lines: mpsc::Receiver<String>,
    captured: Arc<Mutex<String>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl ChildGuard {
    /// Spawns `cmd` with stdout piped (read line by line by a thread) and stdin closed; stderr is inherited
    /// so the child's logs show in the test output.
    pub fn spawn(cmd: &mut Command) -> io::Result<ChildGuard> {
        let name = Path::new(cmd.get_program())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).spawn()?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other("child has no stdout"));
        };
        let (tx, rx) = mpsc::channel();
        let captured = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&captured);
        let reader = thread::Builder::new()
            .name(format!("stdout-{name}"))
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    {
                        let mut all = sink.lock().unwrap_or_else(PoisonError::into_inner);
                        all.push_str(&line);
                        all.push('\n');
                    }
                    // Nobody listening any more is fine: the line is captured anyway.
                    let _ = tx.send(line);
                }
            });
        let reader = match reader {
            Ok(r) => r,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        Ok(ChildGuard {
            child: Some(child),
            name,
            grace: DEFAULT_GRACE,
            lines: rx,
            captured,
            reader: Some(reader),
        })
    }

    /// Sets the grace period between SIGTERM and SIGKILL.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The child's process id (0 once it has been reaped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits for a stdout line starting with `prefix` and returns the rest of it, trimmed. Lines before it are
    /// skipped (they stay in the captured output). Fails on timeout or if the child closes stdout first.
    pub fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> io::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return Ok(rest.trim().to_owned());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "{}: no line starting with {prefix:?} within {timeout:?}",
                            self.name
                        ),
                    ))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "{}: stdout closed before a line starting with {prefix:?} (exit: {status:?})",
                            self.name
                        ),
                    ));
                }
            }
        }
    }

    /// Waits for `LISTENING <port>` and returns the port.
    pub fn listening_port(&mut self, timeout: Duration) -> io::Result<u16> {
        let rest = self.wait_for_line("LISTENING ", timeout)?;
        rest.parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad LISTENING line: {rest:?}"),
            )
        })
    }

    /// The next stdout line not yet consumed by [`ChildGuard::wait_for_line`], waiting at most `timeout`.
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Everything printed on stdout so far.
    pub fn stdout_so_far(&self) -> String {
        self.captured
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Has it exited already? (Reaps it if so.)
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => c.try_wait(),
            None => Ok(None),
        }
    }

    /// Sends SIGTERM (the `kill` command: the workspace forbids `unsafe`, so no `libc::kill`).
    pub fn signal_term(&self) -> io::Result<()> {
        self.signal("TERM")
    }

    /// Sends a signal by name (`TERM`, `INT`, `STOP`, `CONT`, ...).
    pub fn signal(&self, sig: &str) -> io::Result<()> {
        match self.pid() {
            0 => Ok(()),
            pid => signal_pid(pid, sig),
        }
    }

    /// SIGTERM, wait up to the grace period, then SIGKILL; returns the exit status and all of stdout.
    pub fn terminate(&mut self) -> io::Result<Terminated> {
        let Some(mut child) = self.child.take() else {
            return Err(io::Error::other(format!("{}: already terminated", self.name)));
        };
        let (status, killed) = stop_child(&mut child, self.grace)?;
        // The reader ends at EOF, which follows the exit unless a grandchild holds the pipe: bounded wait.
        if let Some(r) = self.reader.take() {
            let deadline = Instant::now() + Duration::from_secs(2);
            while !r.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if r.is_finished() {
                let _ = r.join();
            }
        }
        Ok(Terminated {
            status,
            stdout: self.stdout_so_far(),
            killed,
        })
    }

    /// Waits for the child to exit by itself, at most `timeout` (then it is left running).
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => wait_timeout(c, timeout),
            None => Ok(None),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.terminate();
        }
    }
}

/// Sends signal `sig` (`TERM`, `KILL`, `STOP`, `CONT`, ...) to process `pid` with the `kill` command (the
/// workspace forbids `unsafe`, hence no libc call).
pub fn signal_pid(pid: u32, sig: &str) -> io::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("kill -{sig} {pid} failed: {status}")))
    }
}

/// Stops `child` the polite way: SIGCONT (a stopped process must run to act on SIGTERM), SIGTERM, a wait
/// of at most `grace`, then SIGKILL. Returns its exit status and whether it had to be killed.
pub fn stop_child(child: &mut Child, grace: Duration) -> io::Result<(ExitStatus, bool)> {
    if let Some(status) = child.try_wait()? {
        return Ok((status, false));
    }
    let _ = signal_pid(child.id(), "CONT");
    if signal_pid(child.id(), "TERM").is_err() {
        let _ = child.kill();
    }
    match wait_timeout(child, grace)? {
        Some(status) => Ok((status, false)),
        None => {
            let _ = child.kill();
            Ok((child.wait()?, true))
        }
    }
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(Some(s));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// A currently free TCP port on 127.0.0.1 (bound and released: another process may take it in between).
pub fn free_port() -> io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Waits until `addr` accepts TCP connections (polling every 20 ms), at most `timeout`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{addr} not accepting connections within {timeout:?}"),
            ));
        }
        if TcpStream::connect_timeout(&addr, left.min(Duration::from_millis(500))).is_ok() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(20).min(left));
    }
}

/// Waits for a line starting with `prefix` on `reader` (e.g. a child's stdout) and returns the rest of it,
/// trimmed. A thread reads the stream; after the match it keeps draining it to EOF so the writer never blocks
/// on a full pipe.
pub fn wait_for_line<R: Read + Send + 'static>(
    reader: R,
    prefix: &str,
    timeout: Duration,
) -> io::Result<String> {
    let (tx, rx) = mpsc::channel();
    let prefix_owned = prefix.to_owned();
    thread::Builder::new()
        .name("wait-for-line".into())
        .spawn(move || {
            let mut found = false;
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                if !found {
                    if let Some(rest) = line.strip_prefix(&prefix_owned) {
                        found = true;
                        let _ = tx.send(rest.trim().to_owned());
                    }
                }
            }
        })?;
    rx.recv_timeout(timeout).map_err(|e| match e {
        mpsc::RecvTimeoutError::Timeout => io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no line starting with {prefix:?} within {timeout:?}"),
        ),
        mpsc::RecvTimeoutError::Disconnected => io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("stream ended before a line starting with {prefix:?}"),
        ),
    })
}

/// Polls `cond` every 20 ms until it holds and returns how long that took; panics with `what` after
/// `within` (for tests: a failed wait is a failed test).
pub fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Finds a binary of the workspace: next to the running executable (`target/<profile>/deps/../NAME`), then
/// `$CARGO_TARGET_DIR/{debug,release}/NAME`, then `target/{debug,release}/NAME` above the current directory.
/// Cargo builds a package's binaries before its integration tests; other packages' tests must build them first
/// (`cargo build -p mesh-testkit --bins`).
pub fn cargo_bin(name: &str) -> io::Result<PathBuf> {
    let exe = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let mut candidates = Vec::new();
    if let Ok(me) = std::env::current_exe() {
        let mut dir = me.parent().map(Path::to_path_buf);
        if dir.as_ref().is_some_and(|d| d.ends_with("deps")) {
            dir = dir.and_then(|d| d.parent().map(Path::to_path_buf));
        }
        if let Some(d) = dir {
            candidates.push(d.join(&exe));
        }
    }
    let mut roots = Vec::new();
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        roots.push(PathBuf::from(t));
    }
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(|a| a.join("target")));
    }
    for root in roots {
        for profile in ["debug", "release"] {
            candidates.push(root.join(profile).join(&exe));
        }
    }
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("binary {name:?} not found (looked at {candidates:?}); build it with cargo build --bins"),
        )
    })
}
