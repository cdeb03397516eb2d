//! Two endpoints back to back, on a simulated clock.

use super::*;
use crate::flow::{Flow, Icmp, TcpFlags, Transport};
use crate::packet;

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 3);
const B2: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 4);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn small() -> Limits {
    Limits {
        tcp_buffer: 16 * 1024,
        ..Limits::default()
    }
}

/// Endpoint `a` and `b`, datagrams carried between them by destination.
struct Pair {
    a: Endpoint,
    b: Endpoint,
    now: Instant,
    /// Drop everything instead of carrying it.
    cut: bool,
    /// Every datagram carried, in order.
    log: Vec<Vec<u8>>,
}

impl Pair {
    fn new(limits: Limits) -> Pair {
        Pair::with(&[A], &[B], limits)
    }

    fn with(a: &[Ipv4Addr], b: &[Ipv4Addr], limits: Limits) -> Pair {
        Pair {
            a: Endpoint::new(a, 24, GATEWAY, limits, Instant::ZERO),
            b: Endpoint::new(b, 24, GATEWAY, limits, Instant::ZERO),
            now: Instant::ZERO,
            cut: false,
            log: Vec::new(),
        }
    }

    fn carry(&mut self) -> bool {
        let mut moved = false;
        for from_a in [true, false] {
            loop {
                let datagram = if from_a {
                    self.a.take_outgoing()
                } else {
                    self.b.take_outgoing()
                };
                let Some(datagram) = datagram else { break };
                moved = true;
                if self.cut {
                    continue;
                }
                let dst = Flow::parse(&datagram).unwrap().0.dst;
                if self.a.addresses().contains(&dst) {
                    self.a.receive(&datagram);
                } else if self.b.addresses().contains(&dst) || self.b.transparent {
                    self.b.receive(&datagram);
                }
                self.log.push(datagram);
            }
        }
        moved
    }

    /// Polls and carries until neither endpoint has anything to do now.
    fn settle(&mut self) {
        for _ in 0..100_000 {
            let polled = self.a.poll(self.now) | self.b.poll(self.now);
            if !(self.carry() | polled) {
                return;
            }
        }
        panic!("endpoints never went quiet");
    }

    /// Runs `span` of simulated time, from timer to timer.
    fn run(&mut self, span: Duration) {
        let end = self.now + span;
        loop {
            self.settle();
            let next = [self.a.poll_at(self.now), self.b.poll_at(self.now)]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(at) if at <= end => self.now = at.max(self.now + ms(1)),
                _ => {
                    self.now = end;
                    self.settle();
                    return;
                }
            }
        }
    }

    /// A connection from `a` to a listener on `b`'s port, accepted:
    /// (client, server, listener).
    fn connect(&mut self, port: u16) -> (SocketId, SocketId, SocketId) {
        let listener = self
            .b
            .tcp_listen(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
            .unwrap();
        let client = self
            .a
            .tcp_connect(SocketAddrV4::new(B, port), None)
            .unwrap();
        assert_eq!(self.a.tcp_connected(client), Ok(false));
        self.settle();
        assert_eq!(self.a.tcp_connected(client), Ok(true));
        let (server, peer) = self.b.tcp_accept(listener).unwrap();
        assert_eq!(peer, self.a.local_addr(client).unwrap());
        (client, server, listener)
    }
}

fn recv_all(endpoint: &mut Endpoint, socket: SocketId) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0; 4096];
    while let Ok(n @ 1..) = endpoint.tcp_recv(socket, &mut buf) {
        out.extend_from_slice(&buf[..n]);
    }
    out
}

#[test]
fn tcp_connect_accept_echo() {
    let mut pair = Pair::new(small());
    let (client, server, listener) = pair.connect(7);
    let local = pair.a.local_addr(client).unwrap();
    assert_eq!(*local.ip(), A);
    assert!(EPHEMERAL_PORTS.contains(&local.port()));
    assert_eq!(pair.a.peer_addr(client), Ok(SocketAddrV4::new(B, 7)));
    assert_eq!(pair.b.local_addr(server), Ok(SocketAddrV4::new(B, 7)));
    assert_eq!(
        pair.b.local_addr(listener),
        Ok(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7))
    );
    assert_eq!(pair.b.tcp_accept(listener), Err(SocketError::WouldBlock));
    assert_eq!(
        pair.b.tcp_recv(server, &mut [0; 8]),
        Err(SocketError::WouldBlock)
    );

    assert_eq!(pair.a.tcp_send(client, b"hello"), Ok(5));
    pair.settle();
    let got = recv_all(&mut pair.b, server);
    assert_eq!(got, b"hello");
    assert_eq!(pair.b.tcp_send(server, &got), Ok(5));
    pair.settle();
    assert_eq!(recv_all(&mut pair.a, client), b"hello");
}

#[test]
fn tcp_send_fills_the_buffer_then_would_block() {
    let mut pair = Pair::new(small());
    let (client, server, _) = pair.connect(7);
    let data = vec![7; 100_000];
    let sent = pair.a.tcp_send(client, &data).unwrap();
    assert_eq!(sent, small().tcp_buffer);
    assert_eq!(pair.a.tcp_send(client, &data), Err(SocketError::WouldBlock));
    // Reading on the other side lets the rest through.
    let mut total = sent;
    let mut received = 0;
    while received < data.len() {
        pair.settle();
        received += recv_all(&mut pair.b, server).len();
        if total < data.len() {
            total += pair.a.tcp_send(client, &data[total..]).unwrap_or(0);
        }
    }
    assert_eq!(received, data.len());
}

#[test]
fn tcp_eof_after_shutdown_and_half_close() {
    let mut pair = Pair::new(small());
    let (client, server, _) = pair.connect(7);
    pair.a.tcp_send(client, b"bye").unwrap();
    pair.a.tcp_shutdown(client).unwrap();
    assert_eq!(
        pair.a.tcp_send(client, b"more"),
        Err(SocketError::NotConnected)
    );
    pair.settle();
    let mut buf = [0; 16];
    assert_eq!(pair.b.tcp_recv(server, &mut buf), Ok(3));
    assert_eq!(pair.b.tcp_recv(server, &mut buf), Ok(0), "EOF");
    assert_eq!(pair.b.tcp_recv(server, &mut buf), Ok(0), "EOF stays");

    // Half-closed: the server still sends, the client still receives.
    pair.b.tcp_send(server, b"reply").unwrap();
    pair.b.tcp_shutdown(server).unwrap();
    pair.settle();
    assert_eq!(pair.a.tcp_recv(client, &mut buf), Ok(5));
    assert_eq!(&buf[..5], b"reply");
    assert_eq!(pair.a.tcp_recv(client, &mut buf), Ok(0));
    assert_eq!(pair.a.tcp_connected(client), Ok(true));
    assert_eq!(pair.b.tcp_connected(server), Ok(true));

    // After TIME-WAIT both are closed gracefully, still EOF, not reset.
    pair.run(Duration::from_secs(11));
    assert_eq!(pair.a.tcp_recv(client, &mut buf), Ok(0));
    assert_eq!(pair.b.tcp_recv(server, &mut buf), Ok(0));
    assert_eq!(pair.a.tcp_connected(client), Ok(true));
}

#[test]
fn tcp_connect_refused_by_rst() {
    let mut pair = Pair::new(small());
    let client = pair.a.tcp_connect(SocketAddrV4::new(B, 9), None).unwrap();
    pair.settle();
    assert_eq!(
        pair.a.tcp_connected(client),
        Err(SocketError::ConnectionRefused)
    );
    assert_eq!(
        pair.a.tcp_send(client, b"x"),
        Err(SocketError::ConnectionRefused)
    );
    assert_eq!(pair.a.peer_addr(client), Err(SocketError::NotConnected));
    pair.a.close(client).unwrap();
    pair.settle();
    assert_eq!(pair.a.socket_count(), 0);
}

#[test]
fn tcp_connect_to_nobody_gives_up() {
    let mut pair = Pair::new(small());
    pair.cut = true;
    let client = pair
        .a
        .tcp_connect(SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 99), 80), None)
        .unwrap();
    pair.run(Duration::from_secs(59));
    assert_eq!(pair.a.tcp_connected(client), Ok(false));
    let syns = pair.a.stats().tx_datagrams;
    assert!(syns >= 5, "{syns} SYNs");
    pair.run(Duration::from_secs(2));
    assert_eq!(pair.a.tcp_connected(client), Err(SocketError::Unreachable));
    // Nothing left to wake up for.
    assert_eq!(pair.a.poll_at(pair.now), None);
}

#[test]
fn lost_syn_ack_makes_one_connection() {
    let mut pair = Pair::new(small());
    let listener = pair.b.tcp_listen(SocketAddrV4::new(B, 7)).unwrap();
    let client = pair.a.tcp_connect(SocketAddrV4::new(B, 7), None).unwrap();
    pair.a.poll(pair.now);
    let syn = pair.a.take_outgoing().unwrap();
    pair.b.receive(&syn);
    pair.b.poll(pair.now);
    let _lost_syn_ack = pair.b.take_outgoing().unwrap();
    // The client retransmits its SYN first; the retransmission must not
    // open a second connection.
    pair.now += ms(1000);
    pair.a.poll(pair.now);
    let again = pair.a.take_outgoing().unwrap();
    assert_eq!(Flow::parse(&again).unwrap().0, Flow::parse(&syn).unwrap().0);
    pair.b.receive(&again);
    pair.b.poll(pair.now);
    pair.run(Duration::from_secs(3));
    assert_eq!(pair.a.tcp_connected(client), Ok(true));
    assert!(pair.b.tcp_accept(listener).is_ok());
    assert_eq!(pair.b.tcp_accept(listener), Err(SocketError::WouldBlock));
}

#[test]
fn udp_round_trip() {
    let mut pair = Pair::new(small());
    let server = pair
        .b
        .udp_bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 53))
        .unwrap();
    let client = pair
        .a
        .udp_bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
        .unwrap();
    let port = pair.a.local_addr(client).unwrap().port();
    assert!(EPHEMERAL_PORTS.contains(&port));
    let mut buf = [0; 64];
    assert_eq!(
        pair.b.udp_recv_from(server, &mut buf),
        Err(SocketError::WouldBlock)
    );

    pair.a
        .udp_send_to(client, b"query", SocketAddrV4::new(B, 53))
        .unwrap();
    pair.a
        .udp_send_to(client, b"", SocketAddrV4::new(B, 53))
        .unwrap();
    pair.settle();
    let (n, from) = pair.b.udp_recv_from(server, &mut buf).unwrap();
    assert_eq!(
        (&buf[..n], from),
        (&b"query"[..], SocketAddrV4::new(A, port))
    );
    assert_eq!(pair.b.udp_recv_from(server, &mut buf), Ok((0, from)));

    pair.b.udp_send_to(server, &[9; 100], from).unwrap();
    pair.settle();
    // Truncated to the buffer, the rest discarded.
    let mut small_buf = [0; 10];
    assert_eq!(
        pair.a.udp_recv_from(client, &mut small_buf),
        Ok((10, SocketAddrV4::new(B, 53)))
    );
    assert_eq!(
        pair.a.udp_recv_from(client, &mut buf),
        Err(SocketError::WouldBlock)
    );

    // The largest payload goes through; one byte more is refused.
    let big = vec![3; MAX_UDP_PAYLOAD];
    pair.a.udp_send_to(client, &big, from_b(53)).unwrap();
    assert_eq!(
        pair.a
            .udp_send_to(client, &[0; MAX_UDP_PAYLOAD + 1], from_b(53)),
        Err(SocketError::Limit)
    );
    pair.settle();
    let mut large = vec![0; 70_000];
    assert_eq!(
        pair.b.udp_recv_from(server, &mut large),
        Ok((MAX_UDP_PAYLOAD, SocketAddrV4::new(A, port)))
    );
    assert_eq!(&large[..MAX_UDP_PAYLOAD], &big[..]);
}

fn from_b(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(B, port)
}

#[test]
fn udp_send_ring_fills() {
    let mut endpoint = Endpoint::new(&[A], 24, GATEWAY, small(), Instant::ZERO);
    let socket = endpoint.udp_bind(SocketAddrV4::new(A, 5000)).unwrap();
    let mut sent = 0;
    while endpoint.udp_send_to(socket, b"x", from_b(9)).is_ok() {
        sent += 1;
    }
    assert_eq!(sent, small().udp_packets);
    assert_eq!(
        endpoint.udp_send_to(socket, b"x", from_b(9)),
        Err(SocketError::WouldBlock)
    );
    endpoint.poll(Instant::ZERO);
    assert!(endpoint.udp_send_to(socket, b"x", from_b(9)).is_ok());
}

#[test]
fn udp_to_a_closed_port_gets_port_unreachable() {
    let mut pair = Pair::new(small());
    let client = pair.a.udp_bind(SocketAddrV4::new(A, 4000)).unwrap();
    pair.a.udp_send_to(client, b"?", from_b(9)).unwrap();
    pair.settle();
    let (flow, _) = Flow::parse(pair.log.last().unwrap()).unwrap();
    assert_eq!(flow.src, B);
    assert!(matches!(
        flow.transport,
        Transport::Icmp(Icmp::Error { quoted: Some(_) })
    ));
}

#[test]
fn icmp_echo_is_answered() {
    let mut endpoint = Endpoint::new(&[A, B2], 24, GATEWAY, small(), Instant::ZERO);
    for to in [A, B2] {
        let request = packet::icmp_echo_request(B, to, 77, 3, b"ping data");
        assert!(endpoint.receive(&request));
        assert!(endpoint.poll(Instant::ZERO));
        let reply = endpoint.take_outgoing().unwrap();
        assert_eq!(reply, packet::icmp_echo_reply(to, B, 77, 3, b"ping data"));
        let (flow, _) = Flow::parse(&reply).unwrap();
        assert_eq!(
            flow.transport,
            Transport::Icmp(Icmp::EchoReply { ident: 77 })
        );
    }
    // Not for us, or with a bad checksum: no answer.
    let elsewhere = packet::icmp_echo_request(B, Ipv4Addr::new(10, 0, 1, 50), 1, 1, b"");
    let mut corrupt = packet::icmp_echo_request(B, A, 1, 1, b"abc");
    *corrupt.last_mut().unwrap() ^= 0xff;
    endpoint.receive(&elsewhere);
    endpoint.receive(&corrupt);
    endpoint.poll(Instant::ZERO);
    assert_eq!(endpoint.take_outgoing(), None);
}

#[test]
fn ten_thousand_sockets_past_the_limit_are_refused() {
    let limits = Limits {
        max_sockets: 8,
        tcp_buffer: 1024,
        backlog: 2,
        ..Limits::default()
    };
    let mut endpoint = Endpoint::new(&[A], 24, GATEWAY, limits, Instant::ZERO);
    let any = |port| SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(endpoint.udp_bind(any(0)).unwrap());
    }
    for _ in 0..2 {
        open.push(endpoint.tcp_connect(from_b(80), None).unwrap());
    }
    // The listener takes two slots for its backlog.
    open.push(endpoint.tcp_listen(any(80)).unwrap());
    assert_eq!(endpoint.socket_count(), 8);

    for i in 0..10_000u16 {
        let result = match i % 3 {
            0 => endpoint.udp_bind(any(0)),
            1 => endpoint.tcp_connect(from_b(81), None),
            _ => endpoint.tcp_listen(any(1000 + i)),
        };
        assert_eq!(result, Err(SocketError::Limit));
    }
    assert_eq!(endpoint.stats().sockets_refused, 10_000);
    assert_eq!(endpoint.socket_count(), 8);
    endpoint.poll(Instant::ZERO);

    // Closing one makes room for one.
    endpoint.close(open[0]).unwrap();
    assert_eq!(endpoint.socket_count(), 7);
    let again = endpoint.udp_bind(any(0)).unwrap();
    assert_eq!(endpoint.udp_bind(any(0)), Err(SocketError::Limit));
    assert!(again > open[open.len() - 1], "ids are never reused");
}

#[test]
fn backlog_keeps_several_pending_connections() {
    let limits = Limits {
        backlog: 4,
        ..small()
    };
    let mut pair = Pair::new(limits);
    let listener = pair.b.tcp_listen(SocketAddrV4::new(B, 80)).unwrap();
    assert_eq!(pair.b.socket_count(), 4);
    let clients: Vec<SocketId> = (0..6)
        .map(|_| pair.a.tcp_connect(from_b(80), None).unwrap())
        .collect();
    pair.settle();
    let connected: Vec<bool> = clients
        .iter()
        .map(|&c| pair.a.tcp_connected(c).unwrap())
        .collect();
    // A full backlog drops SYNs: the last two keep trying, not refused.
    assert_eq!(connected, [true, true, true, true, false, false]);
    assert_eq!(pair.b.socket_count(), 4);

    let mut peers = Vec::new();
    while let Ok((_, peer)) = pair.b.tcp_accept(listener) {
        peers.push(peer);
    }
    assert_eq!(peers.len(), 4);
    pair.run(Duration::from_secs(4));
    while let Ok((_, peer)) = pair.b.tcp_accept(listener) {
        peers.push(peer);
    }
    let expected: Vec<SocketAddrV4> = clients
        .iter()
        .map(|&c| pair.a.local_addr(c).unwrap())
        .collect();
    assert_eq!(peers, expected, "accepted oldest first");
    assert!(clients.iter().all(|&c| pair.a.tcp_connected(c) == Ok(true)));
    // Six accepted connections and a full backlog of listening sockets.
    assert_eq!(pair.b.socket_count(), 6 + 4);
}

#[test]
fn close_frees_slots() {
    let mut pair = Pair::new(small());
    let (client, server, listener) = pair.connect(7);
    assert_eq!(pair.a.socket_count(), 1);
    assert_eq!(pair.b.socket_count(), 16 + 1);
    pair.a.tcp_send(client, b"last words").unwrap();
    pair.a.close(client).unwrap();
    assert_eq!(pair.a.close(client), Err(SocketError::NoSuchSocket));
    assert_eq!(
        pair.a.tcp_send(client, b"x"),
        Err(SocketError::NoSuchSocket)
    );
    pair.settle();
    // The data sent before close arrives, then EOF.
    assert_eq!(recv_all(&mut pair.b, server), b"last words");
    assert_eq!(pair.b.tcp_recv(server, &mut [0; 4]), Ok(0));
    pair.b.close(server).unwrap();
    pair.settle();
    assert_eq!(pair.b.socket_count(), 16, "closed on the last ACK");
    assert_eq!(pair.a.socket_count(), 1, "in TIME-WAIT");
    pair.run(Duration::from_secs(11));
    assert_eq!(pair.a.socket_count(), 0);

    pair.b.close(listener).unwrap();
    assert_eq!(pair.b.socket_count(), 0);
    let udp = pair.b.udp_bind(from_b(53)).unwrap();
    assert_eq!(pair.b.socket_count(), 1);
    pair.b.close(udp).unwrap();
    assert_eq!(pair.b.socket_count(), 0);
}

#[test]
fn close_with_a_dead_peer_is_bounded() {
    let mut pair = Pair::new(small());
    let (client, _server, _) = pair.connect(7);
    pair.cut = true;
    pair.a.tcp_send(client, &[1; 1000]).unwrap();
    pair.a.close(client).unwrap();
    pair.run(Duration::from_secs(59));
    assert_eq!(pair.a.socket_count(), 1, "still retransmitting");
    pair.run(Duration::from_secs(2));
    assert_eq!(pair.a.socket_count(), 0);
}

#[test]
fn closing_a_listener_resets_what_it_did_not_hand_out() {
    let mut pair = Pair::new(small());
    let listener = pair.b.tcp_listen(from_b(80)).unwrap();
    let client = pair.a.tcp_connect(from_b(80), None).unwrap();
    pair.settle();
    assert_eq!(pair.a.tcp_connected(client), Ok(true));
    pair.b.close(listener).unwrap();
    pair.settle();
    assert_eq!(
        pair.a.tcp_recv(client, &mut [0; 4]),
        Err(SocketError::ConnectionReset)
    );
    assert_eq!(pair.b.socket_count(), 0);
    // The port is free again.
    assert!(pair.b.tcp_listen(from_b(80)).is_ok());
}

#[test]
fn addresses_and_ports_are_checked() {
    let mut e = Endpoint::new(&[A], 24, GATEWAY, small(), Instant::ZERO);
    let any = |port| SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
    let foreign = SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 99), 80);
    assert_eq!(e.tcp_listen(foreign), Err(SocketError::AddressNotAvailable));
    assert_eq!(e.udp_bind(foreign), Err(SocketError::AddressNotAvailable));
    assert_eq!(e.tcp_listen(any(0)), Err(SocketError::InvalidState));

    let listener = e.tcp_listen(any(80)).unwrap();
    assert_eq!(e.tcp_listen(any(80)), Err(SocketError::AddressInUse));
    assert_eq!(
        e.tcp_listen(SocketAddrV4::new(A, 80)),
        Err(SocketError::AddressInUse)
    );
    assert_eq!(
        e.tcp_connect(from_b(1), Some(80)),
        Err(SocketError::AddressInUse)
    );
    let udp = e.udp_bind(SocketAddrV4::new(A, 80)).unwrap();
    assert_eq!(e.udp_bind(any(80)), Err(SocketError::AddressInUse));
    let client = e.tcp_connect(from_b(1), Some(4000)).unwrap();
    assert_eq!(e.local_addr(client), Ok(SocketAddrV4::new(A, 4000)));
    assert_eq!(
        e.tcp_connect(from_b(2), Some(4000)),
        Err(SocketError::AddressInUse)
    );

    for bad in [
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80),
        SocketAddrV4::new(Ipv4Addr::BROADCAST, 80),
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 255), 80),
        SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 1), 80),
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, 80),
        from_b(0),
    ] {
        assert_eq!(
            e.tcp_connect(bad, None),
            Err(SocketError::Unreachable),
            "{bad}"
        );
        assert_eq!(
            e.udp_send_to(udp, b"x", bad),
            Err(SocketError::Unreachable),
            "{bad}"
        );
    }

    // The wrong kind of socket, and unknown ids.
    assert_eq!(e.tcp_send(udp, b"x"), Err(SocketError::InvalidState));
    assert_eq!(e.tcp_accept(client), Err(SocketError::InvalidState));
    assert_eq!(e.tcp_connected(listener), Err(SocketError::InvalidState));
    assert_eq!(
        e.udp_send_to(client, b"x", from_b(1)),
        Err(SocketError::InvalidState)
    );
    assert_eq!(e.peer_addr(listener), Err(SocketError::InvalidState));
    assert_eq!(e.peer_addr(client), Err(SocketError::NotConnected));
    assert_eq!(e.tcp_send(client, b"x"), Err(SocketError::WouldBlock));
    assert_eq!(e.tcp_shutdown(client), Err(SocketError::NotConnected));
    e.close(udp).unwrap();
    assert_eq!(
        e.udp_recv_from(udp, &mut [0; 4]),
        Err(SocketError::NoSuchSocket)
    );
    assert_eq!(e.local_addr(udp), Err(SocketError::NoSuchSocket));
}

#[test]
fn an_endpoint_without_addresses_refuses_politely() {
    let mut e = Endpoint::new(
        &[
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            Ipv4Addr::new(224, 0, 0, 1),
        ],
        40,
        GATEWAY,
        Limits {
            max_sockets: 0,
            tcp_buffer: 0,
            udp_packets: 0,
            backlog: 0,
            ..Limits::default()
        },
        Instant::ZERO,
    );
    assert!(e.addresses().is_empty());
    assert_eq!(e.tcp_connect(from_b(80), None), Err(SocketError::Limit));
    e.set_addresses(&[A]);
    assert_eq!(e.addresses(), [A]);
    assert!(!e.poll(Instant::ZERO));
}

#[test]
fn removing_an_address_aborts_what_is_bound_to_it() {
    let mut pair = Pair::with(&[A], &[B, B2], small());
    let any = |port| SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
    let on_b2 = pair.b.tcp_listen(SocketAddrV4::new(B2, 80)).unwrap();
    let on_any = pair.b.tcp_listen(any(81)).unwrap();
    let udp_b2 = pair.b.udp_bind(SocketAddrV4::new(B2, 53)).unwrap();
    let udp_any = pair.b.udp_bind(any(54)).unwrap();
    let c1 = pair.a.tcp_connect(SocketAddrV4::new(B2, 80), None).unwrap();
    let c2 = pair.a.tcp_connect(SocketAddrV4::new(B2, 81), None).unwrap();
    let c3 = pair.a.tcp_connect(SocketAddrV4::new(B, 81), None).unwrap();
    pair.settle();
    let (s1, _) = pair.b.tcp_accept(on_b2).unwrap();
    let (s2, _) = pair.b.tcp_accept(on_any).unwrap();

    pair.b.set_addresses(&[B]);
    pair.settle();
    assert_eq!(pair.b.addresses(), [B]);
    let mut buf = [0; 4];
    assert_eq!(
        pair.b.tcp_recv(s1, &mut buf),
        Err(SocketError::ConnectionReset)
    );
    assert_eq!(
        pair.b.tcp_recv(s2, &mut buf),
        Err(SocketError::ConnectionReset)
    );
    assert_eq!(
        pair.b.tcp_accept(on_b2),
        Err(SocketError::AddressNotAvailable)
    );
    assert_eq!(
        pair.b.udp_recv_from(udp_b2, &mut buf),
        Err(SocketError::AddressNotAvailable)
    );
    assert_eq!(
        pair.b.udp_recv_from(udp_any, &mut buf),
        Err(SocketError::WouldBlock)
    );
    // The peers saw the RSTs (a router would drop them by the source check).
    assert_eq!(
        pair.a.tcp_recv(c1, &mut buf),
        Err(SocketError::ConnectionReset)
    );
    assert_eq!(
        pair.a.tcp_recv(c2, &mut buf),
        Err(SocketError::ConnectionReset)
    );
    // What is bound to the remaining address or to all of them stays.
    assert_eq!(pair.a.tcp_connected(c3), Ok(true));
    let (s3, _) = pair.b.tcp_accept(on_any).unwrap();
    pair.a.tcp_send(c3, b"ok").unwrap();
    pair.settle();
    assert_eq!(recv_all(&mut pair.b, s3), b"ok");
}

#[test]
fn abort_all_resets_everything() {
    let mut pair = Pair::new(small());
    let (client, server, listener) = pair.connect(7);
    let udp = pair.b.udp_bind(from_b(53)).unwrap();
    pair.b.abort_all();
    pair.settle();
    let mut buf = [0; 4];
    assert_eq!(
        pair.a.tcp_recv(client, &mut buf),
        Err(SocketError::ConnectionReset)
    );
    assert_eq!(
        pair.b.tcp_recv(server, &mut buf),
        Err(SocketError::ConnectionReset)
    );
    assert_eq!(
        pair.b.tcp_accept(listener),
        Err(SocketError::ConnectionReset)
    );
    assert_eq!(
        pair.b.udp_recv_from(udp, &mut buf),
        Err(SocketError::ConnectionReset)
    );
    for id in [server, listener, udp] {
        pair.b.close(id).unwrap();
    }
    pair.settle();
    assert_eq!(pair.b.socket_count(), 0);
    // The endpoint still works.
    assert!(pair.b.tcp_listen(from_b(7)).is_ok());
}

#[test]
fn hostile_input_is_dropped_and_counted() {
    let limits = Limits {
        rx_queue: 64,
        ..small()
    };
    let mut e = Endpoint::new(&[A], 24, GATEWAY, limits, Instant::ZERO);
    let _listener = e.tcp_listen(SocketAddrV4::new(A, 80)).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let good = packet::tcp(from_b(1234), SocketAddrV4::new(A, 80), TcpFlags::SYN, b"");
    for round in 0..200 {
        let mut datagram = good.clone();
        match round % 4 {
            0 => datagram.truncate((next() % 60) as usize),
            1 => {
                let at = (next() % datagram.len() as u64) as usize;
                datagram[at] ^= 1 << (next() % 8);
            }
            2 => datagram = (0..next() % 200).map(|_| next() as u8).collect(),
            _ => datagram.extend((0..next() % 100).map(|_| next() as u8)),
        }
        e.receive(&datagram);
        if round % 32 == 0 {
            e.poll(Instant::from_millis(round));
        }
    }
    e.poll(Instant::from_millis(1000));
    while e.take_outgoing().is_some() {}
    // Past the queue, datagrams are refused and counted.
    for _ in 0..65 {
        e.receive(&good);
    }
    assert_eq!(e.stats().rx_dropped, 1);
    assert!(!e.receive(&vec![0; 65_536]));
    assert_eq!(e.stats().rx_dropped, 2);
    e.poll(Instant::from_millis(2000));
}

#[test]
fn same_calls_same_datagrams() {
    let run = || {
        let mut pair = Pair::new(small());
        let (client, server, _) = pair.connect(7);
        pair.a.tcp_send(client, &[5; 50_000]).unwrap_or(0);
        pair.run(Duration::from_secs(1));
        recv_all(&mut pair.b, server);
        pair.run(Duration::from_secs(1));
        pair.log
    };
    assert_eq!(run(), run());
}

#[test]
fn endpoints_can_move_between_threads() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<Endpoint>();
    assert_send::<SocketId>();
    assert_send::<SocketError>();
}

#[test]
fn a_transparent_endpoint_terminates_connections_to_any_address() {
    let mut pair = Pair::with(&[A], &[GATEWAY], small());
    let outside = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 7), 443);
    // Not transparent: neither binding nor receiving another address.
    assert_eq!(
        pair.b.tcp_listen(outside),
        Err(SocketError::AddressNotAvailable)
    );
    pair.b.set_transparent(true);
    let listener = pair.b.tcp_listen(outside).unwrap();
    assert!(pair.b.port_in_use(true, outside));
    assert!(
        !pair
            .b
            .port_in_use(true, SocketAddrV4::new(outside.ip().to_owned(), 444))
    );
    let client = pair.a.tcp_connect(outside, None).unwrap();
    pair.settle();
    assert_eq!(pair.a.tcp_connected(client), Ok(true));
    let (server, peer) = pair.b.tcp_accept(listener).unwrap();
    assert_eq!(peer.ip(), &A);
    // The answer comes from the address the client asked for.
    assert_eq!(pair.b.local_addr(server), Ok(outside));
    assert_eq!(pair.a.tcp_send(client, b"through"), Ok(7));
    pair.settle();
    let mut buf = [0; 16];
    assert_eq!(pair.b.tcp_recv(server, &mut buf), Ok(7));
    assert_eq!(&buf[..7], b"through");
    // Loopback and broadcast are never a host's.
    assert_eq!(
        pair.b
            .tcp_listen(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 80)),
        Err(SocketError::AddressNotAvailable)
    );
}

#[test]
fn sockets_waiting_in_time_wait_give_their_slots_to_new_ones() {
    let limits = Limits {
        max_sockets: 24,
        ..small()
    };
    let mut pair = Pair::new(limits);
    let listener = pair
        .b
        .tcp_listen(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80))
        .unwrap();
    // Four times as many connections as sockets, each closed first by the
    // client, whose socket then waits in TIME-WAIT longer than the run.
    for n in 0..4 * limits.max_sockets {
        let client = pair
            .a
            .tcp_connect(SocketAddrV4::new(B, 80), None)
            .unwrap_or_else(|e| panic!("connection {n}: {e:?}"));
        pair.settle();
        assert_eq!(pair.a.tcp_connected(client), Ok(true), "connection {n}");
        let (server, _) = pair.b.tcp_accept(listener).unwrap();
        pair.a.close(client).unwrap();
        pair.settle();
        pair.b.close(server).unwrap();
        pair.settle();
        assert!(pair.a.socket_count() <= limits.max_sockets);
    }
    assert_eq!(pair.a.stats().sockets_refused, 0);
    // Live sockets are never reclaimed: past the limit, a new one is refused.
    let held: Vec<SocketId> = (0..limits.max_sockets)
        .map_while(|_| pair.a.udp_bind(SocketAddrV4::new(A, 0)).ok())
        .collect();
    assert!(!held.is_empty());
    assert_eq!(
        pair.a.udp_bind(SocketAddrV4::new(A, 0)),
        Err(SocketError::Limit)
    );
}

#[test]
fn time_wait_is_bounded() {
    let mut pair = Pair::new(small());
    let listener = pair
        .b
        .tcp_listen(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80))
        .unwrap();
    for _ in 0..MAX_TIME_WAIT + 20 {
        let client = pair.a.tcp_connect(SocketAddrV4::new(B, 80), None).unwrap();
        pair.settle();
        let (server, _) = pair.b.tcp_accept(listener).unwrap();
        pair.a.close(client).unwrap();
        pair.settle();
        pair.b.close(server).unwrap();
        pair.settle();
    }
    // Only the client closed first, so only it waits in TIME-WAIT: at most
    // the bound of them remain.
    assert_eq!(pair.a.socket_count(), MAX_TIME_WAIT);
}
