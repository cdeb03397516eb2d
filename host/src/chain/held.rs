//! An output that is still in the producer's linear memory.
//!
//! When a guest declares an output region (`weft:chain`'s `output`) and
//! ends well, its store is not dropped: it moves into the output `Bytes`
//! (`Bytes::from_owner`), which points straight at the region. The host
//! copies nothing; the next step's `input` copies the bytes into its own
//! memory (the hop's one copy), and when the last handle on the `Bytes` goes,
//! the store goes too (to the runtime's reaper, which resets the slot off
//! the hop's path) and its slot returns to the pool.
//!
//! The region was checked against the memory when it was declared, and a
//! linear memory never shrinks or moves (the pooling allocator reserves its
//! whole address range up front), so the slice stays valid for as long as
//! the store lives. Nothing runs in the store any more.

use crate::runtime::Owned;
use bytes::Bytes;
use wasmtime::Memory;

struct Held {
    store: Owned,
    memory: Memory,
    start: usize,
    len: usize,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        let data = self.memory.data(&*self.store);
        data.get(self.start..self.start + self.len).unwrap_or(&[])
    }
}

/// The declared output region of a finished instance as `Bytes` that own
/// its store; `None` (and the store dropped) when it declared none.
pub(crate) fn take_output(mut store: Owned) -> Option<Bytes> {
    let region = store.data_mut().chain.take_output()?;
    // Let go of any input left unread: it may be the previous step's store,
    // which must not live as long as this one.
    store.data_mut().chain.set_input(Bytes::new());
    Some(Bytes::from_owner(Held {
        store,
        memory: region.memory,
        start: region.start,
        len: region.len,
    }))
}
