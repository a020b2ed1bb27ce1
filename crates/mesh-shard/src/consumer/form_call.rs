//! The challenge form's call ([`Invocation`], borrowed from the HTTP connection's read buffer) as a
//! [`CallRequest`]: its service key, what the routers see of it, and its hessian2 request frame.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use mesh_dubbo::{Codec, CodecError, Header, RequestHead, Serialization, Value};
use mesh_http::Invocation;

use super::request::CallRequest;
use super::routes::Call as RouteCall;

impl CallRequest for Invocation<'_> {
    fn interface(&self) -> &str {
        &self.interface
    }

    fn method(&self) -> &str {
        &self.method
    }

    fn route<T>(&self, service: &str, exclude: &[SocketAddr], route: impl FnOnce(&RouteCall<'_>) -> T) -> T {
        // Routers compare arguments as strings (Dubbo's `String.valueOf`): a string argument is borrowed,
        // others are formatted. A generic `$invoke` is routed as the method it calls, with its arguments
        // (as Dubbo's `RpcUtils.getMethodName` / `getArguments` do).
        let (method, values): (&str, &[Value<'_>]) = match generic_target(self) {
            Some((m, v)) => (m, v),
            None => (&self.method, &self.args),
        };
        // Small stack arrays cover the usual few arguments without allocating.
        let mut texts: [Cow<'_, str>; 4] = Default::default();
        let mut small: [&str; 4] = [""; 4];
        let heap_texts: Vec<Cow<'_, str>>;
        let heap: Vec<&str>;
        let args: &[&str] = if values.len() <= small.len() {
            for (slot, a) in texts.iter_mut().zip(values) {
                *slot = mesh_http::generic::text_of(a);
            }
            for (slot, t) in small.iter_mut().zip(&texts) {
                *slot = t;
            }
            &small[..values.len()]
        } else {
            heap_texts = values.iter().map(mesh_http::generic::text_of).collect();
            heap = heap_texts.iter().map(|a| a.as_ref()).collect();
            &heap
        };
        // Attachments are rare: an empty vector does not allocate.
        let attachments: Vec<(&str, &str)> = self
            .attachments
            .iter()
            .map(|(n, v)| (n.as_ref(), v.as_ref()))
            .collect();
        route(&RouteCall {
            service,
            method,
            tag: self.tag.as_deref(),
            force_tag: self.force_tag,
            args,
            attachments: &attachments,
            exclude,
        })
    }

    fn encode(
        &self,
        codec: &Codec,
        buf: &mut BytesMut,
        id: u64,
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<(), CodecError> {
        encode_call(codec, token, buf, id, self, timeout)
    }
}

/// The method and arguments a generic `$invoke(String, String[], Object[])` call stands for.
fn generic_target<'s>(inv: &'s Invocation<'_>) -> Option<(&'s str, &'s [Value<'s>])> {
    if inv.method != mesh_http::generic::GENERIC_METHOD
        || inv.param_types != mesh_http::generic::GENERIC_DESCRIPTOR
    {
        return None;
    }
    match &inv.args[..] {
        [Value::String(m), _, Value::List(values)] => Some((m, &values.items)),
        _ => None,
    }
}

/// Dubbo's service key of the call, `group/interface:version` (each part only when set), borrowed when
/// it is just the interface.
pub(super) fn service_key<'a>(inv: &Invocation<'a>) -> Cow<'a, str> {
    match (&inv.group, &inv.version) {
        (None, None) => inv.interface.clone(),
        (group, version) => Cow::Owned(join_service_key(
            group.as_deref(),
            &inv.interface,
            version.as_deref(),
        )),
    }
}

/// `group/interface:version`, each part only when set.
pub(super) fn join_service_key(group: Option<&str>, interface: &str, version: Option<&str>) -> String {
    let mut key = String::with_capacity(
        group.map_or(0, |g| g.len() + 1) + interface.len() + version.map_or(0, |v| v.len() + 1),
    );
    if let Some(g) = group {
        key.push_str(g);
        key.push('/');
    }
    key.push_str(interface);
    if let Some(v) = version {
        key.push(':');
        key.push_str(v);
    }
    key
}

/// Writes the Dubbo request frame of `inv` with request id `id`: the agent's attachments (`path`,
/// `interface`, `timeout`, `group`, `token`) then the caller's own.
fn encode_call(
    codec: &Codec,
    token: Option<&str>,
    buf: &mut BytesMut,
    id: u64,
    inv: &Invocation<'_>,
    timeout: Duration,
) -> Result<(), CodecError> {
    let head = RequestHead {
        dubbo_version: mesh_dubbo::message::DUBBO_VERSION,
        service: &inv.interface,
        version: Some(inv.version.as_deref().unwrap_or("0.0.0")),
        method: &inv.method,
        param_types: &inv.param_types,
    };
    // Arguments are already Hessian values of their declared types (strings borrowed from the request).
    let path = Value::str(&inv.interface);
    let args: &[Value<'_>] = &inv.args;
    // Dubbo sends attachments as strings; the provider agent reads the timeout from it.
    let mut ms = itoa::Buffer::new();
    let timeout = Value::str(ms.format(timeout.as_millis() as u64));
    let token = token.map(Value::str);
    let group = inv.group.as_deref().map(Value::str);
    let atts = [
        Some(("path", &path)),
        Some(("interface", &path)),
        Some(("timeout", &timeout)),
        group.as_ref().map(|g| ("group", g)),
        token.as_ref().map(|t| ("token", t)),
    ];
    // The caller's own attachments (names checked by the form: none of the above).
    let callers: Vec<(&str, Value<'_>)> = inv
        .attachments
        .iter()
        .map(|(n, v)| (n.as_ref(), Value::str(v)))
        .collect();
    let header = Header::request(id, Serialization::Hessian2, true);
    codec.encode_request(
        buf,
        header,
        &head,
        args,
        atts.iter()
            .flatten()
            .copied()
            .chain(callers.iter().map(|(n, v)| (*n, v))),
    )
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use mesh_dubbo::{decode_frame, Body, Decoded};

    #[test]
    fn the_callers_attachments_go_to_the_provider_after_the_agents() {
        let body = b"interface=a.B&method=hash&parameterTypesString=Ljava%2Flang%2FString%3B&parameter=x\
            &group=g&attachment.user=ann&attachment.trace=t+1";
        let inv = mesh_http::parse_form(body, &mesh_http::Limits::default()).unwrap();
        let codec = Codec::default();
        let mut buf = BytesMut::new();
        inv.encode(&codec, &mut buf, 7, Some("secret"), Duration::from_millis(5000))
            .unwrap();
        let Decoded::Frame(frame) = decode_frame(&mut buf, codec.max_body).unwrap() else {
            panic!("a whole frame was written");
        };
        assert_eq!(frame.header.id, 7);
        let Body::Request(req) = codec.decode_body(&frame.header, &frame.body).unwrap() else {
            panic!("a request was written");
        };
        let atts: Vec<(&str, Option<&str>)> = req
            .attachments
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_str()))
            .collect();
        assert_eq!(
            atts,
            [
                ("path", Some("a.B")),
                ("interface", Some("a.B")),
                ("timeout", Some("5000")),
                ("group", Some("g")),
                ("token", Some("secret")),
                ("user", Some("ann")),
                ("trace", Some("t 1")),
            ]
        );
        assert_eq!(req.args, [Value::str("x")]);
    }

    #[test]
    fn the_routers_see_the_forms_method_arguments_tag_and_attachments() {
        let body = b"interface=a.B&method=m&parameterTypesString=Ljava%2Flang%2FString%3BI\
            &parameter=x&parameter=5&tag=blue&attachment.user=ann";
        let inv = mesh_http::parse_form(body, &mesh_http::Limits::default()).unwrap();
        let exclude: [SocketAddr; 1] = ["10.0.0.1:1".parse().unwrap()];
        let seen = inv.route("a.B", &exclude, |c| {
            (
                c.service.to_owned(),
                c.method.to_owned(),
                c.tag.map(str::to_owned),
                c.args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                c.attachments
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>(),
                c.exclude.to_vec(),
            )
        });
        assert_eq!(
            seen,
            (
                "a.B".into(),
                "m".into(),
                Some("blue".into()),
                vec!["x".into(), "5".into()],
                vec!["user=ann".into()],
                exclude.to_vec()
            )
        );
    }

    #[test]
    fn typed_form_arguments_go_on_the_wire_by_their_declared_type() {
        let body =
            b"interface=a.B&method=m&parameterTypesString=java.lang.String,int,long,byte%5B%5D&parameter=x\
            &parameter=5&parameter=-7&parameter=aGk%3D";
        let inv = mesh_http::parse_form(body, &mesh_http::Limits::default()).unwrap();
        let codec = Codec::default();
        let mut buf = BytesMut::new();
        inv.encode(&codec, &mut buf, 1, None, Duration::from_millis(100))
            .unwrap();
        let Decoded::Frame(frame) = decode_frame(&mut buf, codec.max_body).unwrap() else {
            panic!("a whole frame was written");
        };
        let Body::Request(req) = codec.decode_body(&frame.header, &frame.body).unwrap() else {
            panic!("a request was written");
        };
        assert_eq!(req.param_types, "Ljava/lang/String;IJ[B");
        assert_eq!(
            req.args,
            [
                Value::str("x"),
                Value::Int(5),
                Value::Long(-7),
                Value::Binary(Cow::Borrowed(b"hi"))
            ]
        );
    }

    #[test]
    fn a_generic_invoke_is_routed_as_the_method_it_calls() {
        let types = mesh_http::generic::parse_type_list("int").unwrap();
        let values = vec![mesh_http::generic::Json::Number(mesh_http::generic::Number::Int(
            42,
        ))];
        let inv = Invocation {
            method: mesh_http::generic::GENERIC_METHOD.into(),
            param_types: mesh_http::generic::GENERIC_DESCRIPTOR.into(),
            args: mesh_http::generic::generic_arguments("hash", Some(&types), &values)
                .unwrap()
                .to_vec(),
            ..invocation(None, None)
        };
        let seen = inv.route("x", &[], |c| {
            (
                c.method.to_owned(),
                c.args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            )
        });
        assert_eq!(seen, ("hash".to_owned(), vec!["42".to_owned()]));
    }

    /// A call of `com.example.Svc.hash()` in `group` / `version`.
    pub(in crate::consumer) fn invocation(
        group: Option<&'static str>,
        version: Option<&'static str>,
    ) -> Invocation<'static> {
        Invocation {
            interface: "com.example.Svc".into(),
            method: "hash".into(),
            param_types: "".into(),
            args: Vec::new(),
            version: version.map(Into::into),
            group: group.map(Into::into),
            tag: None,
            force_tag: false,
            attachments: Vec::new(),
        }
    }

    #[test]
    fn the_service_key_is_dubbos() {
        assert!(matches!(
            service_key(&invocation(None, None)),
            Cow::Borrowed("com.example.Svc")
        ));
        assert_eq!(service_key(&invocation(Some("g"), None)), "g/com.example.Svc");
        assert_eq!(service_key(&invocation(None, Some("2"))), "com.example.Svc:2");
        assert_eq!(
            service_key(&invocation(Some("*"), Some("*"))),
            "*/com.example.Svc:*"
        );
    }
}
