//! The JSON generic-call API: `POST /{application}/{interface}/{method}`, as dubbo-go-pixiu's HTTP-to-Dubbo
//! filters take it, into an [`Invocation`].
//!
//! | part | meaning |
//! |---|---|
//! | path `/{application}/{interface}/{method}` | `%XX` decoded; a query string is ignored |
//! | `x-dubbo-service-group`, `x-dubbo-service-version` | group and version (absent or empty: none) |
//! | `x-dubbo-service-method-overloading` | the parameter types (`java.lang.String,int` or a descriptor string) |
//! | `x-dubbo-generic` | `true`: Dubbo's `$invoke` with `generic=true` (the provider maps the JSON); `false` or absent: the agent maps it |
//! | `x-dubbo-tag`, `x-dubbo-force-tag` | tag routing, as the form's `tag` / `force_tag` |
//! | `x-dubbo-attachment-<name>` | attachment `<name>` (the name as sent); same limits and reserved names as the form |
//! | body | a JSON array of arguments, one other JSON value (one argument), nothing (no argument), or `{"types": ..., "values": [...]}` |
//!
//! The default is the typed mapping in the agent ([`mesh_generic::from_json`]): the provider gets the real
//! method with Hessian values of its declared types, exactly what a Java consumer sends, so every Dubbo
//! provider works (Java, dubbo-go, the node.js peers, which have no generic service), routing and
//! method-level settings see the real method, and a value that does not fit its type is a 400 before any
//! provider is bothered. `$invoke` is used when `x-dubbo-generic: true` is sent, and when arguments come
//! without any types (then the provider finds the method by name, as Pixiu's calls without types do); a call
//! without types and without arguments is a typed call of the method without parameters.

use std::borrow::Cow;

use mesh_dubbo::Value;
use mesh_generic::{
    descriptor_of, generic_arguments, parse_invoke_body, parse_type_list, typed_arguments, JavaType,
    GENERIC_DESCRIPTOR, GENERIC_METHOD,
};

use crate::form::{argument_error, check_attachment_name, type_list_error};
use crate::{HttpError, HttpRequest, Invocation};

/// Header naming the group.
pub const GROUP_HEADER: &str = "x-dubbo-service-group";
/// Header naming the version.
pub const VERSION_HEADER: &str = "x-dubbo-service-version";
/// Header giving the parameter types.
pub const TYPES_HEADER: &str = "x-dubbo-service-method-overloading";
/// Header choosing Dubbo's `$invoke` (`true`) over the agent's typed mapping.
pub const GENERIC_HEADER: &str = "x-dubbo-generic";
/// Header giving the tag (tag routing).
pub const TAG_HEADER: &str = "x-dubbo-tag";
/// Header forcing the tag (`true`).
pub const FORCE_TAG_HEADER: &str = "x-dubbo-force-tag";
/// Prefix of attachment headers, in requests and answers.
pub const ATTACHMENT_HEADER_PREFIX: &str = "x-dubbo-attachment-";

/// A JSON generic call.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonCall<'a> {
    /// The path's first segment (Pixiu's application name; the agent routes by interface, not by it).
    pub application: Cow<'a, str>,
    /// The call: the real method with typed arguments, or `$invoke` with the `generic` attachment.
    pub invocation: Invocation<'a>,
    /// Whether the call is a `$invoke` (the answer is then the provider's generic form: POJOs as maps).
    pub generic: bool,
}

/// The three path segments of `/{application}/{interface}/{method}` (query string ignored), or `None`
/// for another path.
pub fn json_call_path(path: &str) -> Option<[&str; 3]> {
    let path = path.split('?').next().unwrap_or_default();
    let mut parts = path.strip_prefix('/')?.split('/');
    let seg = [parts.next()?, parts.next()?, parts.next()?];
    if parts.next().is_some() || seg.iter().any(|s| s.is_empty()) {
        return None;
    }
    Some(seg)
}

/// Parses a JSON generic call. `Ok(None)`: the path is not `/{application}/{interface}/{method}`.
pub fn parse_json_call<'a>(req: &HttpRequest<'a>) -> Result<Option<JsonCall<'a>>, HttpError> {
    let Some([application, interface, method]) = json_call_path(req.path) else {
        return Ok(None);
    };
    let application = path_segment(application, "application")?;
    let interface = path_segment(interface, "interface")?;
    let method = path_segment(method, "method")?;

    let DubboHeaders {
        group,
        version,
        tag,
        force_tag,
        generic,
        types: header_types,
        mut attachments,
    } = DubboHeaders::read(req)?;
    let mut generic = generic;
    let header_types = match header_types {
        Some(t) => Some(parse_type_list(t).map_err(|e| match type_list_error(e) {
            HttpError::ParameterTypes(why) => HttpError::JsonCall(format!("header {TYPES_HEADER}: {why}")),
            other => other,
        })?),
        None => None,
    };

    let body = parse_invoke_body(&req.body).map_err(|e| HttpError::JsonCall(format!("body: {e}")))?;
    let types = match (header_types, body.types) {
        (Some(h), Some(b)) if h != b => {
            return Err(HttpError::JsonCall(
                "the types of the header and of the body differ".to_owned(),
            ))
        }
        (h, b) => b.or(h),
    };
    if let Some(types) = &types {
        if types.len() != body.values.len() {
            return Err(HttpError::ParameterCount {
                args: body.values.len(),
                types: types.len(),
            });
        }
    }
    // Without types the provider must find the method by name ($invoke), unless there is no argument at all:
    // a call without arguments has the empty descriptor, which every provider serves (one without a generic
    // service too).
    generic |= types.is_none() && !body.values.is_empty();

    let (method, param_types, args) = if generic {
        let args = generic_arguments(&method, types.as_deref(), &body.values)
            .map_err(|e| HttpError::JsonCall(e.to_string()))?;
        if !attachments.iter().any(|(n, _)| n == "generic") {
            attachments.push((Cow::Borrowed("generic"), Cow::Borrowed("true")));
        }
        (
            Cow::Borrowed(GENERIC_METHOD),
            Cow::Borrowed(GENERIC_DESCRIPTOR),
            Vec::from(args),
        )
    } else {
        let types: Vec<JavaType> = types.unwrap_or_default();
        let args = typed_arguments(&types, &body.values).map_err(|e| match types.get(e.index) {
            Some(t) => argument_error(e.index, t, e.error),
            None => HttpError::JsonCall(e.to_string()),
        })?;
        (method, Cow::Owned(descriptor_of(&types)), args)
    };
    Ok(Some(JsonCall {
        application,
        invocation: Invocation {
            interface,
            method,
            param_types,
            args: args.into_iter().map(Value::into_owned).collect(),
            version: version.map(Cow::Borrowed),
            group: group.map(Cow::Borrowed),
            tag: tag.map(Cow::Borrowed),
            force_tag,
            attachments,
        },
        generic,
    }))
}

/// Attachments as (name, value).
type Attachments<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

/// The `x-dubbo-*` header fields of a call, read in one pass over the head (the first of a repeated field
/// counts; `x-dubbo-attachment-<name>` fields in order).
#[derive(Debug, Default)]
struct DubboHeaders<'a> {
    group: Option<&'a str>,
    version: Option<&'a str>,
    tag: Option<&'a str>,
    force_tag: bool,
    generic: bool,
    types: Option<&'a str>,
    attachments: Attachments<'a>,
}

impl<'a> DubboHeaders<'a> {
    const PREFIX: &'static str = "x-dubbo-";

    fn read(req: &HttpRequest<'a>) -> Result<Self, HttpError> {
        let mut h = DubboHeaders::default();
        let (mut seen_force_tag, mut seen_generic) = (false, false);
        for (name, value) in req.headers() {
            let is_dubbo = name
                .get(..Self::PREFIX.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(Self::PREFIX));
            if !is_dubbo {
                continue;
            }
            let is = |header: &str| name.eq_ignore_ascii_case(header);
            if name
                .get(..ATTACHMENT_HEADER_PREFIX.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(ATTACHMENT_HEADER_PREFIX))
            {
                let bad = |why: &str| HttpError::JsonCall(format!("attachment header: {why}"));
                let name = &name[ATTACHMENT_HEADER_PREFIX.len()..];
                check_attachment_name(name, &h.attachments).map_err(bad)?;
                let value = std::str::from_utf8(value).map_err(|_| bad("invalid UTF-8"))?;
                h.attachments.push((Cow::Borrowed(name), Cow::Borrowed(value)));
            } else if is(GROUP_HEADER) {
                first_text(&mut h.group, GROUP_HEADER, value)?;
            } else if is(VERSION_HEADER) {
                first_text(&mut h.version, VERSION_HEADER, value)?;
            } else if is(TAG_HEADER) {
                first_text(&mut h.tag, TAG_HEADER, value)?;
            } else if is(TYPES_HEADER) {
                first_text(&mut h.types, TYPES_HEADER, value)?;
            } else if is(FORCE_TAG_HEADER) && !std::mem::replace(&mut seen_force_tag, true) {
                h.force_tag = flag(FORCE_TAG_HEADER, value)?;
            } else if is(GENERIC_HEADER) && !std::mem::replace(&mut seen_generic, true) {
                h.generic = flag(GENERIC_HEADER, value)?;
            }
        }
        Ok(h)
    }
}

/// Sets `slot` to the header's text (`None` when empty) unless an earlier field of that name set it.
fn first_text<'a>(slot: &mut Option<&'a str>, name: &str, value: &'a [u8]) -> Result<(), HttpError> {
    if slot.is_none() {
        let v = std::str::from_utf8(value)
            .map_err(|_| HttpError::JsonCall(format!("header {name}: invalid UTF-8")))?;
        *slot = Some(v).filter(|v| !v.is_empty());
    }
    Ok(())
}

/// A `true` / `false` header (case-insensitive; empty = false).
fn flag(name: &str, value: &[u8]) -> Result<bool, HttpError> {
    if value.is_empty() || value.eq_ignore_ascii_case(b"false") {
        Ok(false)
    } else if value.eq_ignore_ascii_case(b"true") {
        Ok(true)
    } else if std::str::from_utf8(value).is_err() {
        Err(HttpError::JsonCall(format!("header {name}: invalid UTF-8")))
    } else {
        Err(HttpError::JsonCall(format!("header {name}: not true or false")))
    }
}

/// A path segment, `%XX`-decoded (`+` is a plus sign in a path), UTF-8, not empty.
fn path_segment<'a>(raw: &'a str, what: &'static str) -> Result<Cow<'a, str>, HttpError> {
    let bad = || HttpError::JsonCall(format!("path: bad {what}"));
    if !raw.contains('%') {
        return Ok(Cow::Borrowed(raw));
    }
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    let s = String::from_utf8(out).map_err(|_| bad())?;
    if s.is_empty() || s.contains(['/', '\0']) {
        return Err(bad());
    }
    Ok(Cow::Owned(s))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{parse_request, Limits, Parse};
    use mesh_dubbo::{List, Map, Object};

    fn call(head: &str, body: &str) -> Result<Option<JsonCall<'static>>, HttpError> {
        let raw = format!(
            "POST {head}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let raw: &'static [u8] = Box::leak(raw.into_bytes().into_boxed_slice());
        let Ok(Parse::Complete(req)) = parse_request(raw, &Limits::default()) else {
            panic!("not a request: {head}");
        };
        let req: &'static HttpRequest<'static> = Box::leak(Box::new(req));
        parse_json_call(req)
    }

    fn ok(head: &str, body: &str) -> JsonCall<'static> {
        call(head, body).unwrap().unwrap()
    }

    #[test]
    fn dubbo_headers_are_read_in_one_pass_first_field_wins() {
        let c = ok(
            "/a/I/m HTTP/1.1\r\nX-DUBBO-SERVICE-GROUP: g1\r\nx-dubbo-service-group: g2\r\nx-dubbo-attachment-a: 1\r\nx-dubbo-force-tag: true\r\nx-dubbo-force-tag: bogus\r\nX-Dubbo-Attachment-b: 2\r\nx-dubbo-other: ignored\r\nx-dubbo-service-method-overloading: int",
            "[7]",
        );
        let inv = c.invocation;
        assert_eq!(inv.group.as_deref(), Some("g1"));
        assert!(inv.force_tag);
        assert_eq!(
            inv.attachments,
            [
                (Cow::Borrowed("a"), Cow::Borrowed("1")),
                (Cow::Borrowed("b"), Cow::Borrowed("2"))
            ]
        );
        assert_eq!(inv.args, [Value::Int(7)]);
        assert_eq!(
            call("/a/I/m HTTP/1.1\r\nx-dubbo-generic: yes", "[]").unwrap_err(),
            HttpError::JsonCall("header x-dubbo-generic: not true or false".into())
        );
        assert!(matches!(
            call(
                "/a/I/m HTTP/1.1\r\nx-dubbo-attachment-a: 1\r\nx-dubbo-attachment-a: 2",
                "[]"
            ),
            Err(HttpError::JsonCall(_))
        ));
    }

    #[test]
    fn pixiu_direct_shape_with_headers() {
        let c = ok(
            "/app/com.x.UserService/getUser HTTP/1.1\r\nx-dubbo-service-group: g\r\nX-Dubbo-Service-Version: 1.0.0\r\nx-dubbo-service-method-overloading: java.lang.String,int",
            r#"["ann", 3]"#,
        );
        assert_eq!(c.application, "app");
        assert!(!c.generic);
        let inv = c.invocation;
        assert_eq!((&*inv.interface, &*inv.method), ("com.x.UserService", "getUser"));
        assert_eq!(inv.param_types, "Ljava/lang/String;I");
        assert_eq!(inv.args, [Value::str("ann"), Value::Int(3)]);
        assert_eq!(inv.group.as_deref(), Some("g"));
        assert_eq!(inv.version.as_deref(), Some("1.0.0"));
        assert!(inv.attachments.is_empty());
    }

    #[test]
    fn pixiu_typed_body() {
        let c = ok(
            "/app/com.x.S/save?x=1 HTTP/1.1",
            r#"{"types":"com.x.User,java.util.Map","values":[{"name":"ann"},{"k":[1]}]}"#,
        );
        assert_eq!(c.invocation.param_types, "Lcom/x/User;Ljava/util/Map;");
        assert_eq!(
            c.invocation.args,
            [
                Value::Object(Object {
                    class: "com.x.User".into(),
                    fields: vec![("name".into(), Value::str("ann"))]
                }),
                Value::Map(Map {
                    type_name: None,
                    entries: vec![(
                        Value::str("k"),
                        Value::List(List {
                            type_name: None,
                            items: vec![Value::Int(1)]
                        })
                    )]
                })
            ]
        );
        // the same types in the header are fine; different ones are not
        ok(
            "/a/I/m HTTP/1.1\r\nx-dubbo-service-method-overloading: int",
            r#"{"types":"I","values":[1]}"#,
        );
        assert_eq!(
            call(
                "/a/I/m HTTP/1.1\r\nx-dubbo-service-method-overloading: long",
                r#"{"types":"I","values":[1]}"#
            )
            .unwrap_err(),
            HttpError::JsonCall("the types of the header and of the body differ".into())
        );
    }

    #[test]
    fn generic_invoke_on_request_or_without_types() {
        let c = ok(
            "/a/com.x.S/hello HTTP/1.1\r\nx-dubbo-generic: true\r\nx-dubbo-service-method-overloading: java.lang.String",
            r#"["w"]"#,
        );
        assert!(c.generic);
        let inv = c.invocation;
        assert_eq!(
            (&*inv.method, &*inv.param_types),
            (GENERIC_METHOD, GENERIC_DESCRIPTOR)
        );
        assert_eq!(inv.args[0], Value::str("hello"));
        assert_eq!(
            inv.args[1],
            Value::List(List {
                type_name: Some("[string".into()),
                items: vec![Value::str("java.lang.String")]
            })
        );
        assert_eq!(
            inv.attachments,
            [(Cow::Borrowed("generic"), Cow::Borrowed("true"))]
        );
        // no types anywhere: $invoke with null types (the provider finds the method by name)
        let c = ok("/a/com.x.S/hello HTTP/1.1", r#"["w"]"#);
        assert!(c.generic);
        assert_eq!(c.invocation.args[1], Value::Null);
        // no types and no argument: a typed call of the method without parameters
        for body in ["[]", ""] {
            let c = ok("/a/com.x.S/list HTTP/1.1", body);
            assert!(!c.generic, "{body:?}");
            let inv = c.invocation;
            assert_eq!((&*inv.method, &*inv.param_types), ("list", ""));
            assert!(inv.args.is_empty() && inv.attachments.is_empty());
        }
        // the caller's own `generic` attachment wins
        let c = ok(
            "/a/com.x.S/hello HTTP/1.1\r\nx-dubbo-generic: true\r\nx-dubbo-attachment-generic: bean",
            "[]",
        );
        assert_eq!(
            c.invocation.attachments,
            [(Cow::Borrowed("generic"), Cow::Borrowed("bean"))]
        );
    }

    #[test]
    fn attachments_tags_and_paths() {
        let c = ok(
            "/a/I/m HTTP/1.1\r\nx-dubbo-attachment-traceId: t1\r\nx-dubbo-tag: blue\r\nx-dubbo-force-tag: TRUE\r\nx-dubbo-service-method-overloading: ",
            "[1]",
        );
        // (an empty types header is no types: with an argument, $invoke, which adds `generic`)
        assert_eq!(
            c.invocation.attachments,
            [
                (Cow::Borrowed("traceId"), Cow::Borrowed("t1")),
                (Cow::Borrowed("generic"), Cow::Borrowed("true"))
            ]
        );
        assert_eq!(c.invocation.tag.as_deref(), Some("blue"));
        assert!(c.invocation.force_tag);
        assert!(c.generic);
        let c = ok(
            "/my%20app/a.B/m%C3%A9 HTTP/1.1\r\nx-dubbo-service-method-overloading: int",
            "5",
        );
        assert_eq!((&*c.application, &*c.invocation.method), ("my app", "mé"));
        assert_eq!(c.invocation.args, [Value::Int(5)]);
        for path in ["/", "/a/b", "/a/b/c/d", "/a//c", "//b/c"] {
            assert_eq!(call(&format!("{path} HTTP/1.1"), "").unwrap(), None, "{path}");
        }
    }

    #[test]
    fn bad_calls_are_400_naming_the_reason() {
        let bad = |head: &str, body: &str| {
            let e = call(head, body).unwrap_err();
            assert_eq!(e.status(), 400, "{e}");
            assert!(!e.closes_connection());
            e.to_string()
        };
        let types = "\r\nx-dubbo-service-method-overloading: java.lang.String,int";
        assert_eq!(
            bad(&format!("/a/I/m HTTP/1.1{types}"), r#"["a", "b"]"#),
            "parameter 1 (int): not an integer"
        );
        assert_eq!(
            bad(&format!("/a/I/m HTTP/1.1{types}"), r#"["a"]"#),
            "1 parameters for 2 parameter types"
        );
        assert!(bad(&format!("/a/I/m HTTP/1.1{types}"), r#"["a", 1"#).starts_with("body: invalid JSON: "));
        assert_eq!(
            bad(
                "/a/I/m HTTP/1.1\r\nx-dubbo-service-method-overloading: in t",
                "[1]"
            ),
            "header x-dubbo-service-method-overloading: not a descriptor or a list of Java type names"
        );
        assert_eq!(
            bad("/a/I/m HTTP/1.1\r\nx-dubbo-generic: maybe", "[]"),
            "header x-dubbo-generic: not true or false"
        );
        assert_eq!(
            bad("/a/I/m HTTP/1.1\r\nx-dubbo-attachment-path: x", "[]"),
            "attachment header: name reserved for the agent or another field"
        );
        assert_eq!(
            bad(
                "/a/I/m HTTP/1.1\r\nx-dubbo-attachment-a: 1\r\nx-dubbo-attachment-a: 2",
                "[]"
            ),
            "attachment header: name repeated"
        );
        assert_eq!(bad("/a/I/m%zz HTTP/1.1", "[]"), "path: bad method");
        assert_eq!(bad("/a/I/m%2F HTTP/1.1", "[]"), "path: bad method");
        let many: String = (0..=crate::MAX_ATTACHMENTS)
            .map(|i| format!("\r\nx-dubbo-attachment-a{i}: v"))
            .collect();
        assert_eq!(
            bad(&format!("/a/I/m HTTP/1.1{many}"), "[]"),
            "attachment header: too many attachments"
        );
    }
}
