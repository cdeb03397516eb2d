//! A job's messages between its members: sending and receiving, the
//! routes an instance keeps to its peers, and the traffic counters. The
//! mailboxes and lanes they go through are in [`mailbox`](super::mailbox)
//! and [`lane`](super::lane).

use super::job::Shared;
use super::lane::bump;
use super::mailbox::{Data, Delivered, OnLane, Parcel, Payload, Received};
use super::{MeshError, Route};
use crate::network::Wait;
use weft_abi::mesh::ANY;

impl Shared {
    /// Sends one message from `src` to `dst`.
    pub(crate) async fn send(
        &self,
        src: i32,
        dst: i32,
        tag: i32,
        data: Payload,
        wait: Wait,
    ) -> Result<(), MeshError> {
        let len = self.check_send(dst, tag, data.len())?;
        self.mailbox(dst)
            .push(Parcel { src, tag, data }, wait, &self.cancel)
            .await?;
        self.count_sent(src, dst, len);
        Ok(())
    }

    /// [`Shared::send`] if there is room now, else `WouldBlock`; never
    /// waits.
    pub(crate) fn try_send(
        &self,
        src: i32,
        dst: i32,
        tag: i32,
        data: Data<'_>,
    ) -> Result<(), MeshError> {
        // A stopped job stops its ranks here as in the calls that wait
        // (whose wait the stop ends).
        if self.cancel.is_cancelled() {
            return Err(MeshError::Cancelled);
        }
        let len = self.check_send(dst, tag, data.len())?;
        self.mailbox(dst)
            .try_send(src, tag, data)
            .map_err(|(_, error)| self.unless_cancelled(error))?;
        self.count_sent(src, dst, len);
        Ok(())
    }

    fn check_send(&self, dst: i32, tag: i32, len: usize) -> Result<u64, MeshError> {
        self.check_peer(dst, false)?;
        self.check_message(tag, len)
    }

    /// A message's tag and length, whatever its destination.
    fn check_message(&self, tag: i32, len: usize) -> Result<u64, MeshError> {
        if tag < 0 {
            return Err(MeshError::Invalid(format!("tag {tag} is negative")));
        }
        if len > self.max_message {
            return Err(MeshError::TooLarge {
                len,
                cap: self.max_message,
            });
        }
        Ok(len as u64)
    }

    /// Counts a message `src` sent. Each sender counts its own (a rank's
    /// instance runs on one thread at a time, a parent's sends take
    /// turns): no locked instruction.
    fn count_sent(&self, src: i32, dst: i32, len: u64) {
        let counters = self.counters(src);
        bump(&counters.sent_messages, 1);
        bump(&counters.sent_bytes, len);
        self.sent_row(src).add(dst, len);
    }

    /// Takes a message for `me` matching `src` and `tag`, at most `cap`
    /// bytes long.
    pub(crate) async fn recv(
        &self,
        me: i32,
        src: i32,
        tag: i32,
        cap: usize,
        wait: Wait,
    ) -> Result<Received, MeshError> {
        self.check_recv(src, tag)?;
        // Waiting on one rank that has ended would be forever.
        let gone = || src >= 0 && self.ended(src as usize);
        let received = self
            .mailbox(me)
            .take(src, tag, cap, wait, &self.cancel, gone)
            .await?;
        Ok(self.count_received(me, received))
    }

    /// [`Shared::recv`] of what is there now, into `out` (its length is
    /// the receive's `cap`): `WouldBlock` when nothing matches, `PeerGone`
    /// when nothing can (the one sender named has ended).
    pub(crate) fn try_recv_into(
        &self,
        me: i32,
        src: i32,
        tag: i32,
        out: &mut [u8],
    ) -> Result<Delivered, MeshError> {
        if self.cancel.is_cancelled() {
            return Err(MeshError::Cancelled);
        }
        self.check_recv(src, tag)?;
        match self.mailbox(me).try_take_into(src, tag, out) {
            Err(MeshError::WouldBlock) if src >= 0 && self.ended(src as usize) => {
                Err(self.unless_cancelled(MeshError::PeerGone))
            }
            Err(error) => Err(self.unless_cancelled(error)),
            Ok(delivered) => {
                if let Delivered::Copied { tag, len, .. } = delivered
                    && tag != weft_abi::mesh::MEMBERSHIP
                {
                    self.count_one_received(me, len);
                }
                Ok(delivered)
            }
        }
    }

    /// The route from `src` to `dst`, once `src` has sent to `dst`.
    pub(crate) fn route(&self, src: i32, dst: i32) -> Option<Route> {
        if self.check_peer(src, false).is_err() || self.check_peer(dst, false).is_err() {
            return None;
        }
        let mailbox = self.mailbox_arc(dst).clone();
        let lane = mailbox.lane_of(src)?;
        Some(Route { dst, mailbox, lane })
    }

    /// [`Shared::try_send`] from `src` along `route`, resolved before: the
    /// usual case, a message that goes into the lane's ring now. Whether
    /// it went; anything else is left for `try_send` to answer.
    pub(crate) fn send_routed(&self, src: i32, route: &Route, tag: i32, data: &[u8]) -> bool {
        if self.cancel.is_cancelled() {
            return false;
        }
        // The route's destination was checked when it was made.
        let Ok(len) = self.check_message(tag, data.len()) else {
            return false;
        };
        if !route.mailbox.send_on(&route.lane, tag, data) {
            return false;
        }
        self.count_sent(src, route.dst(), len);
        true
    }

    /// [`Shared::try_recv_into`] for `me` along `route`, resolved before:
    /// the usual case, the lane's next message matching `tag` and in its
    /// ring. The message's tag and length, now in `out`; `None` when
    /// `try_recv_into` must answer.
    pub(crate) fn recv_routed(
        &self,
        me: i32,
        route: &Route,
        tag: i32,
        out: &mut [u8],
    ) -> Option<(i32, usize)> {
        if self.cancel.is_cancelled() {
            return None;
        }
        let OnLane::Took { tag, len } = route.mailbox.take_on(&route.lane, tag, out) else {
            return None;
        };
        self.count_one_received(me, len as usize);
        Some((tag, len as usize))
    }

    /// `error`, or `Cancelled` when the job was stopped meanwhile: a peer
    /// that ended because of the stop is not this rank's failure.
    fn unless_cancelled(&self, error: MeshError) -> MeshError {
        if self.cancel.is_cancelled() {
            MeshError::Cancelled
        } else {
            error
        }
    }

    fn check_recv(&self, src: i32, tag: i32) -> Result<(), MeshError> {
        self.check_peer(src, true)?;
        if tag < ANY && tag != weft_abi::mesh::MEMBERSHIP {
            return Err(MeshError::Invalid(format!("tag {tag} is negative")));
        }
        Ok(())
    }

    fn count_received(&self, me: i32, received: Received) -> Received {
        // Membership events are not traffic: nobody sent them.
        if let Received::Message(parcel) = &received
            && parcel.tag != weft_abi::mesh::MEMBERSHIP
        {
            self.count_one_received(me, parcel.data.len());
        }
        received
    }

    fn count_one_received(&self, me: i32, len: usize) {
        let counters = self.counters(me);
        bump(&counters.received_messages, 1);
        bump(&counters.received_bytes, len as u64);
    }
}
