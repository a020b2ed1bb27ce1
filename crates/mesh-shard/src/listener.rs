//! One shard's listener, shared by both roles: accepts until the shard's stop, pauses after accept errors
//! instead of spinning on them, and admits each connection with a permit counted against the shard's
//! connection limit (the role answers a connection over the limit its own way).

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use glommio::net::{TcpListener, TcpStream};

use crate::control::ShardControl;

/// The connections one shard's listener has open, against its limit.
#[derive(Debug, Clone)]
pub struct Connections(Rc<Count>);

#[derive(Debug)]
struct Count {
    open: Cell<usize>,
    limit: usize,
}

/// One admitted connection: it counts against the limit until dropped (when its task ends).
#[derive(Debug)]
pub struct ConnectionPermit(Rc<Count>);

impl Connections {
    pub fn new(limit: usize) -> Self {
        Connections(Rc::new(Count {
            open: Cell::new(0),
            limit,
        }))
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.0.open.get()
    }

    pub fn is_empty(&self) -> bool {
        self.open() == 0
    }

    /// A permit for one more connection, or `None` at the limit.
    pub fn admit(&self) -> Option<ConnectionPermit> {
        let open = self.0.open.get();
        if open >= self.0.limit {
            return None;
        }
        self.0.open.set(open + 1);
        Some(ConnectionPermit(self.0.clone()))
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.0.open.set(self.0.open.get().saturating_sub(1));
    }
}

/// How long the accept loop pauses after a failed accept. A failure of the one connection being accepted
/// (reset or aborted before it was taken) is retried at once; anything else (out of file descriptors,
/// out of memory) would fail again at once, so the pause starts at `MIN` and doubles up to `MAX` until
/// an accept succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptBackoff {
    next: Duration,
}

impl AcceptBackoff {
    pub const MIN: Duration = Duration::from_millis(10);
    pub const MAX: Duration = Duration::from_secs(1);

    pub fn new() -> Self {
        AcceptBackoff { next: Self::MIN }
    }

    /// The pause before the next accept after `err`.
    pub fn on_error(&mut self, err: &io::Error) -> Duration {
        if Self::is_per_connection(err) {
            return Duration::ZERO;
        }
        let pause = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        pause
    }

    /// An accept succeeded: the next failure pauses the shortest time again.
    pub fn on_accept(&mut self) {
        self.next = Self::MIN;
    }

    /// Errors that concern only the connection being accepted, not the listener or the process.
    fn is_per_connection(err: &io::Error) -> bool {
        matches!(
            err.kind(),
            io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::Interrupted
                | io::ErrorKind::WouldBlock
        )
    }
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self::new()
    }
}

/// A shard's listening socket and the count of the connections it admitted.
#[derive(Debug)]
pub struct Listener {
    socket: TcpListener,
    connections: Connections,
}

impl Listener {
    /// Binds `addr` (SO_REUSEPORT: every shard binds the same address) with room for `max_connections`
    /// (the process's open-file limit is raised to its hard limit first: [`crate::open_files`]).
    pub fn bind(addr: SocketAddr, max_connections: usize) -> io::Result<Self> {
        crate::open_files::raise_once();
        Ok(Listener {
            socket: crate::io::listen(addr)?,
            connections: Connections::new(max_connections),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr().map_err(io::Error::from)
    }

    /// The connection count, to wait for it to drop to zero when draining.
    pub fn connections(&self) -> Connections {
        self.connections.clone()
    }

    /// Accepts until the shard's stop, then closes the socket. Each admitted connection is served by
    /// `serve` in its own task holding the connection's permit; a connection over the limit is handed to
    /// `refuse` (awaited before the next accept) and then closed.
    pub async fn serve_until_stopped<S, SF, R, RF>(self, control: &ShardControl, serve: S, refuse: R)
    where
        S: Fn(TcpStream) -> SF,
        SF: Future<Output = ()> + 'static,
        R: Fn(TcpStream) -> RF,
        RF: Future<Output = ()>,
    {
        let mut backoff = AcceptBackoff::new();
        loop {
            let accepted = futures_lite::future::or(async { Some(self.socket.accept().await) }, async {
                control.stopped().await;
                None
            })
            .await;
            let stream = match accepted {
                None => return,
                Some(Ok(stream)) => {
                    backoff.on_accept();
                    stream
                }
                Some(Err(e)) => {
                    let pause = backoff.on_error(&io::Error::from(e));
                    if !pause.is_zero() {
                        glommio::timer::sleep(pause).await;
                    }
                    continue;
                }
            };
            match self.connections.admit() {
                Some(permit) => {
                    // Boxed: a future moved into an async block and awaited there is stored twice in the
                    // task (the captured value and the awaited one); the connection's future is most of
                    // an idle connection's memory (heaptrack: the task was 3.5 KiB per connection).
                    let served = Box::pin(serve(stream));
                    glommio::spawn_local(async move {
                        served.await;
                        drop(permit);
                    })
                    .detach();
                }
                None => refuse(stream).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os_error(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    // Linux errno values.
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    const ENOBUFS: i32 = 105;
    const ECONNABORTED: i32 = 103;

    #[test]
    fn out_of_descriptors_pauses_longer_each_time_up_to_the_maximum() {
        let mut b = AcceptBackoff::new();
        let pauses: Vec<u64> = (0..10)
            .map(|_| b.on_error(&os_error(EMFILE)).as_millis() as u64)
            .collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        assert_eq!(b.on_error(&os_error(ENFILE)), AcceptBackoff::MAX);
        assert_eq!(b.on_error(&os_error(ENOBUFS)), AcceptBackoff::MAX);
    }

    #[test]
    fn an_accept_resets_the_pause() {
        let mut b = AcceptBackoff::new();
        for _ in 0..5 {
            b.on_error(&os_error(EMFILE));
        }
        b.on_accept();
        assert_eq!(b.on_error(&os_error(EMFILE)), AcceptBackoff::MIN);
    }

    #[test]
    fn a_connection_aborted_before_accept_is_retried_at_once_and_leaves_the_pause_alone() {
        let mut b = AcceptBackoff::new();
        b.on_error(&os_error(EMFILE));
        assert_eq!(b.on_error(&os_error(ECONNABORTED)), Duration::ZERO);
        assert_eq!(
            b.on_error(&io::Error::from(io::ErrorKind::ConnectionReset)),
            Duration::ZERO
        );
        assert_eq!(b.on_error(&os_error(EMFILE)), Duration::from_millis(20));
    }

    #[test]
    fn serves_within_the_limit_refuses_beyond_it_and_stops_at_the_stop() {
        use crate::control::Controller;
        use crate::sync::Event;
        use glommio::net::TcpStream;

        async fn until(what: impl Fn() -> bool) {
            for _ in 0..1000 {
                if what() {
                    return;
                }
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            panic!("not within a second");
        }

        let controller = Controller::new();
        let control = controller.shard();
        crate::runtime::run_on_test_shard(async move {
            let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), 1).unwrap();
            let addr = listener.local_addr().unwrap();
            let connections = listener.connections();
            let refused = Rc::new(Cell::new(0));
            // The served connection's task lasts until this is set.
            let hang_up = Event::new();
            let accepting = {
                let (refused, hang_up) = (refused.clone(), hang_up.clone());
                glommio::spawn_local(async move {
                    listener
                        .serve_until_stopped(
                            &control,
                            |_stream| {
                                let hang_up = hang_up.clone();
                                async move { hang_up.wait().await }
                            },
                            |_stream| {
                                let refused = refused.clone();
                                async move { refused.set(refused.get() + 1) }
                            },
                        )
                        .await;
                })
            };
            let _first = TcpStream::connect(addr).await.unwrap();
            until(|| connections.open() == 1).await;
            let _second = TcpStream::connect(addr).await.unwrap();
            until(|| refused.get() == 1).await;
            assert_eq!(connections.open(), 1);
            // The permit goes when the connection's task ends.
            hang_up.set();
            until(|| connections.is_empty()).await;
            controller.stop(Duration::ZERO);
            accepting.await;
            // glommio closes the socket asynchronously, soon after the listener is dropped.
            let mut closed = false;
            for _ in 0..100 {
                if TcpStream::connect(addr).await.is_err() {
                    closed = true;
                    break;
                }
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
            assert!(closed, "the socket is closed");
        });
    }

    #[test]
    fn permits_count_against_the_limit_until_dropped() {
        let c = Connections::new(2);
        let a = c.admit().unwrap();
        let b = c.admit().unwrap();
        assert_eq!(c.open(), 2);
        assert!(c.admit().is_none(), "over the limit");
        assert_eq!(c.open(), 2, "a refusal takes no place");
        drop(a);
        assert_eq!(c.open(), 1);
        let again = c.admit().unwrap();
        drop(b);
        drop(again);
        assert!(c.is_empty());
        assert!(Connections::new(0).admit().is_none());
    }
}
