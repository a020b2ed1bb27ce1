//! Helpers shared by the fuzz targets: structural equality of decoded values and bodies.
//!
//! `Value`'s derived `PartialEq` is not what a round-trip check wants: `NaN != NaN`, and `0.0 == -0.0`
//! hides a lost sign. Hessian 2 is meant to carry every `f64` bit for bit, so hessian values are compared
//! with [`Floats::Bits`]. fastjson goes through decimal text and serde_json's default float parser, which is
//! not guaranteed correctly rounded, so fastjson doubles are compared with [`Floats::Close`].

use mesh_dubbo::{Attachments, Body, Event, Response, RpcResult, Value};

/// How doubles are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Floats {
    /// Same bits (NaN payloads and the sign of zero included).
    Bits,
    /// Same bits, or both finite and within a few ULPs of each other.
    Close,
}

fn double_eq(a: f64, b: f64, f: Floats) -> bool {
    if a.to_bits() == b.to_bits() {
        return true;
    }
    match f {
        Floats::Bits => false,
        Floats::Close => {
            a.is_finite() && b.is_finite() && (a - b).abs() <= a.abs().max(b.abs()) * 4.0 * f64::EPSILON
        }
    }
}

/// Structural equality of two values, doubles compared as `f` says.
pub fn value_eq(a: &Value<'_>, b: &Value<'_>, f: Floats) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Long(x), Value::Long(y)) => x == y,
        (Value::Double(x), Value::Double(y)) => double_eq(*x, *y, f),
        (Value::Date(x), Value::Date(y)) => x == y,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Binary(x), Value::Binary(y)) => x == y,
        (Value::List(x), Value::List(y)) => {
            x.type_name == y.type_name
                && x.items.len() == y.items.len()
                && x.items.iter().zip(&y.items).all(|(p, q)| value_eq(p, q, f))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.type_name == y.type_name
                && x.entries.len() == y.entries.len()
                && x.entries
                    .iter()
                    .zip(&y.entries)
                    .all(|((k1, v1), (k2, v2))| value_eq(k1, k2, f) && value_eq(v1, v2, f))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.class == y.class
                && x.fields.len() == y.fields.len()
                && x.fields
                    .iter()
                    .zip(&y.fields)
                    .all(|((n1, v1), (n2, v2))| n1 == n2 && value_eq(v1, v2, f))
        }
        (Value::Ref(x), Value::Ref(y)) => x == y,
        _ => false,
    }
}

fn attachments_eq(a: &Attachments<'_>, b: &Attachments<'_>, f: Floats) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((k1, v1), (k2, v2))| k1 == k2 && value_eq(v1, v2, f))
}

fn result_eq(a: &RpcResult<'_>, b: &RpcResult<'_>, f: Floats) -> bool {
    match (a, b) {
        (RpcResult::Null, RpcResult::Null) => true,
        (RpcResult::Value(x), RpcResult::Value(y)) | (RpcResult::Exception(x), RpcResult::Exception(y)) => {
            value_eq(x, y, f)
        }
        _ => false,
    }
}

/// Structural equality of two decoded bodies, doubles compared as `f` says.
pub fn body_eq(a: &Body<'_>, b: &Body<'_>, f: Floats) -> bool {
    match (a, b) {
        (Body::Request(x), Body::Request(y)) => {
            x.head() == y.head()
                && x.args.len() == y.args.len()
                && x.args.iter().zip(&y.args).all(|(p, q)| value_eq(p, q, f))
                && attachments_eq(&x.attachments, &y.attachments, f)
        }
        (
            Body::Response(Response::Error {
                status: s1,
                message: m1,
            }),
            Body::Response(Response::Error {
                status: s2,
                message: m2,
            }),
        ) => s1 == s2 && m1 == m2,
        (
            Body::Response(Response::Ok {
                result: r1,
                attachments: a1,
            }),
            Body::Response(Response::Ok {
                result: r2,
                attachments: a2,
            }),
        ) => {
            result_eq(r1, r2, f)
                && match (a1, a2) {
                    (None, None) => true,
                    (Some(x), Some(y)) => attachments_eq(x, y, f),
                    _ => false,
                }
        }
        (Body::Event(x), Body::Event(y)) => match (x, y) {
            (Event::Heartbeat, Event::Heartbeat)
            | (Event::ReadOnly, Event::ReadOnly)
            | (Event::Writeable, Event::Writeable) => true,
            (Event::Other(p), Event::Other(q)) => value_eq(p, q, f),
            _ => false,
        },
        _ => false,
    }
}

/// A tiny xorshift generator, for deriving chunk sizes from one input byte.
#[derive(Debug, Clone)]
pub struct XorShift(u32);

impl XorShift {
    pub fn new(seed: u8) -> Self {
        XorShift(0x9e37_79b9 ^ u32::from(seed).wrapping_mul(0x0101_0101) | 1)
    }

    pub fn next_u32(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
}

/// The global allocator of the fuzz targets: the system allocator, counting live bytes and their peak, so a
/// target can bound what decoding one input allocates ([`measure`], [`check_amplification`]).
///
/// libFuzzer's `-malloc_limit_mb` only sees single allocations and `-rss_limit_mb` only the whole process; a
/// decoder that turns a few KiB into hundreds of MiB passes both while the input stays small, and the same
/// bug at the production body limit (8 MiB) is an OOM. A per-input ratio catches it at fuzzing sizes.
pub mod alloc {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    static LIVE: AtomicUsize = AtomicUsize::new(0);
    static PEAK: AtomicUsize = AtomicUsize::new(0);

    #[derive(Debug)]
    pub struct Counting;

    fn grew(by: usize) {
        let now = LIVE.fetch_add(by, Relaxed) + by;
        PEAK.fetch_max(now, Relaxed);
    }

    // SAFETY: every call is forwarded to `System` unchanged; only counters are updated around it.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            let p = System.alloc(l);
            if !p.is_null() {
                grew(l.size());
            }
            p
        }

        unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
            let p = System.alloc_zeroed(l);
            if !p.is_null() {
                grew(l.size());
            }
            p
        }

        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            System.dealloc(p, l);
            LIVE.fetch_sub(l.size(), Relaxed);
        }

        unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
            let q = System.realloc(p, l, new_size);
            if !q.is_null() {
                if new_size >= l.size() {
                    grew(new_size - l.size());
                } else {
                    LIVE.fetch_sub(l.size() - new_size, Relaxed);
                }
            }
            q
        }
    }

    /// Runs `f` and returns its result with the peak of bytes allocated by it and still live at some
    /// point (over what was live before). The targets are single-threaded, so this is `f`'s alone.
    pub fn measure<R>(f: impl FnOnce() -> R) -> (R, usize) {
        let base = LIVE.load(Relaxed);
        PEAK.store(base, Relaxed);
        let r = f();
        (r, PEAK.load(Relaxed).saturating_sub(base))
    }
}

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

/// Bytes of decoder memory allowed per input byte. A decoded value costs at most a `Value` (56 bytes), an
/// `(Value, Value)` map entry or a `(name, Value)` field per byte or two of input, and a growing `Vec` can
/// hold twice that; 256 leaves room for all of it and catches multiplicative blow-ups.
pub const ALLOC_PER_INPUT_BYTE: usize = 256;
/// Fixed allowance: the up-to-256-element pre-sizing at each of 64 nesting levels, and small tables.
pub const ALLOC_FIXED: usize = 2 << 20;

/// Panics when decoding `input_len` bytes needed more than `ALLOC_PER_INPUT_BYTE * input_len + ALLOC_FIXED`.
pub fn check_amplification(what: &str, input_len: usize, peak: usize) {
    let limit = ALLOC_PER_INPUT_BYTE * input_len + ALLOC_FIXED;
    assert!(
        peak <= limit,
        "{what}: decoding {input_len} bytes peaked at {peak} bytes allocated (limit {limit}, {}x the input)",
        peak / input_len.max(1)
    );
}
