//! Single-thread synchronisation for one shard: a oneshot slot and a set-once event. Everything here is
//! `Rc` + `Cell`/`RefCell`: a shard owns its tasks, so nothing on the data path needs a lock or an atomic.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

struct OneshotState<T> {
    value: RefCell<Option<T>>,
    waker: Cell<Option<Waker>>,
    sender_gone: Cell<bool>,
}

/// The sending side of a oneshot; dropping it unsent makes the receiver yield `None`.
pub struct Sender<T>(Rc<OneshotState<T>>);

/// Resolves to the sent value, or `None` if the sender was dropped.
pub struct Receiver<T>(Rc<OneshotState<T>>);

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("oneshot::Sender")
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("oneshot::Receiver")
    }
}

/// A oneshot channel between tasks of the same shard.
pub fn oneshot<T>() -> (Sender<T>, Receiver<T>) {
    let slot = Rc::new(OneshotState {
        value: RefCell::new(None),
        waker: Cell::new(None),
        sender_gone: Cell::new(false),
    });
    (Sender(slot.clone()), Receiver(slot))
}

impl<T> Sender<T> {
    pub fn send(self, v: T) {
        *self.0.value.borrow_mut() = Some(v);
        // Drop runs next and wakes the receiver.
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.0.sender_gone.set(true);
        if let Some(w) = self.0.waker.take() {
            w.wake();
        }
    }
}

impl<T> Future for Receiver<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if let Some(v) = self.0.value.borrow_mut().take() {
            return Poll::Ready(Some(v));
        }
        if self.0.sender_gone.get() {
            return Poll::Ready(None);
        }
        self.0.waker.set(Some(cx.waker().clone()));
        Poll::Pending
    }
}

/// A flag many tasks can wait for; once set it stays set.
#[derive(Clone, Default)]
pub struct Event(Rc<EventInner>);

#[derive(Default)]
struct EventInner {
    set: Cell<bool>,
    wakers: RefCell<Vec<Waker>>,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Event({})", self.0.set.get())
    }
}

impl Event {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&self) {
        self.0.set.set(true);
        for w in self.0.wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Resolves once the event is set.
    ///
    /// A task's waker is kept once however often it polls (a reader racing every read against the event
    /// polls it once per read): piling up clones leaked memory, and glommio counts a task's wakers in an
    /// `i16` that asserts at 32,767: the reader task died there and its connection was never read again.
    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.0.set.get() {
                return Poll::Ready(());
            }
            let mut wakers = self.0.wakers.borrow_mut();
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
    }
}

/// A FIFO of tasks waiting for capacity. Whoever frees capacity calls [`WaitQueue::wake_one`]; the
/// oldest live waiter is woken. A waiter that gives up (its ticket dropped, e.g. on timeout) leaves the
/// count at once and is skipped when its turn comes.
#[derive(Default)]
pub struct WaitQueue {
    q: RefCell<std::collections::VecDeque<Rc<WaitSlot>>>,
    live: Rc<Cell<usize>>,
}

#[derive(Default)]
struct WaitSlot {
    woken: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

/// Resolves once this waiter is woken.
pub struct WaitTicket {
    slot: Rc<WaitSlot>,
    live: Rc<Cell<usize>>,
}

impl std::fmt::Debug for WaitQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WaitQueue({})", self.len())
    }
}

impl std::fmt::Debug for WaitTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WaitTicket(woken: {})", self.slot.woken.get())
    }
}

impl WaitQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Waiters still waiting.
    pub fn len(&self) -> usize {
        self.live.get()
    }

    pub fn is_empty(&self) -> bool {
        self.live.get() == 0
    }

    /// Joins the queue; `front` puts a waiter that lost a race for capacity back at the head.
    pub fn wait(&self, front: bool) -> WaitTicket {
        let slot = Rc::new(WaitSlot::default());
        if front {
            self.q.borrow_mut().push_front(slot.clone());
        } else {
            self.q.borrow_mut().push_back(slot.clone());
        }
        self.live.set(self.live.get() + 1);
        WaitTicket {
            slot,
            live: self.live.clone(),
        }
    }

    /// Wakes the oldest waiter that is still waiting.
    pub fn wake_one(&self) {
        loop {
            let Some(slot) = self.q.borrow_mut().pop_front() else {
                return;
            };
            if Rc::strong_count(&slot) == 1 {
                continue; // its ticket is gone (and already left the count)
            }
            slot.woken.set(true);
            self.live.set(self.live.get().saturating_sub(1));
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
            return;
        }
    }
}

impl Drop for WaitTicket {
    fn drop(&mut self) {
        if !self.slot.woken.get() {
            self.live.set(self.live.get().saturating_sub(1));
        }
    }
}

impl Future for WaitTicket {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.slot.woken.get() {
            return Poll::Ready(());
        }
        self.slot.waker.set(Some(cx.waker().clone()));
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::{block_on, poll_once};

    #[test]
    fn wait_queue_wakes_oldest_live_waiter_first() {
        let q = WaitQueue::new();
        let mut a = q.wait(false);
        let mut b = q.wait(false);
        let mut c = q.wait(false);
        assert_eq!(q.len(), 3);
        assert!(block_on(poll_once(&mut a)).is_none());
        // b gives up: it leaves the count at once and its turn is skipped.
        drop(b);
        assert_eq!(q.len(), 2);
        q.wake_one();
        assert!(block_on(poll_once(&mut a)).is_some());
        assert!(block_on(poll_once(&mut c)).is_none());
        q.wake_one();
        assert!(block_on(poll_once(&mut c)).is_some());
        assert!(q.is_empty());
        q.wake_one(); // nothing to wake: no effect
                      // A waiter that lost a race goes back to the head.
        let mut d = q.wait(false);
        let mut e = q.wait(true);
        q.wake_one();
        assert!(block_on(poll_once(&mut e)).is_some());
        assert!(block_on(poll_once(&mut d)).is_none());
        b = q.wait(false);
        drop(b);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn an_event_keeps_one_waker_per_task_however_often_it_is_polled() {
        let e = Event::new();
        for _ in 0..1000 {
            let mut w = Box::pin(e.wait());
            assert!(block_on(poll_once(&mut w)).is_none());
        }
        assert_eq!(e.0.wakers.borrow().len(), 1);
        e.set();
        assert!(block_on(poll_once(Box::pin(e.wait()))).is_some());
        assert!(e.0.wakers.borrow().is_empty());
    }

    #[test]
    fn oneshot_delivers_or_reports_a_dropped_sender() {
        let (tx, rx) = oneshot::<u8>();
        tx.send(7);
        assert_eq!(block_on(rx), Some(7));
        let (tx, rx) = oneshot::<u8>();
        drop(tx);
        assert_eq!(block_on(rx), None);
    }
}
