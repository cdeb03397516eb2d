//! A mailbox's receiving side: matching by source and tag, the owner's
//! lock-free receive from a lane's ring, and waiting for a match.

use super::wait::{Parked, waiting, wake};
use super::{Consumer, Mailbox, Parcel, Payload, Received};
use crate::mesh::lane::{Lane, Queued};
use crate::mesh::{MeshError, placement};
use crate::network::Wait;
use crate::runtime::Cancel;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Instant;
use weft_abi::mesh::{ANY, MEMBERSHIP};

impl Mailbox {
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
                .map(|r| Delivered::copy(r, out));
        }
        if src != ANY
            && let Some(lane) = self.lane(src)
        {
            match self.take_on(lane, tag, out) {
                OnLane::Took { tag, len } => {
                    return Ok(Delivered::Copied {
                        src,
                        tag,
                        len: len as usize,
                        buffer: None,
                    });
                }
                OnLane::Empty => return self.nothing(),
                OnLane::Further => {}
            }
        }
        let cap = out.len();
        self.take_from(&mut self.consumer(), src, tag, cap)
            .map(|r| Delivered::copy(r, out))
    }

    /// The owner's receive (see [`Mailbox::try_take_into`]) of a message
    /// with `tag` from `lane`'s sender, in the usual case: nothing set
    /// aside (so the lane's next message is the oldest from its sender),
    /// and that message in the ring. Takes no lock (the owner alone reads
    /// the lane). [`OnLane::Further`] when the full receive must look
    /// further.
    ///
    /// Its answer is small enough to come back in registers: this is the
    /// path of every message of a ping-pong.
    pub fn take_on(&self, lane: &Lane, tag: i32, out: &mut [u8]) -> OnLane {
        if self.set_aside.load(Ordering::Relaxed) != 0 || self.dropped.load(Ordering::Acquire) {
            return OnLane::Further;
        }
        match lane.peek() {
            Some((found, len)) if (tag == ANY || tag == found) && len <= out.len() => {
                lane.take_into(&mut out[..len]);
                lane.consumed(len);
                wake(&self.room, &self.senders, &self.light);
                OnLane::Took {
                    tag: found,
                    len: len as u32,
                }
            }
            // Nothing in the ring, nor behind it.
            None if !lane.overflowing() => OnLane::Empty,
            _ => OnLane::Further,
        }
    }

    /// Whether the owner's receive from `lane`'s sender may find
    /// something now (a look that costs a few loads, for a receive that
    /// spins): a message on the lane, or some set aside.
    pub fn may_hold(&self, lane: &Lane) -> bool {
        self.set_aside.load(Ordering::Relaxed) != 0 || lane.ready()
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
        wake(&self.room, &self.senders, &self.light);
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
                self.light.before_look();
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
}

/// What [`Mailbox::take_on`] found on a lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnLane {
    /// A message with `tag`, `len` bytes, now in the caller's buffer.
    Took { tag: i32, len: u32 },
    /// Nothing in the lane's ring, nor behind it.
    Empty,
    /// The full receive must look further (something set aside, the next
    /// message for another tag, too long, or in the overflow queue).
    Further,
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
    /// `received`, copied into `out` (at least as long as the message).
    pub fn copy(received: Received, out: &mut [u8]) -> Delivered {
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
