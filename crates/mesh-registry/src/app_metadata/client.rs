//! A MetadataService client: one `getMetadataInfo(revision)` call to an instance's MetadataService over
//! tokio TCP, in Dubbo's protocol with Hessian 2 (mesh-dubbo's codec), as a Java Dubbo 3 consumer makes it
//! (apache/dubbo `MetadataUtils.getRemoteMetadata` through a `MetadataService` reference built by
//! `StandardMetadataServiceURLBuilder`): path and interface `org.apache.dubbo.metadata.MetadataService`,
//! group = the application, version from the instance's url-params (`1.0.0`), one `String` argument.
//!
//! One connection per call, closed after the answer (fetches are rare: one per new revision). The whole
//! call (connect, write, read) has one time limit; the answer's body is refused past
//! [`ClientSettings::max_answer`] bytes before anything is allocated for it. Whatever the provider sends
//! (a status other than OK, an exception, null, a value that is not a `MetadataInfo`) is an error
//! ([`AppDiscoveryError::MetadataCall`] or [`AppDiscoveryError::BadMetadataInfo`]), never a panic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use mesh_dubbo::message::DUBBO_VERSION;
use mesh_dubbo::{
    Body, Codec, CodecError, Decoded, Frame, Header, RequestHead, Response, RpcResult, Serialization, Value,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::target::{MetadataTarget, TargetKind};
use crate::dubbo::metadata_info::{MetadataInfo, GET_METADATA_INFO, METADATA_SERVICE_INTERFACE};
use crate::dubbo::{excerpt, AppDiscoveryError, MetadataCallFailure};

/// The parameter descriptor of `getMetadataInfo(String)`.
const GET_METADATA_INFO_TYPES: &str = "Ljava/lang/String;";

/// The protocol the client speaks.
const DUBBO: &str = "dubbo";

/// The client's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    /// The whole call: connecting, writing the request and reading the answer.
    pub timeout: Duration,
    /// The largest answer body accepted (bytes).
    pub max_answer: usize,
}

impl Default for ClientSettings {
    /// 3 s per call; answers up to 4 MiB (a `MetadataInfo` of 4,096 services of about 1 KiB each).
    fn default() -> Self {
        ClientSettings {
            timeout: Duration::from_secs(3),
            max_answer: 4 * 1024 * 1024,
        }
    }
}

/// Calls MetadataServices (see the module documentation). Cheap to clone: clones share the request ids.
#[derive(Debug, Clone)]
pub struct MetadataServiceClient {
    settings: ClientSettings,
    codec: Codec,
    next_id: Arc<AtomicU64>,
}

impl MetadataServiceClient {
    /// A client with these limits.
    pub fn new(settings: ClientSettings) -> Self {
        let codec = Codec {
            max_body: settings.max_answer,
            ..Codec::default()
        };
        MetadataServiceClient {
            settings,
            codec,
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Its limits.
    pub fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    /// Calls `getMetadataInfo(revision)` on `target`'s MetadataService and decodes the answer. Does not
    /// check the answer's revision (the cache does). Errors: a target this client cannot call (remote
    /// storage, a protocol other than `dubbo`), and every way the call can fail
    /// ([`MetadataCallFailure`]), as [`AppDiscoveryError::MetadataCall`]; an answer that is not a
    /// `MetadataInfo` as [`AppDiscoveryError::BadMetadataInfo`] (or `TooLong`).
    pub async fn get_metadata_info(
        &self,
        target: &MetadataTarget,
        revision: &str,
    ) -> Result<MetadataInfo, AppDiscoveryError> {
        let address = target.address();
        let fail = |failure| AppDiscoveryError::MetadataCall {
            address: address.clone(),
            revision: excerpt(revision),
            failure,
        };
        let (port, version) = match &target.kind {
            TargetKind::Remote => {
                return Err(fail(MetadataCallFailure::Unsupported(
                    "remote storage: read from the metadata report, not a MetadataService".into(),
                )))
            }
            TargetKind::Service { protocol, .. } if protocol != DUBBO => {
                return Err(fail(MetadataCallFailure::Unsupported(format!(
                    "MetadataService protocol {:?} (only dubbo is spoken)",
                    excerpt(protocol)
                ))))
            }
            TargetKind::Service { port, version, .. } => (*port, version.as_str()),
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut request = BytesMut::new();
        encode_get_metadata_info(
            &self.codec,
            &mut request,
            id,
            &target.app,
            version,
            revision,
            self.settings.timeout,
        )
        .map_err(|e| fail(MetadataCallFailure::Codec(e.to_string())))?;
        let call = async {
            let mut stream = TcpStream::connect((target.host.as_str(), port))
                .await
                .map_err(|e| MetadataCallFailure::Connect(e.to_string()))?;
            // One small request: no need to wait for more to fill a packet.
            let _ = stream.set_nodelay(true);
            stream
                .write_all(&request)
                .await
                .map_err(|e| MetadataCallFailure::Io(e.to_string()))?;
            read_answer(&self.codec, &mut stream, id).await
        };
        let frame = match tokio::time::timeout(self.settings.timeout, call).await {
            Err(_) => return Err(fail(MetadataCallFailure::Timeout(self.settings.timeout))),
            Ok(Err(failure)) => return Err(fail(failure)),
            Ok(Ok(frame)) => frame,
        };
        decode_answer(&self.codec, &frame).map_err(|e| match e {
            Answer::Failed(failure) => fail(failure),
            Answer::NotMetadataInfo(e) => e,
        })
    }
}

/// Encodes a `getMetadataInfo(revision)` request as a Java Dubbo 3 consumer does: Hessian 2, two-way,
/// service `org.apache.dubbo.metadata.MetadataService` at `version`, attachments `path`, `interface`,
/// `version`, `group` (= `app`) and `timeout` (milliseconds, as text).
pub fn encode_get_metadata_info(
    codec: &Codec,
    buf: &mut BytesMut,
    id: u64,
    app: &str,
    version: &str,
    revision: &str,
    timeout: Duration,
) -> Result<(), CodecError> {
    let head = RequestHead {
        dubbo_version: DUBBO_VERSION,
        service: METADATA_SERVICE_INTERFACE,
        version: Some(version),
        method: GET_METADATA_INFO,
        param_types: GET_METADATA_INFO_TYPES,
    };
    let service = Value::str(METADATA_SERVICE_INTERFACE);
    let version_value = Value::str(version);
    let group = Value::str(app);
    let timeout_text = timeout.as_millis().to_string();
    let timeout_value = Value::str(&timeout_text);
    let attachments = [
        ("path", &service),
        ("interface", &service),
        ("version", &version_value),
        ("group", &group),
        ("timeout", &timeout_value),
    ];
    codec.encode_request(
        buf,
        Header::request(id, Serialization::Hessian2, true),
        &head,
        &[Value::str(revision)],
        attachments,
    )
}

/// Reads frames until the answer to request `id`; events (heartbeats) are skipped. The frame decoder
/// refuses a body over the codec's `max_body` from its header alone.
async fn read_answer(codec: &Codec, stream: &mut TcpStream, id: u64) -> Result<Frame, MetadataCallFailure> {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        match codec.decode_frame(&mut buf) {
            Ok(Decoded::Frame(frame)) if frame.header.is_event() => continue,
            Ok(Decoded::Frame(frame)) if frame.header.is_request() => {
                return Err(MetadataCallFailure::Codec(
                    "a request instead of an answer".into(),
                ))
            }
            Ok(Decoded::Frame(frame)) if frame.header.id != id => {
                return Err(MetadataCallFailure::Codec(format!(
                    "an answer to request {} instead of {id}",
                    frame.header.id
                )))
            }
            Ok(Decoded::Frame(frame)) => return Ok(frame),
            Ok(Decoded::NeedMore(n)) => buf.reserve(n.min(64 * 1024)),
            Err(CodecError::BodyTooLarge { len, max }) => {
                return Err(MetadataCallFailure::TooLarge { len, max })
            }
            Err(e) => return Err(MetadataCallFailure::Codec(e.to_string())),
        }
        let read = stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| MetadataCallFailure::Io(e.to_string()))?;
        if read == 0 {
            return Err(MetadataCallFailure::Io(format!(
                "closed by the provider after {} bytes of the answer",
                buf.len()
            )));
        }
    }
}

/// Why an answer frame gave no `MetadataInfo`.
enum Answer {
    /// The call failed (status, exception, null, undecodable).
    Failed(MetadataCallFailure),
    /// A value that is not a `MetadataInfo`.
    NotMetadataInfo(AppDiscoveryError),
}

/// Decodes an answer frame into a `MetadataInfo`.
fn decode_answer(codec: &Codec, frame: &Frame) -> Result<MetadataInfo, Answer> {
    let body = codec
        .decode_body(&frame.header, &frame.body)
        .map_err(|e| Answer::Failed(MetadataCallFailure::Codec(e.to_string())))?;
    match body {
        Body::Response(Response::Ok { result, .. }) => match result {
            RpcResult::Value(v) => MetadataInfo::from_value(&v).map_err(Answer::NotMetadataInfo),
            RpcResult::Null => Err(Answer::Failed(MetadataCallFailure::Null)),
            RpcResult::Exception(e) => Err(Answer::Failed(MetadataCallFailure::Exception(
                describe_exception(&e),
            ))),
        },
        Body::Response(Response::Error { status, message }) => {
            Err(Answer::Failed(MetadataCallFailure::Status {
                status: status.0,
                message: excerpt(&message),
            }))
        }
        Body::Request(_) | Body::Event(_) => Err(Answer::Failed(MetadataCallFailure::Codec(
            "not a response".into(),
        ))),
    }
}

/// `class: message` of a Hessian `Throwable` (its `detailMessage`), shortened.
fn describe_exception(e: &Value<'_>) -> String {
    match e {
        Value::Object(o) => {
            let message = o
                .fields
                .iter()
                .find(|(name, _)| name == "detailMessage")
                .and_then(|(_, v)| v.as_str());
            match message {
                Some(m) => excerpt(&format!("{}: {m}", o.class)),
                None => excerpt(&o.class),
            }
        }
        other => format!("a {}", other.kind()),
    }
}
