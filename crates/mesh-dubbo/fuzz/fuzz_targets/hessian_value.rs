//! Arbitrary bytes read as a sequence of Hessian 2 values by one `Decoder` (as a frame body is: class
//! definitions, the type table and back-reference numbering are shared between the values), then written
//! back by one `Encoder`.
//!
//! Checked: decoding allocates at most `ALLOC_PER_INPUT_BYTE` bytes per input byte (plus a fixed allowance),
//! whether it succeeds or fails; every value that decodes encodes without error; the encoding decodes to the same values
//! (structurally, doubles bit for bit so NaN payloads and `-0.0` count) with no bytes left over; encoding
//! those gives the same bytes again (fixed point).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mesh_dubbo::hessian::{Decoder, Encoder};
use mesh_dubbo::Value;
use mesh_dubbo_fuzz::alloc::measure;
use mesh_dubbo_fuzz::{check_amplification, value_eq, Floats};

/// Values read per input at most (each read consumes at least one byte, so this only bounds work).
const MAX_VALUES: usize = 64;

fuzz_target!(|data: &[u8]| {
    let (values, peak) = measure(|| {
        let mut d = Decoder::new(data);
        let mut values = Vec::new();
        while values.len() < MAX_VALUES && !d.is_empty() {
            match d.read_value() {
                Ok(v) => values.push(v),
                Err(_) => break,
            }
        }
        values
    });
    check_amplification("hessian", data.len(), peak);
    if values.is_empty() {
        return;
    }

    let e1 = encode(&values);
    let mut d2 = Decoder::new(&e1);
    let mut again = Vec::with_capacity(values.len());
    for v in &values {
        match d2.read_value() {
            Ok(v2) => {
                assert!(
                    value_eq(v, &v2, Floats::Bits),
                    "round trip changed a value\nfirst: {v:?}\nsecond: {v2:?}"
                );
                again.push(v2);
            }
            Err(e) => panic!(
                "encoded value does not decode: {e}\nvalue: {v:?}\nbytes: {:02x?}",
                &e1[..]
            ),
        }
    }
    assert!(d2.is_empty(), "encoding has trailing bytes");
    let e2 = encode(&again);
    assert_eq!(e1, e2, "re-encoding is not a fixed point");
});

fn encode(values: &[Value<'_>]) -> BytesMut {
    let mut buf = BytesMut::new();
    let mut e = Encoder::new(&mut buf);
    for v in values {
        if let Err(err) = e.write_value(v) {
            panic!("a decoded value does not encode: {err}\nvalue: {v:?}");
        }
    }
    buf
}
