//! Forwarding one call to the local provider and writing its answer (or why there is none) back with the
//! consumer's request id, transcoding when the two sides speak different serializations.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use mesh_dubbo::{Body, Codec, CodecError, Frame, Header, Response, Serialization, Status};

use super::Shard;
use crate::error::CallError;
use crate::upstream::UpstreamConn;

/// Sends the call to the local provider and returns its answer frame (`None` for a one-way call, which
/// gets no answer and so takes no place in the request-id map); counted in the shard's metrics.
pub(super) async fn forward(
    shard: &Shard,
    f: &Frame,
    timeout: Option<Duration>,
) -> Result<Option<Frame>, CallError> {
    let begun = Instant::now();
    shard.metrics.local_inflight(shard.inflight.get());
    let answer = forward_uncounted(shard, f, timeout).await;
    let status = match &answer {
        Ok(Some(frame)) => Some(frame.header.status.0),
        Ok(None) => Some(Status::OK.0),
        Err(_) => None,
    };
    shard.metrics.forward_ended(begun, status);
    answer
}

async fn forward_uncounted(
    shard: &Shard,
    f: &Frame,
    timeout: Option<Duration>,
) -> Result<Option<Frame>, CallError> {
    let codec = shard.settings.upstream.codec;
    let down_ser = f.header.serialization().map_err(CallError::Encode)?;
    let up_ser = shard.settings.serialization;
    let conn = shard.pool.get().await?;
    let two_way = f.header.is_two_way();
    let transcoded = if down_ser == up_ser {
        None
    } else {
        let Body::Request(req) = codec.decode_body(&f.header, &f.body).map_err(CallError::Encode)? else {
            return Err(CallError::Encode(CodecError::Unencodable("a non-request frame")));
        };
        Some(req)
    };
    let encode = |buf: &mut BytesMut, id: u64| match &transcoded {
        None => {
            Header { id, ..f.header }.write(buf);
            buf.put_slice(&f.body);
            Ok(())
        }
        Some(req) => codec.encode_request_message(buf, Header::request(id, up_ser, two_way), req),
    };
    if !two_way {
        conn.send_noreply(encode)?;
        return Ok(None);
    }
    // The consumer's own timeout (Dubbo's `timeout` attachment) when shorter: nobody waits for the answer
    // after it.
    let limit = shard.settings.upstream.request_timeout;
    let t = timeout.map_or(limit, |t| t.min(limit));
    conn.send(t, encode)?.wait().await.map(Some)
}

/// Forwards a two-way call that needs no transcoding on `conn` (a live connection to the local provider)
/// without a task: `on_answer` gets the provider's answer frame (or why there is none) from the
/// connection's reader, the shard's deadline sweep or, when it cannot be queued, at once; counted in the
/// shard's metrics like [`forward`].
pub(super) fn relay(
    shard: &Rc<Shard>,
    conn: &UpstreamConn,
    f: &Frame,
    timeout: Option<Duration>,
    on_answer: impl FnOnce(Result<Frame, CallError>) + 'static,
) {
    let begun = Instant::now();
    shard.metrics.local_inflight(shard.inflight.get());
    let limit = shard.settings.upstream.request_timeout;
    let t = timeout.map_or(limit, |t| t.min(limit));
    let counted = shard.clone();
    conn.send_relay(
        t,
        |buf, id| {
            Header { id, ..f.header }.write(buf);
            buf.put_slice(&f.body);
            Ok(())
        },
        move |answer| {
            let status = answer.as_ref().ok().map(|frame| frame.header.status.0);
            counted.metrics.forward_ended(begun, status);
            on_answer(answer);
        },
    );
}

/// True when a call can go through [`relay`]: two-way, and the local provider speaks the serialization
/// the call came in (its bytes are forwarded as they are).
pub(super) fn relayable(shard: &Shard, f: &Frame) -> bool {
    f.header.is_two_way() && f.header.serialization().ok() == Some(shard.settings.serialization)
}

/// Writes the provider's answer back with the consumer's id (transcoding when serializations differ).
pub(super) fn write_answer(codec: &Codec, buf: &mut BytesMut, req: Header, resp: Frame) {
    let down_ser = req.serialization().unwrap_or(Serialization::Hessian2);
    if resp.header.serialization().ok() == Some(down_ser) {
        Header {
            id: req.id,
            ..resp.header
        }
        .write(buf);
        buf.put_slice(&resp.body);
        return;
    }
    match codec.decode_body(&resp.header, &resp.body) {
        Ok(Body::Response(r)) => {
            if codec.encode_response(buf, req.id, down_ser, &r).is_err() {
                let e = Response::Error {
                    status: Status::BAD_RESPONSE,
                    message: "answer cannot be re-encoded".into(),
                };
                let _ = codec.encode_response(buf, req.id, down_ser, &e);
            }
        }
        Ok(_) | Err(_) => {
            let e = Response::Error {
                status: Status::BAD_RESPONSE,
                message: "undecodable answer from the provider".into(),
            };
            let _ = codec.encode_response(buf, req.id, down_ser, &e);
        }
    }
}

/// The Dubbo status the consumer agent gets for a forwarding failure: 60 means the call never reached
/// the provider (safe to retry elsewhere), 31 a timeout, 80 a lost connection, 50 an undecodable answer,
/// 40 a bad request.
fn status_for(e: &CallError) -> Status {
    match e {
        CallError::Connect { .. } | CallError::BackingOff(_) => Status::SERVICE_NOT_FOUND,
        CallError::Timeout { .. } => Status::SERVER_TIMEOUT,
        CallError::Closed(_) => Status::SERVER_ERROR,
        CallError::BadAnswer { .. } => Status::BAD_RESPONSE,
        CallError::Encode(_) => Status::BAD_REQUEST,
    }
}

/// Writes a forwarding failure back as a Dubbo error answer with the consumer's id.
pub(super) fn write_error(codec: &Codec, buf: &mut BytesMut, req: Header, e: &CallError) {
    let status = status_for(e);
    let ser = req.serialization().unwrap_or(Serialization::Hessian2);
    let resp = Response::Error {
        status,
        message: format!("provider agent: {e}").into(),
    };
    let _ = codec.encode_response(buf, req.id, ser, &resp);
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_dubbo::{Decoded, RpcResult, Value};
    use std::net::SocketAddr;

    fn decode(codec: &Codec, buf: &mut BytesMut) -> Frame {
        match codec.decode_frame(buf).unwrap() {
            Decoded::Frame(f) => f,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn failures_map_to_statuses_that_say_whether_the_call_ran() {
        let addr: SocketAddr = "127.0.0.1:20880".parse().unwrap();
        let refused = CallError::Connect {
            addr,
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        let cases = [
            (refused, Status::SERVICE_NOT_FOUND),
            (CallError::BackingOff(addr), Status::SERVICE_NOT_FOUND),
            (CallError::Timeout { addr, ms: 5 }, Status::SERVER_TIMEOUT),
            (CallError::Closed(addr), Status::SERVER_ERROR),
            (
                CallError::BadAnswer {
                    addr,
                    source: CodecError::BadMagic(0),
                },
                Status::BAD_RESPONSE,
            ),
            (CallError::Encode(CodecError::BadMagic(0)), Status::BAD_REQUEST),
        ];
        let codec = Codec::default();
        for (e, status) in cases {
            let mut buf = BytesMut::new();
            write_error(
                &codec,
                &mut buf,
                Header::request(9, Serialization::Hessian2, true),
                &e,
            );
            let f = decode(&codec, &mut buf);
            assert_eq!((f.header.id, f.header.status), (9, status), "{e}");
        }
    }

    #[test]
    fn an_answer_goes_back_with_the_consumers_id_and_serialization() {
        let codec = Codec::default();
        let answer = Response::Ok {
            result: RpcResult::Value(Value::Int(7)),
            attachments: None,
        };
        for provider_ser in [Serialization::Hessian2, Serialization::FastJson] {
            let mut from_provider = BytesMut::new();
            codec
                .encode_response(&mut from_provider, 1000, provider_ser, &answer)
                .unwrap();
            let resp = decode(&codec, &mut from_provider);
            let mut buf = BytesMut::new();
            write_answer(
                &codec,
                &mut buf,
                Header::request(5, Serialization::Hessian2, true),
                resp,
            );
            let f = decode(&codec, &mut buf);
            assert_eq!(f.header.id, 5);
            assert_eq!(f.header.serialization().unwrap(), Serialization::Hessian2);
            match codec.decode_body(&f.header, &f.body).unwrap() {
                Body::Response(Response::Ok {
                    result: RpcResult::Value(v),
                    ..
                }) => assert_eq!(v, Value::Int(7), "from {provider_ser:?}"),
                other => panic!("{other:?}"),
            }
        }
    }
}
