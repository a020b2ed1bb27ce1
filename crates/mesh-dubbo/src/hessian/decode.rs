//! Hessian 2.0 decoder over a complete body (`&[u8]`): the whole value grammar, borrowing where it can.

use std::borrow::Cow;

use crate::error::CodecError;
use crate::value::{List, Map, Object, Value};

/// Nesting limit used when none is given: deep enough for any real DTO, shallow enough for the stack.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// Claimed lengths only pre-size a vector up to this; beyond it, vectors grow as elements really arrive,
/// so nested lists that each claim the whole body cannot multiply memory.
const PREALLOC_CAP: usize = 256;

#[derive(Debug)]
struct ClassDef<'a> {
    name: Cow<'a, str>,
    fields: Vec<Cow<'a, str>>,
}

/// Reads Hessian 2 values one after another from a buffer that holds a whole frame body.
///
/// Class definitions, the type table and the reference count live as long as the decoder: one decoder per
/// frame body, as Dubbo writes one `Hessian2Output` per message.
#[derive(Debug)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    depth: usize,
    max_depth: usize,
    types: Vec<Cow<'a, str>>,
    classes: Vec<ClassDef<'a>>,
    refs: u32,
}

type Result<T> = std::result::Result<T, CodecError>;

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self::with_max_depth(buf, DEFAULT_MAX_DEPTH)
    }

    pub fn with_max_depth(buf: &'a [u8], max_depth: usize) -> Self {
        Decoder {
            buf,
            pos: 0,
            depth: 0,
            max_depth,
            types: Vec::new(),
            classes: Vec::new(),
            refs: 0,
        }
    }

    /// Offset of the next unread byte.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// True when every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos.min(self.buf.len())..]
    }

    fn peek(&self, what: &'static str) -> Result<u8> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or(CodecError::truncated(what, self.pos, 1))
    }

    fn byte(&mut self, what: &'static str) -> Result<u8> {
        let b = self.peek(what)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        let avail = self.buf.len().saturating_sub(self.pos);
        if avail < n {
            return Err(CodecError::truncated(what, self.pos, n - avail));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u16(&mut self, what: &'static str) -> Result<usize> {
        Ok(usize::from(u16::from_be_bytes(self.array(what)?)))
    }

    /// Reads any value.
    pub fn read_value(&mut self) -> Result<Value<'a>> {
        loop {
            let at = self.pos;
            let tag = self.byte("value")?;
            return Ok(match tag {
                b'N' => Value::Null,
                b'T' => Value::Bool(true),
                b'F' => Value::Bool(false),
                0x80..=0xbf | 0xc0..=0xcf | 0xd0..=0xd7 | b'I' => Value::Int(self.int_after(tag, at)?),
                0xd8..=0xef => Value::Long(i64::from(tag) - 0xe0),
                0xf0..=0xff => Value::Long(((i64::from(tag) - 0xf8) << 8) + i64::from(self.byte("long")?)),
                0x38..=0x3f => {
                    let [b1, b0] = self.array("long")?;
                    Value::Long(((i64::from(tag) - 0x3c) << 16) + (i64::from(b1) << 8) + i64::from(b0))
                }
                b'Y' => Value::Long(i64::from(i32::from_be_bytes(self.array("long")?))),
                b'L' => Value::Long(i64::from_be_bytes(self.array("long")?)),
                0x5b => Value::Double(0.0),
                0x5c => Value::Double(1.0),
                0x5d => Value::Double(f64::from(self.byte("double")? as i8)),
                0x5e => Value::Double(f64::from(i16::from_be_bytes(self.array("double")?))),
                // hessian-lite and dubbo-go-hessian2 write an i32 count of thousandths here (the spec says
                // f32); Java reads it back as `0.001 * mills`, and so do we.
                0x5f => Value::Double(0.001 * f64::from(i32::from_be_bytes(self.array("double")?))),
                b'D' => Value::Double(f64::from_be_bytes(self.array("double")?)),
                0x4a => Value::Date(i64::from_be_bytes(self.array("date")?)),
                0x4b => Value::Date(i64::from(i32::from_be_bytes(self.array("date")?)) * 60_000),
                0x00..=0x1f | 0x30..=0x33 | b'S' | b'R' => Value::String(self.string_after(tag, at)?),
                0x20..=0x2f | 0x34..=0x37 | b'B' | b'A' => Value::Binary(self.binary_after(tag, at)?),
                b'V' => {
                    let ty = self.read_type()?;
                    let len = self.read_length("list")?;
                    self.fixed_list(Some(ty), len)?
                }
                b'X' => {
                    let len = self.read_length("list")?;
                    self.fixed_list(None, len)?
                }
                0x70..=0x77 => {
                    let ty = self.read_type()?;
                    self.fixed_list(Some(ty), usize::from(tag - 0x70))?
                }
                0x78..=0x7f => self.fixed_list(None, usize::from(tag - 0x78))?,
                b'U' => {
                    let ty = self.read_type()?;
                    self.variable_list(Some(ty))?
                }
                b'W' => self.variable_list(None)?,
                b'H' => self.map(None)?,
                b'M' => {
                    let ty = self.read_type()?;
                    self.map(Some(ty))?
                }
                b'C' => {
                    self.class_def()?;
                    continue;
                }
                b'O' => {
                    let idx = self.read_int()?;
                    self.object(i64::from(idx), at)?
                }
                0x60..=0x6f => self.object(i64::from(tag - 0x60), at)?,
                b'Q' => {
                    let idx = self.read_int()?;
                    if idx < 0 || idx as u32 >= self.refs {
                        return Err(CodecError::BadReference {
                            what: "value",
                            index: i64::from(idx),
                            count: self.refs as usize,
                            at,
                        });
                    }
                    Value::Ref(idx as u32)
                }
                _ => {
                    return Err(CodecError::UnexpectedTag {
                        tag,
                        at,
                        what: "value",
                    })
                }
            });
        }
    }

    /// Reads an int in any of its forms (also accepting a long that fits, as Java's `readInt` does).
    pub fn read_int(&mut self) -> Result<i32> {
        let at = self.pos;
        let tag = self.byte("int")?;
        match tag {
            0x80..=0xbf | 0xc0..=0xcf | 0xd0..=0xd7 | b'I' => self.int_after(tag, at),
            0xd8..=0xff | 0x38..=0x3f | b'Y' | b'L' => {
                self.pos = at;
                match self.read_value()? {
                    Value::Long(v) => i32::try_from(v).map_err(|_| CodecError::BadLength {
                        what: "int",
                        len: v,
                        at,
                    }),
                    _ => Err(CodecError::UnexpectedTag { tag, at, what: "int" }),
                }
            }
            _ => Err(CodecError::UnexpectedTag { tag, at, what: "int" }),
        }
    }

    fn int_after(&mut self, tag: u8, at: usize) -> Result<i32> {
        Ok(match tag {
            0x80..=0xbf => i32::from(tag) - 0x90,
            0xc0..=0xcf => ((i32::from(tag) - 0xc8) << 8) + i32::from(self.byte("int")?),
            0xd0..=0xd7 => {
                let [b1, b0] = self.array("int")?;
                ((i32::from(tag) - 0xd4) << 16) + (i32::from(b1) << 8) + i32::from(b0)
            }
            b'I' => i32::from_be_bytes(self.array("int")?),
            _ => return Err(CodecError::UnexpectedTag { tag, at, what: "int" }),
        })
    }

    /// Reads a string (any form, chunked or not).
    pub fn read_string(&mut self) -> Result<Cow<'a, str>> {
        let at = self.pos;
        let tag = self.byte("string")?;
        self.string_after(tag, at)
    }

    /// Reads a string or `N`.
    pub fn read_nullable_string(&mut self) -> Result<Option<Cow<'a, str>>> {
        if self.peek("string")? == b'N' {
            self.pos += 1;
            return Ok(None);
        }
        self.read_string().map(Some)
    }

    fn string_after(&mut self, mut tag: u8, mut at: usize) -> Result<Cow<'a, str>> {
        let mut chunks: Option<Vec<u8>> = None;
        loop {
            let (units, last) = match tag {
                0x00..=0x1f => (usize::from(tag), true),
                0x30..=0x33 => (
                    (usize::from(tag - 0x30) << 8) + usize::from(self.byte("string")?),
                    true,
                ),
                b'S' => (self.u16("string")?, true),
                b'R' => (self.u16("string")?, false),
                _ => {
                    return Err(CodecError::UnexpectedTag {
                        tag,
                        at,
                        what: "string",
                    })
                }
            };
            let raw = self.string_bytes(units)?;
            if last && chunks.is_none() {
                return cesu8_to_str(raw, at);
            }
            chunks.get_or_insert_with(Vec::new).extend_from_slice(raw);
            if last {
                let all = chunks.unwrap_or_default();
                return cesu8_to_str(&all, at).map(|s| Cow::Owned(s.into_owned()));
            }
            at = self.pos;
            tag = self.byte("string chunk")?;
        }
    }

    /// Consumes `units` UTF-16 code units of (CESU-8 flavoured) UTF-8 and returns their bytes.
    fn string_bytes(&mut self, units: usize) -> Result<&'a [u8]> {
        let start = self.pos;
        let rest = &self.buf[start.min(self.buf.len())..];
        // Fast path: all ASCII, one byte per unit.
        if rest.len() >= units && rest[..units].is_ascii() {
            self.pos += units;
            return Ok(&rest[..units]);
        }
        let mut i = 0;
        let mut left = units;
        while left > 0 {
            let b = *rest
                .get(i)
                .ok_or(CodecError::truncated("string", start + i, left))?;
            let (n, u) = match b {
                0x00..=0x7f => (1, 1),
                0xc0..=0xdf => (2, 1),
                0xe0..=0xef => (3, 1),
                // Real 4-byte UTF-8 is not what Java writes, but some writers do: it holds two units.
                0xf0..=0xf7 if left >= 2 => (4, 2),
                _ => return Err(CodecError::BadUtf8(start + i)),
            };
            if rest.len() < i + n {
                return Err(CodecError::truncated(
                    "string",
                    start + rest.len(),
                    i + n - rest.len(),
                ));
            }
            i += n;
            left -= u;
        }
        self.pos += i;
        Ok(&rest[..i])
    }

    fn binary_after(&mut self, mut tag: u8, mut at: usize) -> Result<Cow<'a, [u8]>> {
        let mut chunks: Option<Vec<u8>> = None;
        loop {
            let (len, last) = match tag {
                0x20..=0x2f => (usize::from(tag - 0x20), true),
                0x34..=0x37 => (
                    (usize::from(tag - 0x34) << 8) + usize::from(self.byte("binary")?),
                    true,
                ),
                b'B' => (self.u16("binary")?, true),
                b'A' => (self.u16("binary")?, false),
                _ => {
                    return Err(CodecError::UnexpectedTag {
                        tag,
                        at,
                        what: "binary",
                    })
                }
            };
            let raw = self.take(len, "binary")?;
            if last && chunks.is_none() {
                return Ok(Cow::Borrowed(raw));
            }
            chunks.get_or_insert_with(Vec::new).extend_from_slice(raw);
            if last {
                return Ok(Cow::Owned(chunks.unwrap_or_default()));
            }
            at = self.pos;
            tag = self.byte("binary chunk")?;
        }
    }

    /// A type: a string (added to the type table) or an int index into that table.
    fn read_type(&mut self) -> Result<Cow<'a, str>> {
        let at = self.pos;
        match self.peek("type")? {
            0x00..=0x1f | 0x30..=0x33 | b'S' | b'R' => {
                let s = self.read_string()?;
                self.types.push(s.clone());
                Ok(s)
            }
            _ => {
                let idx = self.read_int()?;
                usize::try_from(idx)
                    .ok()
                    .and_then(|i| self.types.get(i))
                    .cloned()
                    .ok_or(CodecError::BadReference {
                        what: "type",
                        index: i64::from(idx),
                        count: self.types.len(),
                        at,
                    })
            }
        }
    }

    fn read_length(&mut self, what: &'static str) -> Result<usize> {
        let at = self.pos;
        let len = self.read_int()?;
        // Every element takes at least one byte: a length beyond the rest of the body is a lie, refused
        // before anything is allocated for it.
        match usize::try_from(len) {
            Ok(n) if n <= self.buf.len() - self.pos => Ok(n),
            _ => Err(CodecError::BadLength {
                what,
                len: i64::from(len),
                at,
            }),
        }
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(CodecError::TooDeep(self.max_depth));
        }
        self.refs = self.refs.saturating_add(1);
        Ok(())
    }

    fn fixed_list(&mut self, type_name: Option<Cow<'a, str>>, len: usize) -> Result<Value<'a>> {
        self.enter()?;
        let mut items = Vec::with_capacity(len.min(PREALLOC_CAP));
        for _ in 0..len {
            items.push(self.read_value()?);
        }
        self.depth -= 1;
        Ok(Value::List(List { type_name, items }))
    }

    fn at_end_marker(&mut self, what: &'static str) -> Result<bool> {
        if self.peek(what)? == b'Z' {
            self.pos += 1;
            return Ok(true);
        }
        Ok(false)
    }

    fn variable_list(&mut self, type_name: Option<Cow<'a, str>>) -> Result<Value<'a>> {
        self.enter()?;
        let mut items = Vec::new();
        while !self.at_end_marker("list")? {
            items.push(self.read_value()?);
        }
        self.depth -= 1;
        Ok(Value::List(List { type_name, items }))
    }

    fn map(&mut self, type_name: Option<Cow<'a, str>>) -> Result<Value<'a>> {
        self.enter()?;
        let mut entries = Vec::new();
        while !self.at_end_marker("map")? {
            let k = self.read_value()?;
            let v = self.read_value()?;
            entries.push((k, v));
        }
        self.depth -= 1;
        Ok(Value::Map(Map { type_name, entries }))
    }

    fn class_def(&mut self) -> Result<()> {
        let name = self.read_string()?;
        let n = self.read_length("class definition")?;
        let mut fields = Vec::with_capacity(n.min(PREALLOC_CAP));
        for _ in 0..n {
            fields.push(self.read_string()?);
        }
        self.classes.push(ClassDef { name, fields });
        Ok(())
    }

    fn object(&mut self, idx: i64, at: usize) -> Result<Value<'a>> {
        let ci = usize::try_from(idx)
            .ok()
            .filter(|&i| i < self.classes.len())
            .ok_or(CodecError::BadReference {
                what: "class",
                index: idx,
                count: self.classes.len(),
                at,
            })?;
        let class = self.classes[ci].name.clone();
        let n = self.classes[ci].fields.len();
        self.enter()?;
        // A class definition may declare more fields than its instances will ever fill before the body ends:
        // pre-size only up to the cap, and take each name as its value arrives (nested instances of a class
        // with a huge field list must not each reserve room for all of it).
        let mut fields = Vec::with_capacity(n.min(PREALLOC_CAP));
        for f in 0..n {
            let name = self.classes[ci].fields[f].clone();
            fields.push((name, self.read_value()?));
        }
        self.depth -= 1;
        Ok(Value::Object(Object { class, fields }))
    }
}

/// Turns Hessian string bytes into a `str`, borrowing when they are plain UTF-8.
///
/// Java writes each UTF-16 unit separately, so a non-BMP character arrives as two 3-byte surrogate
/// sequences (CESU-8), which `str` cannot hold as is; those strings are re-encoded. A lone surrogate (legal
/// in a Java string, not in a Rust one) becomes U+FFFD.
fn cesu8_to_str(raw: &[u8], at: usize) -> Result<Cow<'_, str>> {
    if let Ok(s) = std::str::from_utf8(raw) {
        return Ok(Cow::Borrowed(s));
    }
    let mut out = String::with_capacity(raw.len());
    let mut high: Option<u32> = None;
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        let (cp, n) = match b {
            0x00..=0x7f => (u32::from(b), 1),
            0xc0..=0xdf => (u32::from(b & 0x1f) << 6 | cont(raw, i + 1, at)?, 2),
            0xe0..=0xef => (
                u32::from(b & 0x0f) << 12 | cont(raw, i + 1, at)? << 6 | cont(raw, i + 2, at)?,
                3,
            ),
            0xf0..=0xf7 => (
                u32::from(b & 0x07) << 18
                    | cont(raw, i + 1, at)? << 12
                    | cont(raw, i + 2, at)? << 6
                    | cont(raw, i + 3, at)?,
                4,
            ),
            _ => return Err(CodecError::BadUtf8(at + i)),
        };
        i += n;
        match cp {
            0xd800..=0xdbff => {
                if high.replace(cp).is_some() {
                    out.push(char::REPLACEMENT_CHARACTER);
                }
            }
            0xdc00..=0xdfff => match high.take() {
                Some(h) => {
                    let c = 0x10000 + ((h - 0xd800) << 10) + (cp - 0xdc00);
                    out.push(char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER));
                }
                None => out.push(char::REPLACEMENT_CHARACTER),
            },
            _ => {
                if high.take().is_some() {
                    out.push(char::REPLACEMENT_CHARACTER);
                }
                out.push(char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER));
            }
        }
    }
    if high.is_some() {
        out.push(char::REPLACEMENT_CHARACTER);
    }
    Ok(Cow::Owned(out))
}

fn cont(raw: &[u8], i: usize, at: usize) -> Result<u32> {
    match raw.get(i) {
        Some(&b) if b & 0xc0 == 0x80 => Ok(u32::from(b & 0x3f)),
        _ => Err(CodecError::BadUtf8(at + i)),
    }
}
