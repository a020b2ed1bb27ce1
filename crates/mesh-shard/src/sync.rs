//! Single-thread synchronisation for one shard: a oneshot slot and a set-once event. Everything here is
//! `Rc` + `Cell`/`RefCell`: a shard owns its tasks, so nothing on the data path needs a lock or an atomic.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

struct Slot<T> {
    value: RefCell<Option<T>>,
    waker: Cell<Option<Waker>>,
    sender_gone: Cell<bool>,
}

/// The sending side of a oneshot; dropping it unsent makes the receiver yield `None`.
pub struct Sender<T>(Rc<Slot<T>>);

/// Resolves to the sent value, or `None` if the sender was dropped.
pub struct Receiver<T>(Rc<Slot<T>>);

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
    let slot = Rc::new(Slot {
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

    pub fn is_set(&self) -> bool {
        self.0.set.get()
    }

    pub fn set(&self) {
        self.0.set.set(true);
        for w in self.0.wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Resolves once the event is set.
    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.0.set.get() {
                return Poll::Ready(());
            }
            self.0.wakers.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
    }
}
