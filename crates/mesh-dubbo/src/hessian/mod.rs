//! Hessian 2.0 ("hessian2", Dubbo serialization id 2) as Dubbo's hessian-lite writes it.

mod decode;
mod encode;

pub use decode::{Decoder, DEFAULT_MAX_DEPTH};
pub use encode::Encoder;

#[cfg(test)]
mod tests;
