//! A provider's Dubbo answer as the consumer agent's HTTP answer: status code and `text/plain` body.
//!
//! | Dubbo answer                                | HTTP |
//! |---------------------------------------------|------|
//! | value (numbers in decimal, strings as they are, structures as JSON) or `null` | 200 |
//! | the service threw (`service threw <class>: <message>`) | 500 |
//! | status 100 or 60 (provider full, never ran) | 503 |
//! | status 31 or 30 (timeout)                   | 504 |
//! | any other error status, undecodable or unexpected body | 502 |

use std::borrow::Cow;

use bytes::BytesMut;
use mesh_dubbo::{Body, CodecError, Response, RpcResult, Status, Value};

/// An HTTP answer: status code and body text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    pub status: u16,
    pub body: Cow<'static, str>,
}

impl HttpAnswer {
    pub fn new(status: u16, body: impl Into<Cow<'static, str>>) -> Self {
        HttpAnswer {
            status,
            body: body.into(),
        }
    }
}

/// The answer to the caller for a decoded response body (or the error decoding it).
pub fn render(decoded: Result<Body<'_>, CodecError>) -> HttpAnswer {
    let body = match decoded {
        Ok(b) => b,
        Err(e) => return HttpAnswer::new(502, format!("undecodable answer from provider: {e}")),
    };
    match body {
        Body::Response(Response::Ok {
            result: RpcResult::Value(v),
            ..
        }) => HttpAnswer::new(200, value_text(&v)),
        Body::Response(Response::Ok {
            result: RpcResult::Null,
            ..
        }) => HttpAnswer::new(200, "null"),
        Body::Response(Response::Ok {
            result: RpcResult::Exception(e),
            ..
        }) => HttpAnswer::new(500, format!("service threw {}", exception_text(&e))),
        Body::Response(Response::Error { status, message }) => HttpAnswer::new(
            http_status_of(status),
            format!(
                "provider answered dubbo status {} {}: {message}",
                status.0,
                status.name()
            ),
        ),
        other => HttpAnswer::new(502, format!("unexpected answer from provider: {other:?}")),
    }
}

/// The HTTP status for a provider's Dubbo error status: overloaded or not found 503, timeout 504, others
/// 502 (the form API and the JSON API alike).
pub fn http_status_of(status: Status) -> u16 {
    match status {
        Status::SERVER_THREADPOOL_EXHAUSTED | Status::SERVICE_NOT_FOUND => 503,
        Status::SERVER_TIMEOUT | Status::CLIENT_TIMEOUT => 504,
        _ => 502,
    }
}

/// A result value as the HTTP body: numbers in decimal, strings as they are, structures as JSON.
pub fn value_text(v: &Value<'_>) -> String {
    match v {
        Value::Int(i) => i.to_string(),
        Value::Long(l) | Value::Date(l) => l.to_string(),
        Value::String(s) => s.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_owned(),
        Value::Double(d) => java_double(*d),
        other => {
            let mut buf = BytesMut::new();
            match mesh_dubbo::fastjson::write_value(&mut buf, other) {
                Ok(()) => String::from_utf8_lossy(buf.strip_suffix(b"\n").unwrap_or(&buf)).into_owned(),
                Err(_) => format!("{other:?}"),
            }
        }
    }
}

/// Formats like Java's `Double.toString` for the common cases (`1.0`, `0.5`, `NaN`, `Infinity`).
pub fn java_double(d: f64) -> String {
    if d.is_nan() {
        "NaN".into()
    } else if d.is_infinite() {
        if d > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else if d.fract() == 0.0 && d.abs() < 1e7 {
        format!("{d:.1}")
    } else {
        format!("{d}")
    }
}

/// A thrown Java exception as `class: detailMessage` (any other value as its text).
pub fn exception_text(e: &Value<'_>) -> String {
    match e {
        Value::Object(o) => {
            let msg = o
                .fields
                .iter()
                .find(|(k, _)| k == "detailMessage")
                .and_then(|(_, v)| v.as_str())
                .unwrap_or("");
            format!("{}: {msg}", o.class)
        }
        other => value_text(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_dubbo::Object;

    fn ok(result: RpcResult<'static>) -> Result<Body<'static>, CodecError> {
        Ok(Body::Response(Response::Ok {
            result,
            attachments: None,
        }))
    }

    fn error(status: u8) -> HttpAnswer {
        render(Ok(Body::Response(Response::Error {
            status: Status(status),
            message: Cow::Borrowed("why"),
        })))
    }

    #[test]
    fn values_and_null_are_200() {
        assert_eq!(
            render(ok(RpcResult::Value(Value::Int(-7)))),
            HttpAnswer::new(200, "-7")
        );
        assert_eq!(
            render(ok(RpcResult::Value(Value::str("héllo")))),
            HttpAnswer::new(200, "héllo")
        );
        assert_eq!(render(ok(RpcResult::Null)), HttpAnswer::new(200, "null"));
    }

    #[test]
    fn exceptions_are_500_with_class_and_message() {
        let thrown = Value::Object(Object {
            class: Cow::Borrowed("java.lang.IllegalStateException"),
            fields: vec![(Cow::Borrowed("detailMessage"), Value::str("boom"))],
        });
        assert_eq!(
            render(ok(RpcResult::Exception(thrown))),
            HttpAnswer::new(500, "service threw java.lang.IllegalStateException: boom")
        );
        assert_eq!(exception_text(&Value::str("plain")), "plain");
    }

    #[test]
    fn error_statuses_by_kind() {
        for (dubbo, http) in [
            (100, 503),
            (60, 503),
            (31, 504),
            (30, 504),
            (80, 502),
            (50, 502),
            (90, 502),
        ] {
            let a = error(dubbo);
            assert_eq!(a.status, http, "dubbo status {dubbo}");
            assert!(
                a.body
                    .starts_with(&format!("provider answered dubbo status {dubbo} "))
                    && a.body.ends_with(": why"),
                "{}",
                a.body
            );
        }
    }

    #[test]
    fn undecodable_and_unexpected_bodies_are_502() {
        let bad = render(Err(CodecError::UnsupportedSerialization(9)));
        assert_eq!(bad.status, 502);
        assert!(
            bad.body.starts_with("undecodable answer from provider: "),
            "{}",
            bad.body
        );
        let heartbeat = render(Ok(Body::Event(mesh_dubbo::Event::Heartbeat)));
        assert_eq!(heartbeat.status, 502);
        assert!(heartbeat.body.starts_with("unexpected answer from provider: "));
    }

    #[test]
    fn scalar_texts() {
        assert_eq!(value_text(&Value::Long(1 << 40)), "1099511627776");
        assert_eq!(value_text(&Value::Date(5)), "5");
        assert_eq!(value_text(&Value::Bool(true)), "true");
        assert_eq!(value_text(&Value::Null), "null");
        assert_eq!(value_text(&Value::Double(2.0)), "2.0");
    }

    #[test]
    fn doubles_like_java() {
        assert_eq!(java_double(1.0), "1.0");
        assert_eq!(java_double(-3.0), "-3.0");
        assert_eq!(java_double(0.5), "0.5");
        assert_eq!(java_double(f64::NAN), "NaN");
        assert_eq!(java_double(f64::INFINITY), "Infinity");
        assert_eq!(java_double(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(java_double(1e7), "10000000");
    }
}
