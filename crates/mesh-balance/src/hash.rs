//! Small, fast, non-cryptographic hashing: an Fx-style `Hasher` for the request-path maps (short string and
//! integer keys, no attacker-controlled flooding concern: the keys are method names, tag values and cache
//! keys bounded in number) and a 64-bit hash for the consistent-hash ring.

use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, SocketAddr};

const K: u64 = 0x517c_c1b7_2722_0a95;

/// rustc's Fx hash: one multiply per 8 bytes.
#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.hash = (self.hash.rotate_left(5) ^ w).wrapping_mul(K);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// `HashMap` with [`FxHasher`].
pub type FxMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// 64-bit hash of `bytes` with a seed (FNV-1a, then the splitmix64 finaliser for avalanche).
pub fn hash64(bytes: &[u8], seed: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    mix64(h)
}

/// splitmix64's finaliser.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One SplitMix64 step (the golden-ratio increment, then the finaliser [`mix64`]): every input bit moves
/// every output bit, and 0 does not map to 0.
pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A 64-bit hash of a provider address (IP and port, v4 or v6), the same on every shard, consumer and
/// restart: what shard subsetting and the per-consumer provider subset rank providers by.
pub fn address_hash(addr: SocketAddr) -> u64 {
    let ip = match addr.ip() {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    };
    let key = (ip as u64) ^ ((ip >> 64) as u64).rotate_left(17) ^ (u64::from(addr.port()) << 40);
    splitmix64(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_differ_and_are_stable() {
        assert_eq!(hash64(b"abc", 1), hash64(b"abc", 1));
        assert_ne!(hash64(b"abc", 1), hash64(b"abc", 2));
        assert_ne!(hash64(b"abc", 1), hash64(b"abd", 1));
        let mut m: FxMap<&str, u32> = FxMap::default();
        m.insert("findUser", 1);
        m.insert("findUserById", 2);
        assert_eq!(m.get("findUser"), Some(&1));
        assert_eq!(m.get("findUserById"), Some(&2));
    }
}
