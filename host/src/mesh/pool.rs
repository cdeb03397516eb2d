//! Recycled message buffers. A large message's buffer, once its receiver
//! has copied it out, goes back to the job's pool, and the next large send
//! copies into it: a stream of big messages then reuses memory whose pages
//! are already mapped, instead of faulting fresh pages in for every one
//! (which costs more than the copy itself).
//!
//! Bounded: at most [`MAX_BUFFERS`] buffers and [`MAX_BYTES`] bytes of
//! capacity are kept per job; small messages are not pooled at all.

use bytes::Bytes;
use std::sync::Mutex;

/// Messages shorter than this are allocated fresh (cheap at that size).
pub const MIN_POOLED: usize = 16 << 10;
/// Buffers kept at most.
pub const MAX_BUFFERS: usize = 32;
/// Capacity kept at most, in bytes.
pub const MAX_BYTES: usize = 64 << 20;

/// A job's free buffers.
#[derive(Debug, Default)]
pub struct Pool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An empty buffer with room for `len` bytes: the smallest free one
    /// that fits (of equals, the one given back last: its lines are the
    /// likeliest to be still in cache), else a new one.
    pub fn take(&self, len: usize) -> Vec<u8> {
        if len >= MIN_POOLED {
            let mut free = self.lock();
            let best = free
                .iter()
                .enumerate()
                .rev()
                .filter(|(_, buf)| buf.capacity() >= len)
                .min_by_key(|(_, buf)| buf.capacity())
                .map(|(i, _)| i);
            if let Some(i) = best {
                return free.swap_remove(i);
            }
        }
        Vec::with_capacity(len)
    }

    /// Takes a delivered message's buffer back, if nothing else holds it.
    pub fn give(&self, data: Bytes) {
        if data.len() < MIN_POOLED {
            return;
        }
        let Ok(data) = data.try_into_mut() else {
            return;
        };
        let mut buf = Vec::from(data);
        buf.clear();
        let mut free = self.lock();
        let held: usize = free.iter().map(Vec::capacity).sum();
        if free.len() < MAX_BUFFERS && held + buf.capacity() <= MAX_BYTES {
            free.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_a_delivered_buffer_and_stays_bounded() {
        let pool = Pool::default();
        let mut buf = pool.take(MIN_POOLED * 2);
        buf.extend_from_slice(&vec![1; MIN_POOLED * 2]);
        let pointer = buf.as_ptr();
        pool.give(Bytes::from(buf));
        let again = pool.take(MIN_POOLED);
        assert_eq!(again.as_ptr(), pointer);
        assert!(again.is_empty());
        // Of equal buffers, the one given back last comes out first.
        let (older, newer) = (vec![0; MIN_POOLED], vec![0; MIN_POOLED]);
        let newest = newer.as_ptr();
        pool.give(Bytes::from(older));
        pool.give(Bytes::from(newer));
        let taken = pool.take(MIN_POOLED);
        assert_eq!(taken.as_ptr(), newest);
        pool.lock().clear();
        // A shared message is not taken back; neither is a small one.
        let shared = Bytes::from(vec![0; MIN_POOLED]);
        let _other = shared.clone();
        pool.give(shared);
        pool.give(Bytes::from(vec![0; 10]));
        assert!(pool.lock().is_empty());
        for _ in 0..MAX_BUFFERS + 5 {
            pool.give(Bytes::from(vec![0; MIN_POOLED]));
        }
        assert_eq!(pool.lock().len(), MAX_BUFFERS);
    }
}
