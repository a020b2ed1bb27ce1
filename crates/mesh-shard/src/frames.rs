//! Reading Dubbo frames off a connection: read into a buffer, decode every whole frame, read again. Shared
//! by the provider agent's server side and the upstream connections' readers.

use std::io;

use bytes::BytesMut;
use futures_lite::AsyncRead;
use mesh_dubbo::{Codec, CodecError, Decoded, Frame};

use crate::io::read_into;

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

/// Frames from one connection's reading half.
#[derive(Debug)]
pub struct FrameReader<R> {
    r: R,
    codec: Codec,
    scratch: Vec<u8>,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Reads through a `read_buffer`-byte scratch buffer.
    pub fn new(r: R, codec: Codec, read_buffer: usize) -> Self {
        FrameReader {
            r,
            codec,
            scratch: vec![0u8; read_buffer.max(1)],
            buf: BytesMut::with_capacity(read_buffer),
        }
    }

    /// The next frame, reading as much as it takes; `on_read` runs after every read that got bytes.
    /// Cancelling the future loses nothing: bytes read are kept in the buffer.
    pub async fn next(&mut self, mut on_read: impl FnMut()) -> Result<Frame, FrameEnd> {
        loop {
            match self.codec.decode_frame(&mut self.buf) {
                Ok(Decoded::Frame(f)) => return Ok(f),
                Ok(Decoded::NeedMore(_)) => {}
                Err(error) => {
                    return Err(FrameEnd::Broken {
                        error,
                        id: header_id(&self.buf),
                    })
                }
            }
            match read_into(&mut self.r, &mut self.scratch, &mut self.buf).await {
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
    use futures_lite::future::block_on;
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
}
