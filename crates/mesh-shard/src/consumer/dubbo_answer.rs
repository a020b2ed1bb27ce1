//! A call's outcome written back to a Dubbo client with its own request id: the provider's answer frame as
//! it came (serialization and status kept, only the id rewritten), or the agent's failure as a Dubbo error
//! answer (the kind's status, the reason as a string body) in the client's serialization.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};
use mesh_dubbo::{Codec, Header, Response, Serialization, Status};

use super::outcome::CallOutcome;

/// Writes a call's outcome back to the client with its request id `client.id`: the provider's answer as
/// it came (only the id rewritten), or the agent's failure as a Dubbo error answer in the client's
/// serialization.
pub(super) fn write_outcome(codec: &Codec, buf: &mut BytesMut, client: Header, outcome: CallOutcome) {
    match outcome {
        CallOutcome::Answered(frame) => {
            Header {
                id: client.id,
                ..frame.header
            }
            .write(buf);
            buf.put_slice(&frame.body);
        }
        CallOutcome::Failed(f) => write_error(codec, buf, client, f.kind.dubbo_status(), &f.reason),
    }
}

/// Writes a Dubbo error answer (`status`, the message as a string body) to the request `client`.
pub(super) fn write_error(codec: &Codec, buf: &mut BytesMut, client: Header, status: Status, message: &str) {
    let ser = client.serialization().unwrap_or(Serialization::Hessian2);
    let resp = Response::Error {
        status,
        message: Cow::Borrowed(message),
    };
    if codec.encode_response(buf, client.id, ser, &resp).is_err() {
        // Only a message over the frame limit fails: say so in a few bytes.
        let resp = Response::Error {
            status,
            message: Cow::Borrowed("error message over the frame size limit"),
        };
        let _ = codec.encode_response(buf, client.id, ser, &resp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::dubbo_call::tests::frame_of;
    use crate::consumer::outcome::{Failure, FailureKind};
    use mesh_dubbo::{Body, RpcResult, Value};

    #[test]
    fn answers_go_back_with_the_clients_id_and_failures_as_dubbo_statuses() {
        let codec = Codec::default();
        let client = Header::request(77, Serialization::Hessian2, true);
        // The provider's answer on the upstream connection (id 5): only the id changes.
        let ok = Response::Ok {
            result: RpcResult::Value(Value::Int(42)),
            attachments: None,
        };
        let mut buf = BytesMut::new();
        codec
            .encode_response(&mut buf, 5, Serialization::Hessian2, &ok)
            .unwrap();
        let provider = frame_of(&mut buf);
        let mut out = BytesMut::new();
        write_outcome(&codec, &mut out, client, CallOutcome::Answered(provider.clone()));
        let back = frame_of(&mut out);
        assert_eq!(
            back.header,
            Header {
                id: 77,
                ..provider.header
            }
        );
        assert_eq!(back.body, provider.body);
        for (kind, status) in [
            (FailureKind::NoProvider, 70),
            (FailureKind::Timeout, 31),
            (FailureKind::Overloaded, 100),
        ] {
            let failure = Failure::new(kind, "no provider registered for service g/a.B:1");
            write_outcome(&codec, &mut out, client, CallOutcome::Failed(failure));
            let back = frame_of(&mut out);
            assert_eq!((back.header.id, back.header.status), (77, Status(status)));
            assert!(!back.header.is_request() && !back.header.is_event());
            match codec.decode_body(&back.header, &back.body).unwrap() {
                Body::Response(Response::Error { message, .. }) => {
                    assert_eq!(message, "no provider registered for service g/a.B:1")
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
