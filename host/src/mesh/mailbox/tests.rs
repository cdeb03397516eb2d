//! The mailbox's bounds, its order across ring, overflow and set-aside
//! messages, and its waiting, closing and receiving into a buffer.

use super::*;
use crate::mesh::lane::RING_MAX;
use crate::network::Wait;
use crate::runtime::Cancel;
use std::time::{Duration, Instant};

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
                while let Err((_, error)) = mailbox.try_send(3, message.tag, Data::Borrowed(data)) {
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

#[test]
fn a_kept_lane_carries_only_what_fits_its_ring_now() {
    let mailbox = Mailbox::new(Bounds {
        messages: 2,
        bytes: 1 << 20,
    });
    let mut out = [0; 2048];
    // No lane before the first message; the first one makes it.
    assert!(mailbox.lane_of(4).is_none());
    mailbox.try_send(4, 1, Data::Borrowed(b"one")).unwrap();
    let lane = mailbox.lane_of(4).expect("made by the first message");
    assert!(mailbox.send_on(&lane, 2, b"two"));
    // Out of credit: it does not go.
    assert!(!mailbox.send_on(&lane, 3, b"three"));
    // A receive for another tag looks further (it sets aside).
    assert_eq!(mailbox.take_on(&lane, 2, &mut out), OnLane::Further);
    assert_eq!(
        mailbox.take_on(&lane, 1, &mut out),
        OnLane::Took { tag: 1, len: 3 }
    );
    assert_eq!(&out[..3], b"one");
    // Longer than the ring takes: the full path queues it after "two".
    let long = vec![9; RING_MAX + 1];
    assert!(!mailbox.send_on(&lane, 5, &long));
    mailbox.try_send(4, 5, Data::Borrowed(&long)).unwrap();
    // While the overflow queue holds it, nothing goes into the ring.
    assert!(!mailbox.send_on(&lane, 6, b"six"));
    let taken = mailbox.try_take_into(4, ANY, &mut out);
    assert!(matches!(
        taken,
        Ok(Delivered::Copied { tag: 2, len: 3, .. })
    ));
    let taken = mailbox.try_take_into(4, ANY, &mut out);
    assert!(matches!(taken, Ok(Delivered::Copied { tag: 5, len, .. }) if len == long.len()));
    // Empty: the kept lane's receive answers for itself.
    assert_eq!(mailbox.take_on(&lane, ANY, &mut out), OnLane::Empty);
    // Closed, it takes nothing more.
    mailbox.close(false);
    assert!(!mailbox.send_on(&lane, 7, b"seven"));
    assert!(matches!(
        mailbox.try_send(4, 7, Data::Borrowed(b"seven")),
        Err((_, MeshError::PeerGone))
    ));
}

/// With wakers that skip their fence (`lighten`), parked waiters are
/// still woken. Two threads trade messages through two mailboxes that
/// hold one message per sender, each side now and then slower than the
/// other polls, so that receivers and senders both park (thousands of
/// times); a wait that is never woken ends in `TimedOut`. The ordering
/// argument itself is in `wait.rs`: its race is nanoseconds wide, and no
/// test here would hit it reliably.
#[test]
fn lightened_mailboxes_still_wake_parked_senders_and_receivers() {
    const ROUNDS: u32 = 1_500;
    let boxes: [Arc<Mailbox>; 2] = std::array::from_fn(|_| {
        Arc::new(Mailbox::new(Bounds {
            messages: 1,
            bytes: 1 << 20,
        }))
    });
    for mailbox in &boxes {
        mailbox.lighten();
    }
    let side = |me: usize| {
        let boxes = boxes.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            runtime.block_on(async {
                let cancel = Cancel::new();
                let wait = Wait::For(Duration::from_secs(5));
                let send = async |n: u32| {
                    for k in 0..2 {
                        let message = numbered(me as i32, 2 * n + k);
                        let sent = boxes[1 - me].push(message, wait, &cancel).await;
                        sent.unwrap_or_else(|e| panic!("side {me}, round {n}: {e}"));
                    }
                };
                let receive = async |n: u32| {
                    for k in 0..2 {
                        let got = boxes[me]
                            .take(ANY, ANY, 4096, wait, &cancel, || false)
                            .await
                            .unwrap_or_else(|e| panic!("side {me}, round {n}: {e}"));
                        let Received::Message(got) = got else {
                            panic!("{got:?}")
                        };
                        assert_eq!(number(&got), 2 * n + k);
                    }
                };
                for n in 0..ROUNDS {
                    // Slower than the other side's polling now and then.
                    if n % 3 == me as u32 {
                        let started = Instant::now();
                        while started.elapsed() < Duration::from_micros(60) {
                            std::hint::spin_loop();
                        }
                    }
                    if me == 0 {
                        send(n).await;
                        receive(n).await;
                    } else {
                        receive(n).await;
                        send(n).await;
                    }
                }
            })
        })
    };
    let sides = [side(0), side(1)];
    for side in sides {
        side.join().unwrap();
    }
}
