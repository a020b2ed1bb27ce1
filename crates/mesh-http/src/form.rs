//! `application/x-www-form-urlencoded` bodies of the challenge's `POST /` into a Dubbo invocation.

use std::borrow::Cow;

use bytes::BufMut;
use mesh_dubbo::{descriptor, Value};
use mesh_generic::{JavaType, TypeError};

use crate::{HttpError, Limits};

/// One call described by a form body (or by a JSON generic call).
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation<'a> {
    /// `interface`: the service's Java interface name.
    pub interface: Cow<'a, str>,
    /// `method`: the method name.
    pub method: Cow<'a, str>,
    /// `parameterTypesString`, normalised to a concatenated JVM descriptor (`Ljava/lang/String;I`); empty
    /// for a method without parameters.
    pub param_types: Cow<'a, str>,
    /// The arguments, in order: one per type in `param_types`, each encoded by its declared type
    /// ([`mesh_generic::typed_text`]); a `String` argument borrows the request body when it has no escape.
    pub args: Vec<Value<'a>>,
    /// `version`, if present and not empty.
    pub version: Option<Cow<'a, str>>,
    /// `group`, if present and not empty.
    pub group: Option<Cow<'a, str>>,
    /// `tag` (or `dubbo.tag`), if present and not empty: selects providers with that tag (tag routing).
    pub tag: Option<Cow<'a, str>>,
    /// `force_tag` (or `dubbo.force.tag`) = `true`: never fall back from the requested tag to untagged
    /// providers.
    pub force_tag: bool,
    /// `attachment.<name>=<value>` fields, in order: Dubbo attachments sent to the provider and seen by
    /// condition rules (`attachments[name]`). At most [`MAX_ATTACHMENTS`], names unique, not empty, at most
    /// [`MAX_ATTACHMENT_NAME`] bytes, and none of the attachments the agent sets itself ([`RESERVED_ATTACHMENTS`]).
    pub attachments: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

/// Most `attachment.<name>` fields in one form.
pub const MAX_ATTACHMENTS: usize = 16;
/// Longest attachment name, in bytes.
pub const MAX_ATTACHMENT_NAME: usize = 128;
/// Attachments the agent sets itself (or that have a field of their own): refused as `attachment.<name>`.
pub const RESERVED_ATTACHMENTS: &[&str] = &[
    "path",
    "interface",
    "version",
    "group",
    "timeout",
    "token",
    "dubbo",
    "dubbo.tag",
    "dubbo.force.tag",
];

/// The prefix of attachment fields.
const ATTACHMENT_PREFIX: &[u8] = b"attachment.";

const INVALID_ESCAPE: &str = "invalid percent-escape";
const INVALID_UTF8: &str = "invalid UTF-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Interface,
    Method,
    Types,
    Parameter,
    Version,
    Group,
    Tag,
    ForceTag,
    Attachment,
}

impl Field {
    fn of(key: &[u8]) -> Option<Field> {
        Some(match key {
            b"interface" => Field::Interface,
            b"method" => Field::Method,
            b"parameterTypesString" => Field::Types,
            b"parameter" => Field::Parameter,
            b"version" => Field::Version,
            b"group" => Field::Group,
            b"tag" | b"dubbo.tag" => Field::Tag,
            b"force_tag" | b"dubbo.force.tag" => Field::ForceTag,
            _ if key.starts_with(ATTACHMENT_PREFIX) => Field::Attachment,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Field::Interface => "interface",
            Field::Method => "method",
            Field::Types => "parameterTypesString",
            Field::Parameter => "parameter",
            Field::Version => "version",
            Field::Group => "group",
            Field::Tag => "tag",
            Field::ForceTag => "force_tag",
            Field::Attachment => "attachment",
        }
    }
}

/// Decodes a form body into an [`Invocation`].
///
/// Fields are `&`-separated `name=value` pairs (empty pairs skipped, a pair without `=` has an empty value),
/// `%XX` escapes and `+` for space are decoded in names and values, values must be UTF-8. Known fields:
/// `interface` and `method` (required, once), `parameterTypesString` (once; absent means no parameters),
/// `parameter` (once per argument, in order), `version`, `group` and `tag` (alias `dubbo.tag`: Dubbo's
/// tag-routing attachment) (optional, once), `force_tag` (alias `dubbo.force.tag`; `true` or `false`, optional,
/// once), and `attachment.<name>` (optional, once per name; see [`Invocation::attachments`]). Other fields
/// are ignored, but count against `max_form_fields`.
///
/// `parameterTypesString` is either a JVM descriptor string (`Ljava/lang/String;I`) or comma-separated Java
/// type names (`java.lang.String, int`), normalised to the descriptor; the number of `parameter` fields must
/// match it. Each `parameter` is then encoded by its declared type ([`mesh_generic::typed_text`]: numbers,
/// booleans, chars, `BigDecimal`/`BigInteger`, dates, base64 `byte[]`, JSON for arrays, collections, maps and
/// POJOs; see `docs/types.md`); one that does not fit is [`HttpError::Argument`], naming its index and type.
///
/// Values that contain no escape are borrowed from `body`, and the common descriptors come from a static
/// table, so the challenge's request allocates nothing but the `args` vector.
pub fn parse_form<'a>(body: &'a [u8], limits: &Limits) -> Result<Invocation<'a>, HttpError> {
    let mut interface = None;
    let mut method = None;
    let mut types = None;
    let mut version = None;
    let mut group = None;
    let mut tag = None;
    let mut force_tag = None;
    let mut attachments: Vec<(Cow<'a, str>, Cow<'a, str>)> = Vec::new();
    let mut args = Vec::new();
    let mut fields = 0usize;

    for pair in body.split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        fields += 1;
        if fields > limits.max_form_fields {
            return Err(HttpError::TooManyFormFields {
                max: limits.max_form_fields,
            });
        }
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &[][..]),
        };
        let key = decode_bytes(key).map_err(|problem| HttpError::FormField {
            field: "field name",
            problem,
        })?;
        let Some(field) = Field::of(&key) else {
            continue;
        };
        let slot = match field {
            Field::Attachment => {
                let name = attachment_name(&key, &attachments)?;
                attachments.push((name, decode_value(field, value)?));
                continue;
            }
            Field::ForceTag => {
                if force_tag.is_some() {
                    return Err(HttpError::DuplicateField(field.name()));
                }
                force_tag = Some(match &*decode_value(field, value)? {
                    "true" => true,
                    "false" | "" => false,
                    _ => {
                        return Err(HttpError::FormField {
                            field: field.name(),
                            problem: "not true or false",
                        })
                    }
                });
                continue;
            }
            Field::Parameter => {
                // Typed once the parameter types are known (they may come later in the body).
                args.push(Value::String(decode_value(field, value)?));
                continue;
            }
            Field::Types => {
                if types.is_some() {
                    return Err(HttpError::DuplicateField(field.name()));
                }
                types = Some(match intern_types(value) {
                    Some(known) => Cow::Borrowed(known),
                    None => decode_value(field, value)?,
                });
                continue;
            }
            Field::Interface => &mut interface,
            Field::Method => &mut method,
            Field::Version => &mut version,
            Field::Group => &mut group,
            Field::Tag => &mut tag,
        };
        if slot.is_some() {
            return Err(HttpError::DuplicateField(field.name()));
        }
        *slot = Some(decode_value(field, value)?);
    }

    let required = |v: Option<Cow<'a, str>>, field: Field| {
        v.filter(|s| !s.is_empty())
            .ok_or(HttpError::MissingField(field.name()))
    };
    let interface = required(interface, Field::Interface)?;
    let method = required(method, Field::Method)?;
    let (param_types, count) = normalise_types(types.unwrap_or(Cow::Borrowed("")))?;
    if args.len() != count {
        return Err(HttpError::ParameterCount {
            args: args.len(),
            types: count,
        });
    }
    type_arguments(&param_types, &mut args)?;
    Ok(Invocation {
        interface,
        method,
        param_types,
        args,
        version: version.filter(|s| !s.is_empty()),
        group: group.filter(|s| !s.is_empty()),
        tag: tag.filter(|s: &Cow<'_, str>| !s.is_empty()),
        force_tag: force_tag.unwrap_or(false),
        attachments,
    })
}

/// The name of an attachment field (`key` decoded, prefix included), checked against the limits and the
/// attachments already read. Names are owned: they are rare and short.
fn attachment_name<'a>(key: &[u8], seen: &[(Cow<'a, str>, Cow<'a, str>)]) -> Result<Cow<'a, str>, HttpError> {
    let problem = |problem| HttpError::FormField {
        field: "attachment",
        problem,
    };
    let name = std::str::from_utf8(&key[ATTACHMENT_PREFIX.len()..]).map_err(|_| problem(INVALID_UTF8))?;
    match check_attachment_name(name, seen) {
        Ok(()) => Ok(Cow::Owned(name.to_owned())),
        Err(REPEATED_ATTACHMENT) => Err(HttpError::DuplicateField("attachment")),
        Err(why) => Err(problem(why)),
    }
}

/// [`check_attachment_name`]'s problem for a name already in `seen`.
pub(crate) const REPEATED_ATTACHMENT: &str = "name repeated";

/// Whether a caller's attachment `name` can join those in `seen` (the form's `attachment.<name>` fields and
/// the JSON API's `x-dubbo-attachment-<name>` headers follow the same rules): not empty, at most
/// [`MAX_ATTACHMENT_NAME`] bytes, not [reserved](RESERVED_ATTACHMENTS), not repeated, at most
/// [`MAX_ATTACHMENTS`] in all. The problem otherwise.
pub(crate) fn check_attachment_name(
    name: &str,
    seen: &[(Cow<'_, str>, Cow<'_, str>)],
) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty name");
    }
    if name.len() > MAX_ATTACHMENT_NAME {
        return Err("name too long");
    }
    if RESERVED_ATTACHMENTS.contains(&name) {
        return Err("name reserved for the agent or another field");
    }
    if seen.iter().any(|(n, _)| n == name) {
        return Err(REPEATED_ATTACHMENT);
    }
    if seen.len() >= MAX_ATTACHMENTS {
        return Err("too many attachments");
    }
    Ok(())
}

/// `parameterTypesString` values found in practice, decoded, with their descriptors.
const KNOWN_TYPES: &[(&str, &str)] = &[
    ("Ljava/lang/String;", "Ljava/lang/String;"),
    ("java.lang.String", "Ljava/lang/String;"),
    ("Ljava/lang/Object;", "Ljava/lang/Object;"),
    ("java.lang.Object", "Ljava/lang/Object;"),
    ("Ljava/lang/Integer;", "Ljava/lang/Integer;"),
    ("Ljava/lang/Long;", "Ljava/lang/Long;"),
    ("I", "I"),
    ("int", "I"),
    ("J", "J"),
    ("long", "J"),
    ("[B", "[B"),
];

/// The static descriptor for a raw (still encoded) value that decodes to one of [`KNOWN_TYPES`].
fn intern_types(raw: &[u8]) -> Option<&'static str> {
    KNOWN_TYPES
        .iter()
        .find(|(text, _)| decodes_to(raw, text.as_bytes()))
        .map(|&(_, desc)| desc)
}

/// Whether `raw` percent-decodes to exactly `want`, without allocating.
fn decodes_to(raw: &[u8], want: &[u8]) -> bool {
    let mut want = want.iter();
    for b in Decoder::new(raw) {
        match (b, want.next()) {
            (Ok(b), Some(&w)) if b == w => {}
            _ => return false,
        }
    }
    want.next().is_none()
}

/// Normalises `parameterTypesString` to a descriptor and counts its types: a descriptor string is kept as
/// it is (borrowed), a list of Java names ([`mesh_generic::parse_type_list`]) becomes one.
fn normalise_types(text: Cow<'_, str>) -> Result<(Cow<'_, str>, usize), HttpError> {
    if let Ok(n) = descriptor::count(&text) {
        return Ok((text, n));
    }
    let types = mesh_generic::parse_type_list(&text).map_err(type_list_error)?;
    Ok((Cow::Owned(mesh_generic::descriptor_of(&types)), types.len()))
}

/// The error for a list of types that does not parse.
pub(crate) fn type_list_error(e: TypeError) -> HttpError {
    match e {
        TypeError::BadTypeName(why) if why != "not a Java class name" => HttpError::ParameterTypes(why),
        TypeError::TooManyTypes { .. } => HttpError::ParameterTypes("more than 255 parameter types"),
        _ => HttpError::ParameterTypes("not a descriptor or a list of Java type names"),
    }
}

/// The descriptor of `java.lang.String`: such arguments are already what they must be.
const STRING_DESCRIPTOR: &str = "Ljava/lang/String;";

/// Re-encodes each argument (read as text) by its declared type, in place.
fn type_arguments<'a>(param_types: &str, args: &mut [Value<'a>]) -> Result<(), HttpError> {
    for (index, (desc, slot)) in descriptor::split(param_types).zip(args.iter_mut()).enumerate() {
        let desc = desc.map_err(|_| HttpError::ParameterTypes("not a descriptor"))?;
        if desc == STRING_DESCRIPTOR {
            continue;
        }
        let t = mesh_generic::parse_descriptor(desc).map_err(type_list_error)?;
        let Value::String(text) = std::mem::replace(slot, Value::Null) else {
            continue;
        };
        *slot = mesh_generic::typed_text(text, &t).map_err(|e| argument_error(index, &t, e))?;
    }
    Ok(())
}

/// The 400 for argument `index` of type `t` that does not fit it.
pub(crate) fn argument_error(index: usize, t: &JavaType, e: TypeError) -> HttpError {
    let problem = match e {
        TypeError::Mismatch { java_type, problem } if java_type == t.java_name() => problem.to_owned(),
        other => other.to_string(),
    };
    HttpError::Argument {
        index,
        java_type: t.java_name(),
        problem,
    }
}

fn decode_value(field: Field, raw: &[u8]) -> Result<Cow<'_, str>, HttpError> {
    let problem = |problem| HttpError::FormField {
        field: field.name(),
        problem,
    };
    match decode_bytes(raw).map_err(problem)? {
        Cow::Borrowed(b) => std::str::from_utf8(b)
            .map(Cow::Borrowed)
            .map_err(|_| problem(INVALID_UTF8)),
        Cow::Owned(v) => String::from_utf8(v)
            .map(Cow::Owned)
            .map_err(|_| problem(INVALID_UTF8)),
    }
}

/// Percent-decodes (and `+` -> space); borrows when there is nothing to decode.
fn decode_bytes(raw: &[u8]) -> Result<Cow<'_, [u8]>, &'static str> {
    if !raw.iter().any(|&b| b == b'%' || b == b'+') {
        return Ok(Cow::Borrowed(raw));
    }
    // Decoding only shrinks: `raw.len()` bounds the result.
    let mut out = Vec::with_capacity(raw.len());
    for b in Decoder::new(raw) {
        out.push(b.map_err(|()| INVALID_ESCAPE)?);
    }
    Ok(Cow::Owned(out))
}

/// The decoded bytes of a form-encoded string, `Err(())` at a bad escape (and then nothing more).
#[derive(Debug)]
struct Decoder<'a> {
    raw: &'a [u8],
}

impl<'a> Decoder<'a> {
    fn new(raw: &'a [u8]) -> Self {
        Decoder { raw }
    }
}

impl Iterator for Decoder<'_> {
    type Item = Result<u8, ()>;

    fn next(&mut self) -> Option<Self::Item> {
        let (out, rest) = match *self.raw {
            [] => return None,
            [b'%', h, l, ref rest @ ..] => match (hex_value(h), hex_value(l)) {
                (Some(h), Some(l)) => (Ok(h << 4 | l), rest),
                _ => (Err(()), &[][..]),
            },
            [b'%', ..] => (Err(()), &[][..]),
            [b'+', ref rest @ ..] => (Ok(b' '), rest),
            [b, ref rest @ ..] => (Ok(b), rest),
        };
        self.raw = rest;
        Some(out)
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Writes `inv` as a form body, in the field order the challenge's consumer uses (`interface`, `method`,
/// `parameterTypesString`, each `parameter`, then `version` and `group` when set). Everything but
/// `A-Z a-z 0-9 - . _ ~` is percent-encoded (space as `+`). Arguments are written as their text
/// ([`mesh_generic::text_of`]), so [`parse_form`] gives `inv` back when each argument is what its type's
/// text gives (always for strings and scalars; structures inside `Object`-typed positions come back in
/// their inferred form: a `long` that fits an `int` as an int, a `BigDecimal` as its string).
pub fn encode_form(inv: &Invocation<'_>, out: &mut impl BufMut) {
    let mut field = |name: &str, value: &str, first: bool| {
        if !first {
            out.put_u8(b'&');
        }
        // Names are encoded too: an attachment's name may hold `+`, `&`, `=` or `%`.
        percent_encode(name, out);
        out.put_u8(b'=');
        percent_encode(value, out);
    };
    field("interface", &inv.interface, true);
    field("method", &inv.method, false);
    field("parameterTypesString", &inv.param_types, false);
    for arg in &inv.args {
        field("parameter", &mesh_generic::text_of(arg), false);
    }
    if let Some(v) = &inv.version {
        field("version", v, false);
    }
    if let Some(g) = &inv.group {
        field("group", g, false);
    }
    if let Some(t) = &inv.tag {
        field("tag", t, false);
    }
    if inv.force_tag {
        field("force_tag", "true", false);
    }
    let mut name = String::new();
    for (n, v) in &inv.attachments {
        name.clear();
        name.push_str("attachment.");
        name.push_str(n);
        field(&name, v, false);
    }
}

fn percent_encode(value: &str, out: &mut impl BufMut) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = value.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            continue;
        }
        out.put_slice(&bytes[start..i]);
        if b == b' ' {
            out.put_u8(b'+');
        } else {
            out.put_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
        start = i + 1;
    }
    out.put_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn decoder() {
        let d = |s: &[u8]| decode_bytes(s).map(|c| c.into_owned());
        assert_eq!(d(b"a%2Fb+c%3b").unwrap(), b"a/b c;");
        assert_eq!(d(b"%e4%B8%AD").unwrap(), "中".as_bytes());
        assert!(matches!(decode_bytes(b"plain"), Ok(Cow::Borrowed(b"plain"))));
        for bad in [&b"%"[..], b"%2", b"%zz", b"a%2g", b"%%41"] {
            assert_eq!(d(bad), Err(INVALID_ESCAPE), "{bad:?}");
        }
    }

    #[test]
    fn decodes_to_without_allocating() {
        assert!(decodes_to(b"Ljava%2Flang%2FString%3B", b"Ljava/lang/String;"));
        assert!(decodes_to(b"Ljava/lang/String;", b"Ljava/lang/String;"));
        assert!(!decodes_to(b"Ljava%2Flang%2FString%3", b"Ljava/lang/String;"));
        assert!(!decodes_to(b"Ljava%2Flang%2FString%3B%3B", b"Ljava/lang/String;"));
        assert!(!decodes_to(b"Ljava%2Flang%2FString", b"Ljava/lang/String;"));
        assert_eq!(intern_types(b"java.lang.String"), Some("Ljava/lang/String;"));
        assert_eq!(intern_types(b"in%74"), Some("I"));
        assert_eq!(intern_types(b"Z"), None);
    }

    fn form(body: &str) -> Result<Invocation<'_>, HttpError> {
        parse_form(body.as_bytes(), &Limits::default())
    }

    #[test]
    fn attachments_and_force_tag() {
        let inv = form("interface=I&method=m&attachment.user=ann&attachment.x%2Ey=a+b&dubbo.force.tag=true")
            .unwrap();
        assert_eq!(
            inv.attachments,
            [
                (Cow::Borrowed("user"), Cow::Borrowed("ann")),
                (Cow::Borrowed("x.y"), Cow::Borrowed("a b"))
            ]
        );
        assert!(inv.force_tag);
        assert!(!form("interface=I&method=m&force_tag=false").unwrap().force_tag);
        assert!(!form("interface=I&method=m").unwrap().force_tag);
        assert!(form("interface=I&method=m").unwrap().attachments.is_empty());
        // Round trip through encode_form.
        let mut body = Vec::new();
        encode_form(&inv, &mut body);
        assert_eq!(parse_form(&body, &Limits::default()).unwrap(), inv);
        // Found by fuzzing: attachment names with `+`, `&`, `=` or `%` are percent-encoded too.
        let inv = form("interface=I&method=m&attachment.a%2Bb%26c%3Dd%25=v").unwrap();
        assert_eq!(inv.attachments[0].0, "a+b&c=d%");
        let mut body = Vec::new();
        encode_form(&inv, &mut body);
        assert_eq!(parse_form(&body, &Limits::default()).unwrap(), inv);
    }

    #[test]
    fn bad_attachments_and_force_tags_are_400() {
        let bad = |body: &str| {
            let e = form(body).unwrap_err();
            assert_eq!(e.status(), 400, "{body}: {e}");
            assert!(!e.closes_connection(), "{body}");
            e
        };
        bad("interface=I&method=m&force_tag=yes");
        assert_eq!(
            bad("interface=I&method=m&force_tag=true&dubbo.force.tag=true"),
            HttpError::DuplicateField("force_tag")
        );
        assert_eq!(
            bad("interface=I&method=m&attachment.a=1&attachment.a=2"),
            HttpError::DuplicateField("attachment")
        );
        bad("interface=I&method=m&attachment.=1");
        bad("interface=I&method=m&attachment.token=forged");
        bad("interface=I&method=m&attachment.dubbo.tag=x");
        bad("interface=I&method=m&attachment.a=%ff");
        bad(&format!(
            "interface=I&method=m&attachment.{}=1",
            "n".repeat(MAX_ATTACHMENT_NAME + 1)
        ));
        let many: String = (0..=MAX_ATTACHMENTS)
            .map(|i| format!("&attachment.a{i}=v"))
            .collect();
        bad(&format!("interface=I&method=m{many}"));
        let enough: String = (0..MAX_ATTACHMENTS)
            .map(|i| format!("&attachment.a{i}=v"))
            .collect();
        assert_eq!(
            form(&format!("interface=I&method=m{enough}"))
                .unwrap()
                .attachments
                .len(),
            MAX_ATTACHMENTS
        );
    }

    #[test]
    fn arguments_are_typed_in_place_and_strings_keep_borrowing() {
        let inv = form(
            "parameter=7&parameter=s&parameterTypesString=java.lang.Integer%2Cjava.lang.String&interface=I&method=m",
        )
        .unwrap();
        assert_eq!(inv.param_types, "Ljava/lang/Integer;Ljava/lang/String;");
        assert_eq!(inv.args, [Value::Int(7), Value::str("s")]);
        assert!(matches!(inv.args[1], Value::String(Cow::Borrowed("s"))));
        let e = form("interface=I&method=m&parameterTypesString=Z&parameter=1").unwrap_err();
        assert_eq!(
            e,
            HttpError::Argument {
                index: 0,
                java_type: "boolean".into(),
                problem: "expected true or false".into()
            }
        );
        assert!(!e.closes_connection());
        // errors other than a mismatch keep their own text
        let t = JavaType::Collection("java.util.List".into());
        let e = argument_error(2, &t, TypeError::TooDeep { max: 64 });
        assert_eq!(
            e.to_string(),
            "parameter 2 (java.util.List): nested deeper than 64 levels"
        );
    }

    #[test]
    fn percent_encoding() {
        let mut out = Vec::new();
        percent_encode("Ljava/lang/String; a+b~中", &mut out);
        assert_eq!(out, b"Ljava%2Flang%2FString%3B+a%2Bb~%E4%B8%AD");
    }

    #[test]
    fn normalises_java_names() {
        let n = |s: &str| normalise_types(Cow::Borrowed(s)).map(|(d, n)| (d.into_owned(), n));
        assert_eq!(n("").unwrap(), (String::new(), 0));
        assert_eq!(
            n("I[ZLjava/lang/Object;").unwrap(),
            ("I[ZLjava/lang/Object;".into(), 3)
        );
        assert_eq!(
            n("java.lang.String, int ,byte[],[Ljava.lang.String;").unwrap(),
            ("Ljava/lang/String;I[B[Ljava/lang/String;".into(), 4)
        );
        assert_eq!(
            n("java.lang.String,,int").unwrap_err(),
            HttpError::ParameterTypes("empty type name")
        );
        for bad in [
            "Ljava/lang/String",
            "java lang",
            "a/b",
            "[",
            "int[",
            " ",
            "a..b",
            ".a",
            "[]",
            "[Ljava/lang/String;x",
        ] {
            assert!(matches!(n(bad), Err(HttpError::ParameterTypes(_))), "{bad}");
        }
    }
}
