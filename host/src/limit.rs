//! What one client may take of what many share: a share of a table
//! ([`Quota`]), and of the host's log ([`Throttle`]).
//!
//! A [`Quota`] counts per key (a guest address, a host peer);
//! [`Quota::take`] gives a [`Held`] place, or `None` when the key holds its
//! limit already; dropping the place gives it back. Keys holding nothing
//! are forgotten, so the map is as large as the set of clients holding
//! something.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How many places each key holds, at most `limit` each.
#[derive(Debug)]
pub struct Quota<K: Hash + Eq + Copy> {
    limit: usize,
    held: Mutex<HashMap<K, usize>>,
}

impl<K: Hash + Eq + Copy> Quota<K> {
    /// A quota of `limit` places per key.
    pub fn new(limit: usize) -> Arc<Quota<K>> {
        Arc::new(Quota {
            limit,
            held: Mutex::default(),
        })
    }

    /// The most places one key holds.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// One more place for `key`; `None` when it holds [`Quota::limit`].
    pub fn take(self: &Arc<Self>, key: K) -> Option<Held<K>> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let count = held.entry(key).or_default();
        if *count >= self.limit {
            if *count == 0 {
                held.remove(&key);
            }
            return None;
        }
        *count += 1;
        Some(Held {
            quota: self.clone(),
            key,
        })
    }
}

/// One place in a [`Quota`], given back when dropped.
#[derive(Debug)]
pub struct Held<K: Hash + Eq + Copy> {
    quota: Arc<Quota<K>>,
    key: K,
}

impl<K: Hash + Eq + Copy> Drop for Held<K> {
    fn drop(&mut self) {
        let mut held = self.quota.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = held.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

/// At most one log line per period (usually [`LOG_EVERY`]) for something
/// a client (a guest, a flood of packets, a host peer) can cause at will,
/// so that it cannot fill the host's log: the rest are counted, and the
/// next line says how many it stands for. Counters beside it (such as a
/// gateway's `nat_denied`, `nat_failed` and `nat_limited`) still count
/// each one.
#[derive(Debug)]
pub struct Throttle {
    /// At most one line per this many ms.
    every_ms: u64,
    /// When the next line may be written: ms since [`Throttle::origin`].
    next_ms: AtomicU64,
    /// Lines not written since the last one.
    skipped: AtomicU64,
}

/// How often a throttled line may be written.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

impl Throttle {
    pub const fn new(every: Duration) -> Throttle {
        Throttle {
            every_ms: every.as_millis() as u64,
            next_ms: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    fn origin() -> std::time::Instant {
        static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        *ORIGIN.get_or_init(std::time::Instant::now)
    }

    /// `Some(lines skipped before this one)` when a line may be written now.
    pub fn admit(&self) -> Option<u64> {
        let now = Throttle::origin().elapsed().as_millis() as u64;
        let next = self.next_ms.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now + self.every_ms,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.skipped.swap(0, Ordering::Relaxed));
        }
        self.skipped.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_holds_its_limit_and_gets_places_back() {
        let quota = Quota::new(2);
        let a1 = quota.take('a').unwrap();
        let _a2 = quota.take('a').unwrap();
        assert!(quota.take('a').is_none(), "past the limit");
        // Another key has its own share.
        let b = quota.take('b').unwrap();
        assert_eq!(quota.held.lock().unwrap().get(&'a'), Some(&2));
        assert_eq!(quota.held.lock().unwrap().get(&'b'), Some(&1));
        drop(a1);
        assert!(quota.take('a').is_some(), "a place given back");
        drop(b);
        // Forgotten once it holds nothing.
        assert_eq!(quota.held.lock().unwrap().get(&'b'), None);
        // A limit of 0 holds nothing and keeps no entry.
        let none = Quota::new(0);
        assert!(none.take(1).is_none());
        assert!(none.held.lock().unwrap().is_empty());
    }

    #[test]
    fn a_throttled_line_is_written_once_per_period_and_counts_the_rest() {
        let throttle = Throttle::new(Duration::from_secs(1));
        assert_eq!(throttle.admit(), Some(0));
        for _ in 0..1000 {
            assert_eq!(throttle.admit(), None);
        }
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(throttle.admit(), Some(1000));
        assert_eq!(throttle.admit(), None);
    }
}
