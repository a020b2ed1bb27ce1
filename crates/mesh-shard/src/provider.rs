//! The provider agent's shard: Dubbo frames in from consumer agents, forwarded to the local Dubbo provider
//! over a few persistent multiplexed connections with request ids rewritten, answers routed back.
//!
//! When the local provider speaks hessian2 (the agent link's serialization) frames are forwarded as bytes
//! with only the id changed; for a fastjson provider each request and answer is transcoded.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::{BufMut, BytesMut};
use glommio::net::TcpStream;
use mesh_dubbo::{Body, Codec, CodecError, Frame, Header, Response, Serialization, Status};

use crate::error::CallError;
use crate::io::{read_into, split, OutQueue};
use crate::runtime::ShardControl;
use crate::upstream::{Pool, UpstreamConfig};

/// Settings of one provider-agent shard.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub listen: SocketAddr,
    /// The local Dubbo provider.
    pub dubbo: SocketAddr,
    /// What the local provider speaks.
    pub serialization: Serialization,
    pub upstream: UpstreamConfig,
    pub max_connections: usize,
    pub read_buffer: usize,
}

struct Ctx {
    settings: ProviderSettings,
    control: ShardControl,
    pool: Rc<Pool>,
    connections: Cell<usize>,
    inflight: Cell<usize>,
}

/// Runs one provider-agent shard until `control` says stop; then stops accepting and drains. `ready` is
/// called once the listener is bound.
pub async fn run(
    settings: ProviderSettings,
    control: ShardControl,
    ready: impl FnOnce(),
) -> std::io::Result<()> {
    let listener = crate::io::listen(settings.listen)?;
    ready();
    let pool = Rc::new(Pool::new(settings.dubbo, settings.upstream, None));
    let ctx = Rc::new(Ctx {
        settings,
        control: control.clone(),
        pool,
        connections: Cell::new(0),
        inflight: Cell::new(0),
    });
    let accept = {
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            loop {
                let Ok(stream) = listener.accept().await else {
                    continue;
                };
                if ctx.connections.get() >= ctx.settings.max_connections {
                    drop(stream);
                    continue;
                }
                let ctx = ctx.clone();
                glommio::spawn_local(async move {
                    ctx.connections.set(ctx.connections.get() + 1);
                    serve_connection(stream, &ctx).await;
                    ctx.connections.set(ctx.connections.get() - 1);
                })
                .detach();
            }
        })
    };
    control.stopped().await;
    drop(accept);
    control.drained(|| ctx.inflight.get() == 0).await;
    Ok(())
}

async fn serve_connection(stream: TcpStream, ctx: &Rc<Ctx>) {
    let _ = stream.set_nodelay(true);
    let (mut r, w) = split(stream);
    let out = OutQueue::new();
    let writer = {
        let out = out.clone();
        glommio::spawn_local(async move {
            let _ = out.run_writer(w).await;
        })
    };
    let codec = ctx.settings.upstream.codec;
    let mut scratch = vec![0u8; ctx.settings.read_buffer];
    let mut buf = BytesMut::with_capacity(ctx.settings.read_buffer);
    'conn: loop {
        match read_into(&mut r, &mut scratch, &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        loop {
            match codec.decode_frame(&mut buf) {
                Ok(mesh_dubbo::Decoded::Frame(f)) => handle_frame(ctx, &out, f),
                Ok(mesh_dubbo::Decoded::NeedMore(_)) => break,
                Err(e) => {
                    // Framing lost: tell the peer why (best effort, with the id from the header) and close.
                    if let Some(head) = buf.first_chunk::<16>() {
                        let id = u64::from_be_bytes([
                            head[4], head[5], head[6], head[7], head[8], head[9], head[10], head[11],
                        ]);
                        out.push(|b| {
                            let resp = Response::Error {
                                status: Status::BAD_REQUEST,
                                message: e.to_string().into(),
                            };
                            let _ = codec.encode_response(b, id, Serialization::Hessian2, &resp);
                        });
                    }
                    break 'conn;
                }
            }
        }
    }
    out.close();
    let _ = writer.await;
}

fn handle_frame(ctx: &Rc<Ctx>, out: &OutQueue, f: Frame) {
    let h = f.header;
    let codec = ctx.settings.upstream.codec;
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
    if ctx.control.is_stopping() {
        // Draining: new calls go elsewhere. 60 tells the consumer agent the call never ran here.
        if h.is_two_way() {
            let e = Response::Error {
                status: Status::SERVICE_NOT_FOUND,
                message: "provider agent is draining".into(),
            };
            out.push(|b| {
                codec.encode_response(b, h.id, h.serialization().unwrap_or(Serialization::Hessian2), &e)
            });
        }
        return;
    }
    let ctx = ctx.clone();
    let out = out.clone();
    ctx.inflight.set(ctx.inflight.get() + 1);
    glommio::spawn_local(async move {
        let answer = forward(&ctx, &f).await;
        if h.is_two_way() {
            out.push(|b| match answer {
                Ok(Some(resp)) => write_answer(&codec, b, h, resp),
                Ok(None) => {}
                Err(e) => write_error(&codec, b, h, &e),
            });
        }
        ctx.inflight.set(ctx.inflight.get() - 1);
    })
    .detach();
}

/// Sends the call to the local provider and returns its answer frame (`None` for a one-way call, which
/// gets no answer and so takes no place in the request-id map).
async fn forward(ctx: &Ctx, f: &Frame) -> Result<Option<Frame>, CallError> {
    let codec = ctx.settings.upstream.codec;
    let down_ser = f.header.serialization().map_err(CallError::Encode)?;
    let up_ser = ctx.settings.serialization;
    let conn = ctx.pool.get().await?;
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
    conn.send(encode)?
        .wait(ctx.settings.upstream.request_timeout)
        .await
        .map(Some)
}

/// Writes the provider's answer back with the consumer's id (transcoding when serializations differ).
fn write_answer(codec: &Codec, buf: &mut BytesMut, req: Header, resp: Frame) {
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
fn write_error(codec: &Codec, buf: &mut BytesMut, req: Header, e: &CallError) {
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
