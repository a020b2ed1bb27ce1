//! The error of the Dubbo layout: a key or URL that cannot be read or written.

/// How much of a bad input an error message quotes (the input itself may be up to [`super::MAX_KEY_LEN`]).
const EXCERPT_CHARS: usize = 120;

/// A Dubbo registry key or URL that cannot be decoded, parsed or written. Every message names the bad part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DubboError {
    /// An input longer than the limit (keys, URLs, parameter counts).
    #[error("{what} is {len} long, more than the {max} allowed")]
    TooLong {
        /// What is too long (`"etcd key"`, `"URL"`, `"parameter list"`).
        what: &'static str,
        /// Its length (bytes, or parameters).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A `%` not followed by two hex digits (Java's `URLDecoder` and Go's `QueryUnescape` refuse it too).
    #[error("bad percent-escape at byte {at} of {what} {excerpt:?}")]
    BadEscape {
        /// What was being decoded.
        what: &'static str,
        /// Byte offset of the `%`.
        at: usize,
        /// The input (shortened).
        excerpt: String,
    },
    /// Bytes that are not UTF-8 (the raw key, or what its percent-escapes decode to).
    #[error("{what} is not UTF-8: {excerpt:?}")]
    NotUtf8 {
        /// What was being decoded.
        what: &'static str,
        /// The input, lossily decoded and shortened.
        excerpt: String,
    },
    /// A URL that is not `protocol://...` (Java's etcd registry skips such children too).
    #[error("URL {url:?} has no protocol (no \"://\", or nothing before it)")]
    MissingProtocol {
        /// The URL (shortened).
        url: String,
    },
    /// A port that is not a number from 0 to 65535.
    #[error("bad port {port:?} in URL {url:?}")]
    BadPort {
        /// The text after the last `:` of the host part.
        port: String,
        /// The URL (shortened).
        url: String,
    },
    /// `user:password@` with an empty user (Dubbo's `URL` constructor refuses it).
    #[error("URL {url:?} has a password but no user name")]
    PasswordWithoutUser {
        /// The URL (shortened).
        url: String,
    },
    /// A part of a URL that would not read back the same once written (e.g. `&` in a parameter value).
    #[error("the URL {part} {value:?} cannot be written: {reason}")]
    Unwritable {
        /// Which part (`"protocol"`, `"host"`, `"parameter key"`, ...).
        part: &'static str,
        /// Its value (shortened).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A registry root (Dubbo's registry `group`) that is empty, `/`, or has an empty segment.
    #[error("bad registry root {root:?}: {reason}")]
    BadRoot {
        /// The root as given.
        root: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An etcd key that is not under the registry root.
    #[error("key {key:?} is not under the registry root {root:?}")]
    NotUnderRoot {
        /// The key (shortened).
        key: String,
        /// The root.
        root: String,
    },
    /// A key in the interface-level layout that is malformed (e.g. an unencoded `/` in its URL segment).
    #[error("bad Dubbo registry key {key:?}: {reason}")]
    BadKey {
        /// The key (shortened).
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// At most [`EXCERPT_CHARS`] characters of `s`, with `…` when shortened (for messages).
pub(crate) fn excerpt(s: &str) -> String {
    match s.char_indices().nth(EXCERPT_CHARS) {
        None => s.to_owned(),
        Some((cut, _)) => format!("{}…", &s[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_shortened_on_char_boundaries() {
        assert_eq!(excerpt("abc"), "abc");
        let long = "é".repeat(EXCERPT_CHARS + 10);
        let e = excerpt(&long);
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
    }

    #[test]
    fn messages_name_the_bad_part() {
        let e = DubboError::BadPort {
            port: "x1".into(),
            url: "dubbo://h:x1/p".into(),
        };
        assert_eq!(e.to_string(), "bad port \"x1\" in URL \"dubbo://h:x1/p\"");
        let e = DubboError::Unwritable {
            part: "parameter value",
            value: "a&b".into(),
            reason: "`&` and `;` separate parameters",
        };
        assert_eq!(
            e.to_string(),
            "the URL parameter value \"a&b\" cannot be written: `&` and `;` separate parameters"
        );
    }
}
