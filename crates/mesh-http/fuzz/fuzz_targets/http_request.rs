//! Arbitrary bytes as a connection's input: pipelined requests parsed one after another.
//!
//! Input layout: byte 0 picks the limits (even: small ones the fuzzer can reach, odd: the defaults), the
//! rest is the byte stream.
//!
//! Checked for every request: each prefix of the buffer (all of them up to 256 bytes, sampled beyond) gives
//! `Partial` or exactly the whole buffer's answer, and `send_continue` never turns off again; a `Partial`
//! never holds more than `max_request_bytes`; `parse_request` allocates nothing but an owned body of
//! exactly its size; errors close the connection and write a well-formed response without allocating; a
//! complete request's body goes through `parse_form` (see the `form` target) and a 200 response.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_http::Limits;
use mesh_http_fuzz::{check_request_stream, SMALL};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    let limits = if ctl & 1 == 0 { SMALL } else { Limits::default() };
    check_request_stream(input, &limits);
});
