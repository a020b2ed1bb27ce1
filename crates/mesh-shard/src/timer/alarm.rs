//! One shard's alarm: a thread that sleeps until the time the shard armed and then sends one datagram
//! to the shard's loopback UDP socket, on which the shard keeps one receive pending (an io_uring
//! operation that costs nothing per park). The armed time is one atomic (nanoseconds from the alarm's
//! start, `u64::MAX` when none): the shard lowers it and wakes the thread only when a deadline is earlier
//! than the one armed; the thread clears it when it rings.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::Thread;
use std::time::{Duration, Instant};

const NONE: u64 = u64::MAX;

#[derive(Debug)]
struct Shared {
    /// When to ring, in nanoseconds from `base`; `NONE` when not armed.
    at_ns: AtomicU64,
    stop: AtomicBool,
}

/// The shard's handle on its alarm thread; the thread ends when this is dropped.
#[derive(Debug)]
pub(super) struct Alarm {
    shared: Arc<Shared>,
    base: Instant,
    thread: Thread,
}

/// The shard's end: the socket the alarm's datagrams arrive on.
#[derive(Debug)]
pub(super) struct Rung {
    socket: glommio::net::UdpSocket,
    alarm: SocketAddr,
    connected: std::cell::Cell<bool>,
}

impl Alarm {
    /// Starts the alarm thread for the calling shard (named after the shard's thread, `-timer`).
    pub(super) fn start() -> std::io::Result<(Alarm, Rung)> {
        let socket = glommio::net::UdpSocket::bind("127.0.0.1:0")?;
        let shard_addr = socket.local_addr()?;
        let sender = UdpSocket::bind("127.0.0.1:0")?;
        sender.connect(shard_addr)?;
        sender.set_nonblocking(true)?;
        let alarm_addr = sender.local_addr()?;
        let shared = Arc::new(Shared {
            at_ns: AtomicU64::new(NONE),
            stop: AtomicBool::new(false),
        });
        let base = Instant::now();
        let name = format!("{}-timer", std::thread::current().name().unwrap_or("shard"));
        let for_thread = shared.clone();
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || ring_when_due(&for_thread, base, &sender))?;
        let alarm = Alarm {
            shared,
            base,
            thread: handle.thread().clone(),
        };
        Ok((
            alarm,
            Rung {
                socket,
                alarm: alarm_addr,
                connected: std::cell::Cell::new(false),
            },
        ))
    }

    /// Makes the alarm ring at `at` unless it is armed earlier already.
    pub(super) fn arm(&self, at: Instant) {
        let ns = u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(NONE - 1);
        if self.shared.at_ns.fetch_min(ns, Ordering::AcqRel) > ns {
            self.thread.unpark();
        }
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

impl Rung {
    /// Waits for the alarm's next datagram.
    pub(super) async fn wait(&self) -> std::io::Result<()> {
        if !self.connected.get() {
            // Only the alarm's datagrams are received once connected.
            self.socket.connect(self.alarm).await?;
            self.connected.set(true);
        }
        let mut byte = [0u8; 1];
        self.socket.recv(&mut byte).await?;
        Ok(())
    }
}

/// The alarm thread: sleeps until the armed time, rings (one datagram), clears it; ends at the stop.
fn ring_when_due(shared: &Shared, base: Instant, sender: &UdpSocket) {
    while !shared.stop.load(Ordering::Acquire) {
        let at = shared.at_ns.load(Ordering::Acquire);
        if at == NONE {
            std::thread::park();
            continue;
        }
        let now = u64::try_from(base.elapsed().as_nanos()).unwrap_or(NONE - 1);
        if now < at {
            std::thread::park_timeout(Duration::from_nanos(at - now));
            continue;
        }
        // Cleared only if the shard did not arm an earlier time meanwhile (then that one is due too and
        // the loop rings for it next).
        if shared
            .at_ns
            .compare_exchange(at, NONE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // A full socket buffer means rings are already waiting to be read: one is enough.
            let _ = sender.send(&[1]);
        }
    }
}
