//! A rank's mailbox: a [`Lane`] per sender, matched by source and tag.
//!
//! Messages are taken once out of the sender's memory and copied once into
//! the receiver's: one of at most 1 KiB travels inside its lane's ring, a
//! longer one as `Bytes` in the lane's overflow queue (see [`lane`]).
//! Bounds: each sender has at most [`Bounds::messages`] messages queued in
//! a mailbox, and the messages in overflow queues hold at most
//! [`Bounds::bytes`] bytes over all senders (an empty one admits any one
//! message, so a message up to the cap can always be delivered). A sender
//! past either waits for room, or gets `WOULD_BLOCK`/`TIMED_OUT` per its
//! timeout. Order: of the messages from one sender that match a receive,
//! the oldest is taken; a receive from `ANY` source takes the senders in
//! turn.
//!
//! Only the owner receives. What it reads off a lane without taking (the
//! message did not match) waits in its `unexpected` list, which is looked
//! at first; it still counts against its sender's room until it is taken.
//!
//! Membership events (a rank joined or left) wait in a queue of their own,
//! beside the messages: they never take a message's room, `ANY` never
//! matches them (only the tag [`MEMBERSHIP`] does), and past
//! [`MAX_EVENTS`] the oldest is dropped (they are hints; the job's member
//! list is the truth).
//!
//! [`lane`]: super::lane

mod receive;
mod send;
#[cfg(test)]
mod tests;
mod wait;

pub use super::lane::{Data, Parcel, Payload};
pub use receive::{Delivered, OnLane};

use super::MeshError;
use super::lane::{Lane, Padded, Queued};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::Notify;
use wait::Light;
use weft_abi::mesh::{ANY, MEMBERSHIP, PARENT};

/// Membership events kept per mailbox; past it the oldest go.
pub const MAX_EVENTS: usize = 256;

/// Senders a mailbox can have: every rank, and the parent last.
const SENDERS: usize = super::job::MAX_RANKS as usize + 1;
/// Lanes are kept in chunks of this many senders, each allocated when one
/// of them first sends.
const CHUNK: usize = 64;
const CHUNKS: usize = SENDERS.div_ceil(CHUNK);

/// One message in flight.
#[derive(Clone, Debug)]
pub struct Message {
    /// The sender: a rank, or [`weft_abi::mesh::PARENT`].
    pub src: i32,
    /// The tag, `0..=i32::MAX`.
    pub tag: i32,
    /// The payload.
    pub data: Bytes,
}

impl Message {
    fn matches(&self, src: i32, tag: i32) -> bool {
        (src == ANY || src == self.src) && (tag == ANY || tag == self.tag)
    }

    /// A membership event about `rank`: `joined` or left, at `epoch`.
    pub fn membership(rank: u32, joined: bool, epoch: u64) -> Message {
        let mut data = Vec::with_capacity(12);
        data.extend_from_slice(&u32::from(joined).to_le_bytes());
        data.extend_from_slice(&epoch.to_le_bytes());
        Message {
            src: rank as i32,
            tag: MEMBERSHIP,
            data: data.into(),
        }
    }
}

/// How much one mailbox may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Messages queued at most from each sender.
    pub messages: usize,
    /// Bytes queued at most in overflow queues, over every sender (an
    /// empty mailbox admits any one message).
    pub bytes: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            messages: weft_abi::mesh::MAILBOX_MESSAGES,
            bytes: weft_abi::mesh::MAILBOX_BYTES,
        }
    }
}

impl From<Message> for Parcel {
    fn from(message: Message) -> Parcel {
        Parcel {
            src: message.src,
            tag: message.tag,
            data: Payload::Shared(message.data),
        }
    }
}

impl From<Parcel> for Message {
    fn from(parcel: Parcel) -> Message {
        Message {
            src: parcel.src,
            tag: parcel.tag,
            data: parcel.data.into_bytes(),
        }
    }
}

impl Parcel {
    fn matches(&self, src: i32, tag: i32) -> bool {
        (src == ANY || src == self.src) && (tag == ANY || tag == self.tag)
    }
}

/// What a receive found.
#[derive(Debug)]
pub enum Received {
    /// The message, taken out of the mailbox.
    Message(Parcel),
    /// The oldest matching message is longer than the buffer; it stays
    /// queued.
    TooLong {
        /// Its sender.
        src: i32,
        /// Its tag.
        tag: i32,
        /// Its length.
        len: usize,
    },
}

/// The receiver's side.
#[derive(Debug, Default)]
struct Consumer {
    /// Every lane, as of `lanes_seen`.
    lanes: Vec<Arc<Lane>>,
    lanes_seen: u64,
    /// Messages read off their lanes that no receive has matched yet,
    /// in the order read.
    unexpected: VecDeque<Queued>,
    /// The lane a receive from `ANY` looks at first.
    turn: usize,
    /// `Mailbox::events_arrived`, as last seen.
    events_seen: u64,
}

type Chunk = [OnceLock<Arc<Lane>>; CHUNK];

/// A bounded mailbox.
#[derive(Debug)]
pub struct Mailbox {
    bounds: Bounds,
    /// A lane per sender that has sent here.
    lanes: [OnceLock<Box<Chunk>>; CHUNKS],
    /// Lanes made so far: the receiver looks for new ones when it moves.
    lanes_made: AtomicU64,
    /// The owner has ended: nothing more is accepted.
    closed: AtomicBool,
    /// ... and what was queued is gone.
    dropped: AtomicBool,
    /// Bytes in overflow queues (and read off them, not yet taken).
    overflow_bytes: AtomicUsize,
    /// Notified when a message arrives or the mailbox closes.
    arrived: Notify,
    /// Receivers parked on `arrived`: a sender notifies only when there is
    /// one (a `notify_waiters` takes the `Notify`'s own lock).
    receivers: AtomicUsize,
    /// Notified when room is made or the mailbox closes.
    room: Notify,
    /// Senders parked on `room`.
    senders: AtomicUsize,
    /// Whether wakers skip their fence (see [`Light`]).
    light: Light,
    /// How many messages the owner has set aside (`Consumer::unexpected`):
    /// written under its lock, read without.
    set_aside: AtomicUsize,
    /// Membership events, oldest first, and how many have arrived.
    events: Mutex<VecDeque<Message>>,
    events_arrived: AtomicU64,
    consumer: Padded<Mutex<Consumer>>,
}

impl Mailbox {
    /// An empty mailbox holding at most `bounds`.
    pub fn new(bounds: Bounds) -> Mailbox {
        Mailbox {
            bounds,
            lanes: std::array::from_fn(|_| OnceLock::new()),
            lanes_made: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            dropped: AtomicBool::new(false),
            overflow_bytes: AtomicUsize::new(0),
            arrived: Notify::new(),
            receivers: AtomicUsize::new(0),
            room: Notify::new(),
            senders: AtomicUsize::new(0),
            events: Mutex::new(VecDeque::new()),
            events_arrived: AtomicU64::new(0),
            set_aside: AtomicUsize::new(0),
            light: Light::default(),
            consumer: Padded::default(),
        }
    }

    fn consumer(&self) -> std::sync::MutexGuard<'_, Consumer> {
        self.consumer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn events(&self) -> std::sync::MutexGuard<'_, VecDeque<Message>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where `src`'s lane lives.
    fn place(src: i32) -> Result<(usize, usize), MeshError> {
        let index = match src {
            PARENT => SENDERS - 1,
            src if src >= 0 && (src as usize) < SENDERS - 1 => src as usize,
            src => return Err(MeshError::Invalid(format!("no sender {src}"))),
        };
        Ok((index / CHUNK, index % CHUNK))
    }

    /// `src`'s lane, if it has sent here.
    fn lane(&self, src: i32) -> Option<&Arc<Lane>> {
        let (chunk, index) = Self::place(src).ok()?;
        self.lanes[chunk].get()?[index].get()
    }

    /// `src`'s lane, if it has sent here, to keep.
    pub fn lane_of(&self, src: i32) -> Option<Arc<Lane>> {
        self.lane(src).cloned()
    }

    /// `src`'s lane, made on its first message.
    fn lane_for(&self, src: i32) -> Result<&Arc<Lane>, MeshError> {
        let (chunk, index) = Self::place(src)?;
        let chunk =
            self.lanes[chunk].get_or_init(|| Box::new(std::array::from_fn(|_| OnceLock::new())));
        let mut made = false;
        let lane = chunk[index].get_or_init(|| {
            made = true;
            Arc::new(Lane::new(src))
        });
        if made {
            self.lanes_made.fetch_add(1, Ordering::Release);
        }
        Ok(lane)
    }

    /// Brings the receiver's list of lanes up to date; whether it changed.
    fn refresh(&self, consumer: &mut Consumer) -> bool {
        let made = self.lanes_made.load(Ordering::Acquire);
        if made == consumer.lanes_seen {
            return false;
        }
        consumer.lanes = self
            .lanes
            .iter()
            .filter_map(OnceLock::get)
            .flat_map(|chunk| chunk.iter().filter_map(OnceLock::get))
            .cloned()
            .collect();
        consumer.lanes_seen = made;
        true
    }

    /// Lets the mailbox's wakers skip their fence, where the process can
    /// issue the barrier that then orders its waiters (see [`Light`]): for
    /// an owner on a thread of its own, called before it starts.
    pub fn lighten(&self) {
        if self.light.turn_on() {
            self.room.notify_waiters();
            self.arrived.notify_waiters();
        }
    }

    /// Wakes a waiting receiver to look again (a sender has ended).
    pub fn wake(&self) {
        self.arrived.notify_waiters();
    }

    /// Refuses new messages (the owner ended): waiting senders get
    /// [`MeshError::PeerGone`]. With `drop_queued`, the queued messages are
    /// freed; without, they can still be taken, and after them a receive
    /// gets [`MeshError::PeerGone`].
    pub fn close(&self, drop_queued: bool) {
        self.closed.store(true, Ordering::Release);
        if drop_queued {
            self.dropped.store(true, Ordering::Release);
            let mut consumer = self.consumer();
            consumer.unexpected = VecDeque::new();
            self.set_aside.store(0, Ordering::Relaxed);
            self.refresh(&mut consumer);
            for lane in &consumer.lanes {
                lane.clear();
            }
            consumer.lanes = Vec::new();
            drop(consumer);
            *self.events() = VecDeque::new();
            self.overflow_bytes.store(0, Ordering::Release);
        }
        self.room.notify_waiters();
        self.arrived.notify_waiters();
    }

    fn each_lane(&self) -> impl Iterator<Item = &Arc<Lane>> {
        self.lanes
            .iter()
            .filter_map(OnceLock::get)
            .flat_map(|chunk| chunk.iter().filter_map(OnceLock::get))
    }

    /// Messages and bytes queued now.
    pub fn depth(&self) -> (usize, usize) {
        if self.dropped.load(Ordering::Acquire) {
            return (0, 0);
        }
        let (messages, bytes) = self
            .each_lane()
            .map(|lane| lane.depth())
            .fold((0, 0), |(m, b), (lm, lb)| (m + lm, b + lb));
        (messages as usize, bytes as usize)
    }

    /// The most messages queued at once from one sender so far.
    pub fn high_water(&self) -> u64 {
        self.each_lane()
            .map(|lane| lane.high_water())
            .max()
            .unwrap_or(0)
    }

    /// The bounds.
    pub fn bounds(&self) -> Bounds {
        self.bounds
    }
}
