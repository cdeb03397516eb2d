//! One sender's messages to one mailbox, in the order sent: a ring of
//! cache-line slots for small messages, and a locked queue beside it for
//! the rest.
//!
//! A message of at most [`INLINE`] bytes is written into the next free
//! slot of the ring with its tag and length, and published by the slot's
//! sequence number: the receiver polls that number, reads the slot and
//! moves its tail on. No lock is taken, nothing is allocated, and a small
//! message moves between the two cores as one cache line (Open MPI's
//! shared-memory transport does the same with its "fast boxes"). A longer
//! message, or a small one while the ring is full, goes to the overflow
//! queue, under a lock; while the overflow queue holds anything, every
//! message goes there, so order is kept: the receiver takes what is in the
//! ring first, then the overflow queue.
//!
//! Who writes what: only the sender writes slots and its own counters
//! (one producer: a rank's instance runs on one thread at a time, and the
//! job makes a parent's sends take turns); only the receiver moves `tail`
//! and counts what it has taken (`consumed`). Each counter has one writer,
//! so none needs a locked instruction. Each side's fields sit on cache lines of their own, so a
//! ping-pong moves the slot's line and nothing else; the sender reads the
//! receiver's line only when its cached view says the ring or its credit
//! is full.

use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The longest message carried in a ring slot.
pub const INLINE: usize = 48;

/// Slots in a lane's ring.
const RING: u64 = 32;

const WORDS: usize = INLINE / 8;

/// A message's bytes: in place when they fit a ring slot, else shared.
#[derive(Clone, Debug)]
pub enum Payload {
    /// At most [`INLINE`] bytes, held by value.
    Inline { len: u8, bytes: [u8; INLINE] },
    /// A buffer, handed on without a copy.
    Shared(Bytes),
}

impl Payload {
    /// `data` copied in place; `None` past [`INLINE`] bytes.
    pub fn inline(data: &[u8]) -> Option<Payload> {
        let mut bytes = [0; INLINE];
        bytes.get_mut(..data.len())?.copy_from_slice(data);
        Some(Payload::Inline {
            len: data.len() as u8,
            bytes,
        })
    }

    pub fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Inline { len, bytes } => &bytes[..*len as usize],
            Payload::Shared(data) => data,
        }
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes as `Bytes` (a copy only for bytes held in place).
    pub fn into_bytes(self) -> Bytes {
        match self {
            Payload::Inline { .. } => Bytes::copy_from_slice(self.as_slice()),
            Payload::Shared(data) => data,
        }
    }
}

impl From<Bytes> for Payload {
    fn from(data: Bytes) -> Payload {
        Payload::Shared(data)
    }
}

/// A message with its sender.
#[derive(Clone, Debug)]
pub struct Parcel {
    /// The sender: a rank, or [`weft_abi::mesh::PARENT`].
    pub src: i32,
    pub tag: i32,
    pub data: Payload,
}

/// Keeps what it holds on cache lines of its own (two: the adjacent-line
/// prefetcher fetches lines in pairs).
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Padded<T>(pub T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// One ring slot: a cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Slot {
    /// The lane position it holds, plus one, once published.
    seq: AtomicU64,
    /// The tag (low half) and the length (high half).
    meta: AtomicU64,
    /// The bytes, little-endian, zero-padded.
    words: [AtomicU64; WORDS],
}

/// What the sender writes (and others read now and then).
#[derive(Debug, Default)]
struct Sent {
    /// Messages sent on the lane, ring and overflow, and their bytes.
    messages: AtomicU64,
    bytes: AtomicU64,
    /// Ring slots written.
    head: AtomicU64,
    /// The receiver's `tail` and `consumed`, as last read.
    tail_seen: AtomicU64,
    consumed_seen: AtomicU64,
    /// The most messages seen queued at once, by the sender.
    high_water: AtomicU64,
}

/// Adds `n` to a counter only the caller writes: a load and a store, no
/// locked instruction.
pub fn bump(counter: &AtomicU64, n: u64) -> u64 {
    let value = counter.load(Ordering::Relaxed) + n;
    counter.store(value, Ordering::Relaxed);
    value
}

/// What the receiver writes.
#[derive(Debug, Default)]
struct Taken {
    /// Ring slots read.
    tail: AtomicU64,
    /// Messages taken (delivered), and their bytes: the sender's credit.
    consumed: AtomicU64,
    bytes: AtomicU64,
    /// Messages read off the lane (into the receiver's hands, delivered or
    /// not).
    drained: AtomicU64,
    /// The most messages seen queued at once, by the receiver.
    high_water: AtomicU64,
}

/// The overflow queue.
#[derive(Debug, Default)]
struct Overflow {
    queue: Mutex<VecDeque<(i32, Payload)>>,
    /// Whether `queue` holds anything: set by the sender, cleared by the
    /// receiver, both under its lock; read without it.
    busy: AtomicBool,
}

impl Overflow {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(i32, Payload)>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A message read off a lane.
#[derive(Debug)]
pub struct Queued {
    pub parcel: Parcel,
    /// It came through the overflow queue: its bytes count against the
    /// mailbox's byte bound until it is taken.
    pub counted: bool,
}

/// Why a message was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Full {
    /// The sender has `messages` queued already.
    Credit,
    /// The overflow queue would pass the mailbox's byte bound.
    Bytes,
}

/// One sender's messages to one mailbox.
#[derive(Debug)]
pub struct Lane {
    src: i32,
    slots: Box<[Slot]>,
    sent: Padded<Sent>,
    taken: Padded<Taken>,
    overflow: Padded<Overflow>,
}

impl Lane {
    pub fn new(src: i32) -> Lane {
        Lane {
            src,
            slots: (0..RING).map(|_| Slot::default()).collect(),
            sent: Padded::default(),
            taken: Padded::default(),
            overflow: Padded::default(),
        }
    }

    fn slot(&self, position: u64) -> &Slot {
        &self.slots[(position % RING) as usize]
    }

    /// Queues a message unless the sender has `messages` queued already;
    /// a message for the overflow queue is first admitted by
    /// `admit(len)`, which counts it against the mailbox's bytes.
    pub fn push(
        &self,
        tag: i32,
        data: Payload,
        messages: u64,
        admit: impl FnOnce(usize) -> bool,
    ) -> Result<(), (Payload, Full)> {
        let sent = &self.sent;
        let count = sent.messages.load(Ordering::Relaxed);
        if count - sent.consumed_seen.load(Ordering::Relaxed) >= messages {
            let consumed = self.taken.consumed.load(Ordering::Acquire);
            sent.consumed_seen.store(consumed, Ordering::Relaxed);
            let queued = count - consumed;
            if queued > sent.high_water.load(Ordering::Relaxed) {
                sent.high_water.store(queued, Ordering::Relaxed);
            }
            if queued >= messages {
                return Err((data, Full::Credit));
            }
        }
        let len = data.len();
        if len <= INLINE && !self.overflow.busy.load(Ordering::Acquire) {
            let head = sent.head.load(Ordering::Relaxed);
            let mut tail = sent.tail_seen.load(Ordering::Relaxed);
            if head - tail >= RING {
                tail = self.taken.tail.load(Ordering::Acquire);
                sent.tail_seen.store(tail, Ordering::Relaxed);
            }
            if head - tail < RING {
                self.write(head, tag, data.as_slice());
                sent.head.store(head + 1, Ordering::Relaxed);
                self.count_sent(len);
                return Ok(());
            }
        }
        let mut queue = self.overflow.lock();
        if !admit(len) {
            return Err((data, Full::Bytes));
        }
        queue.push_back((tag, data));
        self.overflow.busy.store(true, Ordering::Release);
        drop(queue);
        self.count_sent(len);
        Ok(())
    }

    fn count_sent(&self, len: usize) {
        bump(&self.sent.messages, 1);
        bump(&self.sent.bytes, len as u64);
    }

    /// Writes a message into the slot at `position` and publishes it.
    fn write(&self, position: u64, tag: i32, data: &[u8]) {
        let slot = self.slot(position);
        for (word, chunk) in slot.words.iter().zip(data.chunks(8)) {
            let mut bytes = [0; 8];
            bytes[..chunk.len()].copy_from_slice(chunk);
            word.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
        }
        let meta = u64::from(tag as u32) | (data.len() as u64) << 32;
        slot.meta.store(meta, Ordering::Relaxed);
        slot.seq.store(position + 1, Ordering::Release);
    }

    /// Whether a message is waiting to be read off the lane (receiver).
    pub fn ready(&self) -> bool {
        let tail = self.taken.tail.load(Ordering::Relaxed);
        self.slot(tail).seq.load(Ordering::Acquire) == tail + 1
            || self.overflow.busy.load(Ordering::Acquire)
    }

    /// Reads the next message off the lane (receiver): the ring first,
    /// then the overflow queue.
    pub fn next(&self) -> Option<Queued> {
        loop {
            let tail = self.taken.tail.load(Ordering::Relaxed);
            if let Some((tag, data)) = self.read(tail) {
                self.taken.tail.store(tail + 1, Ordering::Release);
                return Some(self.drained(tag, data, false));
            }
            if !self.overflow.busy.load(Ordering::Acquire) {
                return None;
            }
            let mut queue = self.overflow.lock();
            // What the ring got before the overflow queue's first message
            // is older: the lock made it visible, if it was not before.
            if self.slot(tail).seq.load(Ordering::Acquire) == tail + 1 {
                continue;
            }
            let (tag, data) = queue.pop_front()?;
            if queue.is_empty() {
                self.overflow.busy.store(false, Ordering::Release);
            }
            return Some(self.drained(tag, data, true));
        }
    }

    fn read(&self, position: u64) -> Option<(i32, Payload)> {
        let slot = self.slot(position);
        if slot.seq.load(Ordering::Acquire) != position + 1 {
            return None;
        }
        let meta = slot.meta.load(Ordering::Relaxed);
        let len = (meta >> 32) as usize;
        let mut bytes = [0; INLINE];
        let words = len.div_ceil(8);
        for (word, chunk) in slot.words[..words].iter().zip(bytes.chunks_mut(8)) {
            chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        let data = Payload::Inline {
            len: len as u8,
            bytes,
        };
        Some((meta as u32 as i32, data))
    }

    fn drained(&self, tag: i32, data: Payload, counted: bool) -> Queued {
        let drained = bump(&self.taken.drained, 1);
        // At least this many are queued now: every one read so far and
        // not yet taken.
        let queued = drained - self.taken.consumed.load(Ordering::Relaxed);
        if queued > self.taken.high_water.load(Ordering::Relaxed) {
            self.taken.high_water.store(queued, Ordering::Relaxed);
        }
        Queued {
            parcel: Parcel {
                src: self.src,
                tag,
                data,
            },
            counted,
        }
    }

    /// Counts a message of `len` bytes read off this lane as taken: its
    /// room goes back to the sender (receiver).
    pub fn consumed(&self, len: usize) {
        let taken = &self.taken;
        bump(&taken.bytes, len as u64);
        let consumed = taken.consumed.load(Ordering::Relaxed) + 1;
        taken.consumed.store(consumed, Ordering::Release);
    }

    /// Empties the overflow queue; the bytes it held.
    pub fn clear(&self) -> usize {
        let mut queue = self.overflow.lock();
        let bytes = queue.iter().map(|(_, data)| data.len()).sum();
        queue.clear();
        self.overflow.busy.store(false, Ordering::Release);
        bytes
    }

    /// Messages and bytes sent and not yet taken.
    pub fn depth(&self) -> (u64, u64) {
        let messages = self.sent.messages.load(Ordering::Relaxed);
        let bytes = self.sent.bytes.load(Ordering::Relaxed);
        (
            messages.saturating_sub(self.taken.consumed.load(Ordering::Relaxed)),
            bytes.saturating_sub(self.taken.bytes.load(Ordering::Relaxed)),
        )
    }

    /// The most messages seen queued at once.
    pub fn high_water(&self) -> u64 {
        self.sent
            .high_water
            .load(Ordering::Relaxed)
            .max(self.taken.high_water.load(Ordering::Relaxed))
    }

    /// Messages taken so far.
    pub fn consumed_count(&self) -> u64 {
        self.taken.consumed.load(Ordering::Acquire)
    }
}
