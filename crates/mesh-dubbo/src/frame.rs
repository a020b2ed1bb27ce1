//! The 16-byte Dubbo frame header and a sans-IO frame decoder / encoder.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::CodecError;

pub const MAGIC: u16 = 0xdabb;
pub const HEADER_LEN: usize = 16;
/// Dubbo's default `payload` limit.
pub const DEFAULT_MAX_BODY: usize = 8 * 1024 * 1024;

pub const FLAG_REQUEST: u8 = 0x80;
pub const FLAG_TWO_WAY: u8 = 0x40;
pub const FLAG_EVENT: u8 = 0x20;
pub const SERIALIZATION_MASK: u8 = 0x1f;

/// The serializations this codec speaks (the frame flag's low five bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Serialization {
    /// Hessian 2.0, id 2: the default of every Dubbo.
    Hessian2,
    /// fastjson, id 6: one JSON text per line.
    FastJson,
}

impl Serialization {
    pub const fn id(self) -> u8 {
        match self {
            Serialization::Hessian2 => 2,
            Serialization::FastJson => 6,
        }
    }

    pub fn from_id(id: u8) -> Result<Self, CodecError> {
        match id {
            2 => Ok(Serialization::Hessian2),
            6 => Ok(Serialization::FastJson),
            other => Err(CodecError::UnsupportedSerialization(other)),
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Serialization::Hessian2 => "hessian2",
            Serialization::FastJson => "fastjson",
        }
    }
}

/// A response status byte. Unknown values are kept, not dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(pub u8);

impl Status {
    pub const OK: Status = Status(20);
    pub const SERIALIZATION_ERROR: Status = Status(25);
    pub const CLIENT_TIMEOUT: Status = Status(30);
    pub const SERVER_TIMEOUT: Status = Status(31);
    pub const CHANNEL_INACTIVE: Status = Status(35);
    pub const BAD_REQUEST: Status = Status(40);
    pub const BAD_RESPONSE: Status = Status(50);
    pub const SERVICE_NOT_FOUND: Status = Status(60);
    pub const SERVICE_ERROR: Status = Status(70);
    pub const SERVER_ERROR: Status = Status(80);
    pub const CLIENT_ERROR: Status = Status(90);
    pub const SERVER_THREADPOOL_EXHAUSTED: Status = Status(100);

    pub const fn is_ok(self) -> bool {
        self.0 == 20
    }

    /// Dubbo's name for the status, `UNKNOWN` for values Dubbo does not define.
    pub const fn name(self) -> &'static str {
        match self.0 {
            20 => "OK",
            25 => "SERIALIZATION_ERROR",
            30 => "CLIENT_TIMEOUT",
            31 => "SERVER_TIMEOUT",
            35 => "CHANNEL_INACTIVE",
            40 => "BAD_REQUEST",
            50 => "BAD_RESPONSE",
            60 => "SERVICE_NOT_FOUND",
            70 => "SERVICE_ERROR",
            80 => "SERVER_ERROR",
            90 => "CLIENT_ERROR",
            100 => "SERVER_THREADPOOL_EXHAUSTED_ERROR",
            _ => "UNKNOWN",
        }
    }
}

/// A frame header. `body_len` is filled in by the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub flag: u8,
    pub status: Status,
    /// Java writes a signed long; ids are opaque, so they are kept as the same 64 bits.
    pub id: u64,
    pub body_len: u32,
}

impl Header {
    /// A request header (`0x80 | two-way? 0x40 | serialization`).
    pub const fn request(id: u64, ser: Serialization, two_way: bool) -> Self {
        let flag = FLAG_REQUEST | if two_way { FLAG_TWO_WAY } else { 0 } | ser.id();
        Header {
            flag,
            status: Status(0),
            id,
            body_len: 0,
        }
    }

    /// A response header (flag = serialization id only, as Java writes it).
    pub const fn response(id: u64, ser: Serialization, status: Status) -> Self {
        Header {
            flag: ser.id(),
            status,
            id,
            body_len: 0,
        }
    }

    pub const fn is_request(&self) -> bool {
        self.flag & FLAG_REQUEST != 0
    }

    pub const fn is_two_way(&self) -> bool {
        self.flag & FLAG_TWO_WAY != 0
    }

    pub const fn is_event(&self) -> bool {
        self.flag & FLAG_EVENT != 0
    }

    pub const fn serialization_id(&self) -> u8 {
        self.flag & SERIALIZATION_MASK
    }

    pub fn serialization(&self) -> Result<Serialization, CodecError> {
        Serialization::from_id(self.serialization_id())
    }

    /// Parses the 16 header bytes (magic checked; body length not yet checked against a limit).
    pub fn parse(b: &[u8; HEADER_LEN]) -> Result<Self, CodecError> {
        let mut b = &b[..];
        let magic = b.get_u16();
        if magic != MAGIC {
            return Err(CodecError::BadMagic(magic));
        }
        Ok(Header {
            flag: b.get_u8(),
            status: Status(b.get_u8()),
            id: b.get_u64(),
            body_len: b.get_u32(),
        })
    }

    pub fn write(&self, buf: &mut BytesMut) {
        buf.put_u16(MAGIC);
        buf.put_u8(self.flag);
        buf.put_u8(self.status.0);
        buf.put_u64(self.id);
        buf.put_u32(self.body_len);
    }
}

/// A whole frame: its header and its body, split off the read buffer without copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub header: Header,
    pub body: Bytes,
}

/// What [`decode_frame`] found in the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Frame(Frame),
    /// The buffer holds a partial frame: at least this many more bytes are needed.
    NeedMore(usize),
}

/// Takes one frame off the front of `buf`, or says how many more bytes are needed.
///
/// The header is checked (magic, body length against `max_body`) as soon as its 16 bytes are there, before
/// any room is reserved for the body, so a hostile length costs nothing. On error nothing is consumed;
/// the connection should be closed.
pub fn decode_frame(buf: &mut BytesMut, max_body: usize) -> Result<Decoded, CodecError> {
    let Some(head) = buf.first_chunk::<HEADER_LEN>() else {
        if buf.len() >= 2 && buf[..2] != MAGIC.to_be_bytes() {
            return Err(CodecError::BadMagic(u16::from_be_bytes([buf[0], buf[1]])));
        }
        return Ok(Decoded::NeedMore(HEADER_LEN - buf.len()));
    };
    let header = Header::parse(head)?;
    let len = header.body_len as usize;
    // Java writes an i32: a length with the top bit set is negative, and over any sane limit anyway.
    if len > max_body || header.body_len > i32::MAX as u32 {
        return Err(CodecError::BodyTooLarge {
            len: u64::from(header.body_len),
            max: max_body,
        });
    }
    if buf.len() < HEADER_LEN + len {
        return Ok(Decoded::NeedMore(HEADER_LEN + len - buf.len()));
    }
    buf.advance(HEADER_LEN);
    let body = buf.split_to(len).freeze();
    Ok(Decoded::Frame(Frame { header, body }))
}

/// Writes a frame into `buf`: the header, then whatever `body` writes, then patches the length in.
///
/// If the body fails to encode or exceeds `max_body`, `buf` is truncated back to where it was and the
/// error is returned: nothing half-written is left to be sent.
pub fn encode_frame<F>(buf: &mut BytesMut, header: Header, max_body: usize, body: F) -> Result<(), CodecError>
where
    F: FnOnce(&mut BytesMut) -> Result<(), CodecError>,
{
    let start = buf.len();
    header.write(buf);
    if let Err(e) = body(buf) {
        buf.truncate(start);
        return Err(e);
    }
    let len = buf.len() - start - HEADER_LEN;
    if len > max_body {
        buf.truncate(start);
        return Err(CodecError::BodyTooLarge {
            len: len as u64,
            max: max_body,
        });
    }
    buf[start + 12..start + HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}
