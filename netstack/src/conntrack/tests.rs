use super::*;
use crate::flow::TcpFlags;

const EGRESS: Direction = Direction::Egress;
const INGRESS: Direction = Direction::Ingress;

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, last)
}

fn at(secs: u64) -> Instant {
    Instant::from_secs(secs as i64)
}

fn tcp(from: u8, to: u8, src_port: u16, dst_port: u16, flags: TcpFlags) -> Flow {
    Flow {
        src: ip(from),
        dst: ip(to),
        transport: Transport::Tcp {
            src_port,
            dst_port,
            flags,
        },
    }
}

fn udp(from: u8, to: u8, src_port: u16, dst_port: u16) -> Flow {
    Flow {
        src: ip(from),
        dst: ip(to),
        transport: Transport::Udp { src_port, dst_port },
    }
}

fn icmp(from: u8, to: u8, icmp: Icmp) -> Flow {
    Flow {
        src: ip(from),
        dst: ip(to),
        transport: Transport::Icmp(icmp),
    }
}

fn table(capacity: usize) -> ConnTrack {
    ConnTrack::new(Config {
        capacity,
        ..Config::default()
    })
}

/// Passes `flow` as the router does: a match is refreshed, else it is
/// inserted; returns the match.
fn pass(ct: &mut ConnTrack, now: Instant, flow: &Flow, direction: Direction) -> Option<Match> {
    let how = ct.lookup(now, flow, direction);
    match how {
        Some(how) => ct.refresh(now, flow, direction, how),
        None => {
            ct.insert(now, flow, direction).unwrap();
        }
    }
    how
}

#[test]
fn keys_and_their_reverses() {
    let syn = tcp(2, 3, 40000, 80, TcpFlags::SYN);
    let key = Key::of(&syn).unwrap();
    assert_eq!(
        key.reverse(),
        Key::of(&tcp(3, 2, 80, 40000, TcpFlags::SYN_ACK)).unwrap()
    );
    assert_eq!(key.reverse().reverse(), key);

    let ping = Key::of(&icmp(2, 3, Icmp::EchoRequest { ident: 9 })).unwrap();
    let pong = Key::of(&icmp(3, 2, Icmp::EchoReply { ident: 9 })).unwrap();
    assert_eq!(ping.reverse(), pong);
    assert_eq!(pong.reverse(), ping);
    // A request the other way is not a reply.
    assert_ne!(
        ping.reverse(),
        Key::of(&icmp(3, 2, Icmp::EchoRequest { ident: 9 })).unwrap()
    );

    assert_eq!(Key::of(&icmp(2, 3, Icmp::Other { msg_type: 13 })), None);
    assert_eq!(Key::of(&icmp(2, 3, Icmp::Error { quoted: None })), None);
    let gre = Flow {
        src: ip(2),
        dst: ip(3),
        transport: Transport::Other(47),
    };
    assert_eq!(
        Key::of(&gre).unwrap().reverse(),
        Key::of(&Flow {
            src: ip(3),
            dst: ip(2),
            ..gre
        })
        .unwrap()
    );
}

#[test]
fn replies_match_both_ways_and_only_replies() {
    let mut ct = table(16);
    let t = at(0);
    assert_eq!(pass(&mut ct, t, &udp(2, 3, 5000, 53), EGRESS), None);
    assert_eq!(
        ct.lookup(t, &udp(2, 3, 5000, 53), EGRESS),
        Some(Match::Original)
    );
    assert_eq!(
        ct.lookup(t, &udp(3, 2, 53, 5000), INGRESS),
        Some(Match::Reply)
    );
    // Same addresses and ports but the wrong way through the interface.
    assert_eq!(ct.lookup(t, &udp(3, 2, 53, 5000), EGRESS), None);
    assert_eq!(ct.lookup(t, &udp(2, 3, 5000, 53), INGRESS), None);
    // Another port.
    assert_eq!(ct.lookup(t, &udp(3, 2, 53, 5001), INGRESS), None);

    pass(
        &mut ct,
        t,
        &icmp(2, 3, Icmp::EchoRequest { ident: 1 }),
        EGRESS,
    );
    assert_eq!(
        ct.lookup(t, &icmp(3, 2, Icmp::EchoReply { ident: 1 }), INGRESS),
        Some(Match::Reply)
    );
    assert_eq!(
        ct.lookup(t, &icmp(3, 2, Icmp::EchoRequest { ident: 1 }), INGRESS),
        None
    );
    assert_eq!(
        ct.lookup(t, &icmp(3, 2, Icmp::EchoReply { ident: 2 }), INGRESS),
        None
    );
}

#[test]
fn what_opens_a_flow() {
    let mut ct = table(16);
    let t = at(0);
    assert_eq!(
        ct.insert(t, &tcp(2, 3, 1, 2, TcpFlags::RST), EGRESS),
        Ok(false)
    );
    assert_eq!(
        ct.insert(t, &icmp(2, 3, Icmp::EchoReply { ident: 1 }), EGRESS),
        Ok(false)
    );
    assert_eq!(
        ct.insert(t, &icmp(2, 3, Icmp::Other { msg_type: 13 }), EGRESS),
        Ok(false)
    );
    assert!(ct.is_empty());
    assert_eq!(
        ct.insert(t, &tcp(2, 3, 1, 2, TcpFlags::ACK), EGRESS),
        Ok(true)
    );
    assert_eq!(
        ct.insert(t, &icmp(2, 3, Icmp::EchoRequest { ident: 1 }), EGRESS),
        Ok(true)
    );
    assert_eq!(ct.len(), 2);
}

#[test]
fn tcp_states_and_timeouts() {
    let mut ct = table(16);
    let syn = tcp(2, 3, 40000, 80, TcpFlags::SYN);
    let key = Key::of(&syn).unwrap();
    pass(&mut ct, at(0), &syn, EGRESS);
    assert_eq!(ct.get(at(0), &key, EGRESS), Some(State::TcpUnreplied));
    // An unanswered SYN lives 30 s.
    assert_eq!(ct.get(at(29), &key, EGRESS), Some(State::TcpUnreplied));
    assert_eq!(ct.lookup(at(30), &syn, EGRESS), None);

    pass(&mut ct, at(100), &syn, EGRESS);
    assert_eq!(
        pass(
            &mut ct,
            at(101),
            &tcp(3, 2, 80, 40000, TcpFlags::SYN_ACK),
            INGRESS
        ),
        Some(Match::Reply)
    );
    assert_eq!(ct.get(at(101), &key, EGRESS), Some(State::TcpEstablished));
    // Established lives 300 s after the last packet.
    assert_eq!(ct.get(at(400), &key, EGRESS), Some(State::TcpEstablished));
    assert_eq!(ct.get(at(401), &key, EGRESS), None);

    pass(&mut ct, at(500), &syn, EGRESS);
    pass(
        &mut ct,
        at(500),
        &tcp(3, 2, 80, 40000, TcpFlags::SYN_ACK),
        INGRESS,
    );
    pass(
        &mut ct,
        at(600),
        &tcp(2, 3, 40000, 80, TcpFlags::FIN_ACK),
        EGRESS,
    );
    assert_eq!(ct.get(at(600), &key, EGRESS), Some(State::TcpClosing));
    assert_eq!(ct.get(at(629), &key, EGRESS), Some(State::TcpClosing));
    assert_eq!(ct.get(at(630), &key, EGRESS), None);
}

#[test]
fn a_closing_flow_reopens_on_a_new_syn() {
    let mut ct = table(16);
    let syn = tcp(2, 3, 40000, 80, TcpFlags::SYN);
    let key = Key::of(&syn).unwrap();
    pass(&mut ct, at(0), &syn, EGRESS);
    pass(
        &mut ct,
        at(0),
        &tcp(3, 2, 80, 40000, TcpFlags::RST),
        INGRESS,
    );
    assert_eq!(ct.get(at(0), &key, EGRESS), Some(State::TcpClosing));
    pass(&mut ct, at(1), &syn, EGRESS);
    assert_eq!(ct.get(at(1), &key, EGRESS), Some(State::TcpUnreplied));
    pass(
        &mut ct,
        at(1),
        &tcp(3, 2, 80, 40000, TcpFlags::SYN_ACK),
        INGRESS,
    );
    assert_eq!(ct.get(at(1), &key, EGRESS), Some(State::TcpEstablished));
}

#[test]
fn datagram_timeouts_are_configurable() {
    let timeouts = Timeouts {
        udp: Duration::from_secs(5),
        icmp: Duration::from_millis(1500),
        ..Timeouts::default()
    };
    let mut ct = ConnTrack::new(Config {
        capacity: 16,
        timeouts,
    });
    pass(&mut ct, at(0), &udp(2, 3, 1, 2), EGRESS);
    pass(
        &mut ct,
        at(0),
        &icmp(2, 3, Icmp::EchoRequest { ident: 1 }),
        EGRESS,
    );
    assert!(
        ct.lookup(
            Instant::from_millis(1499),
            &icmp(3, 2, Icmp::EchoReply { ident: 1 }),
            INGRESS
        )
        .is_some()
    );
    assert!(
        ct.lookup(
            Instant::from_millis(1500),
            &icmp(3, 2, Icmp::EchoReply { ident: 1 }),
            INGRESS
        )
        .is_none()
    );
    // Each packet pushes the deadline.
    pass(&mut ct, at(4), &udp(3, 2, 2, 1), INGRESS);
    assert!(ct.lookup(at(8), &udp(2, 3, 1, 2), EGRESS).is_some());
    assert!(ct.lookup(at(9), &udp(2, 3, 1, 2), EGRESS).is_none());
    assert_eq!(ct.expire(at(9)), 2);
    assert!(ct.is_empty());
}

#[test]
fn icmp_errors_relate_to_tracked_flows() {
    let mut ct = table(16);
    let t = at(0);
    pass(&mut ct, t, &udp(2, 3, 5000, 53), EGRESS);
    let quoting = |src: u8, dst: u8, src_port: u16, dst_port: u16| Icmp::Error {
        quoted: Some(Quoted {
            src: ip(src),
            dst: ip(dst),
            transport: QuotedTransport::Udp { src_port, dst_port },
        }),
    };
    // Port unreachable from the server, about our datagram.
    let unreachable = icmp(3, 2, quoting(2, 3, 5000, 53));
    assert_eq!(ct.lookup(t, &unreachable, INGRESS), Some(Match::Related));
    // Not the way it came, not for another flow, not to someone else.
    assert_eq!(ct.lookup(t, &unreachable, EGRESS), None);
    assert_eq!(
        ct.lookup(t, &icmp(3, 2, quoting(2, 3, 5001, 53)), INGRESS),
        None
    );
    assert_eq!(
        ct.lookup(t, &icmp(3, 9, quoting(2, 3, 5000, 53)), INGRESS),
        None
    );
    // An error we send about a reply we received is related too.
    assert_eq!(
        ct.lookup(t, &icmp(2, 3, quoting(3, 2, 53, 5000)), EGRESS),
        Some(Match::Related)
    );
    // Related errors change nothing.
    ct.refresh(t, &unreachable, INGRESS, Match::Related);
    assert_eq!(ct.len(), 1);
    // Unreadable quotes and quotes of ICMP messages relate to nothing.
    assert_eq!(
        ct.lookup(t, &icmp(3, 2, Icmp::Error { quoted: None }), INGRESS),
        None
    );
}

#[test]
fn a_full_table_refuses_new_flows_but_keeps_tracked_ones() {
    let mut ct = table(3);
    for port in 0..3 {
        pass(&mut ct, at(0), &udp(2, 3, port, 53), EGRESS);
    }
    assert_eq!(
        ct.insert(at(1), &udp(2, 3, 9, 53), EGRESS),
        Err(Full { capacity: 3 })
    );
    assert_eq!(
        ct.insert(at(1), &udp(2, 3, 10, 53), EGRESS),
        Err(Full { capacity: 3 })
    );
    assert_eq!(ct.refused(), 2);
    assert_eq!(
        ct.lookup(at(1), &udp(3, 2, 53, 1), INGRESS),
        Some(Match::Reply)
    );
    // Once one expires there is room again, without calling expire.
    pass(&mut ct, at(20), &udp(2, 3, 0, 53), EGRESS);
    pass(&mut ct, at(20), &udp(2, 3, 1, 53), EGRESS);
    assert_eq!(ct.insert(at(30), &udp(2, 3, 9, 53), EGRESS), Ok(true));
    assert_eq!(ct.len(), 3);
    assert_eq!(ct.reserve(at(30), 1), Err(Full { capacity: 3 }));
    assert_eq!(ct.refused(), 3);

    let mut none = table(0);
    assert_eq!(
        none.insert(at(0), &udp(2, 3, 1, 2), EGRESS),
        Err(Full { capacity: 0 })
    );
}

#[test]
fn the_same_key_from_both_directions_is_two_flows() {
    // Hairpin: an interface talking to itself sees each packet leave and
    // enter; both are tracked, separately.
    let mut ct = table(2);
    let own = udp(2, 2, 1000, 2000);
    pass(&mut ct, at(0), &own, EGRESS);
    assert_eq!(ct.lookup(at(0), &own, INGRESS), None);
    pass(&mut ct, at(0), &own, INGRESS);
    assert_eq!(ct.len(), 2);
    assert_eq!(
        ct.lookup(at(0), &udp(2, 2, 2000, 1000), EGRESS),
        Some(Match::Reply)
    );
}

#[test]
fn the_timer_queue_stays_bounded() {
    // Established flows that then close leave stale items behind; the queue
    // must not grow with the number of flows ever seen.
    let mut ct = table(8);
    for round in 0..2_000u64 {
        let port = (round % 8) as u16;
        let t = at(round);
        pass(&mut ct, t, &tcp(2, 3, port, 80, TcpFlags::SYN), EGRESS);
        pass(&mut ct, t, &tcp(3, 2, 80, port, TcpFlags::SYN_ACK), INGRESS);
        pass(&mut ct, t, &tcp(2, 3, port, 80, TcpFlags::FIN_ACK), EGRESS);
        assert!(
            ct.queue.len() <= QUEUE_SLACK * 8 + 64 + 1,
            "queue {}",
            ct.queue.len()
        );
    }
    assert_eq!(ct.refused(), 0);
    ct.clear();
    assert!(ct.is_empty());
}

#[test]
fn expiry_purges_exactly_the_expired() {
    let mut ct = table(64);
    for port in 0..10 {
        pass(&mut ct, at(u64::from(port)), &udp(2, 3, port, 53), EGRESS);
    }
    // Refresh port 0 late: it must survive a purge at its old deadline.
    pass(&mut ct, at(25), &udp(2, 3, 0, 53), EGRESS);
    assert_eq!(ct.expire(at(34)), 4); // ports 1..=4 (deadlines 31..=34)
    assert_eq!(ct.len(), 6);
    assert!(ct.lookup(at(34), &udp(2, 3, 0, 53), EGRESS).is_some());
    assert_eq!(ct.expire(at(1_000)), 6);
    assert!(ct.is_empty());
}

#[test]
fn deadlines_saturate_instead_of_overflowing() {
    let mut ct = table(4);
    let late = Instant::from_micros(i64::MAX - 1);
    assert_eq!(ct.insert(late, &udp(2, 3, 1, 2), EGRESS), Ok(true));
    assert_eq!(ct.expire(late), 0);
}
