//! What the simulator answers to one frame: the call checked (service, method, arguments, token), an
//! error status at once, or the value scheduled at its due time; heartbeats echoed.

use super::*;

/// What a request is, once checked.
enum Call {
    Answer(RpcResult<'static>),
    Error(Status, String),
}

fn check_call(shared: &Shared, req: &Request<'_>) -> Call {
    let port = shared.local.port();
    let ip = shared.local.ip();
    if let Some(md) = &shared.cfg.metadata {
        match md.answer(req) {
            MetadataAnswer::NotMine => {}
            MetadataAnswer::Answer(result) => return Call::Answer(result),
            MetadataAnswer::Error(message) => return Call::Error(Status::SERVICE_ERROR, message),
        }
    }
    let service_ok = req.service == SERVICE
        || [req.attachment("interface"), req.attachment("path")]
            .into_iter()
            .flatten()
            .any(|v| v.as_str() == Some(SERVICE));
    if !service_ok {
        return Call::Error(
            Status::SERVICE_ERROR,
            format!(
                "org.apache.dubbo.remoting.RemotingException: Not found exported service: {}:{port} in \
                 [{SERVICE}:{port}], may be version or group mismatch , channel: consumer: --> provider: \
                 {ip}:{port}, message:RpcInvocation [methodName={}, parameterTypes={}]",
                req.service, req.method, req.param_types
            ),
        );
    }
    if let Some(token) = &shared.cfg.token {
        let sent = req.attachment("token").and_then(Value::as_str);
        if sent != Some(token.as_str()) {
            // TokenFilter's RpcException, answered as SERVICE_ERROR by HeaderExchangeHandler.
            return Call::Error(
                Status::SERVICE_ERROR,
                format!(
                    "org.apache.dubbo.rpc.RpcException: Invalid token! Forbid invoke remote service interface \
                     {SERVICE} method {}() from consumer to provider {ip}:{port}, consumer incorrect token is {}",
                    req.method,
                    sent.unwrap_or("null")
                ),
            );
        }
    }
    let method = if req.method == METHOD && req.param_types == PARAM_TYPES {
        "hash(java.lang.String)"
    } else if req.method == USER_METHOD && req.param_types == USER_PARAM_TYPES {
        "echoUser(com.alibaba.dubbo.performance.demo.provider.User)"
    } else {
        return Call::Error(
            Status::SERVICE_ERROR,
            format!(
                "org.apache.dubbo.rpc.RpcException: Failed to invoke remote proxy method {} to \
                 dubbo://{ip}:{port}/{SERVICE}, cause: org.apache.dubbo.common.bytecode.NoSuchMethodException: \
                 Not found method \"{}\" with parameter types \"{}\" in class {SERVICE}.",
                req.method, req.method, req.param_types
            ),
        );
    };
    let bad_argument = |why: String| {
        Call::Error(
            Status::SERVICE_ERROR,
            format!(
                "org.apache.dubbo.rpc.RpcException: Failed to invoke remote proxy method {} to \
                 dubbo://{ip}:{port}/{SERVICE}, cause: java.lang.IllegalArgumentException: {why}",
                req.method
            ),
        )
    };
    match (req.method == METHOD, req.args.as_slice()) {
        (true, [Value::String(s)]) => Call::Answer(RpcResult::Value(Value::Int(java_string_hash(s)))),
        (true, [other]) => bad_argument(format!("argument 0 of {method} is a {}", other.kind())),
        (false, [arg]) => match User::from_value(arg) {
            Ok(user) => Call::Answer(RpcResult::Value(user_answer(&user))),
            Err(why) => bad_argument(format!("argument 0 of {method}: {why}")),
        },
        (_, args) => bad_argument(format!("wrong number of arguments: {}", args.len())),
    }
}

/// Encodes an error answer (a status and a message string) and returns it as a frame.
fn error_frame(
    shared: &Shared,
    scratch: &mut BytesMut,
    id: u64,
    ser: Serialization,
    status: Status,
    msg: &str,
) -> Bytes {
    let resp = Response::Error {
        status,
        message: msg.into(),
    };
    if shared.codec.encode_response(scratch, id, ser, &resp).is_err() {
        // Only an absurd max_body could refuse a short message; answer without one.
        let _ = shared.codec.encode_response(
            scratch,
            id,
            ser,
            &Response::Error {
                status,
                message: "".into(),
            },
        );
    }
    scratch.split().freeze()
}

/// Handles one frame; returns the answer to queue, if any.
pub(super) fn handle_frame(shared: &Arc<Shared>, frame: &Frame, scratch: &mut BytesMut) -> Option<Outgoing> {
    let h = frame.header;
    if !h.is_request() {
        // A response or heartbeat answer sent to a provider: nothing to do with it.
        if !h.is_event() {
            shared.errors.fetch_add(1, Ordering::Relaxed);
        }
        return None;
    }
    let frame_ser = h.serialization().ok();
    let reply_ser = match shared.cfg.serialization {
        SerializationMode::Only(s) => s,
        SerializationMode::Any => frame_ser.unwrap_or(Serialization::Hessian2),
    };
    let immediate = || Outgoing {
        due: None,
        bytes: Bytes::new(),
        slot: None,
    };
    let error = |scratch: &mut BytesMut, status: Status, msg: &str| {
        shared.errors.fetch_add(1, Ordering::Relaxed);
        if h.is_two_way() {
            Some(Outgoing {
                bytes: error_frame(shared, scratch, h.id, reply_ser, status, msg),
                ..immediate()
            })
        } else {
            None
        }
    };

    if let SerializationMode::Only(want) = shared.cfg.serialization {
        if frame_ser != Some(want) {
            let msg = format!(
                "Fail to decode request due to: java.io.IOException: Unexpected serialization id:{} received \
                 from network, please check if the peer send the right id.",
                h.serialization_id()
            );
            return error(scratch, Status::BAD_REQUEST, &msg);
        }
    }
    let body = match shared.codec.decode_body(&h, &frame.body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                scratch,
                Status::BAD_REQUEST,
                &format!("Fail to decode request due to: {e}"),
            )
        }
    };
    let req = match body {
        Body::Event(Event::Heartbeat) => {
            if !h.is_two_way() {
                return None;
            }
            shared
                .codec
                .encode_heartbeat(scratch, h.id, frame_ser.unwrap_or(reply_ser), false);
            return Some(Outgoing {
                bytes: scratch.split().freeze(),
                ..immediate()
            });
        }
        // Read-only / writeable and other events: Java's HeaderExchangeHandler only notes them.
        Body::Event(_) => return None,
        Body::Response(_) => return None,
        Body::Request(r) => r,
    };
    let Some((slot, inflight)) = shared.try_acquire() else {
        shared.rejected.fetch_add(1, Ordering::Relaxed);
        if !h.is_two_way() {
            return None;
        }
        let msg = shared.exhausted_message();
        return Some(Outgoing {
            bytes: error_frame(
                shared,
                scratch,
                h.id,
                reply_ser,
                Status::SERVER_THREADPOOL_EXHAUSTED,
                &msg,
            ),
            ..immediate()
        });
    };
    match check_call(shared, &req) {
        Call::Error(status, msg) => {
            drop(slot);
            error(scratch, status, &msg)
        }
        Call::Answer(result) => {
            let due = Some(Instant::now() + shared.latency_now(inflight));
            if !h.is_two_way() {
                return Some(Outgoing {
                    due,
                    bytes: Bytes::new(),
                    slot: Some(slot),
                });
            }
            let attachments = mesh_dubbo::message::supports_response_attachments(&req.dubbo_version)
                .then(|| vec![("dubbo".into(), Value::str(DUBBO_VERSION))]);
            let resp = Response::Ok { result, attachments };
            let ser = frame_ser.unwrap_or(reply_ser);
            if let Err(e) = shared.codec.encode_response(scratch, h.id, ser, &resp) {
                drop(slot);
                return error(
                    scratch,
                    Status::BAD_RESPONSE,
                    &format!("Fail to encode response: {e}"),
                );
            }
            Some(Outgoing {
                due,
                bytes: scratch.split().freeze(),
                slot: Some(slot),
            })
        }
    }
}
