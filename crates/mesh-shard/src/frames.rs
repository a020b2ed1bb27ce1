//! Reading Dubbo frames off a connection: read into a buffer, decode every whole frame, read again. Shared
//! by the provider agent's server side and the upstream connections' readers.

use std::io;

use futures_lite::AsyncRead;
use mesh_dubbo::{frame::HEADER_LEN, Codec, CodecError, Decoded, Frame};

use crate::io::read_some;
use crate::read_buffer::ReadBuffer;

/// Why a connection gives no more frames.
#[derive(Debug)]
pub enum FrameEnd {
    /// The peer closed the connection.
    Closed,
    Io(io::Error),
    /// Framing is lost: no way to find the next frame. `id` is the request id of the broken frame's
    /// header when its first 16 bytes arrived (to answer it).
    Broken {
        error: CodecError,
        id: Option<u64>,
    },
}

/// Frames from one connection's reading half. Its buffer holds only bytes not yet decoded (at most one
/// partial frame: [`HEADER_LEN`] + the codec's `max_body`), and nothing while the connection waits with no
/// partial frame; a decoded frame's body keeps the allocation it was read into until it is dropped.
#[derive(Debug)]
pub struct FrameReader<R> {
    r: R,
    codec: Codec,
    read_size: usize,
    buf: ReadBuffer,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Reads at most `read_size` bytes at a time (through the shard's scratch area).
    pub fn new(r: R, codec: Codec, read_size: usize) -> Self {
        FrameReader {
            r,
            codec,
            read_size: read_size.max(1),
            buf: ReadBuffer::new(HEADER_LEN.saturating_add(codec.max_body)),
        }
    }

    /// Bytes of memory the reader's buffer holds now.
    pub fn buffered_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The next frame, reading as much as it takes; `on_read` runs after every read that got bytes.
    /// Cancelling the future loses nothing: bytes read are kept in the buffer.
    pub async fn next(&mut self, mut on_read: impl FnMut()) -> Result<Frame, FrameEnd> {
        loop {
            match self.codec.decode_frame(self.buf.as_bytes_mut()) {
                Ok(Decoded::Frame(f)) => return Ok(f),
                Ok(Decoded::NeedMore(_)) => {}
                Err(error) => {
                    return Err(FrameEnd::Broken {
                        error,
                        id: header_id(self.buf.bytes()),
                    })
                }
            }
            // The buffer holds a partial frame within the codec's limit, so there is always room.
            match read_some(&mut self.r, &mut self.buf, self.read_size).await {
                Ok(0) => return Err(FrameEnd::Closed),
                Ok(_) => on_read(),
                Err(e) => return Err(FrameEnd::Io(e)),
            }
        }
    }
}

/// The request id of the Dubbo header at the start of `buf` (bytes 4..12), if 16 bytes are there.
fn header_id(buf: &[u8]) -> Option<u64> {
    let head = buf.first_chunk::<16>()?;
    let id: [u8; 8] = head[4..12].try_into().ok()?;
    Some(u64::from_be_bytes(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use futures_lite::future::{block_on, poll_once};
    use mesh_dubbo::{Header, Serialization};

    fn frames(ids: &[u64]) -> Vec<u8> {
        let codec = Codec::default();
        let mut buf = BytesMut::new();
        for &id in ids {
            codec.encode_heartbeat(&mut buf, id, Serialization::Hessian2, true);
        }
        buf.to_vec()
    }

    /// Hands out its bytes a few at a time, as a slow socket would.
    struct Trickle(Vec<u8>, usize);

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            out: &mut [u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let n = self.1.min(out.len()).min(self.0.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0.drain(..n);
            std::task::Poll::Ready(Ok(n))
        }
    }

    #[test]
    fn frames_split_over_reads_and_packed_into_one_read_come_out_whole_and_in_order() {
        for chunk in [1, 7, 16, 1000] {
            let mut r = FrameReader::new(Trickle(frames(&[1, 2, 3]), chunk), Codec::default(), 64);
            let mut reads = 0;
            let ids: Vec<u64> = (0..3)
                .map(|_| block_on(r.next(|| reads += 1)).unwrap().header.id)
                .collect();
            assert_eq!(ids, [1, 2, 3], "chunks of {chunk}");
            assert!(reads >= 1);
            assert!(matches!(block_on(r.next(|| ())), Err(FrameEnd::Closed)));
        }
    }

    #[test]
    fn a_broken_header_ends_the_stream_with_the_id_to_answer() {
        let mut bytes = BytesMut::new();
        Header::request(42, Serialization::Hessian2, true).write(&mut bytes);
        bytes[0] = 0; // not the Dubbo magic
        let mut r = FrameReader::new(Trickle(bytes.to_vec(), 100), Codec::default(), 64);
        match block_on(r.next(|| ())) {
            Err(FrameEnd::Broken { id, .. }) => assert_eq!(id, Some(42)),
            other => panic!("{other:?}"),
        }
        assert_eq!(header_id(&[0; 15]), None);
    }

    /// Hands out what it was given, `chunk` bytes at a time, and then waits (`Pending`) for more.
    #[derive(Default)]
    struct Gated {
        data: Vec<u8>,
        chunk: usize,
    }

    impl AsyncRead for Gated {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            out: &mut [u8],
        ) -> std::task::Poll<io::Result<usize>> {
            if self.data.is_empty() {
                return std::task::Poll::Pending;
            }
            let n = self.chunk.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data.drain(..n);
            std::task::Poll::Ready(Ok(n))
        }
    }

    /// A request frame with a `len`-byte body (the reader does not look inside bodies).
    fn big_frame(id: u64, len: usize) -> Vec<u8> {
        let mut h = Header::request(id, Serialization::Hessian2, true);
        h.body_len = len as u32;
        let mut b = BytesMut::new();
        h.write(&mut b);
        b.extend_from_slice(&vec![0x5a; len]);
        b.to_vec()
    }

    #[test]
    fn a_reader_waiting_for_its_peer_holds_no_buffer() {
        let mut r = FrameReader::new(Gated::default(), Codec::default(), 64 * 1024);
        assert_eq!(r.buffered_capacity(), 0);
        let mut bytes = frames(&[1, 2]);
        let whole = bytes.len();
        bytes.extend_from_slice(&frames(&[3])[..5]); // and the start of a third
        r.r.data = bytes;
        r.r.chunk = usize::MAX;
        assert_eq!(block_on(r.next(|| ())).unwrap().header.id, 1);
        assert_eq!(block_on(r.next(|| ())).unwrap().header.id, 2);
        // Waiting with 5 bytes of the next frame: they are kept, in an allocation of their size.
        assert!(block_on(poll_once(r.next(|| ()))).is_none());
        assert_eq!(r.buf.bytes(), &frames(&[3])[..5]);
        assert!(r.buffered_capacity() < whole, "{}", r.buffered_capacity());
        r.r.data = frames(&[3])[5..].to_vec();
        assert_eq!(block_on(r.next(|| ())).unwrap().header.id, 3);
        // Waiting with nothing: nothing held.
        assert!(block_on(poll_once(r.next(|| ()))).is_none());
        assert_eq!(r.buffered_capacity(), 0);
    }

    #[test]
    fn a_large_frame_grows_the_buffer_and_comes_out_whole_then_the_buffer_is_released() {
        let len = 300 * 1024;
        let mut r = FrameReader::new(Gated::default(), Codec::default(), 64 * 1024);
        let mut bytes = big_frame(9, len);
        bytes.extend_from_slice(&frames(&[10]));
        r.r.data = bytes;
        r.r.chunk = 10_000;
        let mut reads = 0;
        let f = block_on(r.next(|| reads += 1)).unwrap();
        assert_eq!((f.header.id, f.body.len()), (9, len));
        assert!(f.body.iter().all(|&b| b == 0x5a));
        assert!(reads > len / 10_000, "{reads} reads");
        assert_eq!(block_on(r.next(|| ())).unwrap().header.id, 10);
        assert!(block_on(poll_once(r.next(|| ()))).is_none());
        assert_eq!(r.buffered_capacity(), 0);
        // The frame's body lives on in its own bytes.
        assert_eq!(f.body.len(), len);
    }

    #[test]
    fn the_buffer_never_holds_more_than_one_frame_within_the_limit() {
        let codec = Codec {
            max_body: 1000,
            ..Codec::default()
        };
        let mut r = FrameReader::new(Gated::default(), codec, 64 * 1024);
        assert_eq!(r.buf.limit(), HEADER_LEN + 1000);
        // A frame at the limit passes, read in pieces no larger than the room left.
        r.r.data = big_frame(1, 1000);
        r.r.chunk = usize::MAX;
        assert_eq!(block_on(r.next(|| ())).unwrap().body.len(), 1000);
        // One over it is refused from its header, before its body is read.
        r.r.data = big_frame(2, 1001);
        match block_on(r.next(|| ())) {
            Err(FrameEnd::Broken { id, .. }) => assert_eq!(id, Some(2)),
            other => panic!("{other:?}"),
        }
        assert!(r.buf.len() <= r.buf.limit());
    }
}
