//! Java `String.hashCode` over UTF-16 code units.

/// `s.hashCode()` as Java computes it: `h = 31 * h + unit` over the UTF-16 code units, wrapping.
pub fn java_string_hash(s: &str) -> i32 {
    let mut h: i32 = 0;
    if s.is_ascii() {
        for &b in s.as_bytes() {
            h = h.wrapping_mul(31).wrapping_add(i32::from(b));
        }
    } else {
        for unit in s.encode_utf16() {
            h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::java_string_hash;

    #[test]
    fn known_java_values() {
        // Values computed by the JVM (and quoted in the vectors' README for "hello").
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        // Non-BMP: U+1F600 is the pair D83D DE00: 31 * 0xD83D + 0xDE00.
        assert_eq!(java_string_hash("\u{1F600}"), 31 * 0xD83D + 0xDE00);
        assert_eq!(java_string_hash("中"), 0x4E2D);
    }
}
