//! Who sent how much to whom: one row of counters per sender, by
//! destination rank (the parent last), grown without a lock as ranks join.
//!
//! A row is split into chunks of [`CHUNK`] destinations, each allocated the
//! first time a message goes to one of them. A row has one writer, its
//! sender (a parent's sends take turns): its hot path is two relaxed
//! loads and stores, no locked instruction.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use weft_abi::mesh::PARENT;

/// Destinations per chunk.
const CHUNK: usize = 64;
/// Chunks per row: every rank and the parent.
const CHUNKS: usize = (super::job::MAX_RANKS as usize + 1).div_ceil(CHUNK);

/// Messages and bytes to one destination.
type Link = (AtomicU64, AtomicU64);

/// One sender's counters, by destination.
#[derive(Debug, Default)]
pub(crate) struct Row {
    chunks: [OnceLock<Box<[Link; CHUNK]>>; CHUNKS],
}

/// The column of a destination: its rank, or the last one for the parent.
fn column(to: i32) -> usize {
    if to == PARENT {
        super::job::MAX_RANKS as usize
    } else {
        to as usize
    }
}

impl Row {
    /// Counts one message of `bytes` to `to` (a rank or `PARENT`).
    pub(crate) fn add(&self, to: i32, bytes: u64) {
        let column = column(to);
        let chunk = self.chunks[column / CHUNK]
            .get_or_init(|| Box::new(std::array::from_fn(|_| Link::default())));
        let link = &chunk[column % CHUNK];
        // One writer per row (the sender): a load and a store each.
        link.0
            .store(link.0.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        link.1
            .store(link.1.load(Ordering::Relaxed) + bytes, Ordering::Relaxed);
    }

    /// Bytes sent to `to` so far.
    pub(crate) fn bytes(&self, to: i32) -> u64 {
        let column = column(to);
        self.chunks[column / CHUNK]
            .get()
            .map_or(0, |chunk| chunk[column % CHUNK].1.load(Ordering::Relaxed))
    }

    /// Messages and bytes sent to anyone so far.
    pub(crate) fn totals(&self) -> (u64, u64) {
        self.chunks
            .iter()
            .filter_map(OnceLock::get)
            .flat_map(|chunk| chunk.iter())
            .map(|(m, b)| (m.load(Ordering::Relaxed), b.load(Ordering::Relaxed)))
            .fold((0, 0), |(m, b), (dm, db)| (m + dm, b + db))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_destination_including_the_parent_and_late_ranks() {
        let row = Row::default();
        row.add(3, 10);
        row.add(3, 5);
        row.add(PARENT, 7);
        row.add(1000, 1);
        assert_eq!(row.bytes(3), 15);
        assert_eq!(row.bytes(PARENT), 7);
        assert_eq!(row.bytes(1000), 1);
        assert_eq!(row.bytes(4), 0);
        assert_eq!(row.totals(), (4, 23));
    }
}
