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
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

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

/// Reads what is available (at least one byte, or 0 at EOF) and appends it to `buf`.
///
/// Data goes through a fixed scratch buffer, so `buf` only ever holds initialised bytes (no unsafe) and
/// only the bytes really read are copied.
pub async fn read_into<R: AsyncRead + Unpin>(
    r: &mut R,
    scratch: &mut [u8],
    buf: &mut BytesMut,
) -> io::Result<usize> {
    let n = r.read(scratch).await?;
    buf.extend_from_slice(&scratch[..n]);
    Ok(n)
}

/// Frames waiting to be written to one connection. Producers append (any number of frames); the writer
/// task takes everything at once and writes it with one `write_all`: a burst of answers is one syscall.
#[derive(Clone)]
pub struct OutQueue(Rc<OutInner>);

struct OutInner {
    buf: RefCell<BytesMut>,
    waker: Cell<Option<Waker>>,
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
            buf: RefCell::new(BytesMut::with_capacity(16 * 1024)),
            waker: Cell::new(None),
            closed: Cell::new(false),
        }))
    }

    /// Appends through `f` and wakes the writer. Returns `None` (writing nothing) once the queue is closed.
    pub fn push<R>(&self, f: impl FnOnce(&mut BytesMut) -> R) -> Option<R> {
        if self.0.closed.get() {
            return None;
        }
        let r = f(&mut self.0.buf.borrow_mut());
        if let Some(w) = self.0.waker.take() {
            w.wake();
        }
        Some(r)
    }

    pub fn is_closed(&self) -> bool {
        self.0.closed.get()
    }

    /// Stops accepting frames; the writer finishes what is queued, then ends.
    pub fn close(&self) {
        self.0.closed.set(true);
        if let Some(w) = self.0.waker.take() {
            w.wake();
        }
    }

    /// The writer task: runs until the queue is closed and drained, or the socket fails.
    pub async fn run_writer<W: AsyncWrite + Unpin>(&self, mut w: W) -> io::Result<()> {
        let mut out = BytesMut::with_capacity(16 * 1024);
        loop {
            std::future::poll_fn(|cx| {
                if !self.0.buf.borrow().is_empty() || self.0.closed.get() {
                    Poll::Ready(())
                } else {
                    self.0.waker.set(Some(cx.waker().clone()));
                    Poll::Pending
                }
            })
            .await;
            std::mem::swap(&mut *self.0.buf.borrow_mut(), &mut out);
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
                return Err(e);
            }
        }
    }
}

/// Binds a shard's listener (SO_REUSEPORT, set by glommio) and says which address failed if it cannot.
pub fn listen(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).map_err(|e| io::Error::other(format!("cannot listen on {addr}: {e}")))
}
