//! The estate both routing benchmarks run on: providers with weights, versions, groups, zones and a few
//! tags, Dubbo condition rules over them, and a fixed mix of requests (methods, tags, an argument).

#![allow(dead_code)] // each benchmark uses a different subset

use std::net::SocketAddr;

use mesh_balance::{Provider, Rng, XorShift64};

pub(crate) const TAGS: [&str; 3] = ["gray", "canary", "blue"];
pub(crate) const RULES: [&str; 5] = [
    "method = find*,list* => version = 2.*",
    "method = get* => zone != z0",
    "method = update*,delete* => group = g0,g1",
    "arguments[0] = 0~99 => zone = z1,z2,z3",
    "=> host != 10.0.0.5",
];
pub(crate) const METHODS: [&str; 8] = [
    "findUser",
    "listOrders",
    "getItem",
    "updateUser",
    "deleteItem",
    "hash",
    "ping",
    "getAll",
];

/// Provider `i`'s address (distinct for i < 15,625,000).
pub(crate) fn addr(i: usize) -> SocketAddr {
    SocketAddr::from((
        [10, (i / 62_500) as u8, (i / 250 % 250) as u8, (i % 250 + 1) as u8],
        20880,
    ))
}

/// Provider `i`; `gen` varies its parameters (a changed registration); 3 in 20 carry a tag.
pub(crate) fn provider(i: usize, gen: usize) -> Provider {
    let mut p = Provider::new(addr(i))
        .with_weight([100, 200, 300][i % 3])
        .with_param("application", "svc")
        .with_param("version", if (i + gen).is_multiple_of(3) { "2.0" } else { "1.0" })
        .with_param("group", format!("g{}", (i + gen) % 4))
        .with_param("zone", format!("z{}", (i + gen) % 5));
    if i % 20 < 3 {
        p = p.with_tag(TAGS[i % 20]);
    }
    p
}

/// [`RULES`] as the JSON rule set `RuleSet::from_json` reads.
pub(crate) fn rules_json() -> String {
    let list: Vec<String> = RULES.iter().map(|r| format!("\"{r}\"")).collect();
    format!("{{\"conditions\":[{}]}}", list.join(","))
}

/// One request of the mix.
pub(crate) struct Req {
    pub(crate) method: &'static str,
    pub(crate) tag: Option<&'static str>,
    pub(crate) args: [String; 1],
}

/// `count` requests drawn from a fixed seed: every method, 40% with a tag (one in four of those unknown),
/// an argument in 0..300.
pub(crate) fn requests(count: usize) -> Vec<Req> {
    let mut rng = XorShift64::new(0x5eed);
    (0..count)
        .map(|_| {
            let r = rng.next_u64();
            let tag = match r % 10 {
                0 => Some("gray"),
                1 => Some("canary"),
                2 => Some("blue"),
                3 => Some("red"),
                _ => None,
            };
            Req {
                method: METHODS[(r >> 8) as usize % METHODS.len()],
                tag,
                args: [((r >> 20) % 300).to_string()],
            }
        })
        .collect()
}
