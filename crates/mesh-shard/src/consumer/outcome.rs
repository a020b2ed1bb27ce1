//! How a call ended, whatever protocol brought it in: the provider's answer (its frame as the provider
//! agent sent it, status decoded in its header) or the agent's own failure (a kind and a reason). The HTTP
//! server renders it as an HTTP answer ([`CallOutcome::to_http`]); the Dubbo port writes it back as a
//! Dubbo frame with the client's request id (`dubbo_answer::write_outcome`).
//!
//! | failure kind | HTTP | Dubbo status |
//! |---|---|---|
//! | `RateLimited` (over the service's or method's rate limit) | 429 | 100 SERVER_THREADPOOL_EXHAUSTED_ERROR |
//! | `NoProvider` (the service key has no provider, nothing tried) | 404 | 70 SERVICE_ERROR |
//! | `Unavailable` (no snapshot yet, routing rules leave none, every provider unreachable) | 503 | 70 SERVICE_ERROR |
//! | `Overloaded` (every provider full: queue full or queue timeout) | 503 | 100 SERVER_THREADPOOL_EXHAUSTED_ERROR |
//! | `Timeout` (no answer within the call's timeout) | 504 | 31 SERVER_TIMEOUT |
//! | `ConnectionLost` (the connection died with the call on it) | 502 | 80 SERVER_ERROR |
//! | `BadAnswer` (the provider's answer cannot be decoded) | 502 | 50 BAD_RESPONSE |
//! | `BadRequest` (the request cannot be encoded) | 400 | 40 BAD_REQUEST |
//! | `TooLarge` (the request exceeds the frame limit) | 413 | 40 BAD_REQUEST |

use std::borrow::Cow;

use mesh_dubbo::{Codec, CodecError, Frame, Status};
use mesh_http::answer::{render, HttpAnswer};

use crate::error::CallError;

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// A provider answered, with any status (`frame.header.status`; 20 = OK). The frame is the provider
    /// agent's: its request id is the upstream connection's, its serialization the request's.
    Answered(Frame),
    /// The agent answers itself: no provider answer to pass on.
    Failed(Failure),
}

/// The agent's own failure of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    /// One line for the caller (names the service key when the failure is about its providers).
    pub reason: Cow<'static, str>,
}

/// Why the agent answers a call itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Over the service's or method's rate limit.
    RateLimited,
    /// The registry lists no provider of the service key, and nothing was tried.
    NoProvider,
    /// No provider can be tried: no snapshot yet, the routing rules leave none, or every one was tried or
    /// is unreachable.
    Unavailable,
    /// Every provider is at its cap: the wait queue is full, or the call waited in it too long.
    Overloaded,
    /// No answer within the call's timeout.
    Timeout,
    /// The connection died with the call on it.
    ConnectionLost,
    /// The provider's answer cannot be decoded.
    BadAnswer,
    /// The request cannot be encoded.
    BadRequest,
    /// The request exceeds the frame size limit.
    TooLarge,
}

impl FailureKind {
    /// Its index in [`crate::metrics::ERROR_REASONS`] (the first nine, in this enum's order).
    pub fn error_reason(self) -> usize {
        self as usize
    }

    /// The HTTP status the consumer's HTTP server answers with.
    pub fn http_status(self) -> u16 {
        match self {
            FailureKind::RateLimited => 429,
            FailureKind::NoProvider => 404,
            FailureKind::Unavailable | FailureKind::Overloaded => 503,
            FailureKind::Timeout => 504,
            FailureKind::ConnectionLost | FailureKind::BadAnswer => 502,
            FailureKind::BadRequest => 400,
            FailureKind::TooLarge => 413,
        }
    }

    /// The Dubbo status the consumer's Dubbo port answers with: one a Dubbo client understands (no
    /// provider 70, timeout 31, overload 100).
    pub fn dubbo_status(self) -> Status {
        match self {
            FailureKind::NoProvider | FailureKind::Unavailable => Status::SERVICE_ERROR,
            FailureKind::RateLimited | FailureKind::Overloaded => Status::SERVER_THREADPOOL_EXHAUSTED,
            FailureKind::Timeout => Status::SERVER_TIMEOUT,
            FailureKind::ConnectionLost => Status::SERVER_ERROR,
            FailureKind::BadAnswer => Status::BAD_RESPONSE,
            FailureKind::BadRequest | FailureKind::TooLarge => Status::BAD_REQUEST,
        }
    }
}

impl CallOutcome {
    /// Why the call did not end in the provider's OK answer, as an index in
    /// [`crate::metrics::ERROR_REASONS`]; `None` when it did.
    pub fn error_reason(&self) -> Option<usize> {
        match self {
            CallOutcome::Answered(frame) => crate::metrics::provider_status_reason(frame.header.status.0),
            CallOutcome::Failed(f) => Some(f.kind.error_reason()),
        }
    }
}

impl Failure {
    pub fn new(kind: FailureKind, reason: impl Into<Cow<'static, str>>) -> Self {
        Failure {
            kind,
            reason: reason.into(),
        }
    }

    /// As the HTTP server answers it: the kind's status, the reason as the body.
    pub fn to_http(&self) -> HttpAnswer {
        HttpAnswer::new(self.kind.http_status(), self.reason.clone())
    }
}

impl From<&CallError> for FailureKind {
    /// What a failed attempt's error is to the caller.
    fn from(e: &CallError) -> Self {
        match e {
            CallError::Connect { .. } | CallError::BackingOff(_) => FailureKind::Unavailable,
            CallError::Timeout { .. } => FailureKind::Timeout,
            CallError::Closed(_) => FailureKind::ConnectionLost,
            CallError::BadAnswer { .. } => FailureKind::BadAnswer,
            CallError::Encode(CodecError::BodyTooLarge { .. }) => FailureKind::TooLarge,
            CallError::Encode(_) => FailureKind::BadRequest,
        }
    }
}

impl From<CallError> for Failure {
    fn from(e: CallError) -> Self {
        Failure::new(FailureKind::from(&e), e.to_string())
    }
}

impl CallOutcome {
    /// The HTTP answer (`text/plain`) of the challenge's form API: the provider's answer decoded with
    /// `codec` and rendered by [`mesh_http::answer::render`], or the failure's status and reason.
    pub fn to_http(self, codec: &Codec) -> HttpAnswer {
        match self {
            CallOutcome::Answered(frame) => render_frame(codec, &frame),
            CallOutcome::Failed(f) => HttpAnswer::new(f.kind.http_status(), f.reason),
        }
    }
}

/// A provider's answer frame as the HTTP answer of the form API.
pub(super) fn render_frame(codec: &Codec, frame: &Frame) -> HttpAnswer {
    render(codec.decode_body(&frame.header, &frame.body))
}

#[cfg(test)]
mod tests {
    #[test]
    fn failure_kinds_name_their_metrics_reason() {
        use crate::metrics::ERROR_REASONS;
        let kinds = [
            (FailureKind::RateLimited, "rate_limited"),
            (FailureKind::NoProvider, "no_provider"),
            (FailureKind::Unavailable, "unavailable"),
            (FailureKind::Overloaded, "overloaded"),
            (FailureKind::Timeout, "timeout"),
            (FailureKind::ConnectionLost, "connection_lost"),
            (FailureKind::BadAnswer, "bad_answer"),
            (FailureKind::BadRequest, "bad_request"),
            (FailureKind::TooLarge, "too_large"),
        ];
        for (kind, name) in kinds {
            assert_eq!(ERROR_REASONS[kind.error_reason()], name);
        }
    }

    use super::*;
    use std::net::SocketAddr;

    #[test]
    fn failures_map_to_http_and_to_the_dubbo_statuses_the_issue_names() {
        use FailureKind::*;
        let table = [
            (RateLimited, 429, 100),
            (NoProvider, 404, 70),
            (Unavailable, 503, 70),
            (Overloaded, 503, 100),
            (Timeout, 504, 31),
            (ConnectionLost, 502, 80),
            (BadAnswer, 502, 50),
            (BadRequest, 400, 40),
            (TooLarge, 413, 40),
        ];
        for (kind, http, dubbo) in table {
            assert_eq!(kind.http_status(), http, "{kind:?}");
            assert_eq!(kind.dubbo_status(), Status(dubbo), "{kind:?}");
        }
    }

    #[test]
    fn call_errors_keep_their_http_status_as_failures() {
        let addr: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let errors = [
            CallError::Connect {
                addr,
                source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            },
            CallError::BackingOff(addr),
            CallError::Closed(addr),
            CallError::Timeout { addr, ms: 5 },
            CallError::BadAnswer {
                addr,
                source: CodecError::BadMagic(0),
            },
            CallError::Encode(CodecError::BodyTooLarge { len: 9, max: 1 }),
            CallError::Encode(CodecError::BadMagic(0)),
        ];
        for e in errors {
            let (status, text) = (e.http_status(), e.to_string());
            let f = Failure::from(e);
            assert_eq!(f.to_http(), HttpAnswer::new(status, text));
        }
    }

    #[test]
    fn an_answer_renders_as_the_form_api_did() {
        let codec = Codec::default();
        let mut buf = bytes::BytesMut::new();
        let ok = mesh_dubbo::Response::Ok {
            result: mesh_dubbo::RpcResult::Value(mesh_dubbo::Value::Int(42)),
            attachments: None,
        };
        codec
            .encode_response(&mut buf, 3, mesh_dubbo::Serialization::Hessian2, &ok)
            .unwrap();
        let mesh_dubbo::Decoded::Frame(frame) = codec.decode_frame(&mut buf).unwrap() else {
            panic!("a whole frame");
        };
        assert_eq!(
            CallOutcome::Answered(frame).to_http(&codec),
            HttpAnswer::new(200, "42")
        );
        let failed = CallOutcome::Failed(Failure::new(FailureKind::NoProvider, "none for a.B"));
        assert_eq!(failed.to_http(&codec), HttpAnswer::new(404, "none for a.B"));
    }
}
