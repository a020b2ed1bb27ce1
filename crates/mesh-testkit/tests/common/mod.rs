//! A blocking Dubbo client for the tests, built on `mesh_dubbo`.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::BytesMut;
use mesh_dubbo::{Body, Codec, Decoded, Frame, Header, RequestHead, Serialization, Value};
use mesh_testkit::sim::{encode_hash_request, PARAM_TYPES, SERVICE};

pub struct Client {
    pub stream: TcpStream,
    buf: BytesMut,
    pub codec: Codec,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect to the sim");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
            codec: Codec::default(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// The next frame, or `None` when the server closed the connection.
    pub fn try_recv(&mut self) -> Option<Frame> {
        loop {
            if let Decoded::Frame(f) = self.codec.decode_frame(&mut self.buf).expect("well-formed frame") {
                return Some(f);
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = match self.stream.read(&mut chunk) {
                Ok(n) => n,
                // A server closing with unread input resets the connection: closed as well.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
                Err(e) => panic!("read (timeout 10 s): {e}"),
            };
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub fn recv(&mut self) -> Frame {
        self.try_recv().expect("a frame before the connection closed")
    }

    /// The next frame with its decoded body (detached).
    pub fn recv_body(&mut self) -> (Header, Body<'static>) {
        let f = self.recv();
        let body = self
            .codec
            .decode_body(&f.header, &f.body)
            .expect("decodable body")
            .into_owned();
        (f.header, body)
    }
}

pub fn hash_request(id: u64, ser: Serialization, arg: &str) -> BytesMut {
    let mut buf = BytesMut::new();
    encode_hash_request(&Codec::default(), &mut buf, id, ser, arg).expect("encode");
    buf
}

/// A request with every head field chosen by the test.
#[allow(clippy::too_many_arguments)] // one knob per wire field, on purpose
pub fn request(
    id: u64,
    ser: Serialization,
    dubbo_version: &str,
    service: &str,
    method: &str,
    param_types: &str,
    args: &[Value<'_>],
    two_way: bool,
) -> BytesMut {
    let mut buf = BytesMut::new();
    let head = RequestHead {
        dubbo_version,
        service,
        version: None,
        method,
        param_types,
    };
    let path = Value::str(service);
    Codec::default()
        .encode_request(
            &mut buf,
            Header::request(id, ser, two_way),
            &head,
            args,
            [("path", &path)],
        )
        .expect("encode");
    buf
}

pub fn hash_request_version(id: u64, ser: Serialization, version: &str, arg: &str) -> BytesMut {
    request(
        id,
        ser,
        version,
        SERVICE,
        "hash",
        PARAM_TYPES,
        &[Value::str(arg)],
        true,
    )
}
