//! Hessian 2.0 encoder writing into the caller's buffer, in the compact forms Java's hessian-lite uses.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};

use bytes::{BufMut, BytesMut};

use crate::error::CodecError;
use crate::hessian::decode::DEFAULT_MAX_DEPTH;
use crate::value::{List, Map, Object, Value};

/// Longest string chunk, in UTF-16 units, as hessian-lite splits them.
const STRING_CHUNK: usize = 0x8000;
/// Longest binary chunk.
const BINARY_CHUNK: usize = 0xffff;

/// Writes Hessian 2 values into a `BytesMut`. One encoder per frame body (class definitions and the type
/// table are per body). Writing strings, ints and untyped maps allocates nothing beyond the buffer.
#[derive(Debug)]
pub struct Encoder<'b> {
    buf: &'b mut BytesMut,
    /// Type names written so far, by their index in the type table.
    types: HashMap<String, usize>,
    classes: Vec<(String, Vec<String>)>,
    /// Class definitions by a hash of their class and field names (found by a scan on a collision): a body
    /// with thousands of definitions does not cost a scan of them per object.
    class_ids: HashMap<u64, usize>,
    /// Made with the first class definition.
    hasher: Option<RandomState>,
    depth: usize,
}

type Result<T> = std::result::Result<T, CodecError>;

impl<'b> Encoder<'b> {
    pub fn new(buf: &'b mut BytesMut) -> Self {
        Encoder {
            buf,
            types: HashMap::new(),
            classes: Vec::new(),
            class_ids: HashMap::new(),
            hasher: None,
            depth: 0,
        }
    }

    /// The buffer written so far.
    pub fn buffer(&mut self) -> &mut BytesMut {
        self.buf
    }

    pub fn write_null(&mut self) {
        self.buf.put_u8(b'N');
    }

    pub fn write_bool(&mut self, v: bool) {
        self.buf.put_u8(if v { b'T' } else { b'F' });
    }

    pub fn write_int(&mut self, v: i32) {
        match v {
            -16..=47 => self.buf.put_u8((v + 0x90) as u8),
            -2048..=2047 => self.buf.put_slice(&[(0xc8 + (v >> 8)) as u8, v as u8]),
            -262_144..=262_143 => self
                .buf
                .put_slice(&[(0xd4 + (v >> 16)) as u8, (v >> 8) as u8, v as u8]),
            _ => {
                self.buf.put_u8(b'I');
                self.buf.put_i32(v);
            }
        }
    }

    pub fn write_long(&mut self, v: i64) {
        match v {
            -8..=15 => self.buf.put_u8((v + 0xe0) as u8),
            -2048..=2047 => self.buf.put_slice(&[(0xf8 + (v >> 8)) as u8, v as u8]),
            -262_144..=262_143 => self
                .buf
                .put_slice(&[(0x3c + (v >> 16)) as u8, (v >> 8) as u8, v as u8]),
            _ => match i32::try_from(v) {
                Ok(i) => {
                    self.buf.put_u8(b'Y');
                    self.buf.put_i32(i);
                }
                Err(_) => {
                    self.buf.put_u8(b'L');
                    self.buf.put_i64(v);
                }
            },
        }
    }

    /// Compact forms exactly when they decode back to the same `f64` (so `-0.0` and NaN payloads survive).
    pub fn write_double(&mut self, v: f64) {
        let i = v as i32;
        if f64::from(i) == v && !(v == 0.0 && v.is_sign_negative()) {
            match i {
                0 => return self.buf.put_u8(0x5b),
                1 => return self.buf.put_u8(0x5c),
                -128..=127 => return self.buf.put_slice(&[0x5d, i as u8]),
                -32768..=32767 => {
                    self.buf.put_u8(0x5e);
                    return self.buf.put_i16(i as i16);
                }
                _ => {}
            }
        }
        let mills = (v * 1000.0) as i32;
        if 0.001 * f64::from(mills) == v && !(v == 0.0 && v.is_sign_negative()) {
            self.buf.put_u8(0x5f);
            self.buf.put_i32(mills);
        } else {
            self.buf.put_u8(b'D');
            self.buf.put_f64(v);
        }
    }

    /// A `java.util.Date` in ms since the epoch; whole minutes use the 5-byte form.
    pub fn write_date(&mut self, ms: i64) {
        match i32::try_from(ms / 60_000) {
            Ok(min) if ms % 60_000 == 0 => {
                self.buf.put_u8(0x4b);
                self.buf.put_i32(min);
            }
            _ => {
                self.buf.put_u8(0x4a);
                self.buf.put_i64(ms);
            }
        }
    }

    /// A string: length in UTF-16 units, non-BMP characters as surrogate pairs (CESU-8), chunks of 32768
    /// units never split inside a pair.
    pub fn write_str(&mut self, s: &str) {
        if s.is_ascii() {
            let mut rest = s.as_bytes();
            while rest.len() > STRING_CHUNK {
                self.buf.put_u8(b'R');
                self.buf.put_u16(STRING_CHUNK as u16);
                self.buf.put_slice(&rest[..STRING_CHUNK]);
                rest = &rest[STRING_CHUNK..];
            }
            self.string_header(rest.len());
            self.buf.put_slice(rest);
            return;
        }
        let mut rest = s;
        loop {
            let (units, end, astral) = scan_units(rest, STRING_CHUNK);
            if end == rest.len() {
                self.string_header(units);
                self.put_cesu8(rest, astral);
                return;
            }
            self.buf.put_u8(b'R');
            self.buf.put_u16(units as u16);
            self.put_cesu8(&rest[..end], astral);
            rest = &rest[end..];
        }
    }

    fn string_header(&mut self, units: usize) {
        match units {
            0..=31 => self.buf.put_u8(units as u8),
            32..=1023 => self.buf.put_slice(&[0x30 + (units >> 8) as u8, units as u8]),
            _ => {
                self.buf.put_u8(b'S');
                self.buf.put_u16(units as u16);
            }
        }
    }

    fn put_cesu8(&mut self, s: &str, astral: bool) {
        if !astral {
            return self.buf.put_slice(s.as_bytes());
        }
        let mut units = [0u16; 2];
        for c in s.chars() {
            if c.len_utf16() == 1 {
                let mut b = [0u8; 4];
                self.buf.put_slice(c.encode_utf8(&mut b).as_bytes());
            } else {
                for &u in c.encode_utf16(&mut units).iter() {
                    self.buf.put_slice(&[
                        0xe0 | (u >> 12) as u8,
                        0x80 | ((u >> 6) & 0x3f) as u8,
                        0x80 | (u & 0x3f) as u8,
                    ]);
                }
            }
        }
    }

    pub fn write_binary(&mut self, b: &[u8]) {
        match b.len() {
            0..=15 => self.buf.put_u8(0x20 + b.len() as u8),
            16..=1023 => self.buf.put_slice(&[0x34 + (b.len() >> 8) as u8, b.len() as u8]),
            _ => {
                let mut rest = b;
                while rest.len() > BINARY_CHUNK {
                    self.buf.put_u8(b'A');
                    self.buf.put_u16(BINARY_CHUNK as u16);
                    self.buf.put_slice(&rest[..BINARY_CHUNK]);
                    rest = &rest[BINARY_CHUNK..];
                }
                self.buf.put_u8(b'B');
                self.buf.put_u16(rest.len() as u16);
                return self.buf.put_slice(rest);
            }
        }
        self.buf.put_slice(b);
    }

    /// Writes a type name, or its index when this body already named it.
    fn write_type(&mut self, t: &str) {
        match self.types.get(t) {
            Some(&i) => self.write_int(i as i32),
            None => {
                self.types.insert(t.to_owned(), self.types.len());
                self.write_str(t);
            }
        }
    }

    /// Starts an untyped map (`H`); close it with [`Encoder::write_end`]. It counts as a nesting level,
    /// as the decoder counts it.
    pub fn write_map_begin(&mut self) {
        self.depth += 1;
        self.buf.put_u8(b'H');
    }

    /// Ends a map begun with [`Encoder::write_map_begin`].
    pub fn write_end(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        self.buf.put_u8(b'Z');
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > DEFAULT_MAX_DEPTH {
            return Err(CodecError::TooDeep(DEFAULT_MAX_DEPTH));
        }
        Ok(())
    }

    /// Writes any value. Fails only for nesting deeper than the decoder would accept.
    pub fn write_value(&mut self, v: &Value<'_>) -> Result<()> {
        match v {
            Value::Null => self.write_null(),
            Value::Bool(b) => self.write_bool(*b),
            Value::Int(i) => self.write_int(*i),
            Value::Long(l) => self.write_long(*l),
            Value::Double(d) => self.write_double(*d),
            Value::Date(ms) => self.write_date(*ms),
            Value::String(s) => self.write_str(s),
            Value::Binary(b) => self.write_binary(b),
            Value::List(l) => self.write_list(l)?,
            Value::Map(m) => self.write_map(m)?,
            Value::Object(o) => self.write_object(o)?,
            Value::Ref(n) => {
                self.buf.put_u8(b'Q');
                self.write_int(*n as i32);
            }
        }
        Ok(())
    }

    fn write_list(&mut self, l: &List<'_>) -> Result<()> {
        self.enter()?;
        let n = l.items.len();
        match (&l.type_name, n) {
            (Some(t), 0..=7) => {
                self.buf.put_u8(0x70 + n as u8);
                self.write_type(t);
            }
            (Some(t), _) => {
                self.buf.put_u8(b'V');
                self.write_type(t);
                self.write_int(n as i32);
            }
            (None, 0..=7) => self.buf.put_u8(0x78 + n as u8),
            (None, _) => {
                self.buf.put_u8(b'X');
                self.write_int(n as i32);
            }
        }
        for item in &l.items {
            self.write_value(item)?;
        }
        self.depth -= 1;
        Ok(())
    }

    fn write_map(&mut self, m: &Map<'_>) -> Result<()> {
        self.enter()?;
        match &m.type_name {
            Some(t) => {
                self.buf.put_u8(b'M');
                self.write_type(t);
            }
            None => self.buf.put_u8(b'H'),
        }
        for (k, v) in &m.entries {
            self.write_value(k)?;
            self.write_value(v)?;
        }
        self.buf.put_u8(b'Z');
        self.depth -= 1;
        Ok(())
    }

    fn write_object(&mut self, o: &Object<'_>) -> Result<()> {
        self.enter()?;
        let same = |(name, fields): &(String, Vec<String>)| {
            *name == *o.class
                && fields.len() == o.fields.len()
                && fields.iter().zip(&o.fields).all(|(a, (b, _))| *a == **b)
        };
        let mut h = self.hasher.get_or_insert_with(RandomState::new).build_hasher();
        o.class.hash(&mut h);
        for (name, _) in &o.fields {
            name.hash(&mut h);
        }
        let key = h.finish();
        let found = match self.class_ids.get(&key) {
            Some(&i) if self.classes.get(i).is_some_and(same) => Some(i),
            Some(_) => self.classes.iter().position(same),
            None => None,
        };
        let idx = match found {
            Some(i) => i,
            None => {
                self.buf.put_u8(b'C');
                self.write_str(&o.class);
                self.write_int(o.fields.len() as i32);
                for (name, _) in &o.fields {
                    self.write_str(name);
                }
                self.classes.push((
                    o.class.to_string(),
                    o.fields.iter().map(|(n, _)| n.to_string()).collect(),
                ));
                self.class_ids.entry(key).or_insert(self.classes.len() - 1);
                self.classes.len() - 1
            }
        };
        if idx <= 15 {
            self.buf.put_u8(0x60 + idx as u8);
        } else {
            self.buf.put_u8(b'O');
            self.write_int(idx as i32);
        }
        for (_, v) in &o.fields {
            self.write_value(v)?;
        }
        self.depth -= 1;
        Ok(())
    }
}

/// The longest prefix of `s` with at most `max` UTF-16 units, never ending inside a surrogate pair:
/// (units, byte length, whether it holds non-BMP characters).
fn scan_units(s: &str, max: usize) -> (usize, usize, bool) {
    let mut units = 0;
    let mut astral = false;
    for (i, c) in s.char_indices() {
        let u = c.len_utf16();
        if units + u > max {
            return (units, i, astral);
        }
        astral |= u == 2;
        units += u;
    }
    (units, s.len(), astral)
}
