//! JVM parameter-type descriptors as Dubbo writes them: concatenated with no separator
//! (`I[ZLjava/lang/Object;`), `""` for no parameters.

use crate::error::CodecError;

/// Iterates over the single-type descriptors in a concatenated descriptor string.
#[derive(Debug, Clone)]
pub struct Descriptors<'a> {
    desc: &'a str,
    pos: usize,
}

/// Splits `desc` into its parts: `"I[ZLjava/lang/Object;"` yields `I`, `[Z`, `Ljava/lang/Object;`.
pub fn split(desc: &str) -> Descriptors<'_> {
    Descriptors { desc, pos: 0 }
}

/// Number of parameters `desc` describes, or an error naming where it is malformed.
pub fn count(desc: &str) -> Result<usize, CodecError> {
    split(desc).try_fold(0, |n, d| d.map(|_| n + 1))
}

impl<'a> Iterator for Descriptors<'a> {
    type Item = Result<&'a str, CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        let bytes = self.desc.as_bytes();
        let start = self.pos;
        if start >= bytes.len() {
            return None;
        }
        let bad = |at: usize| CodecError::BadDescriptor {
            desc: self.desc.to_owned(),
            at,
        };
        let mut i = start;
        while bytes.get(i) == Some(&b'[') {
            i += 1;
        }
        let end = match bytes.get(i) {
            Some(b'V' | b'Z' | b'B' | b'C' | b'D' | b'F' | b'I' | b'J' | b'S') => i + 1,
            Some(b'L') => match bytes[i + 1..].iter().position(|&b| b == b';') {
                Some(0) | None => {
                    self.pos = bytes.len();
                    return Some(Err(bad(i)));
                }
                Some(n) => i + 1 + n + 1,
            },
            _ => {
                self.pos = bytes.len();
                return Some(Err(bad(i)));
            }
        };
        self.pos = end;
        Some(Ok(&self.desc[start..end]))
    }
}

/// The descriptor of a Java type name: `int` -> `I`, `java.lang.String` -> `Ljava/lang/String;`,
/// `int[]` -> `[I`; a name already in `Class.getName()` array form (`[Ljava.lang.String;`) is converted too.
pub fn from_java_name(name: &str) -> String {
    let name = name.trim();
    if name.starts_with('[') {
        return name.replace('.', "/");
    }
    let mut base = name;
    let mut dims = 0;
    while let Some(b) = base.strip_suffix("[]") {
        base = b;
        dims += 1;
    }
    let mut out = "[".repeat(dims);
    match primitive_code(base) {
        Some(c) => out.push(c),
        None => {
            out.push('L');
            out.push_str(&base.replace('.', "/"));
            out.push(';');
        }
    }
    out
}

/// The Java type name of one descriptor: `I` -> `int`, `Ljava/lang/String;` -> `java.lang.String`,
/// `[I` -> `int[]`. Generic calls (`$invoke`) carry type names in this form.
pub fn to_java_name(desc: &str) -> Result<String, CodecError> {
    let bad = || CodecError::BadDescriptor {
        desc: desc.to_owned(),
        at: 0,
    };
    let dims = desc.bytes().take_while(|&b| b == b'[').count();
    let base = &desc[dims..];
    let mut out = match base.as_bytes().first() {
        Some(b'L') if base.len() > 2 && base.ends_with(';') => base[1..base.len() - 1].replace('/', "."),
        Some(&c) if base.len() == 1 => primitive_name(c).ok_or_else(bad)?.to_owned(),
        _ => return Err(bad()),
    };
    out.push_str(&"[]".repeat(dims));
    Ok(out)
}

fn primitive_code(name: &str) -> Option<char> {
    Some(match name {
        "void" => 'V',
        "boolean" => 'Z',
        "byte" => 'B',
        "char" => 'C',
        "double" => 'D',
        "float" => 'F',
        "int" => 'I',
        "long" => 'J',
        "short" => 'S',
        _ => return None,
    })
}

fn primitive_name(code: u8) -> Option<&'static str> {
    Some(match code {
        b'V' => "void",
        b'Z' => "boolean",
        b'B' => "byte",
        b'C' => "char",
        b'D' => "double",
        b'F' => "float",
        b'I' => "int",
        b'J' => "long",
        b'S' => "short",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_concatenated_descriptors() {
        let parts: Vec<_> = split("I[ZLjava/lang/Object;J[[Ljava/lang/String;[B")
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            parts,
            ["I", "[Z", "Ljava/lang/Object;", "J", "[[Ljava/lang/String;", "[B"]
        );
        assert_eq!(count("").unwrap(), 0);
        assert_eq!(count("Ljava/lang/String;").unwrap(), 1);
        assert_eq!(
            count("Ljava/lang/String;[Ljava/lang/String;[Ljava/lang/Object;").unwrap(),
            3
        );
    }

    #[test]
    fn rejects_malformed_descriptors() {
        for bad in ["Ljava/lang/String", "L;", "Q", "[", "I[", "java.lang.String"] {
            let err = count(bad).unwrap_err();
            assert!(matches!(err, CodecError::BadDescriptor { .. }), "{bad}: {err}");
        }
        assert_eq!(
            count("IX").unwrap_err(),
            CodecError::BadDescriptor {
                desc: "IX".into(),
                at: 1
            }
        );
    }

    #[test]
    fn converts_java_names() {
        for (java, desc) in [
            ("int", "I"),
            ("boolean", "Z"),
            ("long", "J"),
            ("java.lang.String", "Ljava/lang/String;"),
            ("int[]", "[I"),
            ("java.lang.String[][]", "[[Ljava/lang/String;"),
        ] {
            assert_eq!(from_java_name(java), desc);
            assert_eq!(to_java_name(desc).unwrap(), java);
        }
        assert_eq!(from_java_name("[Ljava.lang.String;"), "[Ljava/lang/String;");
        assert_eq!(from_java_name("[B"), "[B");
        assert!(to_java_name("Lx").is_err());
        assert!(to_java_name("Q").is_err());
    }
}
