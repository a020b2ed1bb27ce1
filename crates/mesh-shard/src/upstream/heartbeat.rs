//! Heartbeats of a shard's upstream connections: one sweep task per shard and heartbeat interval walks
//! every connection once per interval, instead of a task and a timer per connection. A connection joins the
//! sweep when it is dialled (O(1)) and leaves it at the first sweep after it is dropped or dead; a shard
//! with thousands of connections then pays one timer per interval and a few nanoseconds per connection,
//! and a provider joining or leaving the registry costs no heartbeat task to spawn or to wind down.
//!
//! The rule per connection is the one a per-connection loop had: at a sweep, a connection that has read
//! nothing for the interval gets a heartbeat, one that has read nothing for three intervals is declared
//! dead (its calls fail at once). A connection's first sweep comes within one interval of its dial.

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use mesh_dubbo::Codec;

use super::conn::{ConnInner, UpstreamConn};

/// The connections one sweep looks after.
type Watched = Rc<RefCell<Vec<(Weak<ConnInner>, Codec)>>>;

thread_local! {
    /// This shard's sweeps, by interval (a shard has one or two intervals: a handful of entries).
    static SWEEPS: RefCell<Vec<(Duration, Watched)>> = const { RefCell::new(Vec::new()) };
}

/// Puts `conn` under the shard's heartbeat sweep of interval `every`, starting that sweep if none runs.
pub(super) fn watch(conn: &UpstreamConn, codec: Codec, every: Duration) {
    let entry = (conn.downgrade(), codec);
    let started = SWEEPS.with(|s| {
        let mut sweeps = s.borrow_mut();
        if let Some((_, watched)) = sweeps.iter().find(|(d, _)| *d == every) {
            watched.borrow_mut().push(entry);
            return None;
        }
        let watched: Watched = Rc::new(RefCell::new(vec![entry]));
        sweeps.push((every, watched.clone()));
        Some(watched)
    });
    if let Some(watched) = started {
        glommio::spawn_local(sweep(watched, every)).detach();
    }
}

/// Every `every`: heartbeats and dead-peer checks for the watched connections; forgets the ones gone. Ends
/// (and leaves the shard's sweeps) when none is left, so an idle shard keeps no timer.
async fn sweep(watched: Watched, every: Duration) {
    loop {
        crate::timer::sleep(every).await;
        let now = Instant::now();
        // Beats only queue frames or fail calls: nothing here adds to `watched` while it is borrowed.
        let mut list = watched.borrow_mut();
        list.retain(|(weak, codec)| match weak.upgrade() {
            Some(inner) => UpstreamConn::from_inner(inner).beat(now, every, codec),
            None => false,
        });
        if list.is_empty() {
            drop(list);
            SWEEPS.with(|s| s.borrow_mut().retain(|(_, w)| !Rc::ptr_eq(w, &watched)));
            return;
        }
    }
}

/// Outcome of one connection's check at a sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Beat {
    /// Read from recently: nothing to do.
    Fresh,
    /// Silent for an interval: send a heartbeat.
    Ping,
    /// Silent for three intervals: declare it dead.
    Dead,
}

/// What a connection silent for `silent` needs at a sweep of interval `every`.
pub(super) fn beat_for(silent: Duration, every: Duration) -> Beat {
    if silent >= every * 3 {
        Beat::Dead
    } else if silent >= every {
        Beat::Ping
    } else {
        Beat::Fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_silent_for_an_interval_is_pinged_and_for_three_is_dead() {
        let every = Duration::from_secs(5);
        let at = |ms| beat_for(Duration::from_millis(ms), every);
        assert_eq!(at(0), Beat::Fresh);
        assert_eq!(at(4_999), Beat::Fresh);
        assert_eq!(at(5_000), Beat::Ping);
        assert_eq!(at(14_999), Beat::Ping);
        assert_eq!(at(15_000), Beat::Dead);
    }

    #[test]
    fn one_sweep_per_interval_and_it_ends_with_its_last_connection() {
        use glommio::net::TcpListener;
        crate::runtime::run_on_test_shard(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let accept = glommio::spawn_local(async move {
                let mut held = Vec::new();
                while held.len() < 3 {
                    held.push(listener.accept().await.unwrap());
                }
                held
            });
            let cfg = |ms| super::super::UpstreamConfig {
                heartbeat: Some(Duration::from_millis(ms)),
                ..super::super::UpstreamConfig::default()
            };
            let a = UpstreamConn::connect(addr, &cfg(20)).await.unwrap();
            let b = UpstreamConn::connect(addr, &cfg(20)).await.unwrap();
            let c = UpstreamConn::connect(addr, &cfg(30)).await.unwrap();
            let _peers = accept.await;
            let sizes = || {
                SWEEPS.with(|s| {
                    s.borrow()
                        .iter()
                        .map(|(d, w)| (d.as_millis(), w.borrow().len()))
                        .collect::<Vec<_>>()
                })
            };
            assert_eq!(sizes(), [(20, 2), (30, 1)]);
            drop(a);
            glommio::timer::sleep(Duration::from_millis(45)).await;
            assert_eq!(sizes(), [(20, 1), (30, 1)]);
            drop((b, c));
            glommio::timer::sleep(Duration::from_millis(70)).await;
            assert_eq!(sizes(), []);
        });
    }

    #[test]
    fn a_silent_peer_is_pinged_then_declared_dead() {
        use glommio::net::TcpListener;
        crate::runtime::run_on_test_shard(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            // Accepts and reads, never answers: a half-open peer as the heartbeat sees it.
            let peer = glommio::spawn_local(async move {
                use futures_lite::AsyncReadExt;
                let mut s = listener.accept().await.unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 256];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                got
            });
            let cfg = super::super::UpstreamConfig {
                heartbeat: Some(Duration::from_millis(20)),
                ..super::super::UpstreamConfig::default()
            };
            let conn = UpstreamConn::connect(addr, &cfg).await.unwrap();
            let started = Instant::now();
            while conn.is_alive() && started.elapsed() < Duration::from_secs(5) {
                glommio::timer::sleep(Duration::from_millis(5)).await;
            }
            let died_after = started.elapsed();
            assert!(!conn.is_alive(), "a silent peer was never declared dead");
            assert!(
                died_after >= Duration::from_millis(60),
                "dead after {died_after:?}"
            );
            drop(conn);
            let got = peer.await;
            // At least one heartbeat request (Dubbo magic, event + two-way flags) reached the peer.
            assert!(got.len() >= 16 && got[..2] == [0xda, 0xbb], "peer got {got:?}");
            assert!(
                got[2] & 0x20 != 0 && got[2] & 0x40 != 0,
                "not a two-way event: {:#x}",
                got[2]
            );
        });
    }
}
