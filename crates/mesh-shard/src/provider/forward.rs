//! Forwarding one call to the local provider and writing its answer (or why there is none) back with the
//! consumer's request id, transcoding when the two sides speak different serializations.

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use mesh_dubbo::{Body, Codec, CodecError, Frame, Header, Response, Serialization, Status};

use super::Shard;
use crate::error::CallError;

/// Sends the call to the local provider and returns its answer frame (`None` for a one-way call, which
/// gets no answer and so takes no place in the request-id map).
pub(super) async fn forward(
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
    conn.send(encode)?.wait(t).await.map(Some)
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

/// Maps a forwarding failure onto a Dubbo status the consumer agent understands: 60 means the call never
/// reached the provider (safe to retry elsewhere), 31 a timeout, 80 a lost connection, 40 a bad request.
pub(super) fn write_error(codec: &Codec, buf: &mut BytesMut, req: Header, e: &CallError) {
    let status = match e {
        CallError::Connect { .. } | CallError::BackingOff(_) => Status::SERVICE_NOT_FOUND,
        CallError::Timeout { .. } => Status::SERVER_TIMEOUT,
        CallError::Closed(_) => Status::SERVER_ERROR,
        CallError::BadAnswer { .. } => Status::BAD_RESPONSE,
        CallError::Encode(_) => Status::BAD_REQUEST,
    };
    let ser = req.serialization().unwrap_or(Serialization::Hessian2);
    let resp = Response::Error {
        status,
        message: format!("provider agent: {e}").into(),
    };
    let _ = codec.encode_response(buf, req.id, ser, &resp);
}
