//! A JSON generic-call body with its declared types, as the consumer's JSON API maps it.
//!
//! Input: the first line is the types text (as `x-dubbo-service-method-overloading` carries it; may be
//! empty), the rest is the body. Checked, for every input:
//! * `parse_type_list`, `parse_invoke_body`, `typed_arguments` and `generic_arguments` return values or
//!   errors, never panic; peak allocation stays within 64 bytes per input byte + 1 MiB;
//! * every converted argument renders as JSON (default limits), encodes as Hessian, and decodes back to
//!   itself (bit-exact doubles);
//! * for exactly-typed parameters (primitives and their boxes, String, BigDecimal, BigInteger, Date, arrays of
//!   them, byte[], char[]) the argument survives answer rendering and conversion back by the same type, as
//!   JSON and as form text (`to_json` then `from_json`; `text_of` then `typed_text`).
#![no_main]

use std::borrow::Cow;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mesh_dubbo::hessian::{Decoder, Encoder};
use mesh_dubbo::Value;
use mesh_generic::{
    from_json, generic_arguments, parse_invoke_body, parse_type_list, text_of, to_json, typed_arguments, typed_text,
    RenderLimits,
};

mod alloc {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    static LIVE: AtomicUsize = AtomicUsize::new(0);
    static PEAK: AtomicUsize = AtomicUsize::new(0);

    pub struct Counting;

    // SAFETY: every call is forwarded to `System` unchanged; only counters are updated around it.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            let p = System.alloc(l);
            if !p.is_null() {
                let now = LIVE.fetch_add(l.size(), Relaxed) + l.size();
                PEAK.fetch_max(now, Relaxed);
            }
            p
        }

        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            System.dealloc(p, l);
            LIVE.fetch_sub(l.size(), Relaxed);
        }
    }

    /// The peak of bytes live at once while `f` ran, over what was live before.
    pub fn peak<R>(f: impl FnOnce() -> R) -> (R, usize) {
        let base = LIVE.load(Relaxed);
        PEAK.store(base, Relaxed);
        let r = f();
        (r, PEAK.load(Relaxed).saturating_sub(base))
    }
}

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

fn same(a: &Value<'_>, b: &Value<'_>) -> bool {
    format!("{a:?}") == format!("{b:?}")
}


fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (types_text, body) = (&data[..split], data.get(split + 1..).unwrap_or_default());
    let Ok(types_text) = std::str::from_utf8(types_text) else {
        return;
    };
    let (parsed, peak) = alloc::peak(|| {
        let types = parse_type_list(types_text);
        let body = parse_invoke_body(body);
        (types, body)
    });
    assert!(peak <= 64 * data.len() + (1 << 20), "parsing {} bytes peaked at {peak}", data.len());
    let (Ok(header_types), Ok(body)) = parsed else {
        return;
    };
    let types = body.types.clone().unwrap_or(header_types);
    let _ = generic_arguments("m", Some(&types), &body.values);
    let _ = generic_arguments("m", None, &body.values);
    if types.len() != body.values.len() {
        return;
    }
    let (args, peak) = alloc::peak(|| typed_arguments(&types, &body.values));
    assert!(peak <= 64 * data.len() + (1 << 20), "typing {} bytes peaked at {peak}", data.len());
    let Ok(args) = args else {
        return;
    };
    for (t, v) in types.iter().zip(&args) {
        let json = to_json(v, &RenderLimits::default()).unwrap_or_else(|e| panic!("{t}: {e}: {v:?}"));
        let mut buf = BytesMut::new();
        Encoder::new(&mut buf).write_value(v).unwrap_or_else(|e| panic!("{t}: {e}: {v:?}"));
        let back = Decoder::new(&buf).read_value().unwrap();
        assert!(same(&back, v), "hessian round trip: {v:?} -> {back:?}");
        if t.is_value_type() {
            let again = from_json(&json, t).unwrap_or_else(|e| panic!("{t}: {e}: {json:?}"));
            assert!(same(&again, v), "json round trip as {t}: {v:?} -> {again:?}");
            let text = text_of(v).into_owned();
            let again = typed_text(Cow::Borrowed(&text), t).unwrap_or_else(|e| panic!("{t}: {e}: {text:?}"));
            assert!(same(&again, v), "text round trip as {t}: {v:?} -> {again:?}");
        }
    }
});
