//! One consumer agent's connection to the provider agent: frames read (with back-pressure per
//! connection), checked, and each call forwarded in its own task; answers written back in batches.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use glommio::net::TcpStream;
use mesh_dubbo::{Body, Codec, Frame, Header, Request, Response, Serialization, Status};

use super::forward::{forward, relay, relayable, write_answer, write_error};
use super::metadata_answer::{self, CallSite};
use super::Shard;
use crate::frames::{FrameEnd, FrameReader};
use crate::io::{split, OutQueue, Stream, MAX_QUEUED_ANSWER_BYTES};
use crate::sync::WaitQueue;

/// Longest TLS handshake a consumer agent gets.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// One consumer connection's accounting.
struct ConnState {
    peer: Option<SocketAddr>,
    inflight: Cell<usize>,
    /// Woken when the connection drops below its in-flight limit.
    room: WaitQueue,
    limit: usize,
}

pub(super) async fn serve_connection(stream: TcpStream, shard: Rc<Shard>) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    let stream: Stream = match &shard.settings.tls {
        None => stream.into(),
        Some(tls) => {
            // A peer that does not finish its handshake in time is dropped.
            let handshake = tls.acceptor().accept(stream);
            match glommio::timer::timeout(TLS_HANDSHAKE_TIMEOUT, async { Ok(handshake.await) }).await {
                Ok(Ok(s)) => Stream::TlsServer(Box::new(s)),
                Ok(Err(_)) | Err(_) => return,
            }
        }
    };
    let (r, w) = split(stream);
    let (out, writer) = OutQueue::spawn_writer(w);
    let key = shard.next_conn.get();
    shard.next_conn.set(key + 1);
    shard.outs.borrow_mut().insert(key, out.clone());
    let conn = Rc::new(ConnState {
        peer,
        inflight: Cell::new(0),
        room: WaitQueue::new(),
        limit: shard.settings.max_inflight_per_connection,
    });
    let codec = shard.settings.upstream.codec;
    let mut frames = FrameReader::new(r, codec, shard.settings.read_buffer);
    loop {
        // Back-pressure: with too many of its calls outstanding, a consumer's next frame waits (and, as
        // nothing more is read, TCP slows the consumer down) until some finish.
        while conn.inflight.get() >= conn.limit && !out.is_closed() {
            conn.room.wait(false).await;
        }
        // A peer that does not read its answers (heartbeat replies included) is not read from either.
        out.wait_queued_at_most(MAX_QUEUED_ANSWER_BYTES).await;
        if out.is_closed() {
            break;
        }
        match frames.next(|| ()).await {
            Ok(f) => handle_frame(&shard, &conn, &out, f),
            Err(FrameEnd::Closed | FrameEnd::Io(_)) => break,
            Err(FrameEnd::Broken { error, id }) => {
                // Framing lost: tell the peer why (best effort, with the id from the header) and close.
                if let Some(id) = id {
                    let resp = Response::Error {
                        status: Status::BAD_REQUEST,
                        message: error.to_string().into(),
                    };
                    out.push(|b| codec.encode_response(b, id, Serialization::Hessian2, &resp));
                }
                break;
            }
        }
    }
    out.close();
    let _ = writer.await;
    shard.outs.borrow_mut().remove(&key);
}

/// Answers a two-way call that will not be forwarded.
fn refuse(codec: &Codec, out: &OutQueue, h: Header, status: Status, message: String) {
    if h.is_two_way() {
        let e = Response::Error {
            status,
            message: message.into(),
        };
        out.push(|b| {
            codec.encode_response(b, h.id, h.serialization().unwrap_or(Serialization::Hessian2), &e)
        });
    }
}

/// The request in a frame's body; a body that is not one is refused with 40.
fn decode_request<'f>(codec: &Codec, f: &'f Frame) -> Result<Request<'f>, (Status, String)> {
    match codec.decode_body(&f.header, &f.body) {
        Ok(Body::Request(req)) => Ok(req),
        Ok(_) => Err((Status::BAD_REQUEST, "not a request body".to_owned())),
        Err(e) => Err((Status::BAD_REQUEST, format!("undecodable request: {e}"))),
    }
}

/// What the provider agent reads from a request's attachments before forwarding it: the token (when
/// `token` is set, the call must carry it), and the consumer's timeout. `listen` and `peer` name the two
/// ends in the refusal.
fn check_request(
    token: Option<&str>,
    listen: SocketAddr,
    peer: Option<SocketAddr>,
    req: &Request<'_>,
) -> Result<Option<Duration>, (Status, String)> {
    if let Some(want) = token {
        let got = req.attachment("token").and_then(|v| v.as_str());
        if got != Some(want) {
            let from = peer.map_or_else(|| "?".to_owned(), |p| p.to_string());
            return Err((
                Status::BAD_REQUEST,
                format!(
                    "Invalid token! Forbid invoke remote service {} method {}() from consumer {from} to \
                     provider agent {}",
                    req.service, req.method, listen
                ),
            ));
        }
    }
    let timeout = req.attachment("timeout").and_then(|v| match v {
        mesh_dubbo::Value::Int(i) => u64::try_from(*i).ok(),
        mesh_dubbo::Value::Long(l) => u64::try_from(*l).ok(),
        other => other.as_str().and_then(|s| s.trim().parse::<u64>().ok()),
    });
    Ok(timeout.filter(|&ms| ms > 0).map(Duration::from_millis))
}

/// Answers a MetadataService call from what this shard serves (two-way calls only: a one-way call gets
/// no answer, as in Java). An answer that cannot be encoded (over the frame limit) becomes a 50.
fn answer_metadata_service(shard: &Shard, conn: &ConnState, out: &OutQueue, h: Header, req: &Request<'_>) {
    if !h.is_two_way() {
        return;
    }
    let codec = shard.settings.upstream.codec;
    let served = shard.metadata.latest();
    let site = CallSite {
        listen: shard.settings.listen,
        peer: conn.peer,
    };
    let resp = metadata_answer::answer(req, served.as_deref(), site);
    let ser = h.serialization().unwrap_or(Serialization::Hessian2);
    out.push(|b| {
        if let Err(e) = codec.encode_response(b, h.id, ser, &resp) {
            let e = Response::Error {
                status: Status::BAD_RESPONSE,
                message: format!("provider agent: the MetadataService answer cannot be encoded: {e}").into(),
            };
            let _ = codec.encode_response(b, h.id, ser, &e);
        }
    });
}

fn handle_frame(shard: &Rc<Shard>, conn: &Rc<ConnState>, out: &OutQueue, f: Frame) {
    let h = f.header;
    let codec = shard.settings.upstream.codec;
    if !h.is_request() {
        return; // consumer agents send requests only
    }
    if h.is_event() {
        if h.is_two_way() {
            let ser = h.serialization().unwrap_or(Serialization::Hessian2);
            out.push(|b| codec.encode_heartbeat(b, h.id, ser, false));
        }
        return;
    }
    let req = match decode_request(&codec, &f) {
        Ok(req) => req,
        Err((status, message)) => return refuse(&codec, out, h, status, message),
    };
    // The agent's own MetadataService: answered here (also while draining), never forwarded, no token.
    if metadata_answer::is_metadata_service_call(&req) {
        return answer_metadata_service(shard, conn, out, h, &req);
    }
    if shard.control.is_stopping() {
        // Draining: new calls go elsewhere. 60 tells the consumer agent the call never ran here.
        refuse(
            &codec,
            out,
            h,
            Status::SERVICE_NOT_FOUND,
            "provider agent is draining".to_owned(),
        );
        return;
    }
    let settings = &shard.settings;
    let timeout = match check_request(settings.token.as_deref(), settings.listen, conn.peer, &req) {
        Ok(t) => t,
        Err((status, message)) => return refuse(&codec, out, h, status, message),
    };
    shard.inflight.set(shard.inflight.get() + 1);
    conn.inflight.set(conn.inflight.get() + 1);
    // No cap to wait for and a live connection to the provider: forwarded at once, and the answer written
    // back by the provider connection's reader (no task, channel or timer per call).
    if shard.settings.limit.is_none() && relayable(shard, &f) {
        if let Some(upstream) = shard.pool.try_get() {
            let (shard2, conn2, out2) = (shard.clone(), conn.clone(), out.clone());
            return relay(shard, &upstream, &f, timeout, move |answer| {
                out2.push(|b| match answer {
                    Ok(resp) => write_answer(&codec, b, h, resp),
                    Err(e) => write_error(&codec, b, h, &e),
                });
                call_ended(&shard2, &conn2);
            });
        }
    }
    let shard = shard.clone();
    let conn = conn.clone();
    let out = out.clone();
    glommio::spawn_local(async move {
        let permit = shard.admission.acquire().await;
        let answer = match &permit {
            Some(_) => Some(forward(&shard, &f, timeout).await),
            None => None,
        };
        drop(permit);
        if h.is_two_way() {
            out.push(|b| match answer {
                Some(Ok(Some(resp))) => write_answer(&codec, b, h, resp),
                Some(Ok(None)) => {}
                Some(Err(e)) => write_error(&codec, b, h, &e),
                None => {
                    let e = Response::Error {
                        status: Status::SERVER_THREADPOOL_EXHAUSTED,
                        message: format!(
                            "provider agent {}: the local provider is at its cap and {} calls wait",
                            shard.settings.listen,
                            shard.admission.waiting()
                        )
                        .into(),
                    };
                    let ser = h.serialization().unwrap_or(Serialization::Hessian2);
                    let _ = codec.encode_response(b, h.id, ser, &e);
                }
            });
        }
        call_ended(&shard, &conn);
    })
    .detach();
}

/// A forwarded call is over (its answer queued): the shard's and the connection's counts drop, a
/// connection held back by its in-flight limit may be read again.
fn call_ended(shard: &Shard, conn: &ConnState) {
    shard.inflight.set(shard.inflight.get() - 1);
    conn.inflight.set(conn.inflight.get() - 1);
    if conn.inflight.get() < conn.limit {
        conn.room.wake_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use mesh_dubbo::{Decoded, Request, Value};

    fn call(attachments: Vec<(&'static str, Value<'static>)>) -> Frame {
        let codec = Codec::default();
        let req = Request {
            dubbo_version: "2.0.2".into(),
            service: "com.example.Hello".into(),
            version: None,
            method: "hash".into(),
            param_types: "Ljava/lang/String;".into(),
            args: vec![Value::str("x")],
            attachments: attachments.into_iter().map(|(k, v)| (k.into(), v)).collect(),
        };
        let mut buf = BytesMut::new();
        codec
            .encode_request_message(&mut buf, Header::request(1, Serialization::Hessian2, true), &req)
            .unwrap();
        match codec.decode_frame(&mut buf).unwrap() {
            Decoded::Frame(f) => f,
            other => panic!("{other:?}"),
        }
    }

    fn check(token: Option<&str>, f: &Frame) -> Result<Option<Duration>, (Status, String)> {
        let listen = "127.0.0.1:30000".parse().unwrap();
        let req = decode_request(&Codec::default(), f)?;
        check_request(token, listen, "10.0.0.9:4000".parse().ok(), &req)
    }

    #[test]
    fn the_token_must_match_when_one_is_set() {
        let with = call(vec![("token", Value::str("s3cret"))]);
        let without = call(vec![]);
        assert_eq!(check(Some("s3cret"), &with), Ok(None));
        assert_eq!(check(None, &without), Ok(None));
        let (status, why) = check(Some("s3cret"), &without).unwrap_err();
        assert_eq!(status, Status::BAD_REQUEST);
        assert!(
            why.contains("Invalid token") && why.contains("10.0.0.9:4000"),
            "{why}"
        );
        assert!(check(Some("other"), &with).is_err());
    }

    #[test]
    fn the_consumers_timeout_is_read_as_int_long_or_text_and_zero_means_none() {
        let ms = |v: Value<'static>| check(None, &call(vec![("timeout", v)]));
        assert_eq!(ms(Value::Int(250)), Ok(Some(Duration::from_millis(250))));
        assert_eq!(ms(Value::Long(3000)), Ok(Some(Duration::from_millis(3000))));
        assert_eq!(ms(Value::str(" 40 ")), Ok(Some(Duration::from_millis(40))));
        assert_eq!(ms(Value::Int(0)), Ok(None));
        assert_eq!(ms(Value::Int(-5)), Ok(None));
        assert_eq!(ms(Value::str("soon")), Ok(None));
    }

    #[test]
    fn a_body_that_is_not_a_request_is_refused() {
        let mut f = call(vec![]);
        f.body = bytes::Bytes::from_static(b"\xff\xff");
        assert_eq!(check(None, &f).unwrap_err().0, Status::BAD_REQUEST);
    }
}
