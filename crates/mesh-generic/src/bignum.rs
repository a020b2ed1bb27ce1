//! `java.math.BigDecimal` and `java.math.BigInteger` as hessian-lite writes them.
//!
//! * `BigDecimal`: hessian-lite's `StringValueSerializer`: an object of class `java.math.BigDecimal` with one
//!   field `value` holding `toString()` (`1.50`, `1E+3`). The text is checked against Java's
//!   `new BigDecimal(String)` grammar and sent as given (the scale is kept).
//! * `BigInteger`: hessian-lite has no serializer of its own for it, so its `JavaSerializer` writes the
//!   object's fields; its `BigIntegerDeserializer` sets them on a `BigInteger("0")`. The two that carry the
//!   value are written: `signum` (int: -1, 0, 1) and `mag` (`int[]`, the magnitude in big-endian 32-bit
//!   words, no leading zero word; empty for zero). The other fields (bit-count caches) are recomputed.

use std::borrow::Cow;

use mesh_dubbo::{List, Object, Value};

/// Most decimal digits of a `BigInteger` converted here (both ways): conversion is quadratic.
pub const MAX_BIG_INTEGER_DIGITS: usize = 4096;
/// Most 32-bit words of a `BigInteger` magnitude decoded here (a little over 4096 digits' worth).
const MAX_MAG_WORDS: usize = 1 + MAX_BIG_INTEGER_DIGITS * 1000 / 9632;

/// Whether `s` is a `BigDecimal` literal: `[+-]digits[.digits][(e|E)[+-]digits]`, at least one digit
/// before the exponent (`.5` and `5.` allowed, as Java allows them).
pub fn is_decimal(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let int_digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    i += int_digits;
    let mut frac_digits = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        i += frac_digits;
    }
    if int_digits + frac_digits == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        i += usize::from(matches!(b.get(i), Some(b'+' | b'-')));
        let exp_digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        // Java's exponent is an int: at most 10 digits.
        if exp_digits == 0 || exp_digits > 10 {
            return false;
        }
        i += exp_digits;
    }
    i == b.len()
}

/// The `BigDecimal` object for a checked literal.
pub fn big_decimal_value(text: Cow<'_, str>) -> Value<'_> {
    Value::Object(Object {
        class: Cow::Borrowed("java.math.BigDecimal"),
        fields: vec![(Cow::Borrowed("value"), Value::String(text))],
    })
}

/// The `BigInteger` object for a decimal integer (`[+-]digits`), or `None` if `s` is not one or has more
/// than [`MAX_BIG_INTEGER_DIGITS`] digits.
pub fn big_integer_value(s: &str) -> Option<Value<'static>> {
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty()
        || digits.len() > MAX_BIG_INTEGER_DIGITS
        || !digits.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    // Little-endian base-2^32 words, built by word = word * 10^9 + chunk.
    let mut words: Vec<u32> = Vec::new();
    let first = digits.len() % 9;
    let mut chunks = Vec::with_capacity(digits.len() / 9 + 1);
    if first > 0 {
        chunks.push(&digits[..first]);
    }
    chunks.extend(
        digits.as_bytes()[first..]
            .chunks(9)
            .map(|c| std::str::from_utf8(c).unwrap_or("0")),
    );
    for chunk in chunks {
        let mut carry = u64::from(chunk.parse::<u32>().unwrap_or(0));
        for w in &mut words {
            let v = u64::from(*w) * 1_000_000_000 + carry;
            *w = v as u32;
            carry = v >> 32;
        }
        if carry > 0 {
            words.push(carry as u32);
        }
    }
    while words.last() == Some(&0) {
        words.pop();
    }
    let signum = match (words.is_empty(), negative) {
        (true, _) => 0,
        (false, true) => -1,
        (false, false) => 1,
    };
    let mag = words.iter().rev().map(|&w| Value::Int(w as i32)).collect();
    Some(Value::Object(Object {
        class: Cow::Borrowed("java.math.BigInteger"),
        fields: vec![
            (Cow::Borrowed("signum"), Value::Int(signum)),
            (
                Cow::Borrowed("mag"),
                Value::List(List {
                    type_name: Some(Cow::Borrowed("[int")),
                    items: mag,
                }),
            ),
        ],
    }))
}

/// The decimal text of a `BigInteger` object's `signum` and `mag` fields, if they are there and sane.
pub fn big_integer_text(o: &Object<'_>) -> Option<String> {
    let field = |name: &str| o.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let signum = match field("signum")? {
        Value::Int(s @ -1..=1) => *s,
        _ => return None,
    };
    let Value::List(mag) = field("mag")? else {
        return None;
    };
    if mag.items.len() > MAX_MAG_WORDS {
        return None;
    }
    // Little-endian words.
    let mut words = Vec::with_capacity(mag.items.len());
    for item in mag.items.iter().rev() {
        match item {
            Value::Int(w) => words.push(*w as u32),
            _ => return None,
        }
    }
    while words.last() == Some(&0) {
        words.pop();
    }
    if words.is_empty() || signum == 0 {
        return Some("0".to_owned());
    }
    // Repeated division by 10^9, collecting 9-digit chunks from the least significant.
    let mut chunks = Vec::new();
    while !words.is_empty() {
        let mut rem = 0u64;
        for w in words.iter_mut().rev() {
            let v = (rem << 32) | u64::from(*w);
            *w = (v / 1_000_000_000) as u32;
            rem = v % 1_000_000_000;
        }
        while words.last() == Some(&0) {
            words.pop();
        }
        chunks.push(rem as u32);
    }
    let mut s = String::with_capacity(chunks.len() * 9 + 1);
    if signum < 0 {
        s.push('-');
    }
    let mut rev = chunks.iter().rev();
    if let Some(top) = rev.next() {
        s.push_str(&top.to_string());
    }
    for c in rev {
        s.push_str(&format!("{c:09}"));
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn decimal_grammar() {
        for ok in [
            "0",
            "1.50",
            "-1",
            "+2",
            ".5",
            "5.",
            "1E+3",
            "1e-10",
            "-0.000",
            "123456789012345678901234567890.1",
        ] {
            assert!(is_decimal(ok), "{ok}");
        }
        for bad in [
            "",
            "-",
            ".",
            "e5",
            "1e",
            "1e+",
            "1.2.3",
            "1,5",
            " 1",
            "NaN",
            "Infinity",
            "0x10",
            "1e12345678901",
        ] {
            assert!(!is_decimal(bad), "{bad}");
        }
    }

    fn mag_of(v: &Value<'_>) -> (i32, Vec<i32>) {
        let Value::Object(o) = v else { panic!("{v:?}") };
        assert_eq!(o.class, "java.math.BigInteger");
        let Value::Int(s) = o.fields[0].1 else { panic!() };
        let Value::List(l) = &o.fields[1].1 else { panic!() };
        assert_eq!(l.type_name.as_deref(), Some("[int"));
        (
            s,
            l.items
                .iter()
                .map(|i| match i {
                    Value::Int(i) => *i,
                    _ => panic!(),
                })
                .collect(),
        )
    }

    #[test]
    fn big_integer_words_as_java_holds_them() {
        assert_eq!(mag_of(&big_integer_value("0").unwrap()), (0, vec![]));
        assert_eq!(mag_of(&big_integer_value("-0").unwrap()), (0, vec![]));
        assert_eq!(mag_of(&big_integer_value("1").unwrap()), (1, vec![1]));
        assert_eq!(mag_of(&big_integer_value("-5").unwrap()), (-1, vec![5]));
        // 2^32 = [1, 0]; 2^64 - 1 = [-1, -1] as Java ints
        assert_eq!(mag_of(&big_integer_value("4294967296").unwrap()), (1, vec![1, 0]));
        assert_eq!(
            mag_of(&big_integer_value("18446744073709551615").unwrap()),
            (1, vec![-1, -1])
        );
        // 10^18 = 0x0DE0B6B3_A7640000
        assert_eq!(
            mag_of(&big_integer_value("+1000000000000000000").unwrap()),
            (1, vec![0x0DE0_B6B3, 0xA764_0000_u32 as i32])
        );
        for bad in [
            "",
            "-",
            "1.0",
            "1e3",
            "12a",
            &"9".repeat(MAX_BIG_INTEGER_DIGITS + 1),
        ] {
            assert!(big_integer_value(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn big_integer_round_trip() {
        for s in [
            "0",
            "1",
            "-1",
            "4294967295",
            "4294967296",
            "-18446744073709551616",
            "1000000000",
            "999999999999999999999999999999999",
        ] {
            let Value::Object(o) = big_integer_value(s).unwrap() else {
                panic!()
            };
            assert_eq!(big_integer_text(&o).unwrap(), s);
        }
        let long = "7".repeat(MAX_BIG_INTEGER_DIGITS);
        let Value::Object(o) = big_integer_value(&long).unwrap() else {
            panic!()
        };
        assert_eq!(big_integer_text(&o).unwrap(), long);
        let Value::Object(o) = big_integer_value("+12").unwrap() else {
            panic!()
        };
        assert_eq!(big_integer_text(&o).unwrap(), "12");
        // not a BigInteger's fields
        let odd = Object {
            class: "java.math.BigInteger".into(),
            fields: vec![("signum".into(), Value::Int(2))],
        };
        assert_eq!(big_integer_text(&odd), None);
    }
}
