//! Which etcd member a registry session talks to, and failing over to another.
//!
//! etcd-client's own multi-endpoint client (tonic's balance channel, power-of-two-choices over lazy
//! connections) keeps a dead member in its set: a connection that cannot be made is reported on the call,
//! so about every third call fails while a member of three is down, and the watch and the lease keepalive
//! stream may sit on any member. A session here is therefore pinned to ONE member that was seen working:
//!
//! * the endpoints are tried in an order that starts at a different member for every connect (a random
//!   start per process, then round robin), so agents spread over the cluster and a session that just failed
//!   starts with another member;
//! * each member is probed (connect, authenticate when a user is set, `Status`) and is usable when it
//!   answers, knows a leader and is not a learner;
//! * probes are staggered ("happy eyeballs"): the next member is tried as soon as the previous one failed,
//!   or after [`PROBE_STAGGER`] without an answer, and the first usable member wins; a dead member costs
//!   a refused connection (nothing), a hung one [`PROBE_STAGGER`];
//! * when none is usable, the error lists every member's reason.
//!
//! When the pinned member dies, its streams fail at once (the kernel closes its sockets); a member that
//! hangs or is cut off is noticed by HTTP/2 keepalive ([`KEEPALIVE_INTERVAL`] + [`KEEPALIVE_TIMEOUT`]) or,
//! with etcd's `hasleader` requirement, cancelled by the member itself once it has no leader. The session
//! then ends and the next connect pins another member.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::etcd::EtcdConfig;
use crate::RegistryError;

/// How long a member may take to answer its probe before the next one is tried as well.
pub(crate) const PROBE_STAGGER: Duration = Duration::from_millis(300);

/// HTTP/2 ping after this long without a frame from the member. etcd answers pings more frequent than
/// every 5 s (`--grpc-keepalive-min-time`) with GOAWAY "too many pings", so this stays above that.
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(6);

/// A ping not answered within this ends the connection (and every stream on it).
pub(crate) const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);

/// The client options every session uses: timeouts, keepalive, `hasleader`, TLS and credentials.
pub(crate) fn connect_options(cfg: &EtcdConfig) -> Result<ConnectOptions, RegistryError> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(cfg.connect_timeout)
        .with_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)
        // Calls on a member without a leader fail at once, and its streams are cancelled after a few
        // election timeouts, instead of hanging.
        .with_require_leader(true);
    if let Some(tls) = &cfg.tls {
        options = options.with_tls(tls.options()?);
    }
    if let Some(auth) = &cfg.auth {
        options = auth.apply(options);
    }
    Ok(options)
}

/// The order in which the `n` endpoints are tried, starting at `start % n`.
pub(crate) fn probe_order(n: usize, start: usize) -> Vec<usize> {
    (0..n).map(|i| (start + i) % n.max(1)).collect()
}

/// Where the next connect starts: a per-process random member, then round robin.
fn next_start() -> usize {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    static OFFSET: OnceLock<usize> = OnceLock::new();
    let offset = *OFFSET.get_or_init(|| (RandomState::new().build_hasher().finish() % 1024) as usize);
    offset.wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// What makes a member that answered `Status` unusable, if anything.
pub(crate) fn member_problem(leader: u64, is_learner: bool) -> Option<&'static str> {
    if is_learner {
        Some("is a learner (not a voting member)")
    } else if leader == 0 {
        Some("has no leader")
    } else {
        None
    }
}

/// One line for "no member usable": each endpoint with why.
pub(crate) fn summarize(failures: &[(String, String)]) -> String {
    failures
        .iter()
        .map(|(endpoint, why)| format!("{endpoint}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// An error with its sources: etcd-client and tonic put the interesting part (refused, certificate
/// unknown, ...) in the source chain.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Why a call to a member failed, in one line: gRPC statuses as their message plus the causes under it
/// (refused, certificate unknown, ...), without the `Debug` dump etcd-client's `Display` appends.
pub(crate) fn reason(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(status) => {
            let mut text = status.message().to_owned();
            let mut source = std::error::Error::source(status);
            while let Some(s) = source {
                let more = s.to_string();
                if !text.contains(&more) {
                    text.push_str(": ");
                    text.push_str(&more);
                }
                source = s.source();
            }
            text
        }
        other => error_chain(other),
    }
}

/// Connects to one usable member (see the module documentation), within `cfg.connect_timeout`.
pub(crate) async fn connect_usable(cfg: &EtcdConfig) -> Result<Client, RegistryError> {
    connect_member(cfg).await.map(|(client, _)| client)
}

/// [`connect_usable`], also naming the member's endpoint (as configured).
pub(crate) async fn connect_member(cfg: &EtcdConfig) -> Result<(Client, String), RegistryError> {
    let options = connect_options(cfg)?;
    let order = probe_order(cfg.endpoints.len(), next_start());
    let deadline = Instant::now() + cfg.connect_timeout;
    let mut probes = JoinSet::new();
    let mut failures: Vec<(String, String)> = Vec::new();
    let mut next = 0;
    // Every turn starts the next member: at first, after a failure, and after PROBE_STAGGER without an
    // answer.
    loop {
        if next < order.len() {
            let endpoint = cfg.endpoints[order[next]].clone();
            probes.spawn(probe(endpoint, options.clone(), deadline));
            next += 1;
        }
        let finished = if next < order.len() {
            tokio::select! {
                r = probes.join_next() => r,
                () = tokio::time::sleep(PROBE_STAGGER) => {
                    // No answer yet: try the next member as well.
                    continue;
                }
            }
        } else {
            probes.join_next().await
        };
        match finished {
            Some(Ok((endpoint, Ok(client)))) => {
                probes.abort_all();
                return Ok((client, endpoint));
            }
            Some(Ok((endpoint, Err(why)))) => failures.push((endpoint, why)),
            Some(Err(join)) => failures.push(("probe".into(), join.to_string())),
            None if next >= order.len() => break,
            None => {}
        }
    }
    Err(RegistryError::NoUsableMember(summarize(&failures)))
}

/// Connects to one member and asks its status, by `deadline`; the client when the member is usable.
async fn probe(
    endpoint: String,
    options: ConnectOptions,
    deadline: Instant,
) -> (String, Result<Client, String>) {
    let attempt = async {
        let mut client = Client::connect([endpoint.as_str()], Some(options))
            .await
            .map_err(|e| reason(&e))?;
        let status = client.status().await.map_err(|e| reason(&e))?;
        match member_problem(status.leader(), status.is_learner()) {
            Some(problem) => Err(problem.to_owned()),
            None => Ok(client),
        }
    };
    let result = match tokio::time::timeout_at(deadline, attempt).await {
        Ok(r) => r,
        Err(_) => Err("no answer within the connect timeout".to_owned()),
    };
    (endpoint, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_order_rotates_over_every_endpoint() {
        assert_eq!(probe_order(3, 0), [0, 1, 2]);
        assert_eq!(probe_order(3, 4), [1, 2, 0]);
        assert_eq!(probe_order(1, 7), [0]);
        assert!(probe_order(0, 3).is_empty());
        // Consecutive connects start at consecutive members.
        let a = next_start();
        let b = next_start();
        assert_eq!(probe_order(3, b)[0], (probe_order(3, a)[0] + 1) % 3);
    }

    #[test]
    fn usable_members_answer_with_a_leader_and_vote() {
        assert_eq!(member_problem(0x8e9e05c52164694d, false), None);
        assert_eq!(member_problem(0, false), Some("has no leader"));
        assert_eq!(
            member_problem(7, true),
            Some("is a learner (not a voting member)")
        );
    }

    #[test]
    fn summary_names_every_endpoint() {
        let s = summarize(&[
            ("http://a:1".into(), "connection refused".into()),
            ("http://b:2".into(), "has no leader".into()),
        ]);
        assert_eq!(s, "http://a:1: connection refused; http://b:2: has no leader");
    }

    #[test]
    fn error_chain_appends_new_sources_only() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let e = E(
            "transport error",
            Some(Box::new(E(
                "transport error",
                Some(Box::new(E("invalid peer certificate: UnknownIssuer", None))),
            ))),
        );
        assert_eq!(
            error_chain(&e),
            "transport error: invalid peer certificate: UnknownIssuer"
        );
    }
}
