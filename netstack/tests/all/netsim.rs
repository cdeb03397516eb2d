//! Endpoints over the router in a seeded simulation of loss, delay and
//! reordering (after smoltcp's `tests/netsim.rs`), and a throughput sanity
//! check of two endpoints back to back.
//!
//! Time is simulated: the loop runs both endpoints until they are quiet,
//! then jumps to the next delivery or timer, so a run of many simulated
//! seconds takes milliseconds and replays exactly from its seed.

use core::net::{Ipv4Addr, SocketAddrV4};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpProtocol, Ipv4Packet, TcpPacket};
use weft_netstack::endpoint::{Endpoint, Limits, SocketError, SocketId};
use weft_netstack::id::NicId;
use weft_netstack::router::{Config, Verdict};

use weft_netstack::packet;
use weft_netstack::secgroup::{Peer, Protocol, Rule};

use crate::support::{Net, Rng, tcp_rule};

const TRANSFER: usize = 4 << 20;
const SEEDS: [u64; 4] = [1, 2, 3, 0x5eed];

/// FNV-1a, to check that the bytes arrive intact and in order.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// What the link does to each datagram the router delivers.
#[derive(Clone, Copy)]
struct Link {
    /// Dropped, per thousand.
    loss: u64,
    /// Every datagram waits at least this long…
    delay: Duration,
    /// …plus up to this many microseconds more, so datagrams overtake each other.
    jitter_us: u64,
}

struct Host {
    nic: NicId,
    endpoint: Endpoint,
    /// Datagrams it sent that the router delivered (or the link lost).
    sent: u64,
    /// TCP payload bytes in them: over the transfer size, the retransmissions.
    payload: u64,
}

/// A datagram on the link, ordered by arrival, then by when it was sent.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    /// Arrival, in µs of simulated time.
    arrival: i64,
    sequence: u64,
    /// The receiving host.
    to: usize,
    datagram: Vec<u8>,
}

struct Sim {
    net: Net,
    hosts: [Host; 2],
    now: Instant,
    rng: Rng,
    link: Link,
    /// Datagrams in flight, the earliest arrival on top.
    in_flight: BinaryHeap<Reverse<InFlight>>,
    sequence: u64,
    lost: u64,
    router_drops: u64,
}

impl Sim {
    fn new(seed: u64, link: Link, limits: Limits) -> Sim {
        let mut net = Net::new(Config::default());
        let ping = Rule::new(Protocol::Icmp, None, Peer::Any).unwrap();
        let web = net.group("web", &[tcp_rule("80"), ping]);
        let mut host = |name: &str| {
            let record = net.attach(name, &[web]);
            let ips: Vec<Ipv4Addr> = record.ips().collect();
            let gateway = net.subnet.gateway();
            let prefix = net.subnet.cidr().prefix_len();
            Host {
                nic: record.id(),
                endpoint: Endpoint::new(&ips, prefix, gateway, limits, Instant::ZERO),
                sent: 0,
                payload: 0,
            }
        };
        let hosts = [host("inst-client"), host("inst-server")];
        Sim {
            net,
            hosts,
            now: Instant::ZERO,
            rng: Rng::new(seed),
            link,
            in_flight: BinaryHeap::new(),
            sequence: 0,
            lost: 0,
            router_drops: 0,
        }
    }

    fn address(&self, host: usize) -> Ipv4Addr {
        self.hosts[host].endpoint.addresses()[0]
    }

    /// Polls both endpoints, routes what they sent onto the link and
    /// delivers what has arrived. Returns whether anything happened.
    fn step(&mut self) -> bool {
        let mut busy = false;
        for host in 0..2 {
            busy |= self.hosts[host].endpoint.poll(self.now);
        }
        for from in 0..2 {
            while let Some(datagram) = self.hosts[from].endpoint.take_outgoing() {
                busy = true;
                self.hosts[from].sent += 1;
                self.hosts[from].payload += tcp_payload(&datagram) as u64;
                let nic = self.hosts[from].nic;
                let to = match self.net.router.route(self.now, nic, &datagram) {
                    Verdict::Deliver { to, .. } => to,
                    Verdict::Drop(_) => {
                        self.router_drops += 1;
                        continue;
                    }
                };
                if self.rng.below(1000) < self.link.loss {
                    self.lost += 1;
                    continue;
                }
                let to = usize::from(to == self.hosts[1].nic);
                let delay =
                    self.link.delay.total_micros() + self.rng.below(self.link.jitter_us + 1);
                let arrival = self.now.total_micros() + delay as i64;
                self.sequence += 1;
                self.in_flight.push(Reverse(InFlight {
                    arrival,
                    sequence: self.sequence,
                    to,
                    datagram,
                }));
            }
        }
        while let Some(Reverse(next)) = self.in_flight.peek() {
            if next.arrival > self.now.total_micros() {
                break;
            }
            let Some(Reverse(InFlight { to, datagram, .. })) = self.in_flight.pop() else {
                break;
            };
            busy = true;
            assert!(self.hosts[to].endpoint.receive(&datagram));
        }
        busy
    }

    /// Moves the clock to the next arrival or timer (at least 1 µs on).
    /// Returns false if nothing will ever happen again.
    fn advance(&mut self) -> bool {
        let now = self.now;
        let next = [
            self.in_flight
                .peek()
                .map(|Reverse(next)| Instant::from_micros(next.arrival)),
            self.hosts[0].endpoint.poll_at(now),
            self.hosts[1].endpoint.poll_at(now),
        ]
        .into_iter()
        .flatten()
        .min();
        match next {
            Some(at) => {
                self.now = at.max(now + Duration::from_micros(1));
                true
            }
            None => false,
        }
    }
}

/// The TCP payload length of a datagram, or 0.
fn tcp_payload(datagram: &[u8]) -> usize {
    let Ok(ip) = Ipv4Packet::new_checked(datagram) else {
        return 0;
    };
    if ip.next_header() != IpProtocol::Tcp {
        return 0;
    }
    TcpPacket::new_checked(ip.payload()).map_or(0, |tcp| tcp.payload().len())
}

/// The outcome of one transfer.
struct Transfer {
    received: usize,
    hash: u64,
    elapsed: Duration,
}

/// Sends `data` from host 0 to a listener on host 1, port 80, reading on
/// the other side as fast as it arrives, then closes; returns what arrived.
fn transfer(sim: &mut Sim, data: &[u8]) -> Transfer {
    let server_at = SocketAddrV4::new(sim.address(1), 80);
    let listener = sim.hosts[1]
        .endpoint
        .tcp_listen(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80))
        .unwrap();
    let client = sim.hosts[0].endpoint.tcp_connect(server_at, None).unwrap();
    let start = sim.now;
    let mut server: Option<SocketId> = None;
    let (mut sent, mut shut, mut eof) = (0, false, false);
    let mut hash = Fnv::new();
    let mut received = 0;
    let mut buf = vec![0; 64 * 1024];
    for _ in 0..10_000_000 {
        // The applications.
        if sent < data.len() {
            match sim.hosts[0].endpoint.tcp_send(client, &data[sent..]) {
                Ok(n) => sent += n,
                Err(SocketError::WouldBlock) => {}
                Err(e) => panic!("send: {e}"),
            }
        } else if !shut {
            sim.hosts[0].endpoint.tcp_shutdown(client).unwrap();
            shut = true;
        }
        if server.is_none() {
            match sim.hosts[1].endpoint.tcp_accept(listener) {
                Ok((socket, peer)) => {
                    assert_eq!(*peer.ip(), sim.address(0));
                    server = Some(socket);
                }
                Err(SocketError::WouldBlock) => {}
                Err(e) => panic!("accept: {e}"),
            }
        }
        if let Some(socket) = server {
            loop {
                match sim.hosts[1].endpoint.tcp_recv(socket, &mut buf) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => {
                        hash.update(&buf[..n]);
                        received += n;
                    }
                    Err(SocketError::WouldBlock) => break,
                    Err(e) => panic!("recv: {e}"),
                }
            }
        }
        if eof {
            let elapsed = sim.now - start;
            sim.hosts[0].endpoint.close(client).unwrap();
            sim.hosts[1].endpoint.close(server.unwrap()).unwrap();
            return Transfer {
                received,
                hash: hash.0,
                elapsed,
            };
        }
        // The network.
        if !sim.step() {
            assert!(sim.advance(), "stuck at {} with {received} bytes", sim.now);
        }
    }
    panic!("no EOF after {received} bytes");
}

fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut data = vec![0; len];
    Rng::new(seed ^ 0xda7a).fill(&mut data);
    data
}

#[test]
fn tcp_transfer_survives_loss_and_reordering() {
    // Full-size segments (64 KiB) in a 256 KiB window, 5% loss.
    let link = Link {
        loss: 50,
        delay: Duration::from_millis(1),
        jitter_us: 4_000,
    };
    for seed in SEEDS {
        run_transfer("wide", seed, link, Limits::default());
    }
}

#[test]
fn tcp_transfer_survives_loss_and_reordering_in_small_windows() {
    // 8 KiB windows: many more segments, each more likely to overtake
    // another, and 10% loss.
    let link = Link {
        loss: 100,
        delay: Duration::from_millis(2),
        jitter_us: 20_000,
    };
    let limits = Limits {
        tcp_buffer: 8 * 1024,
        ..Limits::default()
    };
    for seed in SEEDS {
        run_transfer("narrow", seed, link, limits);
    }
}

fn run_transfer(name: &str, seed: u64, link: Link, limits: Limits) {
    let mut sim = Sim::new(seed, link, limits);
    let data = data(seed, TRANSFER);
    let mut expected = Fnv::new();
    expected.update(&data);

    let outcome = transfer(&mut sim, &data);
    assert_eq!(outcome.received, data.len(), "{name} seed {seed}");
    assert_eq!(outcome.hash, expected.0, "{name} seed {seed}: corrupted");
    assert_eq!(sim.router_drops, 0, "{name} seed {seed}");

    let client = &sim.hosts[0];
    let retransmitted = client.payload.saturating_sub(data.len() as u64);
    println!(
        "{name} seed {seed:#x}: {} MiB in {} simulated; datagrams sent {} + {}, lost {}; \
         retransmitted {} KiB ({:.1}%)",
        TRANSFER >> 20,
        outcome.elapsed,
        client.sent,
        sim.hosts[1].sent,
        sim.lost,
        retransmitted / 1024,
        retransmitted as f64 * 100.0 / data.len() as f64,
    );

    // Both sides close cleanly; after TIME-WAIT no socket is left but the
    // listener's backlog.
    for _ in 0..100_000 {
        if !sim.step() && (!sim.advance() || sim.now > outcome_end(&outcome)) {
            break;
        }
    }
    assert_eq!(
        sim.hosts[0].endpoint.socket_count(),
        0,
        "{name} seed {seed}"
    );
    assert_eq!(
        sim.hosts[1].endpoint.socket_count(),
        limits.backlog,
        "{name} seed {seed}"
    );
}

/// A time by which every close has finished (TIME-WAIT is 10 s).
fn outcome_end(outcome: &Transfer) -> Instant {
    Instant::ZERO + outcome.elapsed + Duration::from_secs(600)
}

#[test]
fn same_seed_same_run() {
    let link = Link {
        loss: 100,
        delay: Duration::from_millis(2),
        jitter_us: 10_000,
    };
    let run = || {
        let mut sim = Sim::new(7, link, Limits::default());
        let outcome = transfer(&mut sim, &data(7, 256 * 1024));
        (
            outcome.elapsed,
            outcome.hash,
            sim.hosts[0].sent,
            sim.hosts[1].sent,
            sim.lost,
        )
    };
    assert_eq!(run(), run());
}

#[test]
fn ping_through_the_router() {
    let link = Link {
        loss: 0,
        delay: Duration::from_millis(1),
        jitter_us: 0,
    };
    let mut sim = Sim::new(1, link, Limits::default());
    let (client, server) = (sim.address(0), sim.address(1));
    let request = packet::icmp_echo_request(client, server, 1, 9, b"hi");
    let nic = sim.hosts[0].nic;
    let Verdict::Deliver { to, packet } = sim.net.router.route(sim.now, nic, &request) else {
        panic!("the group allows ICMP in");
    };
    assert_eq!(to, sim.hosts[1].nic);
    assert!(sim.hosts[1].endpoint.receive(packet));
    sim.hosts[1].endpoint.poll(sim.now);
    let reply = sim.hosts[1].endpoint.take_outgoing().unwrap();
    assert_eq!(reply, packet::icmp_echo_reply(server, client, 1, 9, b"hi"));
    let Verdict::Deliver { to, .. } = sim.net.router.route(sim.now, to, &reply) else {
        panic!("the reply is tracked");
    };
    assert_eq!(to, nic);
}

#[test]
fn throughput_back_to_back() {
    const BYTES: usize = 16 << 20;
    let limits = Limits::default();
    let (a_ip, b_ip) = (Ipv4Addr::new(10, 0, 1, 2), Ipv4Addr::new(10, 0, 1, 3));
    let gateway = Ipv4Addr::new(10, 0, 1, 1);
    let mut a = Endpoint::new(&[a_ip], 24, gateway, limits, Instant::ZERO);
    let mut b = Endpoint::new(&[b_ip], 24, gateway, limits, Instant::ZERO);
    let listener = b.tcp_listen(SocketAddrV4::new(b_ip, 5001)).unwrap();
    let client = a.tcp_connect(SocketAddrV4::new(b_ip, 5001), None).unwrap();
    let data = data(99, BYTES);
    let mut expected = Fnv::new();
    expected.update(&data);

    let wall = std::time::Instant::now();
    let mut now = Instant::ZERO;
    let (mut sent, mut received, mut server) = (0, 0, None);
    let mut hash = Fnv::new();
    let mut buf = vec![0; 256 * 1024];
    let mut rounds = 0u64;
    while received < BYTES {
        rounds += 1;
        assert!(rounds < 10_000_000, "stalled at {received} bytes");
        if sent < BYTES {
            sent += a.tcp_send(client, &data[sent..]).unwrap_or(0);
        }
        if server.is_none() {
            server = b.tcp_accept(listener).ok().map(|(s, _)| s);
        }
        if let Some(s) = server {
            while let Ok(n @ 1..) = b.tcp_recv(s, &mut buf) {
                hash.update(&buf[..n]);
                received += n;
            }
        }
        let mut busy = a.poll(now) | b.poll(now);
        while let Some(d) = a.take_outgoing() {
            busy = true;
            b.receive(&d);
        }
        while let Some(d) = b.take_outgoing() {
            busy = true;
            a.receive(&d);
        }
        if !busy {
            let next = [a.poll_at(now), b.poll_at(now)].into_iter().flatten().min();
            now = next.unwrap_or(now).max(now + Duration::from_micros(10));
        }
    }
    let seconds = wall.elapsed().as_secs_f64();
    assert_eq!(hash.0, expected.0, "corrupted");
    println!(
        "{} MiB back to back in {:.3} s wall ({:.0} MB/s, {} build), {} simulated, \
         {} + {} datagrams",
        BYTES >> 20,
        seconds,
        BYTES as f64 / seconds / 1e6,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        now,
        a.stats().tx_datagrams,
        b.stats().tx_datagrams,
    );
}
