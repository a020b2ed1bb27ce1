//! The floor of one glommio hop (issue 14): a TCP relay with nothing of the agents in it, on the same
//! runtime and executor settings as the shards (pinned executors, ring depth 4096, small io memory).
//! Each accepted connection gets one backend connection and one task per direction copying bytes.
//!
//! `cargo build --release -p mesh-shard --example glommio_relay`, then
//! `glommio_relay LISTEN BACKEND [SHARDS] [timer]`, e.g. in front of the overhead scenario's nginx responder,
//! and compare its CPU per request with the nginx proxy's at the same offered load. Two relays in a chain
//! (A -> B -> responder) are the floor of the agents' two hops. `timer` keeps one glommio timer pending on
//! every shard (an hour's sleep), as the agents did before `mesh_shard::timer`: each park then submits an
//! io_uring TIMEOUT and each wake-up cancels it (7 -> 9 `io_uring_enter` per wake-up).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};

/// One stream shared by the two copying tasks, borrowed only inside a poll.
#[derive(Clone)]
struct Shared(Rc<RefCell<TcpStream>>);

impl AsyncRead for Shared {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_read(cx, buf)
    }
}

impl AsyncWrite for Shared {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_close(cx)
    }
}

/// Copies `from` into `to` until either side ends.
async fn copy(mut from: Shared, mut to: Shared) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn relay(client: TcpStream, backend: SocketAddr) {
    let _ = client.set_nodelay(true);
    let Ok(upstream) = TcpStream::connect(backend).await else {
        return;
    };
    let _ = upstream.set_nodelay(true);
    let client = Shared(Rc::new(RefCell::new(client)));
    let upstream = Shared(Rc::new(RefCell::new(upstream)));
    let up = glommio::spawn_local(copy(client.clone(), upstream.clone()));
    copy(upstream, client).await;
    drop(up);
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: glommio_relay LISTEN BACKEND [SHARDS] [timer]";
    let listen: SocketAddr = args.get(1).ok_or(usage)?.parse()?;
    let backend: SocketAddr = args.get(2).ok_or(usage)?.parse()?;
    let shards: usize = args.get(3).map_or(Ok(1), |s| s.parse())?;
    let pending_timer = args.get(4).is_some_and(|s| s == "timer");
    let mut handles = Vec::new();
    for core in 0..shards {
        let handle = LocalExecutorBuilder::new(Placement::Fixed(core))
            .io_memory(mesh_shard::runtime::DEFAULT_IO_MEMORY)
            .ring_depth(4096)
            .spawn(move || async move {
                if pending_timer {
                    glommio::spawn_local(glommio::timer::sleep(std::time::Duration::from_secs(3600)))
                        .detach();
                }
                let Ok(listener) = TcpListener::bind(listen) else {
                    return;
                };
                while let Ok(client) = listener.accept().await {
                    glommio::spawn_local(relay(client, backend)).detach();
                }
            })?;
        handles.push(handle);
    }
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}
