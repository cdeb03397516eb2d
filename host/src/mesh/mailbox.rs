//! A rank's mailbox: a bounded queue of messages, matched by source and tag.
//!
//! Messages are `Bytes` taken once out of the sender's memory; the receiver
//! copies them once into its own. The mailbox holds at most
//! [`Bounds::messages`] messages and [`Bounds::bytes`] bytes (one message is
//! always admitted into an empty mailbox, so a message up to the cap can
//! always be delivered); a sender to a full mailbox waits for room, or gets
//! `WOULD_BLOCK`/`TIMED_OUT` per its timeout. Order is kept: of the messages
//! that match a receive, the oldest is taken.
//!
//! Membership events (a rank joined or left) wait in a queue of their own,
//! beside the messages: they never take a message's room, `ANY` never
//! matches them (only the tag [`MEMBERSHIP`] does), and past
//! [`MAX_EVENTS`] the oldest is dropped (they are hints; the job's member
//! list is the truth).

use super::MeshError;
use super::placement;
use crate::network::Wait;
use crate::runtime::Cancel;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;
use tokio::sync::Notify;
use weft_abi::mesh::{ANY, MEMBERSHIP};

/// Membership events kept per mailbox; past it the oldest go.
pub const MAX_EVENTS: usize = 256;

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
    /// Messages queued at most.
    pub messages: usize,
    /// Bytes queued at most (an empty mailbox admits any one message).
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

/// What a receive found.
#[derive(Debug)]
pub enum Received {
    /// The message, taken out of the mailbox.
    Message(Message),
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

#[derive(Debug, Default)]
struct Queue {
    messages: VecDeque<Message>,
    bytes: usize,
    /// Membership events, oldest first.
    events: VecDeque<Message>,
    /// The owner has ended: nothing more is accepted.
    closed: bool,
}

/// A bounded mailbox.
#[derive(Debug)]
pub struct Mailbox {
    queue: Mutex<Queue>,
    bounds: Bounds,
    /// Notified when a message arrives or the mailbox closes.
    arrived: Notify,
    /// Receivers parked on `arrived`: a sender notifies only when there is
    /// one (a `notify_waiters` takes the `Notify`'s own lock).
    receivers: AtomicUsize,
    /// Notified when room is made or the mailbox closes.
    room: Notify,
    /// Senders parked on `room`.
    senders: AtomicUsize,
    /// Messages taken so far: a sender polling for room looks again only
    /// when this moves.
    taken: AtomicU64,
    /// The most messages ever queued at once.
    high_water: AtomicU64,
    /// Messages queued so far: a spinning receiver looks again only when
    /// this moves.
    arrivals: AtomicU64,
}

impl Mailbox {
    /// An empty mailbox holding at most `bounds`.
    pub fn new(bounds: Bounds) -> Mailbox {
        Mailbox {
            queue: Mutex::new(Queue::default()),
            bounds,
            arrived: Notify::new(),
            receivers: AtomicUsize::new(0),
            room: Notify::new(),
            senders: AtomicUsize::new(0),
            taken: AtomicU64::new(0),
            high_water: AtomicU64::new(0),
            arrivals: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `message` if there is room now.
    pub fn try_push(&self, message: Message) -> Result<(), (Message, MeshError)> {
        let mut queue = self.lock();
        if queue.closed {
            return Err((message, MeshError::PeerGone));
        }
        let fits = queue.messages.is_empty()
            || (queue.messages.len() < self.bounds.messages
                && queue.bytes + message.data.len() <= self.bounds.bytes);
        if !fits {
            return Err((message, MeshError::WouldBlock));
        }
        queue.bytes += message.data.len();
        queue.messages.push_back(message);
        self.arrivals.fetch_add(1, Ordering::Release);
        if queue.messages.len() as u64 > self.high_water.load(Ordering::Relaxed) {
            self.high_water
                .store(queue.messages.len() as u64, Ordering::Relaxed);
        }
        drop(queue);
        notify(&self.arrived, &self.receivers);
        Ok(())
    }

    /// Queues `message`, waiting for room per `wait`; a fired `cancel` ends
    /// the wait with [`MeshError::Cancelled`].
    pub async fn push(
        &self,
        message: Message,
        wait: Wait,
        cancel: &Cancel,
    ) -> Result<(), MeshError> {
        // Fast path: room now (the usual case) costs one lock, with no
        // waiter registered anywhere.
        if cancel.is_cancelled() {
            return Err(MeshError::Cancelled);
        }
        let mut message = match self.try_push(message) {
            Ok(()) => return Ok(()),
            Err((back, MeshError::WouldBlock)) if !matches!(wait, Wait::No) => Some(back),
            Err((_, error)) => return Err(error),
        };
        // Poll for room first (see `placement`): a receiver on another core
        // usually makes some within microseconds. Polling registers
        // nothing: the cancel token and the clock join in only if it parks.
        let started = Instant::now();
        let mut seen = None;
        let polled = placement::before_parking(
            || {
                let taken = self.taken.load(Ordering::Acquire);
                if seen == Some(taken) {
                    return None;
                }
                seen = Some(taken);
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
            let _parked = Parked::on(&self.senders);
            loop {
                let room = self.room.notified();
                tokio::pin!(room);
                room.as_mut().enable();
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
        let mut queue = self.lock();
        if queue.closed {
            return;
        }
        if queue.events.len() == MAX_EVENTS {
            queue.events.pop_front();
        }
        queue.events.push_back(event);
        self.arrivals.fetch_add(1, Ordering::Release);
        drop(queue);
        notify(&self.arrived, &self.receivers);
    }

    /// Takes the oldest message matching `src` and `tag` if it is at most
    /// `cap` bytes long (with `tag` [`MEMBERSHIP`]: the oldest event).
    pub fn try_take(&self, src: i32, tag: i32, cap: usize) -> Result<Received, MeshError> {
        let mut queue = self.lock();
        if tag == MEMBERSHIP {
            let Some(index) = queue.events.iter().position(|m| m.matches(src, tag)) else {
                return Err(if queue.closed {
                    MeshError::PeerGone
                } else {
                    MeshError::WouldBlock
                });
            };
            let found = &queue.events[index];
            if found.data.len() > cap {
                return Ok(Received::TooLong {
                    src: found.src,
                    tag: found.tag,
                    len: found.data.len(),
                });
            }
            let event = queue.events.remove(index).expect("index is in range");
            return Ok(Received::Message(event));
        }
        let Some(index) = queue.messages.iter().position(|m| m.matches(src, tag)) else {
            return Err(if queue.closed {
                MeshError::PeerGone
            } else {
                MeshError::WouldBlock
            });
        };
        let found = &queue.messages[index];
        if found.data.len() > cap {
            return Ok(Received::TooLong {
                src: found.src,
                tag: found.tag,
                len: found.data.len(),
            });
        }
        let message = queue.messages.remove(index).expect("index is in range");
        queue.bytes -= message.data.len();
        self.taken.fetch_add(1, Ordering::Release);
        drop(queue);
        notify(&self.room, &self.senders);
        Ok(Received::Message(message))
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
        // thread can be woken. A look that finds the arrivals counter
        // unmoved takes no lock; polling registers nothing (the cancel
        // token and the clock join in only if it parks).
        let started = Instant::now();
        let mut seen = None;
        let polled = placement::before_parking(
            || {
                let arrivals = self.arrivals.load(Ordering::Acquire);
                if seen == Some(arrivals) {
                    return None;
                }
                seen = Some(arrivals);
                match self.try_take(src, tag, cap) {
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
            let _parked = Parked::on(&self.receivers);
            loop {
                let arrived = self.arrived.notified();
                tokio::pin!(arrived);
                arrived.as_mut().enable();
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
        let mut queue = self.lock();
        queue.closed = true;
        if drop_queued {
            queue.messages = VecDeque::new();
            queue.events = VecDeque::new();
            queue.bytes = 0;
        }
        drop(queue);
        self.room.notify_waiters();
        self.arrived.notify_waiters();
    }

    /// Messages and bytes queued now.
    pub fn depth(&self) -> (usize, usize) {
        let queue = self.lock();
        (queue.messages.len(), queue.bytes)
    }

    /// The most messages queued at once so far.
    pub fn high_water(&self) -> u64 {
        self.high_water.load(Ordering::Relaxed)
    }

    /// The bounds.
    pub fn bounds(&self) -> Bounds {
        self.bounds
    }
}

/// Wakes whoever is parked on `notify`, if anyone is: `parked` counts
/// them. A parked waiter counts itself before it looks at the queue one
/// last time, and the caller changed the queue under its lock before this:
/// either the waiter's look sees the change, or this sees the waiter.
fn notify(notify: &Notify, parked: &AtomicUsize) {
    if parked.load(Ordering::SeqCst) > 0 {
        notify.notify_waiters();
    }
}

/// Counts a waiter as parked while it lives.
struct Parked<'a>(&'a AtomicUsize);

impl<'a> Parked<'a> {
    fn on(count: &'a AtomicUsize) -> Parked<'a> {
        count.fetch_add(1, Ordering::SeqCst);
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

    fn message(src: i32, tag: i32, data: &'static [u8]) -> Message {
        Message {
            src,
            tag,
            data: Bytes::from_static(data),
        }
    }

    #[test]
    fn matches_the_oldest_message_by_source_and_tag() {
        let mailbox = Mailbox::new(Bounds::default());
        mailbox.try_push(message(1, 5, b"a")).unwrap();
        mailbox.try_push(message(2, 5, b"b")).unwrap();
        mailbox.try_push(message(1, 6, b"c")).unwrap();
        let take = |src, tag| match mailbox.try_take(src, tag, 10).unwrap() {
            Received::Message(m) => m.data,
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
    fn is_bounded_in_messages_and_bytes() {
        let mailbox = Mailbox::new(Bounds {
            messages: 2,
            bytes: 4,
        });
        // One message always fits an empty mailbox, even past the bytes.
        mailbox.try_push(message(0, 0, b"123456")).unwrap();
        assert!(matches!(
            mailbox.try_push(message(0, 0, b"")),
            Err((_, MeshError::WouldBlock))
        ));
        mailbox.try_take(ANY, ANY, 10).unwrap();
        mailbox.try_push(message(0, 0, b"12")).unwrap();
        mailbox.try_push(message(0, 0, b"34")).unwrap();
        assert!(matches!(
            mailbox.try_push(message(0, 0, b"")),
            Err((_, MeshError::WouldBlock))
        ));
        assert_eq!(mailbox.depth(), (2, 4));
        mailbox.close(true);
        assert_eq!(mailbox.depth(), (0, 0));
        assert!(matches!(
            mailbox.try_push(message(0, 0, b"")),
            Err((_, MeshError::PeerGone))
        ));
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
            Ok(Received::Message(m)) if m.data == "m"
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
        assert_eq!(&first.data[..4], &1u32.to_le_bytes());
        assert_eq!(&first.data[4..], &3u64.to_le_bytes());
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
        assert!(matches!(got, Ok(Received::Message(m)) if m.data == "second"));
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
