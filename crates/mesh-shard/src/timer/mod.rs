//! The shard's timers, kept off glommio's timer (issue 14). While any glommio timer is pending, every
//! park of the executor submits an io_uring TIMEOUT for it and cancels it at the wake-up: two more
//! `io_uring_enter` and two more ring operations per wake-up, which at 1,000 requests per second are
//! paid on every request (a client connection's idle timeout, the call-deadline sweep, the heartbeat
//! sweep and the metrics sampler are always pending). These timers live instead in the shard's own
//! `TimerQueue` (`queue.rs`) and are woken by one alarm per shard: a thread that sleeps until the
//! earliest deadline the shard asked for and then sends one datagram to a loopback UDP socket the shard
//! keeps a receive pending on. Nothing is submitted per park; the alarm is re-armed only when a deadline earlier than
//! the armed one arrives (one `futex` wake), and rings once per deadline reached (or for a timer
//! removed before it: then it moves to the earliest left).
//!
//! [`sleep`] / [`sleep_until`] are the shard's timer futures; they must be polled on a glommio
//! executor's thread (the first one on an executor starts its alarm).

mod alarm;
mod queue;

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::log_every::LogEvery;
use alarm::Alarm;
use queue::{TimerKey, TimerQueue};

/// A shard's timers: the queue and its alarm, for the executor it was started on.
struct ShardTimers {
    executor: usize,
    queue: RefCell<TimerQueue>,
    alarm: Alarm,
}

thread_local! {
    static TIMERS: RefCell<Option<Rc<ShardTimers>>> = const { RefCell::new(None) };
    static ALARM_FAILED: LogEvery = const { LogEvery::new(Duration::from_secs(10)) };
}

fn warn_alarm(what: &dyn std::fmt::Display) {
    ALARM_FAILED.with(|l| {
        if let Some(left_out) = l.admit(Instant::now()) {
            tracing::warn!(
                left_out,
                "shard timer alarm: {what}; waiting on glommio's timer instead"
            );
        }
    });
}

/// The calling executor's timers, started on first use (a thread may run several executors one after
/// the other, as tests do: each gets its own).
fn timers() -> std::io::Result<Rc<ShardTimers>> {
    let executor = glommio::executor().id();
    if let Some(t) = TIMERS.with(|t| t.borrow().clone()) {
        if t.executor == executor {
            return Ok(t);
        }
    }
    let (alarm, rung) = Alarm::start()?;
    let timers = Rc::new(ShardTimers {
        executor,
        queue: RefCell::new(TimerQueue::default()),
        alarm,
    });
    TIMERS.with(|t| *t.borrow_mut() = Some(timers.clone()));
    glommio::spawn_local(ring_loop(rung, Rc::downgrade(&timers))).detach();
    Ok(timers)
}

/// The shard's side of the alarm: each datagram wakes the timers due and re-arms the alarm.
async fn ring_loop(rung: alarm::Rung, timers: std::rc::Weak<ShardTimers>) {
    loop {
        let heard = rung.wait().await;
        let Some(t) = timers.upgrade() else { return };
        if heard.is_err() {
            // The alarm's socket failed (it never has on loopback): keep the timers alive on glommio's
            // own timer, one millisecond at a time, rather than never waking them.
            warn_alarm(&"its socket failed (polling every 1 ms)");
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        let (due, next) = t.queue.borrow_mut().ring(Instant::now());
        if let Some(at) = next {
            t.alarm.arm(at);
        }
        for w in due {
            w.wake();
        }
    }
}

/// Waits until `at` on the shard's timers.
pub fn sleep_until(at: Instant) -> Sleep {
    Sleep {
        at,
        key: None,
        timers: None,
        fallback: None,
    }
}

/// Waits for `d` on the shard's timers.
pub fn sleep(d: Duration) -> Sleep {
    sleep_until(Instant::now() + d)
}

/// The future of [`sleep_until`]: registered with the shard's timers on its first poll, removed when
/// dropped before its deadline.
pub struct Sleep {
    at: Instant,
    key: Option<TimerKey>,
    timers: Option<Rc<ShardTimers>>,
    /// glommio's timer, only when the alarm could not be started.
    fallback: Option<glommio::timer::Timer>,
}

impl std::fmt::Debug for Sleep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sleep")
            .field("at", &self.at)
            .field("registered", &self.key.is_some())
            .finish()
    }
}

impl std::fmt::Debug for ShardTimers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardTimers")
            .field("executor", &self.executor)
            .field("pending", &self.queue.borrow().len())
            .finish()
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let (Some(key), Some(t)) = (self.key, self.timers.as_ref()) {
            let mut q = t.queue.borrow_mut();
            if q.is_pending(key) {
                q.set_waker(key, cx.waker());
                return Poll::Pending;
            }
            drop(q);
            self.key = None;
            return Poll::Ready(());
        }
        if let Some(timer) = self.fallback.as_mut() {
            return Pin::new(timer).poll(cx).map(|_| ());
        }
        let now = Instant::now();
        if now >= self.at {
            return Poll::Ready(());
        }
        let t = match timers() {
            Ok(t) => t,
            Err(e) => {
                // No alarm could be started (no loopback UDP socket or no thread): this wait uses
                // glommio's timer.
                warn_alarm(&e);
                let mut timer = glommio::timer::Timer::new(self.at - now);
                let poll = Pin::new(&mut timer).poll(cx).map(|_| ());
                self.fallback = Some(timer);
                return poll;
            }
        };
        let (key, arm) = t.queue.borrow_mut().insert(self.at, cx.waker().clone());
        if let Some(at) = arm {
            t.alarm.arm(at);
        }
        self.key = Some(key);
        self.timers = Some(t);
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let (Some(key), Some(t)) = (self.key.take(), self.timers.as_ref()) {
            t.queue.borrow_mut().remove(key);
        }
    }
}

#[cfg(test)]
mod tests;
