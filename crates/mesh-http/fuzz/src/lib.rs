//! Checks shared by the fuzz targets, and a counting allocator to hold the crate to its allocation promises.
//!
//! * [`check_request_stream`]: pipelined requests in one buffer, each checked at many split points.
//! * [`check_form`]: one form body; a decoded invocation must re-encode and decode to itself.
//! * Allocation: `parse_request` allocates nothing but an owned (de-chunked) body, of exactly its size;
//!   `parse_form` stays within a small multiple of its input; responses written into a buffer with room
//!   allocate nothing at all.

use std::borrow::Cow;

use bytes::BytesMut;
use mesh_dubbo::Value;
use mesh_http::{
    encode_form, parse_form, parse_request, write_error, write_response_with, HttpError, HttpRequest,
    Invocation, Limits, Parse,
};

pub mod alloc {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    static LIVE: AtomicUsize = AtomicUsize::new(0);
    static PEAK: AtomicUsize = AtomicUsize::new(0);
    static COUNT: AtomicUsize = AtomicUsize::new(0);

    #[derive(Debug)]
    pub struct Counting;

    fn grew(by: usize) {
        COUNT.fetch_add(1, Relaxed);
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
                COUNT.fetch_add(1, Relaxed);
                if new_size >= l.size() {
                    grew(new_size - l.size());
                } else {
                    LIVE.fetch_sub(l.size() - new_size, Relaxed);
                }
            }
            q
        }
    }

    /// What `f` allocated: the peak of bytes live at once (over what was live before) and the number of
    /// allocations (and reallocations). The targets are single-threaded, so this is `f`'s alone.
    #[derive(Debug, Clone, Copy)]
    pub struct Usage {
        pub peak: usize,
        pub count: usize,
    }

    pub fn measure<R>(f: impl FnOnce() -> R) -> (R, Usage) {
        let base = LIVE.load(Relaxed);
        let count = COUNT.load(Relaxed);
        PEAK.store(base, Relaxed);
        let r = f();
        let usage = Usage {
            peak: PEAK.load(Relaxed).saturating_sub(base),
            count: COUNT.load(Relaxed) - count,
        };
        (r, usage)
    }
}

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

/// Small limits, so that the fuzzer reaches every one of them.
pub const SMALL: Limits = Limits {
    max_head_bytes: 256,
    max_headers: 6,
    max_body_bytes: 512,
    max_form_fields: 8,
};

/// Parses the pipelined requests in `input` one after the other, as a connection would, checking each.
pub fn check_request_stream(input: &[u8], limits: &Limits) {
    let mut off = 0;
    while off < input.len() {
        let buf = &input[off..];
        let (res, usage) = alloc::measure(|| parse_request(buf, limits));
        check_prefixes(buf, &res, limits);
        match res {
            Ok(Parse::Complete(req)) => {
                let owned = match &req.body {
                    Cow::Owned(b) => b.len(),
                    Cow::Borrowed(_) => 0,
                };
                assert!(
                    usage.peak <= owned && usage.count <= 1,
                    "parse_request allocated {usage:?} for a body of {owned}"
                );
                check_request(buf, &req, limits);
                off += req.consumed;
            }
            Ok(Parse::Partial { .. }) => {
                assert_eq!(usage.count, 0, "a Partial allocated");
                // The bound a caller relies on to cap its read buffer.
                assert!(
                    buf.len() <= limits.max_request_bytes(),
                    "Partial with {} bytes buffered",
                    buf.len()
                );
                break;
            }
            Err(e) => {
                assert_eq!(usage.count, 0, "an error allocated");
                assert!(e.closes_connection(), "{e}");
                check_error_response(&e);
                break;
            }
        }
    }
}

fn check_request(buf: &[u8], req: &HttpRequest<'_>, limits: &Limits) {
    assert!(req.consumed > 0 && req.consumed <= buf.len());
    assert!(req.consumed <= limits.max_request_bytes());
    assert!(req.body.len() <= limits.max_body_bytes);
    assert!(req.minor_version <= 1);
    if let Cow::Borrowed(b) = &req.body {
        // A borrowed body is the tail of the request's bytes (Content-Length, or a single chunk inside).
        let range = buf[..req.consumed].as_ptr_range();
        assert!(b.is_empty() || (range.contains(&b.as_ptr()) && b.as_ptr_range().end <= range.end));
    }
    check_form(&req.body, limits);

    let mut out = BytesMut::with_capacity(req.body.len() + 256);
    let (_, usage) = alloc::measure(|| {
        write_response_with(&mut out, 200, "text/plain", &req.body, req.response_connection());
    });
    assert_eq!(
        usage.count, 0,
        "writing a response into a buffer with room allocated"
    );
    let (status, body) = read_response(&out);
    assert_eq!((status, body), (200, &req.body[..]));
}

/// Every prefix of `buf` (sampled when `buf` is long) must give `Partial` or exactly `full`.
fn check_prefixes(buf: &[u8], full: &Result<Parse<HttpRequest<'_>>, HttpError>, limits: &Limits) {
    let step = (buf.len() / 256).max(1);
    let mut last_continue = false;
    for k in (0..buf.len()).step_by(step) {
        let prefix = parse_request(&buf[..k], limits);
        match (&prefix, full) {
            (Ok(Parse::Partial { send_continue }), _) => {
                assert!(
                    !last_continue || *send_continue,
                    "send_continue turned off at {k}"
                );
                last_continue = *send_continue;
            }
            (Ok(Parse::Complete(p)), Ok(Parse::Complete(f))) => {
                assert_eq!(p, f, "prefix {k} completes differently")
            }
            (Err(p), Err(f)) => assert_eq!(p, f, "prefix {k} fails differently"),
            _ => panic!("prefix {k} gives {prefix:?}, the whole buffer {full:?}"),
        }
    }
}

/// Decodes `body` as a form; what decodes must re-encode to a body that decodes to the same invocation
/// (exactly for scalar types; for structures, the re-encoded text is a fixed point).
pub fn check_form(body: &[u8], limits: &Limits) {
    let (res, usage) = alloc::measure(|| parse_form(body, limits));
    // Typed arguments parse JSON (a tree, then Hessian values): a larger multiple than plain text needs.
    assert!(
        usage.peak <= 64 * body.len() + 65536,
        "parse_form of {} bytes peaked at {} bytes",
        body.len(),
        usage.peak
    );
    match res {
        Ok(inv) => check_invocation(body, &inv, limits),
        Err(e) => {
            assert!(!e.closes_connection(), "{e}");
            assert_eq!(e.status(), 400, "{e}");
            check_error_response(&e);
        }
    }
}

fn check_invocation(body: &[u8], inv: &Invocation<'_>, limits: &Limits) {
    assert!(!inv.interface.is_empty() && !inv.method.is_empty());
    assert_ne!(inv.version.as_deref(), Some(""));
    assert_ne!(inv.group.as_deref(), Some(""));
    let count = mesh_dubbo::descriptor::count(&inv.param_types).expect("param_types is not a descriptor");
    assert_eq!(inv.args.len(), count);
    // interface and method are fields too.
    assert!(inv.args.len() + 2 <= limits.max_form_fields);
    let range = body.as_ptr_range();
    let arg_strings = inv.args.iter().filter_map(|a| match a {
        Value::String(s) => Some(s),
        _ => None,
    });
    let strings = [&inv.interface, &inv.method]
        .into_iter()
        .chain(arg_strings)
        .chain(inv.version.as_ref())
        .chain(inv.group.as_ref());
    for s in strings {
        if let Cow::Borrowed(s) = s {
            assert!(
                s.is_empty() || range.contains(&s.as_ptr()),
                "a borrowed value outside the body"
            );
        }
    }

    let mut again = Vec::new();
    encode_form(inv, &mut again);
    // `encode_form` always writes `parameterTypesString`, which the input may have left out: one field more.
    let relaxed = Limits {
        max_form_fields: limits.max_form_fields + 1,
        ..*limits
    };
    let back = parse_form(&again, &relaxed).unwrap_or_else(|e| panic!("re-encoded form fails: {e}\n{inv:?}"));
    // Debug text compares NaN equal to NaN (and tells -0.0 from 0.0).
    if scalar_types(&inv.param_types) {
        assert_eq!(format!("{back:?}"), format!("{inv:?}"), "form round trip changed the invocation");
    }
    let mut third = Vec::new();
    encode_form(&back, &mut third);
    assert_eq!(again, third, "re-encoding is not a fixed point");
}

/// Whether every parameter type maps its text one to one (scalars, strings, dates, big numbers, byte[]),
/// so a round trip must give the very same values.
fn scalar_types(desc: &str) -> bool {
    mesh_dubbo::descriptor::split(desc).all(|d| {
        matches!(
            d,
            Ok("Z" | "B" | "C" | "S" | "I" | "J" | "F" | "D" | "[B" | "[C")
                | Ok("Ljava/lang/String;" | "Ljava/lang/Integer;" | "Ljava/lang/Long;" | "Ljava/lang/Boolean;")
                | Ok("Ljava/lang/Double;" | "Ljava/lang/Float;" | "Ljava/lang/Short;" | "Ljava/lang/Byte;")
                | Ok("Ljava/lang/Character;" | "Ljava/util/Date;" | "Ljava/math/BigDecimal;")
        )
    })
}

fn check_error_response(e: &HttpError) {
    let reason = e.to_string();
    assert!(!reason.is_empty() && !reason.contains(['\r', '\n']), "{reason:?}");
    assert!((400..=599).contains(&e.status()));
    // Room for the head and the reason (which may name a type of up to 512 bytes).
    let mut out = BytesMut::with_capacity(512 + reason.len());
    let (_, usage) = alloc::measure(|| write_error(&mut out, e, true));
    assert_eq!(usage.count, 0, "write_error allocated");
    let (status, body) = read_response(&out);
    assert_eq!(status, e.status());
    assert_eq!(body, format!("{reason}\n").as_bytes());
    assert_eq!(
        out.windows(19).any(|w| w == b"Connection: close\r\n"),
        e.closes_connection()
    );
}

/// Status and body of the single response in `out`.
fn read_response(out: &[u8]) -> (u16, &[u8]) {
    let mut headers = [httparse::EMPTY_HEADER; 8];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(out) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!(
            "response does not parse: {other:?}\n{:?}",
            String::from_utf8_lossy(out)
        ),
    };
    let len: usize = resp
        .headers
        .iter()
        .find(|h| h.name == "Content-Length")
        .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
        .expect("no Content-Length");
    assert_eq!(out.len(), head + len, "response length");
    (resp.code.expect("no status"), &out[head..])
}
