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

use super::MeshError;
pub use super::lane::{Data, Parcel, Payload};
use super::lane::{Full, Lane, Padded, Queued};
use super::placement;
use crate::network::Wait;
use crate::runtime::Cancel;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use tokio::sync::Notify;
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

    /// Queues `parcel` if there is room now.
    pub fn try_push(&self, parcel: Parcel) -> Result<(), (Parcel, MeshError)> {
        let Parcel { src, tag, data } = parcel;
        self.try_send(src, tag, Data::Held(data))
            .map_err(|(data, error)| {
                let data = data.hold();
                (Parcel { src, tag, data }, error)
            })
    }

    /// Queues a message from `src` if there is room now: borrowed bytes
    /// that fit the lane's ring go straight into it.
    pub fn try_send<'a>(
        &self,
        src: i32,
        tag: i32,
        data: Data<'a>,
    ) -> Result<(), (Data<'a>, MeshError)> {
        if self.closed.load(Ordering::Acquire) {
            return Err((data, MeshError::PeerGone));
        }
        let lane = match self.lane_for(src) {
            Ok(lane) => lane,
            Err(error) => return Err((data, error)),
        };
        let admit = |len: usize| {
            let before = self.overflow_bytes.fetch_add(len, Ordering::AcqRel);
            let fits = before == 0 || before + len <= self.bounds.bytes;
            if !fits {
                self.overflow_bytes.fetch_sub(len, Ordering::AcqRel);
            }
            fits
        };
        let messages = self.bounds.messages.max(1) as u64;
        match lane.push(tag, data, messages, admit) {
            Ok(()) => {
                wake(&self.arrived, &self.receivers);
                Ok(())
            }
            Err((data, Full::Credit | Full::Bytes)) => Err((data, MeshError::WouldBlock)),
        }
    }

    /// Queues `message`, waiting for room per `wait`; a fired `cancel` ends
    /// the wait with [`MeshError::Cancelled`].
    pub async fn push(
        &self,
        message: Parcel,
        wait: Wait,
        cancel: &Cancel,
    ) -> Result<(), MeshError> {
        // Fast path: room now (the usual case) takes no lock but the
        // sender's own, and registers no waiter anywhere.
        if cancel.is_cancelled() {
            return Err(MeshError::Cancelled);
        }
        let mut message = match self.try_push(message) {
            Ok(()) => return Ok(()),
            Err((back, MeshError::WouldBlock)) if !matches!(wait, Wait::No) => Some(back),
            Err((_, error)) => return Err(error),
        };
        // Poll for room first (see `placement`): a receiver on another
        // core usually makes some within microseconds. A look that finds
        // nothing taken since the last reads one counter (two when the
        // mailbox's bytes are what is full).
        let src = message.as_ref().expect("not yet queued").src;
        let progress = || {
            let taken = self.lane(src).map_or(0, |lane| lane.consumed_count());
            (taken, self.overflow_bytes.load(Ordering::Acquire))
        };
        let started = Instant::now();
        let mut seen = None;
        let polled = placement::before_parking(
            || {
                let now = progress();
                if seen == Some(now) && !self.closed.load(Ordering::Relaxed) {
                    return None;
                }
                seen = Some(now);
                match self.try_push(message.take().expect("put back")) {
                    Ok(()) => Some(Ok(())),
                    Err((back, MeshError::WouldBlock)) => {
                        message = Some(back);
                        None
                    }
                    Err((_, error)) => Some(Err(error)),
                }
            },
            cancel,
        )
        .await;
        if let Some(done) = polled {
            return done;
        }
        let mut message = message.expect("not yet queued");
        let attempt = async move {
            let mut parked = None;
            loop {
                let room = self.room.notified();
                tokio::pin!(room);
                room.as_mut().enable();
                parked.get_or_insert_with(|| Parked::on(&self.senders));
                match self.try_push(message) {
                    Ok(()) => return Ok(()),
                    Err((back, MeshError::WouldBlock)) => message = back,
                    Err((_, error)) => return Err(error),
                }
                room.await;
            }
        };
        waiting(attempt, wait, started, cancel).await
    }

    /// Queues a membership event (dropping the oldest past
    /// [`MAX_EVENTS`]); nothing when the mailbox is closed.
    pub fn push_event(&self, event: Message) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let mut events = self.events();
        if events.len() == MAX_EVENTS {
            events.pop_front();
        }
        events.push_back(event);
        self.events_arrived.fetch_add(1, Ordering::Release);
        drop(events);
        wake(&self.arrived, &self.receivers);
    }

    /// What a receive finds when nothing matches.
    fn nothing<T>(&self) -> Result<T, MeshError> {
        Err(if self.closed.load(Ordering::Acquire) {
            MeshError::PeerGone
        } else {
            MeshError::WouldBlock
        })
    }

    /// Takes the oldest message matching `src` and `tag` if it is at most
    /// `cap` bytes long (with `tag` [`MEMBERSHIP`]: the oldest event).
    pub fn try_take(&self, src: i32, tag: i32, cap: usize) -> Result<Received, MeshError> {
        if tag == MEMBERSHIP {
            return self.take_event(src, cap);
        }
        self.take_from(&mut self.consumer(), src, tag, cap)
    }

    /// [`Mailbox::try_take`] straight into `out` (its length is the
    /// receive's `cap`): a message in a lane's ring goes from the ring into
    /// `out` with nothing in between.
    ///
    /// The owner's receive: only the mailbox's owner calls it, and no other
    /// receive runs on the mailbox meanwhile (a rank's instance, or a
    /// controller module, receives one call at a time; an external parent
    /// receives through [`Mailbox::take`] alone). That lets the usual case
    /// take no lock.
    pub fn try_take_into(
        &self,
        src: i32,
        tag: i32,
        out: &mut [u8],
    ) -> Result<Delivered, MeshError> {
        if tag == MEMBERSHIP {
            return self
                .take_event(src, out.len())
                .map(|r| Delivered::from(r, out));
        }
        // The usual case: nothing set aside (so the lane's next message is
        // the oldest from `src`), and that message is in the ring. Without
        // a lock: the owner alone reads the lane.
        if src != ANY
            && self.set_aside.load(Ordering::Relaxed) == 0
            && !self.dropped.load(Ordering::Acquire)
            && let Some(lane) = self.lane(src)
        {
            match lane.peek() {
                Some((found, len)) if (tag == ANY || tag == found) && len <= out.len() => {
                    lane.take_into(&mut out[..len]);
                    lane.consumed(len);
                    wake(&self.room, &self.senders);
                    return Ok(Delivered::Copied {
                        src,
                        tag: found,
                        len,
                        buffer: None,
                    });
                }
                // Nothing on the lane at all.
                None if !lane.ready() => return self.nothing(),
                _ => {}
            }
        }
        let cap = out.len();
        self.take_from(&mut self.consumer(), src, tag, cap)
            .map(|r| Delivered::from(r, out))
    }

    fn take_event(&self, src: i32, cap: usize) -> Result<Received, MeshError> {
        let mut events = self.events();
        let Some(index) = events.iter().position(|m| m.matches(src, MEMBERSHIP)) else {
            drop(events);
            return self.nothing();
        };
        let found = &events[index];
        if found.data.len() > cap {
            return Ok(Received::TooLong {
                src: found.src,
                tag: found.tag,
                len: found.data.len(),
            });
        }
        let event = events.remove(index).expect("index is in range");
        Ok(Received::Message(event.into()))
    }

    fn take_from(
        &self,
        consumer: &mut Consumer,
        src: i32,
        tag: i32,
        cap: usize,
    ) -> Result<Received, MeshError> {
        let taken = self.take_from_lanes(consumer, src, tag, cap);
        self.set_aside
            .store(consumer.unexpected.len(), Ordering::Relaxed);
        taken
    }

    fn take_from_lanes(
        &self,
        consumer: &mut Consumer,
        src: i32,
        tag: i32,
        cap: usize,
    ) -> Result<Received, MeshError> {
        if self.dropped.load(Ordering::Acquire) {
            return Err(MeshError::PeerGone);
        }
        self.refresh(consumer);
        // What was read off a lane before is older than what is still on
        // it.
        if let Some(index) = consumer
            .unexpected
            .iter()
            .position(|q| q.parcel.matches(src, tag))
        {
            let found = &consumer.unexpected[index].parcel;
            if found.data.len() > cap {
                return Ok(too_long(found));
            }
            let queued = consumer
                .unexpected
                .remove(index)
                .expect("index is in range");
            let lane = self.lane(queued.parcel.src).expect("it came off its lane");
            return Ok(self.taken(lane, queued));
        }
        let Consumer {
            lanes,
            unexpected,
            turn,
            ..
        } = consumer;
        if src != ANY {
            let Some(lane) = self.lane(src) else {
                return self.nothing();
            };
            return match self.take_off(lane, unexpected, tag, cap) {
                Some(received) => Ok(received),
                None => self.nothing(),
            };
        }
        let count = lanes.len();
        for step in 0..count {
            let index = (*turn + step) % count;
            if let Some(received) = self.take_off(&lanes[index], unexpected, tag, cap) {
                *turn = (index + 1) % count;
                return Ok(received);
            }
        }
        self.nothing()
    }

    /// Reads `lane` until a message matches `tag` (setting aside the ones
    /// that do not); `None` when the lane runs out first.
    fn take_off(
        &self,
        lane: &Lane,
        unexpected: &mut VecDeque<Queued>,
        tag: i32,
        cap: usize,
    ) -> Option<Received> {
        while let Some(queued) = lane.next() {
            if !queued.parcel.matches(ANY, tag) {
                unexpected.push_back(queued);
                continue;
            }
            if queued.parcel.data.len() > cap {
                let answer = too_long(&queued.parcel);
                // It stays queued, ahead of everything still on its lane.
                unexpected.push_back(queued);
                return Some(answer);
            }
            return Some(self.taken(lane, queued));
        }
        None
    }

    /// Hands a message read off `lane` over to the receiver: its room
    /// goes back.
    fn taken(&self, lane: &Lane, queued: Queued) -> Received {
        let Queued { parcel, counted } = queued;
        let len = parcel.data.len();
        lane.consumed(len);
        if counted {
            self.overflow_bytes.fetch_sub(len, Ordering::AcqRel);
        }
        wake(&self.room, &self.senders);
        Received::Message(parcel)
    }

    /// Whether a receive from `src` with `tag` may find something it did
    /// not find last time (a receiver's cheap look while it waits).
    fn news(&self, consumer: &mut Consumer, src: i32, tag: i32) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return true;
        }
        if tag == MEMBERSHIP {
            let arrived = self.events_arrived.load(Ordering::Acquire);
            let new = arrived != consumer.events_seen;
            consumer.events_seen = arrived;
            return new;
        }
        if self.refresh(consumer) {
            return true;
        }
        match src {
            ANY => consumer.lanes.iter().any(|lane| lane.ready()),
            src => self.lane(src).is_some_and(|lane| lane.ready()),
        }
    }

    /// [`Mailbox::try_take`], waiting per `wait` for a match to arrive.
    /// When nothing matches and `gone()` says no match can come any more
    /// (the one sender named has ended), the answer is
    /// [`MeshError::PeerGone`]; [`Mailbox::wake`] makes a waiter ask again.
    pub async fn take(
        &self,
        src: i32,
        tag: i32,
        cap: usize,
        wait: Wait,
        cancel: &Cancel,
        gone: impl Fn() -> bool,
    ) -> Result<Received, MeshError> {
        // Fast path: a match is already here.
        if cancel.is_cancelled() {
            return Err(MeshError::Cancelled);
        }
        match self.try_take(src, tag, cap) {
            Err(MeshError::WouldBlock) if !matches!(wait, Wait::No) => {}
            Err(MeshError::WouldBlock) if gone() => return Err(MeshError::PeerGone),
            other => return other,
        }
        // First look again for a while (see `placement`): a peer on another
        // core usually answers within microseconds, sooner than a parked
        // thread can be woken. A look reads the next cell of the lanes it
        // may take from (its owner's lock is never contended); polling
        // registers nothing (the cancel token and the clock join in only
        // if it parks).
        let started = Instant::now();
        let polled = placement::before_parking(
            || {
                let mut consumer = self.consumer();
                if !self.news(&mut consumer, src, tag) {
                    return None;
                }
                let found = if tag == MEMBERSHIP {
                    drop(consumer);
                    self.take_event(src, cap)
                } else {
                    self.take_from(&mut consumer, src, tag, cap)
                };
                match found {
                    // Gone: the loop below answers.
                    Err(MeshError::WouldBlock) => None,
                    other => Some(other),
                }
            },
            cancel,
        )
        .await;
        if let Some(answer) = polled {
            return answer;
        }
        let attempt = async {
            let mut parked = None;
            loop {
                // Listen first, then count as parked, then look: a sender
                // that sees the count notifies a listener already there.
                let arrived = self.arrived.notified();
                tokio::pin!(arrived);
                arrived.as_mut().enable();
                parked.get_or_insert_with(|| Parked::on(&self.receivers));
                match self.try_take(src, tag, cap) {
                    Err(MeshError::WouldBlock) if gone() => return Err(MeshError::PeerGone),
                    Err(MeshError::WouldBlock) => {}
                    other => return other,
                }
                arrived.await;
            }
        };
        waiting(attempt, wait, started, cancel).await
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

/// What a receive into the caller's buffer found.
#[derive(Debug)]
pub enum Delivered {
    /// The message, copied into the buffer; its buffer, when it had one,
    /// for reuse.
    Copied {
        src: i32,
        tag: i32,
        len: usize,
        buffer: Option<Bytes>,
    },
    /// As [`Received::TooLong`]: it stays queued.
    TooLong { src: i32, tag: i32, len: usize },
}

impl Delivered {
    /// `received`, copied into `out`.
    fn from(received: Received, out: &mut [u8]) -> Delivered {
        match received {
            Received::Message(parcel) => {
                let data = parcel.data.as_slice();
                out[..data.len()].copy_from_slice(data);
                Delivered::Copied {
                    src: parcel.src,
                    tag: parcel.tag,
                    len: data.len(),
                    buffer: match parcel.data {
                        Payload::Shared(buffer) => Some(buffer),
                        Payload::Inline { .. } => None,
                    },
                }
            }
            Received::TooLong { src, tag, len } => Delivered::TooLong { src, tag, len },
        }
    }
}

fn too_long(parcel: &Parcel) -> Received {
    Received::TooLong {
        src: parcel.src,
        tag: parcel.tag,
        len: parcel.data.len(),
    }
}

/// Wakes whoever is parked on `notify`, if anyone is: `parked` counts
/// them. The caller has just published a change; a waiter listens, then
/// counts itself, then looks. With a fence on both sides, either this
/// sees the count (and the waiter is listening by then), or the waiter's
/// look sees the change.
fn wake(notify: &Notify, parked: &AtomicUsize) {
    fence(Ordering::SeqCst);
    if parked.load(Ordering::Relaxed) > 0 {
        notify.notify_waiters();
    }
}

/// Counts a waiter as parked while it lives.
struct Parked<'a>(&'a AtomicUsize);

impl<'a> Parked<'a> {
    fn on(count: &'a AtomicUsize) -> Parked<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        Parked(count)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs `attempt` under the timeout of `wait` (counted from `started`),
/// ending early when `cancel` fires.
async fn waiting<T>(
    attempt: impl Future<Output = Result<T, MeshError>>,
    wait: Wait,
    started: Instant,
    cancel: &Cancel,
) -> Result<T, MeshError> {
    let bounded = async {
        match wait {
            Wait::For(limit) => {
                let deadline = tokio::time::Instant::from_std(started + limit);
                tokio::time::timeout_at(deadline, attempt)
                    .await
                    .unwrap_or(Err(MeshError::TimedOut))
            }
            Wait::No | Wait::Forever => attempt.await,
        }
    };
    tokio::select! {
        biased;
        () = cancel.cancelled() => Err(MeshError::Cancelled),
        result = bounded => result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn message(src: i32, tag: i32, data: &'static [u8]) -> Parcel {
        Parcel {
            src,
            tag,
            data: Bytes::from_static(data).into(),
        }
    }

    #[test]
    fn matches_the_oldest_message_by_source_and_tag() {
        let mailbox = Mailbox::new(Bounds::default());
        mailbox.try_push(message(1, 5, b"a")).unwrap();
        mailbox.try_push(message(2, 5, b"b")).unwrap();
        mailbox.try_push(message(1, 6, b"c")).unwrap();
        let take = |src, tag| match mailbox.try_take(src, tag, 10).unwrap() {
            Received::Message(m) => m.data.into_bytes(),
            other => panic!("{other:?}"),
        };
        assert_eq!(take(ANY, 6), "c");
        assert_eq!(take(2, ANY), "b");
        assert_eq!(take(ANY, ANY), "a");
        assert!(matches!(
            mailbox.try_take(ANY, ANY, 10),
            Err(MeshError::WouldBlock)
        ));
    }

    #[test]
    fn a_long_message_stays_queued() {
        let mailbox = Mailbox::new(Bounds::default());
        mailbox.try_push(message(3, 1, b"hello")).unwrap();
        assert!(matches!(
            mailbox.try_take(ANY, ANY, 2),
            Ok(Received::TooLong {
                src: 3,
                tag: 1,
                len: 5
            })
        ));
        assert!(matches!(
            mailbox.try_take(3, 1, 5),
            Ok(Received::Message(_))
        ));
    }

    #[test]
    fn is_bounded_in_messages_per_sender_and_in_bytes() {
        let mailbox = Mailbox::new(Bounds {
            messages: 2,
            bytes: 2000,
        });
        let long = |len| Bytes::from(vec![7; len]);
        let push = |src, data: Bytes| {
            mailbox.try_push(Parcel {
                src,
                tag: 0,
                data: data.into(),
            })
        };
        // One message always fits an empty mailbox, even past the bytes.
        push(0, long(3000)).unwrap();
        assert!(matches!(
            push(1, long(1500)),
            Err((_, MeshError::WouldBlock))
        ));
        // Messages up to 1 KiB travel in their lane's ring: only their
        // number is bounded, per sender...
        push(1, long(4)).unwrap();
        push(1, long(1024)).unwrap();
        assert!(matches!(push(1, long(4)), Err((_, MeshError::WouldBlock))));
        // ... unless they queue behind a long one from the same sender.
        assert!(matches!(push(0, long(4)), Err((_, MeshError::WouldBlock))));
        assert_eq!(mailbox.depth(), (3, 4028));
        mailbox.try_take(0, ANY, 5000).unwrap();
        push(0, long(1500)).unwrap();
        assert!(matches!(
            push(2, long(1500)),
            Err((_, MeshError::WouldBlock))
        ));
        push(2, long(300)).unwrap();
        assert_eq!(mailbox.depth(), (4, 2828));
        assert_eq!(mailbox.high_water(), 2);
        mailbox.close(true);
        assert_eq!(mailbox.depth(), (0, 0));
        assert!(matches!(push(0, long(1)), Err((_, MeshError::PeerGone))));
        assert!(matches!(
            mailbox.try_take(ANY, ANY, 200),
            Err(MeshError::PeerGone)
        ));
    }

    /// Message `n` of a sequence: its number in the first 4 bytes, and a
    /// length that cycles through ring-sized and overflow-sized ones.
    fn numbered(src: i32, n: u32) -> Parcel {
        let len = [4, 0, 48, 49, 104, 105, 1024, 1025, 3000, 8][n as usize % 10].max(4);
        let mut data = vec![n as u8; len];
        data[..4].copy_from_slice(&n.to_le_bytes());
        let data = Bytes::from(data);
        Parcel {
            src,
            tag: (n % 3) as i32,
            // Small ones as the ABI hands them over, in place.
            data: Payload::inline(&data).unwrap_or(Payload::Shared(data)),
        }
    }

    fn number(message: &Parcel) -> u32 {
        let data = message.data.as_slice();
        let n = u32::from_le_bytes(data[..4].try_into().unwrap());
        assert_eq!(data.len(), numbered(0, n).data.len());
        assert!(data[4..].iter().all(|&b| b == n as u8));
        n
    }

    #[test]
    fn keeps_each_senders_order_across_the_ring_and_the_overflow_queue() {
        let mailbox = Mailbox::new(Bounds::default());
        // More than a ring holds, small and long mixed, from two senders.
        for n in 0..200 {
            mailbox.try_push(numbered(1, n)).unwrap();
            mailbox.try_push(numbered(2, n)).unwrap();
        }
        // Tag 2 from sender 1 first: the others read on the way wait.
        let mut got = Vec::new();
        while let Ok(Received::Message(m)) = mailbox.try_take(1, 2, 4000) {
            got.push(number(&m));
        }
        assert_eq!(got, (0..200).filter(|n| n % 3 == 2).collect::<Vec<_>>());
        // Then the rest, from ANY: each sender's in order.
        let mut by_sender = [Vec::new(), Vec::new()];
        while let Ok(Received::Message(m)) = mailbox.try_take(ANY, ANY, 4000) {
            by_sender[m.src as usize - 1].push(number(&m));
        }
        assert_eq!(
            by_sender[0],
            (0..200).filter(|n| n % 3 != 2).collect::<Vec<_>>()
        );
        assert_eq!(by_sender[1], (0..200).collect::<Vec<_>>());
        assert_eq!(mailbox.depth(), (0, 0));
    }

    #[test]
    fn senders_on_other_threads_arrive_whole_and_in_order() {
        const EACH: u32 = 20_000;
        let mailbox = std::sync::Arc::new(Mailbox::new(Bounds {
            messages: 16,
            bytes: 8192,
        }));
        let senders: Vec<_> = (0..2)
            .map(|src| {
                let mailbox = mailbox.clone();
                std::thread::spawn(move || {
                    for n in 0..EACH {
                        let mut message = numbered(src, n);
                        let started = Instant::now();
                        loop {
                            match mailbox.try_push(message) {
                                Ok(()) => break,
                                Err((back, MeshError::WouldBlock)) => message = back,
                                Err((_, error)) => panic!("{error}"),
                            }
                            assert!(started.elapsed() < Duration::from_secs(10));
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let mut next = [0u32; 2];
        let started = Instant::now();
        while next != [EACH; 2] {
            match mailbox.try_take(ANY, ANY, 4000) {
                Ok(Received::Message(m)) => {
                    let src = m.src as usize;
                    assert_eq!(number(&m), next[src]);
                    next[src] += 1;
                }
                Ok(other) => panic!("{other:?}"),
                Err(MeshError::WouldBlock) => std::hint::spin_loop(),
                Err(error) => panic!("{error}"),
            }
            assert!(started.elapsed() < Duration::from_secs(30), "{next:?}");
        }
        for sender in senders {
            sender.join().unwrap();
        }
        assert!(mailbox.high_water() <= 16);
        assert_eq!(mailbox.depth(), (0, 0));
    }

    #[test]
    fn membership_events_are_apart_from_messages_and_bounded() {
        let mailbox = Mailbox::new(Bounds {
            messages: 1,
            bytes: 100,
        });
        mailbox.try_push(message(0, 0, b"m")).unwrap();
        for epoch in 0..MAX_EVENTS as u64 + 3 {
            mailbox.push_event(Message::membership(4, true, epoch));
        }
        // Events take no message room, and ANY does not match them.
        assert_eq!(mailbox.depth(), (1, 1));
        assert!(matches!(
            mailbox.try_take(ANY, ANY, 10),
            Ok(Received::Message(m)) if m.data.as_slice() == b"m"
        ));
        assert!(matches!(
            mailbox.try_take(ANY, ANY, 10),
            Err(MeshError::WouldBlock)
        ));
        // The oldest three were dropped.
        let Ok(Received::Message(first)) = mailbox.try_take(ANY, MEMBERSHIP, 12) else {
            panic!("no event");
        };
        assert_eq!(first.src, 4);
        assert_eq!(&first.data.as_slice()[..4], &1u32.to_le_bytes());
        assert_eq!(&first.data.as_slice()[4..], &3u64.to_le_bytes());
    }

    #[test]
    fn a_receive_into_a_buffer_takes_from_the_ring_in_order_across_its_wraps() {
        const COUNT: u32 = 20_000;
        let mailbox = std::sync::Arc::new(Mailbox::new(Bounds {
            messages: 64,
            bytes: 1 << 20,
        }));
        let sender = {
            let mailbox = mailbox.clone();
            std::thread::spawn(move || {
                for n in 0..COUNT {
                    let message = numbered(3, n);
                    let data = message.data.as_slice();
                    let started = Instant::now();
                    // Borrowed, as the ABI sends: into the ring when it fits.
                    while let Err((_, error)) =
                        mailbox.try_send(3, message.tag, Data::Borrowed(data))
                    {
                        assert!(matches!(error, MeshError::WouldBlock));
                        assert!(started.elapsed() < Duration::from_secs(10));
                        std::thread::yield_now();
                    }
                }
            })
        };
        let mut buf = vec![0; 4000];
        let started = Instant::now();
        let mut n = 0;
        while n < COUNT {
            // Now and then by tag (which sets the others aside), else any.
            let tag = if n % 7 == 0 { (n % 3) as i32 } else { ANY };
            match mailbox.try_take_into(3, tag, &mut buf) {
                Ok(Delivered::Copied { src, tag, len, .. }) => {
                    let got = Parcel {
                        src,
                        tag,
                        data: Payload::Shared(Bytes::copy_from_slice(&buf[..len])),
                    };
                    assert_eq!(number(&got), n);
                    assert_eq!(tag, (n % 3) as i32);
                    n += 1;
                }
                Ok(other) => panic!("{other:?}"),
                Err(MeshError::WouldBlock) => std::hint::spin_loop(),
                Err(error) => panic!("{error}"),
            }
            assert!(started.elapsed() < Duration::from_secs(30), "{n}");
        }
        sender.join().unwrap();
        assert_eq!(mailbox.depth(), (0, 0));
    }

    #[test]
    fn a_receive_into_a_short_buffer_leaves_the_message_and_a_closed_box_drains() {
        let mailbox = Mailbox::new(Bounds::default());
        let send = |tag, data: &'static [u8]| mailbox.try_send(5, tag, Data::Borrowed(data));
        send(1, b"hello").unwrap();
        send(2, b"world!").unwrap();
        let mut small = [0; 2];
        assert!(matches!(
            mailbox.try_take_into(5, ANY, &mut small),
            Ok(Delivered::TooLong {
                src: 5,
                tag: 1,
                len: 5
            })
        ));
        // Still first in line, by tag or not.
        let mut buf = [0; 16];
        assert!(matches!(
            mailbox.try_take_into(5, 1, &mut buf),
            Ok(Delivered::Copied { tag: 1, len: 5, .. })
        ));
        assert_eq!(&buf[..5], b"hello");
        // Closed: what is queued can still be taken, then nothing can.
        mailbox.close(false);
        assert!(matches!(send(3, b"late"), Err((_, MeshError::PeerGone))));
        assert!(matches!(
            mailbox.try_take_into(5, ANY, &mut buf),
            Ok(Delivered::Copied { tag: 2, len: 6, .. })
        ));
        assert_eq!(&buf[..6], b"world!");
        assert!(matches!(
            mailbox.try_take_into(5, ANY, &mut buf),
            Err(MeshError::PeerGone)
        ));
        // Closed and dropped: a message left in a ring is gone too.
        let dropped = Mailbox::new(Bounds::default());
        dropped.try_send(5, 0, Data::Borrowed(b"x")).unwrap();
        dropped.close(true);
        assert!(matches!(
            dropped.try_take_into(5, ANY, &mut buf),
            Err(MeshError::PeerGone)
        ));
        assert_eq!(dropped.depth(), (0, 0));
    }

    #[tokio::test]
    async fn a_sender_waits_for_room_and_a_receiver_for_a_message() {
        let mailbox = std::sync::Arc::new(Mailbox::new(Bounds {
            messages: 1,
            bytes: 100,
        }));
        let cancel = Cancel::new();
        mailbox.try_push(message(0, 0, b"first")).unwrap();
        let timed_out = mailbox
            .push(
                message(0, 0, b"x"),
                Wait::For(Duration::from_millis(10)),
                &cancel,
            )
            .await;
        assert!(matches!(timed_out, Err(MeshError::TimedOut)));
        let sender = {
            let (mailbox, cancel) = (mailbox.clone(), cancel.clone());
            tokio::spawn(async move {
                mailbox
                    .push(message(0, 1, b"second"), Wait::Forever, &cancel)
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        mailbox.try_take(ANY, 0, 10).unwrap();
        sender.await.unwrap().unwrap();
        let got = mailbox
            .take(ANY, 1, 10, Wait::Forever, &cancel, || false)
            .await;
        assert!(matches!(got, Ok(Received::Message(m)) if m.data.as_slice() == b"second"));
        let waiting = {
            let (mailbox, cancel) = (mailbox.clone(), cancel.clone());
            tokio::spawn(async move {
                mailbox
                    .take(ANY, ANY, 10, Wait::Forever, &cancel, || false)
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        cancel.cancel();
        assert!(matches!(waiting.await.unwrap(), Err(MeshError::Cancelled)));
    }
}
