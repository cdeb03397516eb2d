//! Hostile traffic: malformed, oversized and random datagrams, and a SYN
//! flood. Everything is dropped and counted, nothing panics, and tracked
//! traffic keeps flowing.

use core::net::Ipv4Addr;

use smoltcp::wire::Ipv4Packet;
use weft_netstack::conntrack::DEFAULT_CAPACITY;
use weft_netstack::flow::TcpFlags;
use weft_netstack::id::NicId;
use weft_netstack::packet;
use weft_netstack::router::{Config, DropReason, Verdict};

use crate::support::{Net, Rng, at, secs, tcp_rule};

const MTU: usize = 1500;
const RANDOM_PACKETS: usize = 100_000;

#[test]
fn malformed_and_oversized_datagrams_are_dropped_and_counted() {
    let mut net = Net::new(Config {
        mtu: MTU,
        ..Config::default()
    });
    let web = net.group("web", &[tcp_rule("80")]);
    let (a, b) = (net.attach("inst-a", &[web]), net.attach("inst-b", &[web]));
    let good = packet::tcp(at(&a, 1000), at(&b, 80), TcpFlags::SYN, &[7; 1460]);
    assert_eq!(good.len(), MTU);
    assert_eq!(net.send(secs(0), a.id(), &good), Ok(b.id()));

    let oversized = packet::tcp(at(&a, 1000), at(&b, 80), TcpFlags::ACK, &[7; 1461]);
    assert_eq!(
        net.send(secs(0), a.id(), &oversized),
        Err(DropReason::TooLarge)
    );
    // Short buffers are too large only by MTU; anything under is parsed.
    let mut padded = good.clone();
    padded.push(0);
    assert_eq!(
        net.send(secs(0), a.id(), &padded),
        Err(DropReason::TooLarge)
    );

    // Every truncation of a good datagram is malformed.
    for len in 0..good.len() {
        assert_eq!(
            net.send(secs(0), a.id(), &good[..len]),
            Err(DropReason::Malformed),
            "len {len}"
        );
    }
    let counters = net.router.counters(a.id()).unwrap();
    assert_eq!(counters.drops(DropReason::TooLarge), 2);
    assert_eq!(counters.drops(DropReason::Malformed), good.len() as u64);
    assert_eq!(counters.tx_packets, 1);
    assert_eq!(net.router.counters(b.id()).unwrap().rx_packets, 1);
}

/// Writes a random datagram into `buffer`: pure noise, or a valid IPv4
/// header (from `src`, to `dst` or elsewhere) over random transport bytes.
fn random_datagram(
    rng: &mut Rng,
    buffer: &mut Vec<u8>,
    structured: bool,
    src: Ipv4Addr,
    dst: Ipv4Addr,
) {
    let len = rng.below(MTU as u64 + 100) as usize;
    buffer.resize(len, 0);
    rng.fill(buffer);
    if !structured || len < 20 {
        return;
    }
    let mut header = Ipv4Packet::new_unchecked(&mut buffer[..]);
    header.set_version(4);
    header.set_header_len(20);
    header.set_total_len(len.min(usize::from(u16::MAX)) as u16);
    header.clear_flags();
    header.set_frag_offset(0);
    header.set_next_header([1u8, 6, 17, 47][rng.below(4) as usize].into());
    header.set_src_addr(src);
    if rng.below(4) != 0 {
        header.set_dst_addr(dst);
    }
    header.fill_checksum();
}

#[test]
fn random_datagrams_never_panic_and_are_all_counted() {
    let mut net = Net::new(Config {
        mtu: MTU,
        ..Config::default()
    });
    let open = net.group(
        "open",
        &[weft_netstack::secgroup::Rule::all(
            weft_netstack::secgroup::Peer::Any,
        )],
    );
    let (a, b) = (net.attach("inst-a", &[open]), net.attach("inst-b", &[open]));
    let mut rng = Rng::new(0x5eed);
    let mut buffer = Vec::with_capacity(MTU + 100);
    let (mut noise_delivered, mut delivered) = (0, 0);
    for i in 0..RANDOM_PACKETS {
        let structured = i % 2 == 1;
        random_datagram(
            &mut rng,
            &mut buffer,
            structured,
            a.primary_ip(),
            b.primary_ip(),
        );
        let now = secs((i / 1000) as i64);
        match net.router.route(now, a.id(), &buffer) {
            Verdict::Deliver { to, packet } => {
                assert_eq!(to, b.id());
                assert!(packet.len() <= buffer.len());
                delivered += 1;
                if !structured {
                    noise_delivered += 1;
                }
            }
            Verdict::Drop(_) => {}
        }
    }
    assert_eq!(
        noise_delivered, 0,
        "pure noise never forms a valid datagram from a's address"
    );
    let counters = net.router.counters(a.id()).unwrap();
    assert_eq!(
        counters.tx_packets + counters.dropped(),
        RANDOM_PACKETS as u64
    );
    assert_eq!(counters.tx_packets, delivered);
    assert_eq!(net.router.counters(b.id()).unwrap().rx_packets, delivered);
    assert!(counters.drops(DropReason::Malformed) > (RANDOM_PACKETS / 3) as u64);
    assert!(counters.drops(DropReason::TooLarge) > 0);
    assert!(delivered > 0, "structured datagrams reach b");

    // From a port that is not attached, everything is dropped, and counted
    // in the router's totals only.
    let stranger = NicId::from_entropy(0xdead);
    for _ in 0..1000 {
        random_datagram(&mut rng, &mut buffer, true, a.primary_ip(), b.primary_ip());
        assert_eq!(
            net.router.route(secs(100), stranger, &buffer),
            Verdict::Drop(DropReason::UnknownPort)
        );
    }
    assert_eq!(net.router.totals().drops(DropReason::UnknownPort), 1000);
}

/// The limit: each port tracks at most `DEFAULT_CAPACITY` (16384) live flows.
/// A SYN flood at a server fills its table; then its tracked flows go on,
/// new flows to it are refused (`ConntrackFull`, counted on it) until the
/// flood's unanswered SYNs time out after 30 s.
#[test]
fn a_syn_flood_fills_conntrack_and_tracked_traffic_survives() {
    let mut net = Net::new(Config::default());
    let web = net.group("web", &[tcp_rule("80")]);
    let closed = net.group("closed", &[]);
    let server = net.attach("inst-server", &[web]);
    let client = net.attach("inst-client", &[closed]);
    let attacker = net.attach("inst-attacker", &[closed]);

    let request = |port, flags| packet::tcp(at(&client, port), at(&server, 80), flags, b"GET /");
    let response = |port, flags| packet::tcp(at(&server, 80), at(&client, port), flags, b"200");
    assert_eq!(
        net.send(secs(0), client.id(), &request(40000, TcpFlags::SYN)),
        Ok(server.id())
    );
    assert_eq!(
        net.send(secs(0), server.id(), &response(40000, TcpFlags::SYN_ACK)),
        Ok(client.id())
    );
    assert_eq!(
        net.send(secs(0), client.id(), &request(40000, TcpFlags::ACK)),
        Ok(server.id())
    );

    let extra = 5_000;
    let (mut accepted, mut refused) = (0, 0);
    for port in 0..(DEFAULT_CAPACITY + extra) as u16 {
        let syn = packet::tcp(at(&attacker, port), at(&server, 80), TcpFlags::SYN, b"");
        match net.send(secs(1), attacker.id(), &syn) {
            Ok(to) => {
                assert_eq!(to, server.id());
                accepted += 1;
            }
            Err(reason) => {
                assert_eq!(reason, DropReason::ConntrackFull);
                refused += 1;
            }
        }
    }
    // The client's flow holds one entry; the flood got the rest.
    assert_eq!(accepted, DEFAULT_CAPACITY - 1);
    assert_eq!(refused, extra + 1);
    let table = net.router.conntrack(server.id()).unwrap();
    assert_eq!(table.len(), DEFAULT_CAPACITY);
    assert_eq!(table.refused(), refused as u64);
    let counters = net.router.counters(server.id()).unwrap();
    assert_eq!(counters.drops(DropReason::ConntrackFull), refused as u64);
    assert_eq!(
        net.router.counters(attacker.id()).unwrap().dropped(),
        0,
        "drops count where they happen"
    );

    // Tracked traffic flows on, both ways; a new flow is refused.
    for t in 2..10 {
        assert_eq!(
            net.send(secs(t), client.id(), &request(40000, TcpFlags::ACK)),
            Ok(server.id())
        );
        assert_eq!(
            net.send(secs(t), server.id(), &response(40000, TcpFlags::ACK)),
            Ok(client.id())
        );
    }
    assert_eq!(
        net.send(secs(10), client.id(), &request(40001, TcpFlags::SYN)),
        Err(DropReason::ConntrackFull)
    );

    // The flood's SYNs (sent at 1 s) expire at 31 s; new flows fit again,
    // and the table purges itself without an `expire` call.
    assert_eq!(
        net.send(secs(30), client.id(), &request(40001, TcpFlags::SYN)),
        Err(DropReason::ConntrackFull)
    );
    assert_eq!(
        net.send(secs(31), client.id(), &request(40001, TcpFlags::SYN)),
        Ok(server.id())
    );
    assert_eq!(net.router.conntrack(server.id()).unwrap().len(), 2);
    assert_eq!(
        net.send(secs(31), client.id(), &request(40000, TcpFlags::ACK)),
        Ok(server.id())
    );
    assert_eq!(
        net.router.expire(secs(31)),
        DEFAULT_CAPACITY - 1,
        "the attacker's own table"
    );
}
