//! One Dubbo client's connection to the consumer agent's Dubbo port: the client talks to the agent as if
//! it were the provider. Frames are read as they arrive; each request runs as its own call (the same
//! loop as an HTTP call: routing, balancing, rate limit, retries, failover) in its own task, so pipelined
//! requests run concurrently and their answers go back as they finish (Dubbo clients match answers by
//! id). Heartbeats are answered here; other events are ignored, as a Dubbo server does (it acts only on
//! READONLY, which means nothing from a client); one-way requests are sent on and not answered.
//!
//! With `max_inflight_per_connection` calls of the connection unanswered, or more than
//! [`MAX_QUEUED_ANSWER_BYTES`] of answers not yet taken by the writer (a client that sends but does not
//! read), nothing more is read from it until that clears (back-pressure through TCP). A connection with nothing to read for `idle_timeout`
//! is closed once its calls are answered. On the shard's stop the agent tells the client it is going
//! away (Dubbo's READONLY event), stops reading, and closes once the calls in flight are answered.

use std::cell::Cell;
use std::rc::Rc;

use glommio::net::TcpStream;
use mesh_dubbo::{Body, Codec, Event, Frame, Header, Serialization, Status};

use super::call;
use super::dubbo_answer::{write_error, write_outcome};
use super::dubbo_call::DubboCall;
use super::Ctx;
use crate::control::ShardControl;
use crate::frames::{FrameEnd, FrameReader};
use crate::io::{split, OutQueue, MAX_QUEUED_ANSWER_BYTES};
use crate::sync::WaitQueue;

/// One client connection's accounting.
struct ConnState {
    inflight: Cell<usize>,
    /// Woken when the connection drops below its in-flight limit, or its last call ends.
    room: WaitQueue,
    limit: usize,
}

impl ConnState {
    fn end_call(&self) {
        self.inflight.set(self.inflight.get() - 1);
        if self.inflight.get() < self.limit || self.inflight.get() == 0 {
            self.room.wake_one();
        }
    }
}

/// What the port does with a frame from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inbound {
    /// A call to route and send on (answered when `two_way`).
    Call { two_way: bool },
    /// A heartbeat to answer with the same id.
    Heartbeat,
    /// Nothing to do: an answer (the agent sends no requests to clients), a one-way heartbeat, another event.
    Ignore,
}

/// Decides what a frame from a client asks for.
fn inbound(codec: &Codec, f: &Frame) -> Inbound {
    let h = &f.header;
    if !h.is_request() {
        return Inbound::Ignore;
    }
    if !h.is_event() {
        return Inbound::Call {
            two_way: h.is_two_way(),
        };
    }
    match codec.decode_body(h, &f.body) {
        Ok(Body::Event(Event::Heartbeat)) if h.is_two_way() => Inbound::Heartbeat,
        _ => Inbound::Ignore,
    }
}

/// Dubbo's own wording for a request it cannot decode (status 40), which clients show as is.
fn decode_failure(e: &mesh_dubbo::CodecError) -> String {
    format!("Fail to decode request due to: {e}")
}

pub(super) async fn serve_connection(stream: TcpStream, ctx: Rc<Ctx>, control: ShardControl) {
    let Some(port) = ctx.settings.dubbo.clone() else {
        return;
    };
    let _ = stream.set_nodelay(true);
    // Reads wait only for the client's next frame: the idle timeout, on the shard's timer below (no glommio
    // timer pending while the shard parks: crate::timer). Writes wait only for a client that does not read
    // its answers (glommio's timer, armed only while a write waits).
    let _ = stream.set_write_timeout(Some(port.idle_timeout));
    let (r, w) = split(stream);
    let (out, writer) = OutQueue::spawn_writer(w);
    let conn = Rc::new(ConnState {
        inflight: Cell::new(0),
        room: WaitQueue::new(),
        limit: port.max_inflight_per_connection.max(1),
    });
    let codec = ctx.settings.upstream.codec;
    let mut frames = FrameReader::new(r, codec, ctx.settings.read_buffer);
    loop {
        while conn.inflight.get() >= conn.limit && !out.is_closed() {
            conn.room.wait(false).await;
        }
        out.wait_queued_at_most(MAX_QUEUED_ANSWER_BYTES).await;
        if out.is_closed() {
            break;
        }
        // A pending read consumes nothing: abandoning it on a stop loses no frame. A client that sends no
        // whole frame within the idle timeout is closed.
        let idle_until = std::time::Instant::now() + port.idle_timeout;
        let next = futures_lite::future::or(
            async { Some(frames.next(|| ()).await) },
            futures_lite::future::or(
                async {
                    control.stopped().await;
                    None
                },
                async {
                    crate::timer::sleep_until(idle_until).await;
                    Some(Err(FrameEnd::Io(std::io::ErrorKind::TimedOut.into())))
                },
            ),
        )
        .await;
        match next {
            Some(Ok(f)) => handle_frame(&ctx, &conn, &out, f),
            Some(Err(FrameEnd::Closed | FrameEnd::Io(_))) => break,
            Some(Err(FrameEnd::Broken { error, id })) => {
                // Framing lost (bad magic, a frame over the limit): say why, with the id from the header,
                // and close.
                if let Some(id) = id {
                    let h = Header::request(id, Serialization::Hessian2, true);
                    out.push(|b| write_error(&codec, b, h, Status::BAD_REQUEST, &decode_failure(&error)));
                }
                break;
            }
            None => {
                // Going away: Dubbo's READONLY event tells the client to send no new calls here.
                out.push(|b| {
                    let h = Header::request(0, Serialization::Hessian2, false);
                    codec.encode_event(b, h, &Event::ReadOnly)
                });
                break;
            }
        }
    }
    // The calls in flight answer before the connection closes (each within its timeout).
    while conn.inflight.get() > 0 && !out.is_closed() {
        conn.room.wait(false).await;
    }
    out.close();
    let _ = writer.await;
}

fn handle_frame(ctx: &Rc<Ctx>, conn: &Rc<ConnState>, out: &OutQueue, f: Frame) {
    let codec = ctx.settings.upstream.codec;
    let h = f.header;
    let two_way = match inbound(&codec, &f) {
        Inbound::Ignore => return,
        Inbound::Heartbeat => {
            let ser = h.serialization().unwrap_or(Serialization::Hessian2);
            out.push(|b| codec.encode_heartbeat(b, h.id, ser, false));
            return;
        }
        Inbound::Call { two_way } => two_way,
    };
    let (ctx, conn, out) = (ctx.clone(), conn.clone(), out.clone());
    conn.inflight.set(conn.inflight.get() + 1);
    glommio::spawn_local(async move {
        match DubboCall::decode(&codec, &f) {
            Err(e) if two_way => {
                out.push(|b| write_error(&codec, b, h, Status::BAD_REQUEST, &decode_failure(&e)));
            }
            // Nobody waits to hear about a broken one-way request.
            Err(_) => {}
            Ok(request) => {
                let service = request.service_key();
                if two_way {
                    let started = call::start(&ctx, request, service).await;
                    let outcome = call::finish(&ctx, started).await;
                    out.push(|b| write_outcome(&codec, b, h, outcome));
                } else {
                    // A one-way call that finds no provider is dropped, as Dubbo drops it.
                    let _ = call::send_oneway(&ctx, request, service).await;
                }
            }
        }
        conn.end_call();
    })
    .detach();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::dubbo_call::tests::frame_of;
    use bytes::BytesMut;
    use mesh_dubbo::{Request, Value};

    fn call_frame(two_way: bool) -> Frame {
        let req = Request {
            dubbo_version: "2.0.2".into(),
            service: "a.B".into(),
            version: None,
            method: "m".into(),
            param_types: "".into(),
            args: vec![],
            attachments: vec![],
        };
        let mut buf = BytesMut::new();
        Codec::default()
            .encode_request_message(
                &mut buf,
                Header::request(3, Serialization::Hessian2, two_way),
                &req,
            )
            .unwrap();
        frame_of(&mut buf)
    }

    #[test]
    fn calls_heartbeats_and_the_rest() {
        let codec = Codec::default();
        assert_eq!(
            inbound(&codec, &call_frame(true)),
            Inbound::Call { two_way: true }
        );
        assert_eq!(
            inbound(&codec, &call_frame(false)),
            Inbound::Call { two_way: false }
        );
        let mut buf = BytesMut::new();
        codec.encode_heartbeat(&mut buf, 8, Serialization::Hessian2, true);
        assert_eq!(inbound(&codec, &frame_of(&mut buf)), Inbound::Heartbeat);
        // A heartbeat answer from the client, a one-way heartbeat, a READONLY event: nothing to do.
        codec.encode_heartbeat(&mut buf, 8, Serialization::Hessian2, false);
        assert_eq!(inbound(&codec, &frame_of(&mut buf)), Inbound::Ignore);
        let one_way = Header::request(9, Serialization::Hessian2, false);
        codec.encode_event(&mut buf, one_way, &Event::Heartbeat).unwrap();
        assert_eq!(inbound(&codec, &frame_of(&mut buf)), Inbound::Ignore);
        let two_way = Header::request(9, Serialization::Hessian2, true);
        codec.encode_event(&mut buf, two_way, &Event::ReadOnly).unwrap();
        assert_eq!(inbound(&codec, &frame_of(&mut buf)), Inbound::Ignore);
        let answer = mesh_dubbo::Response::Ok {
            result: mesh_dubbo::RpcResult::Value(Value::Int(1)),
            attachments: None,
        };
        codec
            .encode_response(&mut buf, 3, Serialization::Hessian2, &answer)
            .unwrap();
        assert_eq!(inbound(&codec, &frame_of(&mut buf)), Inbound::Ignore);
    }

    #[test]
    fn an_undecodable_request_is_named_as_dubbo_does() {
        let e = mesh_dubbo::CodecError::UnsupportedSerialization(9);
        assert_eq!(
            decode_failure(&e),
            "Fail to decode request due to: unsupported serialization id 9"
        );
    }
}
