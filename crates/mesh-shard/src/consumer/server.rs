//! One HTTP/1.1 connection of the consumer: requests parsed as they arrive, pipelined requests all
//! started before the first is answered and answered in order, `100 Continue`, keep-alive, the idle and
//! request-read timeouts, and the close on a stop.

use std::borrow::Cow;
use std::time::Instant;

use bytes::BytesMut;
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use mesh_http::answer::HttpAnswer;
use mesh_http::json_answer::{self, JsonAnswer};
use mesh_http::{ConnectionHeader, HttpRequest, Invocation, Parse};

use super::outcome::CallOutcome;

use super::call::{self, Started};
use super::form_call::service_key;
use super::Ctx;
use crate::control::ShardControl;
use crate::io::{read_some, split};
use crate::read_buffer::ReadBuffer;

/// First allocation of a batch's answers (grown for larger ones): a typical answer fits.
const ANSWERS_START: usize = 512;

/// An HTTP answer being prepared. Its call borrows from the connection's read buffer, which is not
/// advanced until every answer of the batch is written.
struct Job<'a> {
    call: Answer<'a>,
    keep_alive: bool,
}

/// What a request gets: an answer of the HTTP layer's own, or its call's outcome (a form call answered in
/// text, a JSON call in JSON).
#[allow(clippy::large_enum_variant)] // a few per connection at a time; boxing would cost an allocation per call
enum Answer<'a> {
    Now(HttpAnswer),
    Call(Started<'a, Invocation<'a>>),
    JsonNow(JsonAnswer),
    JsonCall(Started<'a, Invocation<'a>>),
}

/// An answer ready to write.
enum Reply {
    Text(HttpAnswer),
    Json(JsonAnswer),
}

impl Job<'static> {
    fn answered(status: u16, body: impl Into<Cow<'static, str>>, keep_alive: bool) -> Self {
        Job {
            call: Answer::Now(HttpAnswer::new(status, body)),
            keep_alive,
        }
    }
}

pub(super) async fn serve_connection(stream: TcpStream, ctx: &Ctx, control: &ShardControl) {
    let _ = stream.set_nodelay(true);
    // Writes wait only for a client that does not read its answers (glommio's timer is armed only while
    // a write waits). Reads wait only while no request is being served: their idle timeout is the shard's
    // timer below, which keeps no glommio timer pending while the shard parks (crate::timer).
    let _ = stream.set_write_timeout(Some(ctx.settings.idle_timeout));
    let (mut r, mut w) = split(stream);
    let limits = &ctx.settings.http;
    // Memory on demand: the read buffer holds what arrived and is not answered yet (up to the largest
    // request the limits allow), and nothing while the connection waits for its next request; answers are
    // written from a buffer of the batch's own.
    let mut buf = ReadBuffer::new(limits.max_request_bytes());
    // `100 Continue` goes out once per request, not on every read while its body arrives.
    let mut continued = false;
    // HTTP/1.0 clients need `Connection: keep-alive` said explicitly.
    let mut http10 = false;
    // When the partial request at the head of `buf` started arriving.
    let mut started: Option<Instant> = None;
    loop {
        // Start every complete request in the buffer (pipelining), then answer them in order.
        // One request per read is the common case: room for one (a first push would reserve four).
        let mut jobs: Vec<Job<'_>> = Vec::with_capacity(1);
        let mut offset = 0;
        let mut close_after = false;
        let mut send_continue = false;
        loop {
            match mesh_http::parse_request(&buf.bytes()[offset..], limits) {
                Ok(Parse::Complete(req)) => {
                    offset += req.consumed;
                    http10 = req.minor_version == 0;
                    let keep_alive = req.keep_alive && !control.is_stopping();
                    // Boxed (here and for `finish` below): the connection's task is sized for its largest
                    // await, and an idle keep-alive connection should not carry a call's state machine.
                    jobs.push(Box::pin(start(ctx, &req, keep_alive)).await);
                    if !keep_alive {
                        close_after = true;
                        break;
                    }
                }
                Ok(Parse::Partial { send_continue: c }) => {
                    send_continue = c;
                    break;
                }
                Err(e) => {
                    jobs.push(Job::answered(e.status(), e.to_string(), false));
                    close_after = true;
                    break;
                }
            }
        }
        // The answers' buffer is reserved once the first answer is in hand, not while the calls wait.
        let mut out = BytesMut::new();
        for job in jobs {
            let reply = match job.call {
                Answer::Now(answer) => Reply::Text(answer),
                Answer::Call(started) => Reply::Text(
                    Box::pin(call::finish(ctx, started))
                        .await
                        .to_http(&ctx.settings.upstream.codec),
                ),
                Answer::JsonNow(answer) => Reply::Json(answer),
                Answer::JsonCall(started) => Reply::Json(match Box::pin(call::finish(ctx, started)).await {
                    CallOutcome::Answered(f) => json_answer::render_json(
                        ctx.settings.upstream.codec.decode_body(&f.header, &f.body),
                        &mesh_http::generic::RenderLimits::default(),
                    ),
                    CallOutcome::Failed(e) => json_answer::failure(e.kind.http_status(), &e.reason),
                }),
            };
            if out.capacity() == 0 {
                out.reserve(ANSWERS_START);
            }
            match reply {
                Reply::Text(answer) => write_answer(&mut out, &answer, job.keep_alive, http10),
                Reply::Json(answer) => write_json_answer(&mut out, &answer, job.keep_alive, http10),
            }
        }
        buf.consume(offset);
        if offset > 0 {
            continued = false; // a partial request at the head now is a new one
            started = None;
        }
        if buf.is_empty() {
            started = None;
        } else if started.is_none() {
            started = Some(Instant::now());
        }
        if send_continue && !close_after && !continued {
            out.extend_from_slice(mesh_http::CONTINUE);
            continued = true;
        }
        if !out.is_empty() && w.write_all(&out).await.is_err() {
            return;
        }
        drop(out);
        if close_after {
            let _ = w.close().await;
            return;
        }
        // Between requests, a stop closes the connection at once instead of holding the drain; a pending
        // glommio read consumes nothing, so abandoning it loses no data. Within a request, the read is
        // bounded by what is left of the request's read timeout.
        let read = read_some(&mut r, &mut buf, ctx.settings.read_buffer);
        let idle_until = Instant::now() + ctx.settings.idle_timeout;
        let timed_out = |until| async move {
            crate::timer::sleep_until(until).await;
            Err(std::io::Error::from(std::io::ErrorKind::TimedOut))
        };
        let n = match started {
            None => {
                futures_lite::future::or(
                    read,
                    futures_lite::future::or(
                        async {
                            control.stopped().await;
                            Ok(0)
                        },
                        timed_out(idle_until),
                    ),
                )
                .await
            }
            Some(t0) => {
                let until = (t0 + ctx.settings.request_read_timeout).min(idle_until);
                futures_lite::future::or(read, timed_out(until)).await
            }
        };
        match n {
            Ok(0) => return,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut && started.is_some() => {
                let why = format!(
                    "request not received in full within {} ms",
                    ctx.settings.request_read_timeout.as_millis()
                );
                let mut out = BytesMut::new();
                mesh_http::write_status(&mut out, 408, &why, false);
                let _ = w.write_all(&out).await;
                let _ = w.close().await;
                return;
            }
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                // The buffer is full (the request limits plus nothing more) and no request is complete: the
                // parser refuses such requests before this, so this is the last line of defence.
                let mut out = BytesMut::new();
                mesh_http::write_status(&mut out, 413, &e.to_string(), false);
                let _ = w.write_all(&out).await;
                let _ = w.close().await;
                return;
            }
            Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Appends `answer` as an HTTP response.
fn write_answer(out: &mut BytesMut, answer: &HttpAnswer, keep_alive: bool, http10: bool) {
    let conn = match (keep_alive, http10) {
        (false, _) => ConnectionHeader::Close,
        (true, true) => ConnectionHeader::KeepAlive,
        (true, false) => ConnectionHeader::Omit,
    };
    if answer.status == 200 {
        mesh_http::write_response_with(
            out,
            200,
            "text/plain; charset=utf-8",
            answer.body.as_bytes(),
            conn,
        );
    } else {
        mesh_http::write_status_with(out, answer.status, &answer.body, conn);
    }
}

/// Appends a JSON API answer: `application/json`, the answer's attachments as header fields.
fn write_json_answer(out: &mut BytesMut, answer: &JsonAnswer, keep_alive: bool, http10: bool) {
    let conn = match (keep_alive, http10) {
        (false, _) => ConnectionHeader::Close,
        (true, true) => ConnectionHeader::KeepAlive,
        (true, false) => ConnectionHeader::Omit,
    };
    let headers: Vec<(&str, &str)> = answer
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    mesh_http::write_response_headers(
        out,
        answer.status,
        "application/json",
        &headers,
        answer.body.as_bytes(),
        conn,
    );
}

/// Turns a request into a call sent to a provider agent (or an immediate answer).
async fn start<'a>(ctx: &Ctx, req: &HttpRequest<'a>, keep_alive: bool) -> Job<'a> {
    if req.method != "POST" {
        return Job::answered(405, "only POST is served", keep_alive);
    }
    // `/{application}/{interface}/{method}`: the JSON generic-call API; any other path: the form.
    if mesh_http::json_call_path(req.path).is_some() {
        return start_json(ctx, req, keep_alive).await;
    }
    let inv = match &req.body {
        Cow::Borrowed(body) => mesh_http::parse_form(body, &ctx.settings.http),
        // A de-chunked body is owned by `req`: detach the invocation from it.
        Cow::Owned(body) => mesh_http::parse_form(body, &ctx.settings.http).map(owned_invocation),
    };
    match inv {
        Ok(inv) => {
            let service = service_key(&inv);
            Job {
                call: Answer::Call(call::start(ctx, inv, service).await),
                keep_alive,
            }
        }
        Err(e) => Job::answered(e.status(), e.to_string(), keep_alive && !e.closes_connection()),
    }
}

/// A JSON generic call (its path already matched).
async fn start_json<'a>(ctx: &Ctx, req: &HttpRequest<'a>, keep_alive: bool) -> Job<'a> {
    match mesh_http::parse_json_call(req) {
        Ok(Some(call)) => {
            let service = service_key(&call.invocation);
            Job {
                call: Answer::JsonCall(call::start(ctx, call.invocation, service).await),
                keep_alive,
            }
        }
        Ok(None) => Job {
            call: Answer::JsonNow(json_answer::failure(
                404,
                "not a /{application}/{interface}/{method} path",
            )),
            keep_alive,
        },
        Err(e) => Job {
            call: Answer::JsonNow(json_answer::failure(e.status(), &e.to_string())),
            keep_alive: keep_alive && !e.closes_connection(),
        },
    }
}

fn owned_invocation(inv: Invocation<'_>) -> Invocation<'static> {
    let own = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
    Invocation {
        interface: own(inv.interface),
        method: own(inv.method),
        param_types: own(inv.param_types),
        args: inv.args.into_iter().map(mesh_dubbo::Value::into_owned).collect(),
        version: inv.version.map(own),
        group: inv.group.map(own),
        tag: inv.tag.map(own),
        force_tag: inv.force_tag,
        attachments: inv
            .attachments
            .into_iter()
            .map(|(n, v)| (own(n), own(v)))
            .collect(),
    }
}
