//! A real etcd cluster on loopback for tests: `n` members (`m0`, `m1`, ...) with free client, peer and
//! metrics ports, one `--initial-cluster` list, one temporary directory (a data dir per member, the logs,
//! the certificates), stopped by PID.
//!
//! * [`EtcdCluster::start`]: plain http. [`EtcdCluster::start_tls`]: clients speak TLS and must show a
//!   client certificate (`--client-cert-auth`), all made here with rcgen (a CA, a server certificate for
//!   `127.0.0.1`/`localhost`, a client certificate, and an unrelated CA for "wrong CA" tests, see
//!   [`ClusterTls`]); peers talk plain http on loopback.
//! * Health is read over plain http from each member's metrics URL (`/health`, which answers true only
//!   while the member has a leader), so TLS clusters are polled the same way.
//! * [`EtcdCluster::leader`] asks etcd (`etcdctl endpoint status -w json`); [`EtcdCluster::kill`],
//!   [`EtcdCluster::stop`], [`EtcdCluster::restart`], [`EtcdCluster::stop_all`],
//!   [`EtcdCluster::restart_all`] act on members by index; a restarted member keeps its ports and data.
//! * [`EtcdCluster::enable_auth`]: user `root`, a role with read-write on a key prefix, a user for the
//!   agents, then `auth enable`.
//!
//! The binaries are `$ETCD_BIN`/`$ETCDCTL_BIN` or `etcd`/`etcdctl` from `PATH`. Dropping the cluster kills
//! every member and removes the directory.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::etcd::{free_ports, healthy, tail};

/// How long starting or restarting waits for the members' `/health`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`EtcdCluster::stop`] waits after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long [`EtcdCluster::leader`] polls for a member that all running members agree leads.
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(15);

/// The certificates of a TLS cluster (PEM files in the cluster's directory).
#[derive(Debug, Clone)]
pub struct ClusterTls {
    /// The CA that signed the servers' and the client's certificates.
    pub ca_file: PathBuf,
    /// A client certificate (`CN=mesh-agent`) signed by `ca_file`, and its key.
    pub client_cert_file: PathBuf,
    pub client_key_file: PathBuf,
    /// Another CA that signed nothing here: clients trusting it must refuse the servers.
    pub wrong_ca_file: PathBuf,
}

#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    metrics_port: u16,
    child: Option<Child>,
}

/// A running cluster (some members may be stopped between [`EtcdCluster::stop`] and
/// [`EtcdCluster::restart`]).
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Member>,
    tls: Option<ClusterTls>,
    /// `root`'s password once [`EtcdCluster::enable_auth`] ran (etcdctl then authenticates as root).
    root_password: Option<String>,
    // Last: removed after the processes are killed in `drop`.
    dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `n` plain-http members and waits until all are healthy (a leader is elected).
    pub fn start(n: usize) -> anyhow::Result<Self> {
        Self::start_with(n, false)
    }

    /// Starts `n` members that serve clients over TLS with client-certificate authentication.
    pub fn start_tls(n: usize) -> anyhow::Result<Self> {
        Self::start_with(n, true)
    }

    fn start_with(n: usize, tls: bool) -> anyhow::Result<Self> {
        if n == 0 {
            bail!("a cluster needs at least one member");
        }
        let mut last_error = None;
        // A port taken between choosing and binding: start over with new ports and a fresh directory.
        for _ in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("mesh-etcd-cluster-")
                .tempdir()
                .context("etcd cluster dir")?;
            let ports = free_ports(3 * n)?;
            let members = (0..n)
                .map(|i| Member {
                    name: format!("m{i}"),
                    client_port: ports[3 * i],
                    peer_port: ports[3 * i + 1],
                    metrics_port: ports[3 * i + 2],
                    child: None,
                })
                .collect();
            let tls = if tls {
                Some(make_certificates(dir.path())?)
            } else {
                None
            };
            let mut cluster = EtcdCluster {
                members,
                tls,
                root_password: None,
                dir,
            };
            let launched = (0..n).try_for_each(|i| cluster.launch(i));
            match launched.and_then(|()| cluster.wait_healthy(&(0..n).collect::<Vec<_>>())) {
                Ok(()) => return Ok(cluster),
                Err(e) => {
                    cluster.kill_all();
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("etcd cluster did not start")))
    }

    /// How many members the cluster has (running or not).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false: a cluster has at least one member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Member `i`'s client URL (`http://` or `https://127.0.0.1:PORT`).
    pub fn client_url(&self, i: usize) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.members[i].client_port)
    }

    /// Every member's client URL, in member order.
    pub fn client_urls(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.client_url(i)).collect()
    }

    /// Member `i`'s name (`m<i>`).
    pub fn name(&self, i: usize) -> &str {
        &self.members[i].name
    }

    /// The certificates, for a TLS cluster.
    pub fn tls(&self) -> Option<&ClusterTls> {
        self.tls.as_ref()
    }

    /// The cluster's directory (data dirs, logs, certificates).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything member `i` logged (all its runs), for failure messages.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    /// Whether member `i`'s process is alive.
    pub fn is_running(&mut self, i: usize) -> bool {
        self.members[i]
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Whether member `i` answers `/health` true (running and with a leader).
    pub fn is_healthy(&self, i: usize) -> bool {
        healthy(SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            self.members[i].metrics_port,
        )))
    }

    /// The index of the member that leads, as the running members report it (polled up to
    /// [`LEADER_TIMEOUT`], e.g. while an election is going on).
    pub fn leader(&mut self) -> anyhow::Result<usize> {
        let deadline = Instant::now() + LEADER_TIMEOUT;
        let mut last = String::new();
        loop {
            let running: Vec<usize> = (0..self.members.len()).filter(|&i| self.is_running(i)).collect();
            if !running.is_empty() {
                let urls: Vec<String> = running.iter().map(|&i| self.client_url(i)).collect();
                match self.etcdctl_at(&urls.join(","), &["endpoint", "status", "-w", "json"]) {
                    Ok(out) => match leader_of(&out) {
                        Ok(Some(endpoint)) => {
                            if let Some(i) = (0..self.members.len()).find(|&i| self.client_url(i) == endpoint)
                            {
                                return Ok(i);
                            }
                            last = format!("leader {endpoint} is not a member URL");
                        }
                        Ok(None) => last = "members disagree or have no leader".into(),
                        Err(e) => last = format!("{e:#}"),
                    },
                    Err(e) => last = format!("{e:#}"),
                }
            }
            if Instant::now() >= deadline {
                bail!("no leader after {LEADER_TIMEOUT:?}: {last}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL member `i` (a crash) and wait for it. A no-op when it is not running.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// SIGSTOP member `i` by PID: a hung member (its sockets stay open, nothing answers). A no-op when it is
    /// not running.
    pub fn freeze(&mut self, i: usize) -> anyhow::Result<()> {
        self.signal(i, "STOP")
    }

    /// SIGCONT member `i`: it goes on where it stopped.
    pub fn thaw(&mut self, i: usize) -> anyhow::Result<()> {
        self.signal(i, "CONT")
    }

    fn signal(&mut self, i: usize, signal: &str) -> anyhow::Result<()> {
        match self.members[i].child.as_ref() {
            Some(child) => Ok(crate::process::signal_pid(child.id(), signal)?),
            None => Ok(()),
        }
    }

    /// SIGTERM member `i` by PID (SIGCONT first: a frozen member must run to act on it), SIGKILL after
    /// [`STOP_GRACE`].
    pub fn stop(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(mut child) = self.members[i].child.take() {
            crate::process::stop_child(&mut child, STOP_GRACE)?;
        }
        Ok(())
    }

    /// Stops every member (SIGTERM, then SIGKILL after the grace).
    pub fn stop_all(&mut self) -> anyhow::Result<()> {
        (0..self.members.len()).try_for_each(|i| self.stop(i))
    }

    /// Starts member `i` again (stopping it first if it runs) on its ports and data dir; waits until it
    /// is healthy.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.stop(i)?;
        self.wait_port_free(i)?;
        self.launch(i)?;
        self.wait_healthy(&[i])
    }

    /// Starts every stopped member again and waits until all are healthy (they need each other for a
    /// quorum, so they are launched together).
    pub fn restart_all(&mut self) -> anyhow::Result<()> {
        let stopped: Vec<usize> = (0..self.members.len()).filter(|&i| !self.is_running(i)).collect();
        for &i in &stopped {
            self.wait_port_free(i)?;
            self.launch(i)?;
        }
        self.wait_healthy(&(0..self.members.len()).collect::<Vec<_>>())
    }

    /// Turns on authentication: user `root` with `root_password`, a role `mesh` with read-write on
    /// `prefix` and everything under it, user `user` with `password` and that role, then `auth enable`.
    /// Later [`EtcdCluster::etcdctl`] calls authenticate as root.
    pub fn enable_auth(
        &mut self,
        root_password: &str,
        user: &str,
        password: &str,
        prefix: &str,
    ) -> anyhow::Result<()> {
        self.etcdctl(&["user", "add", &format!("root:{root_password}")])?;
        self.etcdctl(&["role", "add", "mesh"])?;
        self.etcdctl(&[
            "role",
            "grant-permission",
            "mesh",
            "--prefix=true",
            "readwrite",
            prefix,
        ])?;
        self.etcdctl(&["user", "add", &format!("{user}:{password}")])?;
        self.etcdctl(&["user", "grant-role", user, "mesh"])?;
        self.etcdctl(&["auth", "enable"])?;
        self.root_password = Some(root_password.to_owned());
        Ok(())
    }

    /// Runs `etcdctl` against every running member (with the cluster's TLS files and, after
    /// [`EtcdCluster::enable_auth`], as root); its stdout, or an error with its stderr.
    pub fn etcdctl(&mut self, args: &[&str]) -> anyhow::Result<String> {
        let running: Vec<usize> = (0..self.members.len()).filter(|&i| self.is_running(i)).collect();
        let urls: Vec<String> = running.iter().map(|&i| self.client_url(i)).collect();
        self.etcdctl_at(&urls.join(","), args)
    }

    fn etcdctl_at(&self, endpoints: &str, args: &[&str]) -> anyhow::Result<String> {
        let bin = std::env::var_os("ETCDCTL_BIN").unwrap_or_else(|| "etcdctl".into());
        let mut cmd = Command::new(&bin);
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .arg("--dial-timeout=2s")
            .arg("--command-timeout=5s");
        if let Some(tls) = &self.tls {
            cmd.arg(format!("--cacert={}", tls.ca_file.display()))
                .arg(format!("--cert={}", tls.client_cert_file.display()))
                .arg(format!("--key={}", tls.client_key_file.display()));
        }
        if let Some(pw) = &self.root_password {
            cmd.arg(format!("--user=root:{pw}"));
        }
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run {bin:?} (set ETCDCTL_BIN to its path)"))?;
        if !out.status.success() {
            bail!(
                "etcdctl {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("{}.log", self.members[i].name))
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Runs member `i` (no waiting).
    fn launch(&mut self, i: usize) -> anyhow::Result<()> {
        let bin = std::env::var_os("ETCD_BIN").unwrap_or_else(|| "etcd".into());
        let log_path = self.log_path(i);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("open {}", log_path.display()))?;
        let initial_cluster = self.initial_cluster();
        let client = self.client_url(i);
        let m = &self.members[i];
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let metrics = format!("http://127.0.0.1:{}", m.metrics_port);
        let mut cmd = Command::new(&bin);
        cmd.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("{}.data", m.name)))
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
            .args(["--listen-metrics-urls", &metrics])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "mesh-test"])
            // Loopback: a short heartbeat and election timeout keep failover tests short.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"]);
        if let Some(tls) = &self.tls {
            let dir = self.dir.path();
            cmd.arg("--cert-file")
                .arg(dir.join("server.pem"))
                .arg("--key-file")
                .arg(dir.join("server-key.pem"))
                .arg("--trusted-ca-file")
                .arg(&tls.ca_file)
                .arg("--client-cert-auth");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("spawn {bin:?} (set ETCD_BIN to its path)"))?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// Waits until every member in `which` answers `/health` true, or one of them exits.
    fn wait_healthy(&mut self, which: &[usize]) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            for &i in which {
                if let Some(child) = self.members[i].child.as_mut() {
                    if let Some(status) = child.try_wait()? {
                        self.members[i].child = None;
                        bail!(
                            "etcd member {} exited during startup ({status}); log:\n{}",
                            self.members[i].name,
                            tail(&self.log(i), 30)
                        );
                    }
                }
            }
            if which.iter().all(|&i| self.is_healthy(i)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let sick: Vec<&str> = which
                    .iter()
                    .filter(|&&i| !self.is_healthy(i))
                    .map(|&i| self.members[i].name.as_str())
                    .collect();
                let first = which.iter().find(|&&i| !self.is_healthy(i)).copied().unwrap_or(0);
                bail!(
                    "etcd members {sick:?} not healthy after {READY_TIMEOUT:?}; log of {}:\n{}",
                    self.members[first].name,
                    tail(&self.log(first), 30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (bounded) until member `i`'s ports can be bound again after its process ended.
    fn wait_port_free(&self, i: usize) -> anyhow::Result<()> {
        let m = &self.members[i];
        let deadline = Instant::now() + Duration::from_secs(5);
        for port in [m.client_port, m.peer_port, m.metrics_port] {
            while TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
                if Instant::now() >= deadline {
                    bail!("port {port} of {} still in use after stopping it", m.name);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Held by a test for as long as its cluster runs, so the tests of one test binary run their clusters one at a
/// time: several 3-member clusters at once, with members frozen and killed, make elections and the
/// watch's 3 s progress deadline race each other on a 2-core machine (a flaky test says nothing about the
/// agent). A test that failed while holding it does not stop the next one.
pub fn one_cluster_at_a_time() -> MutexGuard<'static, ()> {
    static CLUSTER: Mutex<()> = Mutex::new(());
    CLUSTER.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The client URL of the leader in `etcdctl endpoint status -w json` output, when every member that
/// answered names the same leader and one of them is it.
pub fn leader_of(status_json: &str) -> anyhow::Result<Option<String>> {
    let v: serde_json::Value = serde_json::from_str(status_json).context("etcdctl status JSON")?;
    let list = v.as_array().context("etcdctl status: not a list")?;
    let mut leader = None;
    let mut leader_url = None;
    for e in list {
        let status = &e["Status"];
        let (Some(id), Some(lead)) = (status["header"]["member_id"].as_u64(), status["leader"].as_u64())
        else {
            bail!("etcdctl status: no member_id/leader in {e}");
        };
        if lead == 0 || leader.is_some_and(|l| l != lead) {
            return Ok(None);
        }
        leader = Some(lead);
        if id == lead {
            leader_url = e["Endpoint"].as_str().map(str::to_owned);
        }
    }
    Ok(leader_url)
}

/// Makes the CA, the server and client certificates and an unrelated CA in `dir`.
fn make_certificates(dir: &Path) -> anyhow::Result<ClusterTls> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
        SanType,
    };
    let write = |name: &str, pem: String| -> anyhow::Result<PathBuf> {
        let path = dir.join(name);
        std::fs::write(&path, pem).with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    };
    let make_ca = |cn: &str| -> anyhow::Result<(rcgen::Certificate, KeyPair)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        Ok((cert, key))
    };
    let (ca, ca_key) = make_ca("mesh test etcd CA")?;
    let (wrong_ca, _) = make_ca("mesh test unrelated CA")?;

    let server_key = KeyPair::generate()?;
    let mut server = CertificateParams::new(vec!["localhost".to_owned()])?;
    server
        .subject_alt_names
        .push(SanType::IpAddress(Ipv4Addr::LOCALHOST.into()));
    server.distinguished_name.push(DnType::CommonName, "etcd");
    server.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let server = server.signed_by(&server_key, &ca, &ca_key)?;

    let client_key = KeyPair::generate()?;
    let mut client = CertificateParams::new(Vec::<String>::new())?;
    client.distinguished_name.push(DnType::CommonName, "mesh-agent");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client.signed_by(&client_key, &ca, &ca_key)?;

    write("server.pem", server.pem())?;
    write("server-key.pem", server_key.serialize_pem())?;
    Ok(ClusterTls {
        ca_file: write("ca.pem", ca.pem())?,
        client_cert_file: write("client.pem", client.pem())?,
        client_key_file: write("client-key.pem", client_key.serialize_pem())?,
        wrong_ca_file: write("wrong-ca.pem", wrong_ca.pem())?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn leader_is_the_member_all_agree_on() {
        let status = r#"[
          {"Endpoint":"http://127.0.0.1:1","Status":{"header":{"member_id":11,"raft_term":2},"leader":22}},
          {"Endpoint":"http://127.0.0.1:2","Status":{"header":{"member_id":22,"raft_term":2},"leader":22}}
        ]"#;
        assert_eq!(leader_of(status).unwrap().as_deref(), Some("http://127.0.0.1:2"));
        let split = status.replacen("\"leader\":22", "\"leader\":11", 1);
        assert_eq!(leader_of(&split).unwrap(), None);
        let none = status.replace("\"leader\":22", "\"leader\":0");
        assert_eq!(leader_of(&none).unwrap(), None);
        // 64-bit member ids (etcd's are random u64s) are read exactly.
        let big = r#"[{"Endpoint":"u","Status":{"header":{"member_id":17237436991929493444},"leader":17237436991929493444}}]"#;
        assert_eq!(leader_of(big).unwrap().as_deref(), Some("u"));
        assert!(leader_of("{}").is_err());
    }

    #[test]
    fn three_members_elect_a_leader_and_survive_its_death() {
        let mut c = EtcdCluster::start(3).unwrap();
        assert_eq!(c.client_urls().len(), 3);
        let leader = c.leader().unwrap();
        c.etcdctl(&["put", "/k", "v"]).unwrap();
        c.kill(leader);
        let next = c.leader().unwrap();
        assert_ne!(next, leader);
        assert!(c
            .etcdctl(&["get", "/k", "--print-value-only"])
            .unwrap()
            .contains('v'));
        c.restart(leader).unwrap();
        assert!(c.is_healthy(leader));
        c.stop_all().unwrap();
        assert!((0..3).all(|i| !c.is_healthy(i)));
        c.restart_all().unwrap();
        assert!(c
            .etcdctl(&["get", "/k", "--print-value-only"])
            .unwrap()
            .contains('v'));
        let dir = c.dir().to_owned();
        drop(c);
        assert!(!dir.exists());
    }

    #[test]
    fn tls_cluster_with_auth() {
        let mut c = EtcdCluster::start_tls(3).unwrap();
        assert!(c.client_url(0).starts_with("https://127.0.0.1:"));
        c.enable_auth("rootpw", "agent", "agentpw", "/mesh").unwrap();
        c.etcdctl(&["put", "/mesh/a", "1"]).unwrap();
        assert!(c.leader().is_ok());
    }
}
