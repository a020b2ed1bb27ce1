//! A connection's read buffer, sized on demand: it holds only the bytes received and not yet consumed (a
//! partial request or frame, or pipelined ones not parsed yet), grows for a large request up to a hard
//! limit, and gives its memory back when the connection waits for its peer with nothing buffered.
//!
//! Bytes come in through one scratch area per shard ([`crate::io::read_some`]): the socket is read into
//! it and only the bytes received are copied here. An idle keep-alive connection therefore holds no read
//! buffer at all, however large the configured read size, and a busy one holds about the size of its
//! request. Pure: no IO, unit-tested below.

use bytes::{Buf, BytesMut};

/// Most bytes an idle buffer moves into an allocation of their own size (see [`ReadBuffer::on_idle`]).
pub const COMPACT_AT_MOST: usize = 4096;

/// The received, not yet consumed bytes of one connection.
#[derive(Debug, Default)]
pub struct ReadBuffer {
    buf: BytesMut,
    limit: usize,
}

impl ReadBuffer {
    /// An empty buffer (nothing allocated) that will never hold more than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        ReadBuffer {
            buf: BytesMut::new(),
            limit: limit.max(1),
        }
    }

    /// The most bytes this buffer may hold.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// How many more bytes may be read into the buffer now (0: it is full; a parser still asking for more
    /// at that point is facing a request over its limits).
    pub fn room(&self) -> usize {
        self.limit.saturating_sub(self.buf.len())
    }

    /// Appends bytes just read: at most [`ReadBuffer::room`] of them (the rest is not taken; callers read
    /// no more than the room). Grows the allocation as needed (amortised doubling).
    pub fn append(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.room());
        self.buf.extend_from_slice(&data[..n]);
        n
    }

    /// The bytes received and not consumed.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The buffer itself, for decoders that split frames off its front (the frames keep sharing the
    /// allocation they were read into; the buffer lets go of it when it empties).
    pub fn as_bytes_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Drops `n` consumed bytes from the front.
    pub fn consume(&mut self, n: usize) {
        self.buf.advance(n.min(self.buf.len()));
    }

    /// Bytes of memory this buffer holds on to (its capacity beyond what it holds included).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The connection is about to wait for its peer: an empty buffer lets go of its allocation; one that
    /// holds at most [`COMPACT_AT_MOST`] bytes (the start of the next request, possibly at the end of a
    /// large allocation, or sharing one with frames still in use) moves them into an allocation of their
    /// own size. A larger partial request keeps its buffer: it is still arriving, and bounded by the limit.
    pub fn on_idle(&mut self) {
        let len = self.buf.len();
        if len == 0 {
            if self.buf.capacity() > 0 {
                self.buf = BytesMut::new();
            }
        } else if len <= COMPACT_AT_MOST {
            self.buf = BytesMut::from(&self.buf[..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_buffer_holds_no_memory() {
        let b = ReadBuffer::new(1 << 20);
        assert_eq!(b.capacity(), 0);
        assert_eq!(b.room(), 1 << 20);
        assert!(b.is_empty());
    }

    #[test]
    fn it_grows_for_a_large_request_and_lets_go_once_consumed_and_idle() {
        let mut b = ReadBuffer::new(1 << 20);
        let chunk = vec![7u8; 64 * 1024];
        for _ in 0..8 {
            assert_eq!(b.append(&chunk), chunk.len());
            b.on_idle(); // a large request still arriving keeps its bytes and its buffer
        }
        assert_eq!(b.len(), 512 * 1024);
        assert!(b.bytes().iter().all(|&x| x == 7));
        assert!(b.capacity() >= 512 * 1024);
        b.consume(512 * 1024);
        assert!(b.is_empty());
        b.on_idle();
        assert_eq!(b.capacity(), 0);
    }

    #[test]
    fn it_never_holds_more_than_its_limit() {
        let mut b = ReadBuffer::new(100);
        assert_eq!(b.append(&[1; 60]), 60);
        assert_eq!(b.room(), 40);
        assert_eq!(b.append(&[2; 60]), 40, "only the room is taken");
        assert_eq!(b.len(), 100);
        assert_eq!(b.room(), 0);
        assert_eq!(b.append(&[3; 1]), 0);
        assert_eq!(&b.bytes()[58..62], &[1, 1, 2, 2]);
        b.consume(30);
        assert_eq!(b.room(), 30);
        // Consuming more than is there empties it, nothing else.
        b.consume(1000);
        assert!(b.is_empty());
        assert_eq!(b.room(), 100);
    }

    #[test]
    fn a_little_left_in_a_large_allocation_is_compacted_when_idle() {
        let mut b = ReadBuffer::new(1 << 20);
        b.append(&vec![1u8; 256 * 1024]);
        b.consume(256 * 1024 - 10);
        assert!(b.capacity() >= 10);
        b.on_idle();
        assert_eq!(b.bytes(), &[1u8; 10]);
        assert!(b.capacity() < 64, "{}", b.capacity());
        // More than COMPACT_AT_MOST bytes of a request still arriving stay where they are.
        let mut s = ReadBuffer::new(1 << 20);
        s.append(&vec![5u8; 3 * COMPACT_AT_MOST]);
        s.consume(COMPACT_AT_MOST);
        let at = s.bytes().as_ptr();
        s.on_idle();
        assert_eq!(s.bytes().as_ptr(), at);
        assert_eq!(s.len(), 2 * COMPACT_AT_MOST);
    }

    #[test]
    fn frames_split_off_keep_their_bytes_after_the_buffer_lets_go() {
        let mut b = ReadBuffer::new(1 << 20);
        b.append(b"hello world");
        let hello = b.as_bytes_mut().split_to(5).freeze();
        b.consume(6);
        b.on_idle();
        assert_eq!(b.capacity(), 0);
        assert_eq!(&hello[..], b"hello");
        b.append(b"next");
        assert_eq!(b.bytes(), b"next");
    }
}
