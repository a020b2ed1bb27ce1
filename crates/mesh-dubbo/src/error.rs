//! The codec's error type.

/// Everything that can be wrong with bytes handed to the codec, or with a message handed to the encoder.
///
/// Decode errors describe the input (they are the peer's fault); encode errors describe the caller's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("bad magic 0x{0:04x} (expected 0xdabb)")]
    BadMagic(u16),
    #[error("frame body of {len} bytes exceeds the limit of {max} bytes")]
    BodyTooLarge { len: u64, max: usize },
    #[error("unsupported serialization id {0}")]
    UnsupportedSerialization(u8),
    #[error("truncated {what}: needs {needed} more bytes at offset {at}")]
    Truncated {
        what: &'static str,
        at: usize,
        needed: usize,
    },
    #[error("unexpected hessian tag 0x{tag:02x} at offset {at} while reading {what}")]
    UnexpectedTag { tag: u8, at: usize, what: &'static str },
    #[error("nesting deeper than {0} levels")]
    TooDeep(usize),
    #[error("{what} reference {index} out of range ({count} defined) at offset {at}")]
    BadReference {
        what: &'static str,
        index: i64,
        count: usize,
        at: usize,
    },
    #[error("invalid length {len} for {what} at offset {at}")]
    BadLength { what: &'static str, len: i64, at: usize },
    #[error("invalid UTF-8 in string at offset {0}")]
    BadUtf8(usize),
    #[error("invalid {field}: expected {expected}, found {found}")]
    BadField {
        field: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    #[error("unknown response flag {0}")]
    BadResultFlag(i64),
    #[error("invalid JVM type descriptor {desc:?} at offset {at}")]
    BadDescriptor { desc: String, at: usize },
    #[error("{count} arguments for a descriptor of {expected}")]
    ArgumentCount { count: usize, expected: usize },
    #[error("fastjson: {0}")]
    Json(String),
    #[error("cannot encode {0}")]
    Unencodable(&'static str),
}

impl CodecError {
    pub(crate) fn truncated(what: &'static str, at: usize, needed: usize) -> Self {
        CodecError::Truncated { what, at, needed }
    }
}
