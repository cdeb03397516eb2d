//! A mailbox's sending side: queueing into a sender's lane, and waiting
//! for room.

use super::wait::{Parked, waiting, wake};
use super::{Data, MAX_EVENTS, Mailbox, Message, Parcel};
use crate::mesh::lane::{Full, Lane};
use crate::mesh::{MeshError, placement};
use crate::network::Wait;
use crate::runtime::Cancel;
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Mailbox {
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
        match lane.push(tag, data, self.messages(), admit) {
            Ok(()) => {
                wake(&self.arrived, &self.receivers, &self.light);
                Ok(())
            }
            Err((data, Full::Credit | Full::Bytes)) => Err((data, MeshError::WouldBlock)),
        }
    }

    /// [`Mailbox::try_send`] on `lane`, the sender's lane here, resolved
    /// before: only a message that goes into the lane's ring now. Anything
    /// else (the mailbox closed, no room, a long message, the overflow
    /// queue in use) is left for `try_send` to decide. Whether it went.
    pub fn send_on(&self, lane: &Lane, tag: i32, data: &[u8]) -> bool {
        if self.closed.load(Ordering::Acquire) || !lane.try_ring(tag, data, self.messages()) {
            return false;
        }
        wake(&self.arrived, &self.receivers, &self.light);
        true
    }

    /// Messages a sender may have queued here.
    fn messages(&self) -> u64 {
        self.bounds.messages.max(1) as u64
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
                self.light.before_look();
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
        wake(&self.arrived, &self.receivers, &self.light);
    }
}
