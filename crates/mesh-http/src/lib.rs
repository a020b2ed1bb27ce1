//! Pure HTTP/1.1 front of the consumer agent: request framing on `httparse`, form decoding into a Dubbo
//! invocation, and response writing. No IO, no runtime, no clock: bytes in, values out.
//!
//! * [`parse_request`] frames one request at the start of a buffer: [`Parse::Complete`] with the request and
//!   the number of bytes it used ([`HttpRequest::consumed`], so pipelined requests are parsed one after
//!   another from `&buf[consumed..]`), or [`Parse::Partial`] (read more; `send_continue` says when to answer
//!   [`CONTINUE`] first). `Content-Length` and chunked bodies; limits on head, header count and body are
//!   enforced before anything is allocated.
//! * [`parse_form`] decodes an `application/x-www-form-urlencoded` body into an [`Invocation`], each
//!   argument encoded by its declared type, borrowing every string that needs no percent-decoding;
//!   [`encode_form`] writes one (for clients and tests).
//! * [`parse_json_call`] reads the JSON generic-call API (`POST /{application}/{interface}/{method}`,
//!   dubbo-go-pixiu's shapes) into an [`Invocation`] (typed arguments, or Dubbo's `$invoke`), and
//!   [`json_answer::render_json`] turns the answer into JSON. The type mapping itself is the `mesh-generic`
//!   crate, re-exported as [`generic`].
//! * [`answer::render`] turns a provider's Dubbo answer into the HTTP status and body.
//! * [`write_response`], [`write_error`], [`write_status`] append a whole response to a `BytesMut`.
//!
//! Every refusal is an [`HttpError`]: it knows its status code, its one-line reason (its `Display`) and
//! whether the connection has to be closed after it.
//!
//! A connection's loop, answering pipelined requests in order:
//!
//! ```
//! use bytes::BytesMut;
//! use mesh_http::{parse_form, parse_request, write_error, write_response_with, Limits, Parse, CONTINUE};
//!
//! let form = "interface=a.B&method=hash&parameterTypesString=Ljava%2Flang%2FString%3B&parameter=abc";
//! let input = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n{form}GET / HTTP/1.1\r\n\r\nPOST", form.len());
//! let limits = Limits::default();
//! let mut out = BytesMut::new();
//! let mut off = 0;
//! let mut close = false;
//! loop {
//!     match parse_request(&input.as_bytes()[off..], &limits) {
//!         Ok(Parse::Complete(req)) => {
//!             match parse_form(&req.body, &limits) {
//!                 // (the agent would call the provider here and answer when the result comes back)
//!                 Ok(inv) => write_response_with(&mut out, 200, "text/plain", inv.args[0].as_str().unwrap_or("").as_bytes(), req.response_connection()),
//!                 Err(e) => write_error(&mut out, &e, req.keep_alive),
//!             }
//!             off += req.consumed;
//!             if !req.keep_alive {
//!                 close = true;
//!                 break;
//!             }
//!         }
//!         Ok(Parse::Partial { send_continue }) => {
//!             if send_continue {
//!                 out.extend_from_slice(CONTINUE); // once per request
//!             }
//!             break; // read more, then parse again from `off`
//!         }
//!         Err(e) => {
//!             write_error(&mut out, &e, false);
//!             close = true;
//!             break;
//!         }
//!     }
//! }
//! let out = String::from_utf8(out.to_vec()).unwrap();
//! assert!(out.starts_with("HTTP/1.1 200 OK\r\n") && out.contains("\r\n\r\nabcHTTP/1.1 400 Bad Request"));
//! assert!(!close && &input[off..] == "POST");
//! ```
#![forbid(unsafe_code)]

pub mod answer;
mod chunked;
mod error;
mod form;
pub mod json_answer;
mod json_call;
mod request;
mod response;

pub use error::HttpError;
pub use form::{
    encode_form, parse_form, Invocation, MAX_ATTACHMENTS, MAX_ATTACHMENT_NAME, RESERVED_ATTACHMENTS,
};
pub use json_call::{
    json_call_path, parse_json_call, JsonCall, ATTACHMENT_HEADER_PREFIX, FORCE_TAG_HEADER, GENERIC_HEADER,
    GROUP_HEADER, TAG_HEADER, TYPES_HEADER, VERSION_HEADER,
};
/// The type mapping the form and the JSON API use (for the agent's routing view of typed arguments).
pub use mesh_generic as generic;
pub use request::{parse_request, HttpRequest, Limits, Parse};
pub use response::{
    reason_phrase, write_error, write_response, write_response_headers, write_response_with, write_status,
    write_status_with, ConnectionHeader, CONTINUE,
};
