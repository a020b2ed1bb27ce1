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
    /// One place per pending [`EventWait`]; a wait gives its place back when dropped.
    wakers: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<usize>>,
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
        let wakers = std::mem::take(&mut *self.0.wakers.borrow_mut());
        self.0.free.borrow_mut().clear();
        for w in wakers.into_iter().flatten() {
            w.wake();
        }
    }

    /// Resolves once the event is set.
    pub fn wait(&self) -> EventWait<'_> {
        EventWait {
            event: self,
            place: None,
        }
    }

    /// Wakers held now (one per pending wait).
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.0.wakers.borrow().iter().flatten().count()
    }
}

/// A wait for an [`Event`].
///
/// It holds one waker however often it is polled (a reader racing every read against the event polls it
/// once per read): piling up clones leaked memory, and glommio counts a task's wakers in an `i16` that
/// asserts at 32,767. Dropped unresolved (a read won the race), it gives its waker back, so a long-lived
/// event (the shard's stop) does not collect the wakers of every connection that ever waited for it.
pub struct EventWait<'a> {
    event: &'a Event,
    place: Option<usize>,
}

impl std::fmt::Debug for EventWait<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EventWait({:?})", self.event)
    }
}

impl Future for EventWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let inner = &self.event.0;
        if inner.set.get() {
            return Poll::Ready(());
        }
        let mut wakers = inner.wakers.borrow_mut();
        match self.place {
            Some(i) => match &mut wakers[i] {
                Some(w) if w.will_wake(cx.waker()) => {}
                other => *other = Some(cx.waker().clone()),
            },
            None => {
                let waker = Some(cx.waker().clone());
                let i = match inner.free.borrow_mut().pop() {
                    Some(i) => {
                        wakers[i] = waker;
                        i
                    }
                    None => {
                        wakers.push(waker);
                        wakers.len() - 1
                    }
                };
                drop(wakers);
                self.place = Some(i);
            }
        }
        Poll::Pending
    }
}

impl Drop for EventWait<'_> {
    fn drop(&mut self) {
        let inner = &self.event.0;
        // After `set` the places are gone already.
        if let Some(i) = self.place {
            if !inner.set.get() {
                inner.wakers.borrow_mut()[i] = None;
                inner.free.borrow_mut().push(i);
            }
        }
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
    fn an_event_wait_holds_one_waker_however_often_it_is_polled() {
        let e = Event::new();
        let mut w = Box::pin(e.wait());
        for _ in 0..1000 {
            assert!(block_on(poll_once(&mut w)).is_none());
        }
        assert_eq!(e.waiting(), 1);
        let mut other = Box::pin(e.wait());
        assert!(block_on(poll_once(&mut other)).is_none());
        assert_eq!(e.waiting(), 2);
        e.set();
        assert!(block_on(poll_once(&mut w)).is_some());
        assert!(block_on(poll_once(Box::pin(e.wait()))).is_some());
        assert_eq!(e.waiting(), 0);
    }

    /// A waker of its own, as each connection task has.
    struct TaskWaker;

    impl std::task::Wake for TaskWaker {
        fn wake(self: std::sync::Arc<Self>) {}
    }

    #[test]
    fn a_dropped_event_wait_gives_its_waker_back() {
        // Connections race each read against the shard's stop event, which lives as long as the shard: a
        // wait that lost the race must not leave its task's waker behind.
        let e = Event::new();
        for _ in 0..1000 {
            let waker = Waker::from(std::sync::Arc::new(TaskWaker));
            let mut w = Box::pin(e.wait());
            assert!(w.as_mut().poll(&mut Context::from_waker(&waker)).is_pending());
        }
        assert_eq!(e.waiting(), 0);
        assert!(e.0.wakers.borrow().len() <= 1, "places are reused");
        drop(e.wait()); // never polled: holds nothing
        assert_eq!(e.waiting(), 0);
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
