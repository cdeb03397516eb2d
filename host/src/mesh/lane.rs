//! One sender's messages to one mailbox, in the order sent: a ring of
//! cache lines for messages up to [`RING_MAX`] bytes, and a locked queue
//! beside it for the rest.
//!
//! A message of at most [`RING_MAX`] bytes is written into the ring's next
//! free cells (one cache line for up to 48 bytes, one more per 56 after
//! that) with its tag and length, and published by a stamp in its first
//! cell, written last: the receiver polls that stamp, reads the cells and
//! moves its tail on. No lock is taken, nothing is allocated, and a small
//! message moves between the two cores as one cache line (Open MPI's
//! shared-memory transport does the same with its "fast boxes"). A longer
//! message, or a small one while the ring is full, goes to the overflow
//! queue, under a lock; while the overflow queue holds anything, every
//! message goes there, so order is kept: the receiver takes what is in the
//! ring first, then the overflow queue.
//!
//! Who writes what: only the sender writes cells and its own counters
//! (one producer: a rank's instance runs on one thread at a time, and the
//! job makes a parent's sends take turns); only the receiver moves `tail`
//! and counts what it has taken (`consumed`). Each counter has one writer,
//! so none needs a locked instruction. Each side's fields sit on cache
//! lines of their own, so a ping-pong moves the message's lines and
//! nothing else; the sender reads the receiver's line only when its cached
//! view says the ring or its credit is full.

use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The longest message held by value in a [`Payload`].
pub const INLINE: usize = 48;

/// The longest message carried in a lane's ring.
pub const RING_MAX: usize = 1024;

/// Cells (cache lines) in a lane's ring: 8 KiB.
const CELLS: u64 = 128;

/// Bytes the first cell of a message carries (after its stamp, and its tag
/// and length), and each further one (after a word that is never a stamp).
const FIRST: usize = 48;
const MORE: usize = 56;

/// A message's tag and length word that marks the rest of the ring, up to
/// its end, as skipped (a message never wraps round).
const SKIP: u64 = u64::MAX;

/// The cells a message of `len` bytes takes.
fn cells(len: usize) -> u64 {
    1 + len.saturating_sub(FIRST).div_ceil(MORE) as u64
}

/// A message's bytes: by value when they are few, else shared.
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

/// A message's bytes on their way in: borrowed (from the sender's memory,
/// written straight into the ring) or held.
#[derive(Debug)]
pub enum Data<'a> {
    Borrowed(&'a [u8]),
    Held(Payload),
}

impl Data<'_> {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Data::Borrowed(data) => data,
            Data::Held(payload) => payload.as_slice(),
        }
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Held bytes (a copy of borrowed ones).
    pub fn hold(self) -> Payload {
        match self {
            Data::Borrowed(data) => Payload::inline(data)
                .unwrap_or_else(|| Payload::Shared(Bytes::copy_from_slice(data))),
            Data::Held(payload) => payload,
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

/// One cell of a ring: a cache line of words. The first cell of a message
/// holds its stamp (its position in the ring, counted in cells from the
/// lane's start, plus one: written last, it publishes the message), its
/// tag (low half) and length (high half), then bytes; a further cell holds
/// a zero, then bytes. Every cell starts with a stamp or a zero, never
/// with bytes, so a stale cell can never pass for a message.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Cell {
    words: [AtomicU64; 8],
}

/// [`store`] of a cell's whole run of `N` words: fixed stores, with no
/// length to check per word.
fn store_run<const N: usize>(words: &[AtomicU64], bytes: &[u8]) {
    let words: &[AtomicU64; N] = words.try_into().expect("N words");
    let bytes: &[[u8; 8]; N] = bytes.as_chunks().0.try_into().expect("N words of bytes");
    for (word, chunk) in words.iter().zip(bytes) {
        word.store(u64::from_le_bytes(*chunk), Ordering::Relaxed);
    }
}

/// [`load`] of a cell's whole run of `N` words.
fn load_run<const N: usize>(words: &[AtomicU64], out: &mut [u8]) {
    let words: &[AtomicU64; N] = words.try_into().expect("N words");
    let out: &mut [[u8; 8]; N] = out.as_chunks_mut().0.try_into().expect("N words of bytes");
    for (chunk, word) in out.iter_mut().zip(words) {
        *chunk = word.load(Ordering::Relaxed).to_le_bytes();
    }
}

/// Stores `bytes` (8 per word, the last word zero-padded).
fn store(words: &[AtomicU64], bytes: &[u8]) {
    let whole = bytes.chunks_exact(8);
    let last = whole.remainder();
    let mut words = words.iter();
    // The bytes first: `zip` asks its first iterator first.
    for (chunk, word) in whole.zip(words.by_ref()) {
        let chunk: [u8; 8] = chunk.try_into().expect("8 bytes");
        word.store(u64::from_le_bytes(chunk), Ordering::Relaxed);
    }
    if !last.is_empty() {
        let mut padded = [0; 8];
        padded[..last.len()].copy_from_slice(last);
        let word = words.next().expect("a word for the last bytes");
        word.store(u64::from_le_bytes(padded), Ordering::Relaxed);
    }
}

/// Loads `out.len()` bytes stored by [`store`].
fn load(words: &[AtomicU64], out: &mut [u8]) {
    let mut whole = out.chunks_exact_mut(8);
    let mut words = words.iter();
    for (chunk, word) in whole.by_ref().zip(words.by_ref()) {
        chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
    }
    let last = whole.into_remainder();
    if !last.is_empty() {
        let word = words.next().expect("a word for the last bytes");
        let bytes = word.load(Ordering::Relaxed).to_le_bytes();
        last.copy_from_slice(&bytes[..last.len()]);
    }
}

/// What the sender writes (and others read now and then).
#[derive(Debug, Default)]
struct Sent {
    /// Messages sent on the lane, ring and overflow, and their bytes.
    messages: AtomicU64,
    bytes: AtomicU64,
    /// Ring cells written (a position: it only grows).
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
    /// Ring cells read (a position: it only grows).
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
    ring: Box<[Cell]>,
    sent: Padded<Sent>,
    taken: Padded<Taken>,
    overflow: Padded<Overflow>,
}

impl Lane {
    pub fn new(src: i32) -> Lane {
        Lane {
            src,
            ring: (0..CELLS).map(|_| Cell::default()).collect(),
            sent: Padded::default(),
            taken: Padded::default(),
            overflow: Padded::default(),
        }
    }

    /// The sender.
    pub fn src(&self) -> i32 {
        self.src
    }

    fn cell(&self, position: u64) -> &Cell {
        &self.ring[(position % CELLS) as usize]
    }

    /// Queues a message unless the sender has `messages` queued already;
    /// a message for the overflow queue is first admitted by
    /// `admit(len)`, which counts it against the mailbox's bytes.
    pub fn push<'a>(
        &self,
        tag: i32,
        data: Data<'a>,
        messages: u64,
        admit: impl FnOnce(usize) -> bool,
    ) -> Result<(), (Data<'a>, Full)> {
        if !self.has_credit(messages) {
            return Err((data, Full::Credit));
        }
        if self.push_ring(tag, data.as_slice()) {
            return Ok(());
        }
        let len = data.len();
        let mut queue = self.overflow.lock();
        if !admit(len) {
            return Err((data, Full::Bytes));
        }
        queue.push_back((tag, data.hold()));
        self.overflow.busy.store(true, Ordering::Release);
        drop(queue);
        self.count_sent(len);
        Ok(())
    }

    /// [`Lane::push`] of a message that goes into the ring now; anything
    /// else (no credit, too long for the ring, the ring full or the
    /// overflow queue in use) does not go. Whether it went: the caller
    /// keeps `data` either way (it is written from where it lies, not
    /// moved through the calls).
    pub fn try_ring(&self, tag: i32, data: &[u8], messages: u64) -> bool {
        self.has_credit(messages) && self.push_ring(tag, data)
    }

    /// Whether the sender has fewer than `messages` queued; it reads the
    /// receiver's count only when its last reading says otherwise.
    fn has_credit(&self, messages: u64) -> bool {
        let sent = &self.sent;
        let count = sent.messages.load(Ordering::Relaxed);
        if count - sent.consumed_seen.load(Ordering::Relaxed) < messages {
            return true;
        }
        let consumed = self.taken.consumed.load(Ordering::Acquire);
        sent.consumed_seen.store(consumed, Ordering::Relaxed);
        let queued = count - consumed;
        if queued > sent.high_water.load(Ordering::Relaxed) {
            sent.high_water.store(queued, Ordering::Relaxed);
        }
        queued < messages
    }

    /// Writes a message into the ring if it is short enough, the ring has
    /// room and the overflow queue is empty; whether it did.
    fn push_ring(&self, tag: i32, data: &[u8]) -> bool {
        let len = data.len();
        if len > RING_MAX || self.overflowing() {
            return false;
        }
        let sent = &self.sent;
        let head = sent.head.load(Ordering::Relaxed);
        let need = cells(len);
        // A message that would run past the ring's end starts it again.
        let skip = match CELLS - head % CELLS {
            to_end if to_end < need => to_end,
            _ => 0,
        };
        let fits = |tail: u64| head + skip + need - tail <= CELLS;
        let mut tail = sent.tail_seen.load(Ordering::Relaxed);
        if !fits(tail) {
            tail = self.taken.tail.load(Ordering::Acquire);
            sent.tail_seen.store(tail, Ordering::Relaxed);
            if !fits(tail) {
                return false;
            }
        }
        if skip > 0 {
            let cell = self.cell(head);
            cell.words[1].store(SKIP, Ordering::Relaxed);
            cell.words[0].store(head + 1, Ordering::Release);
        }
        self.write(head + skip, tag, data);
        sent.head.store(head + skip + need, Ordering::Relaxed);
        self.count_sent(len);
        true
    }

    fn count_sent(&self, len: usize) {
        bump(&self.sent.messages, 1);
        bump(&self.sent.bytes, len as u64);
    }

    /// Writes a message into the cells from `position` on, the first
    /// one last, and publishes it.
    fn write(&self, position: u64, tag: i32, data: &[u8]) {
        let (first, rest) = data.split_at(data.len().min(FIRST));
        let mut whole = rest.chunks_exact(MORE);
        let mut next = position + 1;
        for chunk in whole.by_ref() {
            let cell = self.cell(next);
            cell.words[0].store(0, Ordering::Relaxed);
            store_run::<{ MORE / 8 }>(&cell.words[1..], chunk);
            next += 1;
        }
        if !whole.remainder().is_empty() {
            let cell = self.cell(next);
            cell.words[0].store(0, Ordering::Relaxed);
            store(&cell.words[1..], whole.remainder());
        }
        let cell = self.cell(position);
        if first.len() == FIRST {
            store_run::<{ FIRST / 8 }>(&cell.words[2..], first);
        } else {
            store(&cell.words[2..], first);
        }
        let meta = u64::from(tag as u32) | (data.len() as u64) << 32;
        cell.words[1].store(meta, Ordering::Relaxed);
        cell.words[0].store(position + 1, Ordering::Release);
    }

    /// Whether a message is waiting to be read off the lane (receiver).
    pub fn ready(&self) -> bool {
        let tail = self.taken.tail.load(Ordering::Relaxed);
        self.published(tail) || self.overflowing()
    }

    /// Whether the overflow queue holds anything.
    pub fn overflowing(&self) -> bool {
        self.overflow.busy.load(Ordering::Acquire)
    }

    /// Whether the cell at `position` starts a published message.
    fn published(&self, position: u64) -> bool {
        self.cell(position).words[0].load(Ordering::Acquire) == position + 1
    }

    /// The tag and length of the next message in the ring, if one is
    /// there (receiver), moving past a skipped end of the ring. The
    /// overflow queue holds only newer ones.
    pub fn peek(&self) -> Option<(i32, usize)> {
        loop {
            let tail = self.taken.tail.load(Ordering::Relaxed);
            if !self.published(tail) {
                return None;
            }
            let meta = self.cell(tail).words[1].load(Ordering::Relaxed);
            if meta == SKIP {
                let end = tail + (CELLS - tail % CELLS);
                self.taken.tail.store(end, Ordering::Release);
                continue;
            }
            return Some((meta as u32 as i32, (meta >> 32) as usize));
        }
    }

    /// Copies the message [`Lane::peek`] saw into `out` (exactly its
    /// length) and moves past it (receiver).
    pub fn take_into(&self, out: &mut [u8]) {
        let tail = self.taken.tail.load(Ordering::Relaxed);
        // Ask for every line of the message at once (loads that depend on
        // nothing, so they are all in flight together); the copy below
        // then finds them arriving instead of fetching one at a time.
        for k in 1..cells(out.len()) {
            std::hint::black_box(self.cell(tail + k).words[0].load(Ordering::Relaxed));
        }
        let (first, rest) = out.split_at_mut(out.len().min(FIRST));
        if first.len() == FIRST {
            load_run::<{ FIRST / 8 }>(&self.cell(tail).words[2..], first);
        } else {
            load(&self.cell(tail).words[2..], first);
        }
        let mut whole = rest.chunks_exact_mut(MORE);
        let mut next = tail + 1;
        for chunk in whole.by_ref() {
            load_run::<{ MORE / 8 }>(&self.cell(next).words[1..], chunk);
            next += 1;
        }
        let last = whole.into_remainder();
        if !last.is_empty() {
            load(&self.cell(next).words[1..], last);
        }
        self.taken
            .tail
            .store(tail + cells(out.len()), Ordering::Release);
        self.note_drained();
    }

    /// Reads the next message off the lane (receiver): the ring first,
    /// then the overflow queue.
    pub fn next(&self) -> Option<Queued> {
        loop {
            if let Some((tag, len)) = self.peek() {
                let data = if len <= INLINE {
                    let mut bytes = [0; INLINE];
                    self.take_into(&mut bytes[..len]);
                    Payload::Inline {
                        len: len as u8,
                        bytes,
                    }
                } else {
                    let mut bytes = vec![0; len];
                    self.take_into(&mut bytes);
                    Payload::Shared(bytes.into())
                };
                return Some(self.queued(tag, data, false));
            }
            if !self.overflowing() {
                return None;
            }
            let mut queue = self.overflow.lock();
            // What the ring got before the overflow queue's first message
            // is older: the lock made it visible, if it was not before.
            if self.published(self.taken.tail.load(Ordering::Relaxed)) {
                continue;
            }
            let (tag, data) = queue.pop_front()?;
            if queue.is_empty() {
                self.overflow.busy.store(false, Ordering::Release);
            }
            self.note_drained();
            return Some(self.queued(tag, data, true));
        }
    }

    fn queued(&self, tag: i32, data: Payload, counted: bool) -> Queued {
        Queued {
            parcel: Parcel {
                src: self.src,
                tag,
                data,
            },
            counted,
        }
    }

    fn note_drained(&self) {
        let drained = bump(&self.taken.drained, 1);
        // At least this many are queued now: every one read so far and
        // not yet taken.
        let queued = drained - self.taken.consumed.load(Ordering::Relaxed);
        if queued > self.taken.high_water.load(Ordering::Relaxed) {
            self.taken.high_water.store(queued, Ordering::Relaxed);
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
