//! Call deadlines of a shard's upstream connections: one sweep task per shard sleeps until the earliest
//! deadline it knows of, fails the calls past theirs, and sleeps again until the next one; instead of a
//! glommio timer armed and removed for every call.
//!
//! A call's deadline is fixed when it is queued (`UpstreamConn::send`): the connection keeps it next to the
//! call in its request-id map and joins the sweep (once, while it has calls in flight). The sweep is armed
//! for a new deadline only when that deadline comes before the one it waits for (with one timeout for every
//! call, only the first call after a quiet spell re-arms it): most calls touch nothing here. When the sweep
//! wakes it walks the listed connections' maps (calls in flight, not calls ever made), fails what is past
//! its deadline, forgets connections with nothing in flight, and sleeps until the earliest deadline left,
//! or, with none left, until it is armed again (no timer at all on an idle shard).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};
use std::time::Instant;

use super::conn::ConnInner;

#[derive(Default)]
struct Sweep {
    /// Connections that had calls in flight at their last look (each listed once).
    conns: Vec<Weak<ConnInner>>,
    /// The deadline the sweep waits for; `None`: no call in flight it knows of.
    next: Option<Instant>,
    /// The sweep task's waker while it waits.
    waker: Option<Waker>,
    /// The executor the sweep task runs on (a thread runs one shard's executor; tests may run several
    /// in turn).
    started: Option<usize>,
}

thread_local! {
    static SWEEP: RefCell<Sweep> = RefCell::new(Sweep::default());
}

/// A call on `conn` must be answered by `deadline`. `listed` says whether `conn` is on the sweep's list
/// already (the connection keeps that flag; it is set here).
pub(super) fn watch(conn: &Rc<ConnInner>, listed: &std::cell::Cell<bool>, deadline: Instant) {
    let start = SWEEP.with(|s| {
        let mut s = s.borrow_mut();
        let executor = glommio::executor().id();
        let start = s.started != Some(executor);
        if start {
            // The first call on this shard (or a new executor on this thread: tests): a fresh sweep.
            *s = Sweep {
                started: Some(executor),
                ..Sweep::default()
            };
        }
        if !listed.replace(true) {
            s.conns.push(Rc::downgrade(conn));
        }
        if s.next.is_none_or(|n| deadline < n) {
            s.next = Some(deadline);
            if let Some(w) = s.waker.take() {
                w.wake();
            }
        }
        start
    });
    if start {
        glommio::spawn_local(run()).detach();
    }
}

/// The shard's sweep task.
async fn run() {
    // The timer for the deadline waited for, kept while that deadline stands (the shard's timer: no
    // glommio timer pending while the shard parks).
    let mut timer: Option<(Instant, Pin<Box<crate::timer::Sleep>>)> = None;
    loop {
        std::future::poll_fn(|cx| {
            SWEEP.with(|s| {
                let mut s = s.borrow_mut();
                let Some(next) = s.next else {
                    timer = None;
                    s.waker = Some(cx.waker().clone());
                    return Poll::Pending;
                };
                let now = Instant::now();
                if now >= next {
                    return Poll::Ready(());
                }
                if timer.as_ref().is_none_or(|(at, _)| *at != next) {
                    timer = Some((next, Box::pin(crate::timer::sleep_until(next))));
                }
                s.waker = Some(cx.waker().clone());
                match timer.as_mut() {
                    Some((_, t)) => t.as_mut().poll(cx),
                    None => Poll::Pending,
                }
            })
        })
        .await;
        timer = None;
        sweep(Instant::now());
    }
}

/// Fails every call past its deadline at `now`; the sweep then waits for the earliest deadline left.
fn sweep(now: Instant) {
    let conns = SWEEP.with(|s| {
        let mut s = s.borrow_mut();
        s.next = None;
        std::mem::take(&mut s.conns)
    });
    let mut kept = Vec::with_capacity(conns.len());
    let mut next: Option<Instant> = None;
    for weak in conns {
        let Some(inner) = weak.upgrade() else { continue };
        // Completing a call may queue new ones (on this connection too): they call `watch`, which lists
        // the connection again only if the flag was cleared, and arms the sweep for their deadlines.
        if let Some(earliest) = super::conn::UpstreamConn::from_inner(inner).expire(now) {
            next = Some(next.map_or(earliest, |n| n.min(earliest)));
            kept.push(weak);
        }
    }
    SWEEP.with(|s| {
        let mut s = s.borrow_mut();
        // Connections listed while the calls were completed come after the ones kept.
        kept.append(&mut s.conns);
        s.conns = kept;
        if let Some(n) = next {
            if s.next.is_none_or(|cur| n < cur) {
                s.next = Some(n);
            }
        }
    });
}

/// Connections on this shard's sweep list, and the deadline it waits for (tests).
#[cfg(test)]
pub(super) fn state() -> (usize, Option<Instant>) {
    SWEEP.with(|s| {
        let s = s.borrow();
        (s.conns.len(), s.next)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::CallError;
    use crate::upstream::{UpstreamConfig, UpstreamConn};
    use glommio::net::TcpListener;
    use mesh_dubbo::{Header, Serialization};
    use std::cell::Cell;
    use std::time::Duration;

    fn request(buf: &mut bytes::BytesMut, id: u64) -> Result<(), mesh_dubbo::CodecError> {
        Header::request(id, Serialization::Hessian2, true).write(buf);
        Ok(())
    }

    /// A peer that accepts and reads but never answers.
    async fn silent_peer() -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        glommio::spawn_local(async move {
            use futures_lite::AsyncReadExt;
            let mut s = listener.accept().await.unwrap();
            let mut buf = [0u8; 256];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .detach();
        addr
    }

    fn no_heartbeat() -> UpstreamConfig {
        UpstreamConfig {
            heartbeat: None,
            ..UpstreamConfig::default()
        }
    }

    #[test]
    fn an_unanswered_call_times_out_at_its_deadline_and_leaves_nothing_behind() {
        crate::runtime::run_on_test_shard(async {
            let conn = UpstreamConn::connect(silent_peer().await, &no_heartbeat())
                .await
                .unwrap();
            // A long call first: a shorter one after it must still fire on time (the sweep re-arms earlier).
            let long = conn.send(Duration::from_secs(30), request).unwrap();
            let t0 = Instant::now();
            let short = conn.send(Duration::from_millis(40), request).unwrap();
            let res = short.wait().await;
            let took = t0.elapsed();
            assert!(matches!(res, Err(CallError::Timeout { ms: 40, .. })), "{res:?}");
            assert!(took >= Duration::from_millis(40), "timed out after {took:?}");
            assert!(took < Duration::from_secs(5), "timed out after {took:?}");
            assert_eq!(conn.inflight(), 1, "the timed-out call left the id map");
            assert_eq!(state().0, 1);
            drop(long);
            // A relay times out the same way, through its closure, exactly once.
            let got = std::rc::Rc::new(Cell::new(0));
            let (tx, rx) = crate::sync::oneshot();
            {
                let got = got.clone();
                let mut tx = Some(tx);
                conn.send_relay(Duration::from_millis(20), request, move |r| {
                    got.set(got.get() + 1);
                    if let Some(tx) = tx.take() {
                        tx.send(r.is_err());
                    }
                });
            }
            assert_eq!(rx.await, Some(true));
            assert_eq!(got.get(), 1);
            assert_eq!(conn.inflight(), 1);
        });
    }

    #[test]
    fn the_sweep_forgets_connections_with_nothing_in_flight_and_keeps_no_deadline() {
        crate::runtime::run_on_test_shard(async {
            let conn = UpstreamConn::connect(silent_peer().await, &no_heartbeat())
                .await
                .unwrap();
            let call = conn.send(Duration::from_millis(10), request).unwrap();
            assert!(call.wait().await.is_err());
            // The sweep that failed it found nothing else: no connection listed, nothing to wake for.
            assert_eq!(state(), (0, None));
            // A relay on a closed connection is answered at once with the error.
            conn.kill_for_test();
            let got = std::rc::Rc::new(Cell::new(None));
            {
                let got = got.clone();
                conn.send_relay(Duration::from_secs(5), request, move |r| {
                    got.set(Some(matches!(r, Err(CallError::Closed(_)))));
                });
            }
            assert_eq!(got.get(), Some(true));
            assert_eq!(state(), (0, None));
        });
    }
}
