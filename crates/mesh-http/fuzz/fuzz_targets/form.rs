//! Arbitrary bytes as a form body.
//!
//! Checked: `parse_form` never panics and its peak allocation stays within a small multiple of the input;
//! an invocation has a non-empty interface and method, a valid descriptor with one argument per type, and
//! borrowed values inside the body; it re-encodes (`encode_form`) to a body that decodes to the same
//! invocation; errors are 400, keep the connection, and write a well-formed response without allocating.
//! Both the default limits and small ones (8 fields) are used.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_http::Limits;
use mesh_http_fuzz::{check_form, SMALL};

fuzz_target!(|data: &[u8]| {
    check_form(data, &Limits::default());
    check_form(data, &SMALL);
});
