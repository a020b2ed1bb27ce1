//! Dubbo 2 wire codec, free of IO: frames, Hessian 2.0 and fastjson (id 6).
//!
//! * [`frame`]: the 16-byte header; [`frame::decode_frame`] returns a whole frame or "need N more bytes"
//!   and rejects bad magic and oversize bodies before allocating; [`frame::encode_frame`] patches the length.
//! * [`message`]: requests, responses and events over either serialization, through [`Codec`].
//! * [`hessian`]: the whole Hessian 2.0 value grammar, decoded into [`Value`] (borrowing strings from the
//!   body when it can) and encoded back in the forms Java's hessian-lite writes.
//! * [`fastjson`]: one JSON text per line; [`descriptor`]: JVM parameter descriptors;
//!   [`java_string_hash`]: Java's `String.hashCode`.

pub mod descriptor;
mod error;
pub mod fastjson;
pub mod frame;
mod hash;
pub mod hessian;
pub mod message;
mod value;

pub use error::CodecError;
pub use frame::{decode_frame, encode_frame, Decoded, Frame, Header, Serialization, Status};
pub use hash::java_string_hash;
pub use message::{Attachments, Body, Codec, Event, Request, RequestHead, Response, RpcResult};
pub use value::{List, Map, Object, Value};
