//! The percent-encoding of key segments: Java's `URLEncoder` (what Java Dubbo writes, and what the agents
//! write), Go's `url.QueryEscape` (what dubbo-go writes), and one decoder that reads both.
//!
//! Fact sheet §1.4 (`URL.encode` is `URLEncoder.encode(v, "UTF-8")`, J27/J3 `dubbo-common/.../URL.java`;
//! dubbo-go `url.QueryEscape`, GO `registry/etcdv3/registry.go`):
//!
//! | byte                         | Java `URLEncoder` | Go `QueryEscape` |
//! |------------------------------|-------------------|------------------|
//! | `A-Z a-z 0-9 . - _`          | literal           | literal          |
//! | `*`                          | literal           | `%2A`            |
//! | `~`                          | `%7E`             | literal          |
//! | space                        | `+`               | `+`              |
//! | any other byte (UTF-8)       | `%XX`, uppercase  | `%XX`, uppercase |

use super::error::excerpt;
use super::DubboError;

/// Which encoder writes a key segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyEncoding {
    /// Java's `URLEncoder.encode(s, "UTF-8")`, as Java Dubbo's `URL.encode` (the default: Dubbo's own).
    #[default]
    JavaUrlEncoder,
    /// Go's `url.QueryEscape`, as dubbo-go's etcdv3 registry.
    GoQueryEscape,
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

impl KeyEncoding {
    /// Whether `b` is written as itself.
    fn keeps(self, b: u8) -> bool {
        b.is_ascii_alphanumeric()
            || matches!(b, b'.' | b'-' | b'_')
            || match self {
                KeyEncoding::JavaUrlEncoder => b == b'*',
                KeyEncoding::GoQueryEscape => b == b'~',
            }
    }

    /// `s` percent-encoded by this encoder (its UTF-8 bytes; a space becomes `+`).
    pub fn encode(self, s: &str) -> String {
        let mut out = String::with_capacity(s.len() + s.len() / 2);
        for &b in s.as_bytes() {
            if self.keeps(b) {
                out.push(char::from(b));
            } else if b == b' ' {
                out.push('+');
            } else {
                out.push('%');
                out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
                out.push(char::from(HEX_UPPER[usize::from(b & 0x0f)]));
            }
        }
        out
    }
}

/// Decodes a percent-encoded segment written by either encoder (or by anything in between): `+` is a space,
/// `%XX` (either case) is a byte, every other character stands for itself, like Java's `URLDecoder` and Go's
/// `QueryUnescape`. `what` names the input in errors.
///
/// Errors: a `%` without two hex digits after it ([`DubboError::BadEscape`]), or bytes that are not UTF-8
/// once decoded ([`DubboError::NotUtf8`]; Java would put U+FFFD in their place, we refuse them).
pub fn decode_component(what: &'static str, s: &str) -> Result<String, DubboError> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Ok(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex_digit = |at: usize| bytes.get(at).and_then(|&d| char::from(d).to_digit(16));
                let (Some(hi), Some(lo)) = (hex_digit(i + 1), hex_digit(i + 2)) else {
                    return Err(DubboError::BadEscape {
                        what,
                        at: i,
                        excerpt: excerpt(s),
                    });
                };
                // Two hex digits: at most 0xFF.
                out.push((hi << 4 | lo) as u8);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|e| DubboError::NotUtf8 {
        what,
        excerpt: excerpt(&String::from_utf8_lossy(e.as_bytes())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encoder_tables() {
        use KeyEncoding::{GoQueryEscape as Go, JavaUrlEncoder as Java};
        for (encoding, input, want) in [
            (Java, "aZ09.-_*", "aZ09.-_*"),
            (Java, "a b", "a+b"),
            (Java, "~", "%7E"),
            (
                Java,
                "dubbo://1.2.3.4:20880/a.B?x=1&y=a,b",
                "dubbo%3A%2F%2F1.2.3.4%3A20880%2Fa.B%3Fx%3D1%26y%3Da%2Cb",
            ),
            (Java, "Outer$Inner", "Outer%24Inner"),
            // UTF-8 bytes, uppercase hex: `URLEncoder.encode("é", "UTF-8")` is `%C3%A9`.
            (Java, "é", "%C3%A9"),
            (Java, "", ""),
            (Go, "*", "%2A"),
            (Go, "~", "~"),
            (Go, "a b/c", "a+b%2Fc"),
        ] {
            assert_eq!(encoding.encode(input), want, "{encoding:?} {input:?}");
        }
    }

    #[test]
    fn go_query_escape_differs_from_java_on_star_and_tilde_only() {
        let go = KeyEncoding::GoQueryEscape;
        for b in 0u8..=127 {
            let s = char::from(b).to_string();
            if b != b'*' && b != b'~' {
                assert_eq!(go.encode(&s), KeyEncoding::JavaUrlEncoder.encode(&s), "byte {b}");
            }
        }
    }

    #[test]
    fn decoding_tolerates_both_encoders_and_lowercase_hex() {
        assert_eq!(
            decode_component("t", "methods%3D*%2C%2A~%7e").unwrap(),
            "methods=*,*~~"
        );
        assert_eq!(decode_component("t", "a+b%20c").unwrap(), "a b c");
        assert_eq!(decode_component("t", "%c3%a9").unwrap(), "é");
        assert_eq!(decode_component("t", "plain").unwrap(), "plain");
    }

    #[test]
    fn decoding_refuses_broken_escapes_and_non_utf8() {
        for bad in ["%", "%4", "abc%G0", "%%41"] {
            assert!(
                matches!(decode_component("t", bad), Err(DubboError::BadEscape { .. })),
                "{bad}"
            );
        }
        let e = decode_component("etcd key", "x%ZZ").unwrap_err();
        assert_eq!(e.to_string(), "bad percent-escape at byte 1 of etcd key \"x%ZZ\"");
        assert!(matches!(
            decode_component("t", "%C3"),
            Err(DubboError::NotUtf8 { .. })
        ));
    }

    proptest! {
        #[test]
        fn both_encoders_round_trip(s in "\\PC{0,40}|[ -~]{0,40}") {
            for enc in [KeyEncoding::JavaUrlEncoder, KeyEncoding::GoQueryEscape] {
                let e = enc.encode(&s);
                prop_assert!(!e.contains('/'), "{e}");
                prop_assert!(e.bytes().all(|b| b.is_ascii_graphic()), "{e}");
                prop_assert_eq!(decode_component("t", &e).unwrap(), s.clone());
            }
        }

        #[test]
        fn decoding_never_panics(s in "[%+0-9a-fA-FxZé]{0,12}") {
            let _ = decode_component("t", &s);
        }
    }
}
