//! TCP through weft's data path — two smoltcp endpoints joined by the
//! router, with security groups and connection tracking on every datagram,
//! pumped in one thread as the host pumps them — beside kernel loopback TCP
//! between two threads, in the same run. Prints bulk throughput (Gbit/s)
//! and 64-byte request/response transactions per second, and the ratios.
//!
//! Run: `cargo bench -p weft-netstack --bench tcp`. The guest ABI's cost is
//! not in this figure; `cargo bench -p weft-integration --bench guest_net`
//! measures the same between two guest instances, end to end.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::time::{Duration, Instant as Clock};
use weft_netstack::endpoint::{Endpoint, Instant, Limits, SocketError, SocketId};
use weft_netstack::router::{Config, Verdict};
use weft_netstack::secgroup::{Peer, Protocol, Rule};
use weft_netstack::{Direction, GroupId, NicId, Record, Router, SecurityGroup, SubnetId};

const BULK: usize = 256 << 20;
const TRANSACTIONS: usize = 20_000;

struct Pair {
    router: Router,
    ends: [(NicId, Endpoint); 2],
    start: Clock,
}

impl Pair {
    fn new() -> Pair {
        let mut router = Router::new(Config::default());
        let group = GroupId::from_entropy(1);
        let mut sg = SecurityGroup::new(group, "bench").unwrap();
        sg.add_rule(
            Direction::Ingress,
            Rule::new(Protocol::Tcp, None, Peer::Any).unwrap(),
        )
        .unwrap();
        router.set_group(sg);
        let subnet = SubnetId::from_entropy(2);
        let mut ends = Vec::new();
        for (i, ip) in [Ipv4Addr::new(10, 0, 1, 2), Ipv4Addr::new(10, 0, 1, 3)]
            .into_iter()
            .enumerate()
        {
            let mut record = Record::new(NicId::from_entropy(10 + i as u64), subnet, ip);
            record.set_security_groups(vec![group]).unwrap();
            record.attach(format!("inst-{i}"), 0).unwrap();
            router.attach(&record).unwrap();
            let endpoint = Endpoint::new(
                &[ip],
                24,
                Ipv4Addr::new(10, 0, 1, 1),
                Limits {
                    tcp_buffer: 1 << 20,
                    ..Limits::default()
                },
                Instant::from_micros(0),
            );
            ends.push((record.id(), endpoint));
        }
        let [a, b]: [(NicId, Endpoint); 2] = ends.try_into().map_err(|_| ()).unwrap();
        Pair {
            router,
            ends: [a, b],
            start: Clock::now(),
        }
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.start.elapsed().as_micros() as i64)
    }

    /// Polls both ends and routes what they send until quiet.
    fn pump(&mut self) {
        let now = self.now();
        loop {
            let mut moved = false;
            for i in 0..2 {
                self.ends[i].1.poll(now);
                while let Some(datagram) = self.ends[i].1.take_outgoing() {
                    moved = true;
                    if let Verdict::Deliver { packet, .. } =
                        self.router.route(now, self.ends[i].0, &datagram)
                    {
                        self.ends[1 - i].1.receive(packet);
                    }
                }
            }
            if !moved {
                break;
            }
        }
    }

    fn connect(&mut self) -> (SocketId, SocketId) {
        let server = SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 3), 5001);
        let listener = self.ends[1].1.tcp_listen(server).unwrap();
        let client = self.ends[0].1.tcp_connect(server, None).unwrap();
        loop {
            self.pump();
            if let Ok((conn, _)) = self.ends[1].1.tcp_accept(listener) {
                return (client, conn);
            }
        }
    }
}

fn netstack_bulk() -> f64 {
    let mut pair = Pair::new();
    let (client, server) = pair.connect();
    let chunk = vec![0x5a; 256 << 10];
    let mut buf = vec![0; 256 << 10];
    let (mut sent, mut received) = (0, 0);
    let started = Clock::now();
    while received < BULK {
        if sent < BULK {
            match pair.ends[0]
                .1
                .tcp_send(client, &chunk[..chunk.len().min(BULK - sent)])
            {
                Ok(n) => sent += n,
                Err(SocketError::WouldBlock) => {}
                Err(e) => panic!("send: {e}"),
            }
        }
        pair.pump();
        loop {
            match pair.ends[1].1.tcp_recv(server, &mut buf) {
                Ok(0) => panic!("eof"),
                Ok(n) => received += n,
                Err(SocketError::WouldBlock) => break,
                Err(e) => panic!("recv: {e}"),
            }
        }
    }
    BULK as f64 * 8.0 / started.elapsed().as_secs_f64() / 1e9
}

fn netstack_rr() -> f64 {
    let mut pair = Pair::new();
    let (client, server) = pair.connect();
    let message = [7u8; 64];
    let mut buf = [0u8; 64];
    let started = Clock::now();
    for _ in 0..TRANSACTIONS {
        for (from, to, socket_from, socket_to) in [(0, 1, client, server), (1, 0, server, client)] {
            assert_eq!(
                pair.ends[from].1.tcp_send(socket_from, &message).unwrap(),
                64
            );
            let mut got = 0;
            while got < 64 {
                pair.pump();
                match pair.ends[to].1.tcp_recv(socket_to, &mut buf[got..]) {
                    Ok(n) => got += n,
                    Err(SocketError::WouldBlock) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        }
    }
    TRANSACTIONS as f64 / started.elapsed().as_secs_f64()
}

fn kernel_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    client.set_nodelay(true).unwrap();
    server.set_nodelay(true).unwrap();
    (client, server)
}

fn kernel_bulk() -> f64 {
    let (mut client, mut server) = kernel_pair();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0; 256 << 10];
        let mut received = 0;
        while received < BULK {
            received += server.read(&mut buf).unwrap();
        }
    });
    let chunk = vec![0x5a; 256 << 10];
    let started = Clock::now();
    let mut sent = 0;
    while sent < BULK {
        client.write_all(&chunk).unwrap();
        sent += chunk.len();
    }
    reader.join().unwrap();
    BULK as f64 * 8.0 / started.elapsed().as_secs_f64() / 1e9
}

fn kernel_rr() -> f64 {
    let (mut client, mut server) = kernel_pair();
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        for _ in 0..TRANSACTIONS {
            server.read_exact(&mut buf).unwrap();
            server.write_all(&buf).unwrap();
        }
    });
    let message = [7u8; 64];
    let mut buf = [0u8; 64];
    let started = Clock::now();
    for _ in 0..TRANSACTIONS {
        client.write_all(&message).unwrap();
        client.read_exact(&mut buf).unwrap();
    }
    echo.join().unwrap();
    TRANSACTIONS as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let (ours_bulk, kernel_bulk) = (netstack_bulk(), kernel_bulk());
    let (ours_rr, kernel_rr) = (netstack_rr(), kernel_rr());
    let us = |rate: f64| Duration::from_secs_f64(1.0 / rate).as_secs_f64() * 1e6;
    println!(
        "TCP, {} MiB bulk and {TRANSACTIONS} 64-byte request/responses",
        BULK >> 20
    );
    println!(
        "{:<48} {:>10} {:>14} {:>10}",
        "", "Gbit/s", "transactions/s", "µs/RR"
    );
    println!(
        "{:<48} {:>10.2} {:>14.0} {:>10.1}",
        "weft: endpoint -> router -> endpoint (1 thread)",
        ours_bulk,
        ours_rr,
        us(ours_rr)
    );
    println!(
        "{:<48} {:>10.2} {:>14.0} {:>10.1}",
        "kernel loopback, two threads",
        kernel_bulk,
        kernel_rr,
        us(kernel_rr)
    );
    println!(
        "ratio weft/kernel: bulk {:.2}x, transactions {:.2}x",
        ours_bulk / kernel_bulk,
        ours_rr / kernel_rr
    );
}
