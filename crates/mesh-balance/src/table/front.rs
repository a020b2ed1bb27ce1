//! The route table's front cache: (force_tag, tag, method) -> tag base set, method-only rule mask and
//! the last routes seen, looked up without building a key per request.

pub(super) const FRONT_SLOTS: usize = 1024;
pub(super) const FRONT_ROUTES: usize = 4;

#[derive(Debug, Clone)]
pub(super) struct FrontEntry {
    pub(super) hash: u64,
    pub(super) force_tag: bool,
    pub(super) tag: Box<str>,
    pub(super) method: Box<str>,
    pub(super) tag_set: u32,
    pub(super) method_mask: u64,
    pub(super) routes: [(u64, u32); FRONT_ROUTES],
    pub(super) n: u8,
    pub(super) next: u8,
}

/// Open-addressing map (force_tag, tag, method) -> [`FrontEntry`], hashed and compared in place (no key
/// is built per request). Half full at most; starts over when it would be fuller.
#[derive(Debug, Clone, Default)]
pub(super) struct Front {
    pub(super) slots: Vec<Option<FrontEntry>>,
    pub(super) len: usize,
}

impl Front {
    pub(super) fn hash(force_tag: bool, tag: &str, method: &str) -> u64 {
        use std::hash::Hasher;
        let mut h = crate::hash::FxHasher::default();
        h.write_u8(u8::from(force_tag));
        h.write(tag.as_bytes());
        h.write_u8(0xff);
        h.write(method.as_bytes());
        crate::hash::mix64(h.finish())
    }

    /// Slot index of the entry, or of the empty slot where it would go.
    #[inline]
    pub(super) fn find(&self, hash: u64, force_tag: bool, tag: &str, method: &str) -> usize {
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            match &self.slots[i] {
                None => return i,
                Some(e)
                    if e.hash == hash
                        && e.force_tag == force_tag
                        && *e.tag == *tag
                        && *e.method == *method =>
                {
                    return i
                }
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    pub(super) fn clear(&mut self) {
        self.slots.clear();
        self.len = 0;
    }
}
