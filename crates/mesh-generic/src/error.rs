//! The crate's error type.

/// Why a type name, an argument or an answer could not be mapped.
///
/// `Display` is one line that names what was wrong and never echoes the caller's value: it is safe to send
/// back as an HTTP error body. Type names in it are the parsed (validated) Java names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TypeError {
    /// A Java type name or descriptor that does not parse.
    #[error("bad type name: {0}")]
    BadTypeName(&'static str),
    /// More parameter types than a Java method can have.
    #[error("more than {max} parameter types")]
    TooManyTypes {
        /// The limit.
        max: usize,
    },
    /// A value that does not fit its declared type.
    #[error("{java_type}: {problem}")]
    Mismatch {
        /// The declared type's Java name.
        java_type: String,
        /// What is wrong ("out of range", "expected a JSON string", ...).
        problem: &'static str,
    },
    /// Text that is not JSON where JSON is expected (serde_json's reason, with line and column).
    #[error("invalid JSON: {0}")]
    Json(String),
    /// Values nested deeper than the limit.
    #[error("nested deeper than {max} levels")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// An answer that would render to more JSON nodes than the limit (shared references re-expanded).
    #[error("answer larger than {max} JSON values")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// An answer whose strings would render to more bytes than the limit (shared references re-expanded).
    #[error("answer text longer than {max} bytes")]
    TooLong {
        /// The limit.
        max: usize,
    },
}

impl TypeError {
    pub(crate) fn mismatch(java_type: &crate::JavaType, problem: &'static str) -> Self {
        TypeError::Mismatch {
            java_type: java_type.java_name(),
            problem,
        }
    }
}
