//! The crate's error type: every way a request can be refused, with its HTTP status.

/// Why a request was refused.
///
/// [`status`](HttpError::status) is the HTTP status to answer with, `Display` is a one-line reason
/// (never containing bytes from the request, so it is safe to send back as a `text/plain` body), and
/// [`closes_connection`](HttpError::closes_connection) says whether the connection must be closed after
/// the answer (framing errors: the next request cannot be found).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    // ---- framing (from `parse_request`): the connection cannot continue ----
    /// The request line is malformed (method, target or version).
    #[error("request line: {0}")]
    RequestLine(&'static str),
    /// A header line is malformed.
    #[error("header: {0}")]
    Header(&'static str),
    /// The head is not complete within `max_head_bytes`.
    #[error("request head larger than {max} bytes")]
    HeadTooLarge {
        /// The limit.
        max: usize,
    },
    /// More header fields than `max_headers`.
    #[error("more than {max} header fields")]
    TooManyHeaders {
        /// The limit.
        max: usize,
    },
    /// A `Content-Length` that is not a decimal number, or several different ones.
    #[error("invalid Content-Length")]
    InvalidContentLength,
    /// Both `Content-Length` and `Transfer-Encoding`: the framing is ambiguous.
    #[error("both Content-Length and Transfer-Encoding")]
    ContentLengthAndTransferEncoding,
    /// A `Transfer-Encoding` that is malformed, repeats `chunked`, or appears in an HTTP/1.0 request.
    #[error("invalid Transfer-Encoding")]
    InvalidTransferEncoding,
    /// A transfer coding other than `chunked`.
    #[error("unsupported Transfer-Encoding")]
    UnsupportedTransferEncoding,
    /// The body (or, for chunked bodies, the encoded body) is over the limit.
    #[error("request body larger than {max} bytes")]
    BodyTooLarge {
        /// The limit on the (decoded) body.
        max: usize,
    },
    /// A malformed chunked body ("bad chunk size", "bad chunk extension", "missing CRLF after chunk data",
    /// "bad trailer").
    #[error("{0}")]
    Chunked(&'static str),
    /// A header other than the framing ones that this crate must read is malformed ("invalid Content-Type").
    #[error("invalid {0}")]
    InvalidHeader(&'static str),

    // ---- content (from `parse_form`): the request was framed fine, the connection may go on ----
    /// A required form field is missing.
    #[error("missing form field: {0}")]
    MissingField(&'static str),
    /// A form field that must appear once appears again.
    #[error("duplicate form field: {0}")]
    DuplicateField(&'static str),
    /// A form field (or a field name) does not decode: bad `%XX` escape, or not UTF-8.
    #[error("form field {field}: {problem}")]
    FormField {
        /// The field's name (`"field name"` when the name itself is the problem, `"unknown field"` for others).
        field: &'static str,
        /// "invalid percent-escape" or "invalid UTF-8".
        problem: &'static str,
    },
    /// More form fields than `max_form_fields`.
    #[error("more than {max} form fields")]
    TooManyFormFields {
        /// The limit.
        max: usize,
    },
    /// `parameterTypesString` is neither a JVM descriptor string nor a list of Java type names.
    #[error("parameterTypesString: {0}")]
    ParameterTypes(&'static str),
    /// The number of `parameter` fields differs from the number of parameter types.
    #[error("{args} parameters for {types} parameter types")]
    ParameterCount {
        /// `parameter` fields received.
        args: usize,
        /// Types in `parameterTypesString`.
        types: usize,
    },
    /// An argument that does not fit its declared type (form `parameter` or JSON value). `index` counts from
    /// 0, as Dubbo's `arguments[N]`; `java_type` is the parsed (validated) type name; `problem` never
    /// holds the value.
    #[error("parameter {index} ({java_type}): {problem}")]
    Argument {
        /// Which argument, from 0.
        index: usize,
        /// Its declared Java type.
        java_type: String,
        /// What is wrong with it ("out of range", "not base64", ...).
        problem: String,
    },
    /// A JSON generic call that cannot be made: a body that is not JSON or not one of the accepted shapes,
    /// types missing or not matching the values, a bad header.
    #[error("{0}")]
    JsonCall(String),
    /// The body is not `application/x-www-form-urlencoded`.
    #[error("unsupported Content-Type (expected application/x-www-form-urlencoded)")]
    UnsupportedMediaType,
}

impl HttpError {
    /// The HTTP status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::HeadTooLarge { .. } | HttpError::TooManyHeaders { .. } => 431,
            HttpError::BodyTooLarge { .. } => 413,
            HttpError::UnsupportedTransferEncoding => 501,
            HttpError::UnsupportedMediaType => 415,
            HttpError::RequestLine(_)
            | HttpError::Header(_)
            | HttpError::InvalidContentLength
            | HttpError::ContentLengthAndTransferEncoding
            | HttpError::InvalidTransferEncoding
            | HttpError::Chunked(_)
            | HttpError::InvalidHeader(_)
            | HttpError::MissingField(_)
            | HttpError::DuplicateField(_)
            | HttpError::FormField { .. }
            | HttpError::TooManyFormFields { .. }
            | HttpError::ParameterTypes(_)
            | HttpError::ParameterCount { .. }
            | HttpError::Argument { .. }
            | HttpError::JsonCall(_) => 400,
        }
    }

    /// Whether the connection must be closed after answering: true for every error `parse_request`
    /// returns (the end of the request, hence the start of the next, is unknown or the request is
    /// refused unread), false for errors about a well-framed request's content.
    pub fn closes_connection(&self) -> bool {
        match self {
            HttpError::RequestLine(_)
            | HttpError::Header(_)
            | HttpError::HeadTooLarge { .. }
            | HttpError::TooManyHeaders { .. }
            | HttpError::InvalidContentLength
            | HttpError::ContentLengthAndTransferEncoding
            | HttpError::InvalidTransferEncoding
            | HttpError::UnsupportedTransferEncoding
            | HttpError::BodyTooLarge { .. }
            | HttpError::Chunked(_)
            | HttpError::InvalidHeader(_) => true,
            HttpError::MissingField(_)
            | HttpError::DuplicateField(_)
            | HttpError::FormField { .. }
            | HttpError::TooManyFormFields { .. }
            | HttpError::ParameterTypes(_)
            | HttpError::ParameterCount { .. }
            | HttpError::Argument { .. }
            | HttpError::JsonCall(_)
            | HttpError::UnsupportedMediaType => false,
        }
    }
}
