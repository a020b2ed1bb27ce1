//! A real single-node etcd on two free loopback ports with a temporary data dir, for tests.
//!
//! Plain `std::process` (no runtime), so any test can use it. The binary is `$ETCD_BIN` or `etcd` from
//! `PATH`; its output goes to `etcd.log` in the data dir (kept across restarts, see [`EtcdServer::log`]).
//! Stopping sends SIGTERM by PID (through `kill`, the workspace forbids `unsafe`), then SIGKILL after 5 s;
//! dropping the server kills it and removes the data dir.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long [`EtcdServer::start`] and [`EtcdServer::restart`] wait for `/health` to answer true.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`EtcdServer::stop`] waits after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running (or stopped, between [`EtcdServer::stop`] and [`EtcdServer::restart`]) etcd server.
#[derive(Debug)]
pub struct EtcdServer {
    child: Option<Child>,
    client_port: u16,
    peer_port: u16,
    client_url: String,
    log_path: PathBuf,
    // Last: removed after the process is killed in `drop`.
    data_dir: tempfile::TempDir,
}

impl EtcdServer {
    /// Starts etcd on two free loopback ports and waits until it is healthy (at most [`READY_TIMEOUT`]).
    /// A port taken between choosing and binding is retried with new ports (3 attempts).
    pub fn start() -> anyhow::Result<Self> {
        let mut last_error = None;
        for _ in 0..3 {
            // A fresh data dir per attempt: a half-initialized one would pin the old peer URL.
            let data_dir = tempfile::Builder::new()
                .prefix("mesh-etcd-")
                .tempdir()
                .context("etcd data dir")?;
            let ports = free_ports(2)?;
            let (client_port, peer_port) = (ports[0], ports[1]);
            let mut server = EtcdServer {
                child: None,
                client_port,
                peer_port,
                client_url: format!("http://127.0.0.1:{client_port}"),
                log_path: data_dir.path().join("etcd.log"),
                data_dir,
            };
            match server.launch() {
                Ok(()) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("etcd did not start")))
    }

    /// `http://127.0.0.1:PORT`, for clients.
    pub fn client_url(&self) -> &str {
        &self.client_url
    }

    /// The client address.
    pub fn client_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.client_port))
    }

    /// The PID of the running process, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The data dir (kept across [`EtcdServer::restart`]).
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Everything etcd wrote so far (all runs), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGTERM by PID, waits for the exit; SIGKILL after [`STOP_GRACE`]. Stopping a stopped server is a
    /// no-op.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            crate::process::stop_child(&mut child, STOP_GRACE)?;
        }
        Ok(())
    }

    /// SIGKILL (a crash, no clean shutdown) and wait. A no-op when stopped.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Stops (if running) and starts again on the same ports and data dir, so clients reconnect to the
    /// same URL and find the same keys, leases and revisions. Waits until healthy.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        // The client port may still be held for a moment by the old process's sockets.
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpListener::bind((Ipv4Addr::LOCALHOST, self.client_port)).is_err() {
            if Instant::now() >= deadline {
                bail!("port {} still in use after stopping etcd", self.client_port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.launch()
    }

    /// Runs etcd and waits for `/health`.
    fn launch(&mut self) -> anyhow::Result<()> {
        let bin = std::env::var_os("ETCD_BIN").unwrap_or_else(|| "etcd".into());
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("open {}", self.log_path.display()))?;
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new(&bin)
            .arg("--name")
            .arg("n1")
            .arg("--data-dir")
            .arg(self.data_dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .arg("--initial-cluster")
            .arg(format!("n1={peer}"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("spawn {bin:?} (set ETCD_BIN to its path)"))?;
        self.child = Some(child);

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    bail!(
                        "etcd exited during startup ({status}); log:\n{}",
                        tail(&self.log(), 30)
                    );
                }
            }
            if healthy(self.client_addr()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "etcd not healthy after {READY_TIMEOUT:?}; log:\n{}",
                    tail(&self.log(), 30)
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `count` distinct free loopback ports (held together while choosing, so they differ).
pub(crate) fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    listeners.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// `GET /health` answers `{"health":"true"}`.
pub(crate) fn healthy(addr: SocketAddr) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
        s.set_read_timeout(Some(Duration::from_secs(1)))?;
        s.set_write_timeout(Some(Duration::from_secs(1)))?;
        s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
        let mut body = String::new();
        s.take(64 * 1024).read_to_string(&mut body)?;
        Ok(body.starts_with("HTTP/1.1 200") && body.contains(r#""health":"true""#))
    };
    attempt().unwrap_or(false)
}

/// The last `lines` lines of `text` (a log in an error message).
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_stop_restart() {
        let t = Instant::now();
        let mut etcd = EtcdServer::start().unwrap();
        let started = t.elapsed();
        assert!(healthy(etcd.client_addr()));
        assert!(etcd.is_running());
        let url = etcd.client_url().to_owned();
        etcd.stop().unwrap();
        assert!(!etcd.is_running());
        assert!(!healthy(etcd.client_addr()));
        let t2 = Instant::now();
        etcd.restart().unwrap();
        assert_eq!(etcd.client_url(), url);
        assert!(healthy(etcd.client_addr()));
        assert!(etcd.data_dir().join("data").is_dir());
        eprintln!("etcd start {started:?}, restart {:?}", t2.elapsed());
        let dir = etcd.data_dir().to_owned();
        drop(etcd);
        assert!(!dir.exists());
    }
}
