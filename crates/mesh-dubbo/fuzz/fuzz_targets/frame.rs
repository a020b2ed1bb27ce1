//! Frames arriving in arbitrary pieces, then every whole frame's body decoded and round-tripped.
//!
//! Input layout: byte 0 chooses how the rest is split into reads, the rest is the byte stream.
//! * `0x00`: one read of everything;
//! * `0x01..=0x7f`: reads of exactly that many bytes;
//! * `0x80..=0xff`: reads of pseudo-random size in `1..=2^(b & 15)`, seeded by the byte.
//!
//! Checked: `decode_frame` consumes nothing unless it returns a frame, `NeedMore(n)` has `n > 0` and is
//! exact, a frame's header writes back to the bytes it came from and its body has the announced length.
//! Decoding a body allocates at most `ALLOC_PER_INPUT_BYTE` bytes per body byte (plus a fixed allowance).
//! A body that decodes is unchanged by `Body::into_owned`, and is re-encoded with the matching
//! `Codec::encode_*`; the result must be one frame that decodes to an equal body (hessian2: doubles bit for
//! bit, and re-encoding that gives the same bytes; fastjson: doubles within a few ULPs, see
//! `mesh_dubbo_fuzz::Floats`).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mesh_dubbo::frame::{DEFAULT_MAX_BODY, HEADER_LEN};
use mesh_dubbo::hessian::DEFAULT_MAX_DEPTH;
use mesh_dubbo::{Body, Codec, Decoded, Frame, Header, Serialization};
use mesh_dubbo_fuzz::alloc::measure;
use mesh_dubbo_fuzz::{body_eq, check_amplification, Floats, XorShift};

/// Small enough that the fuzzer reaches the limit, large enough for real bodies.
const MAX_BODY: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, stream)) = data.split_first() else {
        return;
    };
    let codec = Codec {
        max_body: MAX_BODY,
        max_depth: DEFAULT_MAX_DEPTH,
    };
    let mut rng = XorShift::new(ctl);
    let mut next_len = move || -> usize {
        match ctl {
            0 => usize::MAX,
            1..=0x7f => usize::from(ctl),
            _ => 1 + (rng.next_u32() as usize & ((1usize << (ctl & 15)) - 1)),
        }
    };

    let mut buf = BytesMut::new();
    let mut off = 0;
    let mut calls = 0u32;
    'feed: while off < stream.len() {
        let n = next_len().min(stream.len() - off);
        buf.extend_from_slice(&stream[off..off + n]);
        off += n;
        loop {
            let len_before = buf.len();
            let head_before: Option<[u8; HEADER_LEN]> = buf.first_chunk().copied();
            calls += 1;
            // Exercise both entry points; they must agree (the Codec one is a thin wrapper).
            let res = if calls.is_multiple_of(2) {
                codec.decode_frame(&mut buf)
            } else {
                mesh_dubbo::decode_frame(&mut buf, MAX_BODY)
            };
            match res {
                Ok(Decoded::Frame(frame)) => {
                    let head = head_before.expect("a frame from fewer than 16 bytes");
                    assert_eq!(
                        buf.len(),
                        len_before - HEADER_LEN - frame.body.len(),
                        "frame consumed wrong length"
                    );
                    check_frame(&codec, &head, &frame);
                }
                Ok(Decoded::NeedMore(more)) => {
                    assert!(more > 0, "NeedMore(0)");
                    assert_eq!(buf.len(), len_before, "NeedMore consumed bytes");
                    let want = match head_before {
                        None => HEADER_LEN,
                        Some(h) => HEADER_LEN + u32::from_be_bytes([h[12], h[13], h[14], h[15]]) as usize,
                    };
                    assert_eq!(len_before + more, want, "NeedMore({more}) is not exact");
                    break;
                }
                Err(_) => {
                    assert_eq!(buf.len(), len_before, "an error consumed bytes");
                    // The connection would be closed here.
                    break 'feed;
                }
            }
        }
    }
});

fn check_frame(codec: &Codec, head: &[u8; HEADER_LEN], frame: &Frame) {
    let header = frame.header;
    let mut w = BytesMut::new();
    header.write(&mut w);
    assert_eq!(&w[..], &head[..], "header does not write back to its bytes");
    assert_eq!(frame.body.len(), header.body_len as usize);
    assert!(frame.body.len() <= MAX_BODY);

    let (decoded, peak) = measure(|| codec.decode_body(&header, &frame.body));
    check_amplification(
        header.serialization().map_or("body", |s| s.name()),
        frame.body.len(),
        peak,
    );
    let Ok(body) = decoded else { return };
    assert!(
        body_eq(&body.clone().into_owned(), &body, Floats::Bits),
        "into_owned changed the body"
    );
    let ser = header
        .serialization()
        .expect("a body decoded under an unknown serialization");
    // Re-encoding may legitimately grow a body (4-byte UTF-8 becomes CESU-8, `1e2` becomes `100.0`), so the
    // second leg uses the production default limit, far above what a 64 KiB body can grow to.
    let big = Codec {
        max_body: DEFAULT_MAX_BODY,
        ..*codec
    };
    let e1 = encode(&big, &header, ser, &body);
    let (h2, b2) = single_frame(&big, &e1);
    assert_eq!(h2.id, header.id);
    assert_eq!(h2.is_request(), header.is_request());
    assert_eq!(h2.serialization_id(), header.serialization_id());
    let body2 = match big.decode_body(&h2, &b2) {
        Ok(b) => b,
        Err(e) => panic!(
            "re-encoded body does not decode: {e}\nfirst: {body:?}\nbytes: {:02x?}",
            &e1[..]
        ),
    };
    match ser {
        Serialization::Hessian2 => {
            assert!(
                body_eq(&body, &body2, Floats::Bits),
                "hessian2 round trip changed the body\nfirst: {body:?}\nsecond: {body2:?}"
            );
            // Fixed point: encoding is deterministic, so the second encoding is byte-identical.
            let e2 = encode(&big, &h2, ser, &body2);
            assert_eq!(e1, e2, "hessian2 re-encoding is not a fixed point");
        }
        Serialization::FastJson => {
            assert!(
                body_eq(&body, &body2, Floats::Close),
                "fastjson round trip changed the body\nfirst: {body:?}\nsecond: {body2:?}"
            );
            // Every encode of a decoded fastjson body must itself decode.
            let e2 = encode(&big, &h2, ser, &body2);
            let (h3, b3) = single_frame(&big, &e2);
            let body3 = big
                .decode_body(&h3, &b3)
                .expect("second fastjson re-encode does not decode");
            assert!(body_eq(&body2, &body3, Floats::Close));
        }
    }
}

fn encode(codec: &Codec, header: &Header, ser: Serialization, body: &Body<'_>) -> BytesMut {
    let mut buf = BytesMut::new();
    let res = match body {
        Body::Request(r) => codec.encode_request_message(&mut buf, *header, r),
        Body::Response(r) => codec.encode_response(&mut buf, header.id, ser, r),
        Body::Event(e) => codec.encode_event(&mut buf, *header, e),
    };
    if let Err(e) = res {
        panic!("a decoded body does not re-encode: {e}\nbody: {body:?}");
    }
    buf
}

fn single_frame(codec: &Codec, bytes: &BytesMut) -> (Header, bytes::Bytes) {
    let mut b = bytes.clone();
    match codec.decode_frame(&mut b) {
        Ok(Decoded::Frame(f)) => {
            assert!(b.is_empty(), "re-encoded frame has trailing bytes");
            (f.header, f.body)
        }
        other => panic!("re-encoded frame does not decode as one frame: {other:?}"),
    }
}
