//! Socket halves and a batching write queue for glommio streams.
//!
//! glommio's `TcpStream` reads and writes through separate poll sources, and a pending read consumes
//! nothing until it completes, so one reader task and one writer task can share a stream through
//! `Rc<RefCell<_>>` (borrowed only inside a poll, never across an await): no lock, no split with a mutex.

use std::cell::{Cell, RefCell};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

use crate::read_buffer::ReadBuffer;

/// A connection: plain TCP, or TLS over it (agent-to-agent link) on either side.
pub enum Stream {
    Plain(TcpStream),
    TlsClient(Box<futures_rustls::client::TlsStream<TcpStream>>),
    TlsServer(Box<futures_rustls::server::TlsStream<TcpStream>>),
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stream::Plain(_) => "Stream::Plain",
            Stream::TlsClient(_) => "Stream::TlsClient",
            Stream::TlsServer(_) => "Stream::TlsServer",
        })
    }
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Self {
        Stream::Plain(s)
    }
}

macro_rules! each_stream {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            Stream::Plain($s) => $e,
            Stream::TlsClient($s) => $e,
            Stream::TlsServer($s) => $e,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        each_stream!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        each_stream!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_stream!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_stream!(self.get_mut(), s => Pin::new(s).poll_close(cx))
    }
}

/// Splits a stream into a reading and a writing half.
pub fn split(stream: impl Into<Stream>) -> (ReadHalf, WriteHalf) {
    let s = Rc::new(RefCell::new(stream.into()));
    (ReadHalf(s.clone()), WriteHalf(s))
}

#[derive(Debug)]
pub struct ReadHalf(Rc<RefCell<Stream>>);

#[derive(Debug)]
pub struct WriteHalf(Rc<RefCell<Stream>>);

impl AsyncRead for ReadHalf {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_close(cx)
    }
}

thread_local! {
    /// One scratch area per shard (a shard is a thread): every connection of the shard reads through it,
    /// so a connection waiting for its peer holds no read memory of its own.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Reads what is available (at least one byte, or 0 at EOF) and appends it to `buf`: at most `read_size`
/// bytes, and no more than the buffer's room. A buffer with no room left is an `InvalidData` error (the
/// peer sent more than any request or frame may hold).
///
/// The socket is read into the shard's scratch area and only the bytes received are copied into `buf`
/// (no unsafe, `buf` only ever holds bytes really read). The first time the read has to wait, `buf` is
/// told it is idle ([`ReadBuffer::on_idle`]: an empty buffer gives its memory back). Cancelling the future
/// loses nothing: bytes are appended in the poll that reads them.
pub async fn read_some<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut ReadBuffer,
    read_size: usize,
) -> io::Result<usize> {
    let room = buf.room();
    if room == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("more than {} bytes buffered without a whole request", buf.limit()),
        ));
    }
    let want = read_size.min(room).max(1);
    let mut waited = false;
    std::future::poll_fn(|cx| {
        let res = SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            if scratch.len() < want {
                scratch.resize(want, 0);
            }
            let res = Pin::new(&mut *r).poll_read(cx, &mut scratch[..want]);
            if let Poll::Ready(Ok(n)) = res {
                buf.append(&scratch[..n]);
            }
            res
        });
        if res.is_pending() && !waited {
            waited = true;
            buf.on_idle();
        }
        res
    })
    .await
}

/// Most bytes of answers (heartbeat replies included) queued for a peer before a server stops reading from
/// it: a peer that pipelines calls or heartbeats and never reads would otherwise grow the queue until the
/// write timeout. Calls already in flight may still add their answers on top.
pub const MAX_QUEUED_ANSWER_BYTES: usize = 1 << 20;

/// First allocation of an empty [`OutQueue`] when a frame is pushed: a typical call or answer fits, so
/// encoding it does not grow the buffer step by step.
pub const OUT_QUEUE_START: usize = 512;

/// Frames waiting to be written to one connection. Producers append (any number of frames); the writer
/// task takes everything at once and writes it with one `write_all`: a burst of answers is one syscall.
///
/// Memory on demand: the queue allocates when something is pushed ([`OUT_QUEUE_START`] bytes, grown for
/// large frames), and the writer lets go of both of its buffers whenever it has nothing left to write, so a
/// quiet connection holds none.
#[derive(Clone)]
pub struct OutQueue(Rc<OutInner>);

struct OutInner {
    buf: RefCell<BytesMut>,
    waker: Cell<Option<Waker>>,
    /// A producer waiting for the writer to take what is queued ([`OutQueue::wait_queued_at_most`]).
    taken: Cell<Option<Waker>>,
    closed: Cell<bool>,
}

impl std::fmt::Debug for OutQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "OutQueue({} bytes, closed: {})",
            self.0.buf.borrow().len(),
            self.0.closed.get()
        )
    }
}

impl Default for OutQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl OutQueue {
    pub fn new() -> Self {
        OutQueue(Rc::new(OutInner {
            buf: RefCell::new(BytesMut::new()),
            waker: Cell::new(None),
            taken: Cell::new(None),
            closed: Cell::new(false),
        }))
    }

    /// Appends through `f` and wakes the writer. Returns `None` (writing nothing) once the queue is closed.
    pub fn push<R>(&self, f: impl FnOnce(&mut BytesMut) -> R) -> Option<R> {
        if self.0.closed.get() {
            return None;
        }
        let r = {
            let mut buf = self.0.buf.borrow_mut();
            if buf.capacity() == 0 {
                buf.reserve(OUT_QUEUE_START);
            }
            f(&mut buf)
        };
        if let Some(w) = self.0.waker.take() {
            w.wake();
        }
        Some(r)
    }

    pub fn is_closed(&self) -> bool {
        self.0.closed.get()
    }

    /// A queue and its writer task on `w` ([`OutQueue::run_writer`]; the task ends when the queue is closed
    /// and drained, or `w` fails).
    pub fn spawn_writer<W: AsyncWrite + Unpin + 'static>(w: W) -> (OutQueue, glommio::Task<()>) {
        let out = OutQueue::new();
        let writer = {
            let out = out.clone();
            glommio::spawn_local(async move {
                let _ = out.run_writer(w).await;
            })
        };
        (out, writer)
    }

    /// Bytes queued and not yet taken by the writer (a writer blocked on a peer that does not read takes
    /// nothing).
    pub fn queued(&self) -> usize {
        self.0.buf.borrow().len()
    }

    /// Bytes of memory the queue's buffer holds (0 for a quiet connection: the writer lets go of it).
    pub fn held(&self) -> usize {
        self.0.buf.borrow().capacity()
    }

    /// Waits until at most `max` bytes are queued (the writer took the rest) or the queue is closed: lets a
    /// producer stop reading from a peer that does not read its answers. One waiter at a time.
    pub async fn wait_queued_at_most(&self, max: usize) {
        std::future::poll_fn(|cx| {
            if self.0.buf.borrow().len() <= max || self.0.closed.get() {
                Poll::Ready(())
            } else {
                self.0.taken.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }

    fn wake_taken(&self) {
        if let Some(w) = self.0.taken.take() {
            w.wake();
        }
    }

    /// Stops accepting frames; the writer finishes what is queued, then ends.
    pub fn close(&self) {
        self.0.closed.set(true);
        if let Some(w) = self.0.waker.take() {
            w.wake();
        }
        self.wake_taken();
    }

    /// The writer task: runs until the queue is closed and drained, or the socket fails.
    pub async fn run_writer<W: AsyncWrite + Unpin>(&self, mut w: W) -> io::Result<()> {
        let mut out = BytesMut::new();
        loop {
            std::future::poll_fn(|cx| {
                if !self.0.buf.borrow().is_empty() || self.0.closed.get() {
                    Poll::Ready(())
                } else {
                    // Nothing to write: hold no memory while waiting.
                    if out.capacity() > 0 {
                        out = BytesMut::new();
                    }
                    let mut queued = self.0.buf.borrow_mut();
                    if queued.capacity() > 0 {
                        *queued = BytesMut::new();
                    }
                    self.0.waker.set(Some(cx.waker().clone()));
                    Poll::Pending
                }
            })
            .await;
            std::mem::swap(&mut *self.0.buf.borrow_mut(), &mut out);
            self.wake_taken();
            if out.is_empty() {
                // Closed and drained.
                let _ = w.close().await;
                return Ok(());
            }
            // The flush is free on plain TCP and sends what TLS still buffers.
            let res = match w.write_all(&out).await {
                Ok(()) => w.flush().await,
                Err(e) => Err(e),
            };
            out.clear();
            if let Err(e) = res {
                self.0.closed.set(true);
                self.wake_taken();
                return Err(e);
            }
        }
    }
}

/// Binds a shard's listener (SO_REUSEPORT, set by glommio) and says which address failed if it cannot.
pub fn listen(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).map_err(|e| io::Error::other(format!("cannot listen on {addr}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::run_on_test_shard;

    /// A peer that reads nothing until `open` is set.
    #[derive(Clone, Default)]
    struct Stalled {
        open: Rc<Cell<bool>>,
        waker: Rc<Cell<Option<Waker>>>,
        written: Rc<Cell<usize>>,
    }

    impl AsyncWrite for Stalled {
        fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            if self.open.get() {
                self.written.set(self.written.get() + buf.len());
                Poll::Ready(Ok(buf.len()))
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    async fn settle() {
        for _ in 0..8 {
            glommio::yield_if_needed().await;
            futures_lite::future::yield_now().await;
        }
    }

    #[test]
    fn a_producer_can_wait_for_a_peer_that_does_not_read() {
        run_on_test_shard(async {
            let q = OutQueue::new();
            let peer = Stalled::default();
            let writer = {
                let (q, peer) = (q.clone(), peer.clone());
                glommio::spawn_local(async move { q.run_writer(peer).await })
            };
            q.push(|b| b.extend_from_slice(&[1; 10]));
            settle().await;
            // The writer took the first 10 bytes and is stuck writing them: the next ones stay queued.
            q.push(|b| b.extend_from_slice(&[2; 100]));
            assert_eq!(q.queued(), 100);
            let done = Rc::new(Cell::new(false));
            let waiter = {
                let (q, done) = (q.clone(), done.clone());
                glommio::spawn_local(async move {
                    q.wait_queued_at_most(50).await;
                    done.set(true);
                })
            };
            settle().await;
            assert!(!done.get(), "100 bytes queued, the writer took nothing");
            peer.open.set(true);
            if let Some(w) = peer.waker.take() {
                w.wake();
            }
            settle().await;
            assert!(done.get());
            assert_eq!(q.queued(), 0);
            waiter.await;
            // Closing releases a waiter too.
            peer.open.set(false);
            q.push(|b| b.extend_from_slice(&[3; 10]));
            settle().await;
            q.push(|b| b.extend_from_slice(&[4; 100]));
            let waiter = {
                let q = q.clone();
                glommio::spawn_local(async move { q.wait_queued_at_most(50).await })
            };
            settle().await;
            q.close();
            waiter.await;
            peer.open.set(true);
            if let Some(w) = peer.waker.take() {
                w.wake();
            }
            writer.await.unwrap();
            assert_eq!(peer.written.get(), 220);
        });
    }

    #[test]
    fn a_quiet_queue_holds_no_memory() {
        run_on_test_shard(async {
            let q = OutQueue::new();
            assert_eq!(q.held(), 0);
            let peer = Stalled::default();
            peer.open.set(true);
            let writer = {
                let (q, peer) = (q.clone(), peer.clone());
                glommio::spawn_local(async move { q.run_writer(peer).await })
            };
            q.push(|b| b.extend_from_slice(&[1; 10]));
            assert!(q.held() >= OUT_QUEUE_START);
            settle().await;
            assert_eq!(peer.written.get(), 10);
            assert_eq!(q.held(), 0, "written and waiting: nothing held");
            // A large frame grows the queue; once written, that memory goes too.
            q.push(|b| b.extend_from_slice(&vec![2; 100_000]));
            assert!(q.held() >= 100_000);
            settle().await;
            assert_eq!(peer.written.get(), 100_010);
            assert_eq!(q.held(), 0);
            q.close();
            writer.await.unwrap();
        });
    }
}
