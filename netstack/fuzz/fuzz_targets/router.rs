//! Fuzz target: arbitrary bytes as datagrams, and a few arbitrary rule
//! choices, through the router. It must never panic, and what it delivers
//! must be a prefix of what was sent, to an attached port.
//!
//! Input: 3 bytes of setup (ingress protocol and ports for each of two
//! groups, source checks, table capacity), then packets, each as
//! `[sender, milliseconds to advance, length lo, length hi, bytes...]`.
//! Senders 0–2 are attached ports; 3 is not.

#![no_main]

use libfuzzer_sys::fuzz_target;
use smoltcp::time::Instant;
use weft_netstack::conntrack;
use weft_netstack::id::{Generator, GroupId, NicId, SubnetId};
use weft_netstack::record::Record;
use weft_netstack::router::{Config, Router, Verdict};
use weft_netstack::secgroup::{Direction, Peer, PortRange, Protocol, Rule, SecurityGroup};

fn ingress_rule(choice: u8, first: u8) -> Rule {
    let protocol = [Protocol::Tcp, Protocol::Udp, Protocol::Icmp, Protocol::All][usize::from(choice & 3)];
    let ports = matches!(protocol, Protocol::Tcp | Protocol::Udp)
        .then(|| PortRange::new(u16::from(first), u16::from(first) + 100))
        .flatten();
    let peer = if choice & 4 == 0 { Peer::Any } else { Peer::Cidr("10.0.0.0/30".parse().unwrap()) };
    Rule::new(protocol, ports, peer).unwrap()
}

fuzz_target!(|data: &[u8]| {
    let Some((&[rules, first, flags], mut rest)) = data.split_first_chunk::<3>() else { return };
    let mut ids = Generator::from_seed(1);
    let subnet: SubnetId = ids.next_id();
    let capacity = usize::from(flags >> 4);
    let conntrack = conntrack::Config { capacity, ..Default::default() };
    let mut router = Router::new(Config { mtu: 2048, conntrack });

    let mut nics: Vec<NicId> = Vec::new();
    for port in 0..3u8 {
        let group: GroupId = ids.next_id();
        let mut sg = SecurityGroup::new(group, "fuzz").unwrap();
        let _ = sg.add_rule(Direction::Ingress, ingress_rule(rules >> (port * 3), first));
        router.set_group(sg);
        let mut record = Record::new(ids.next_id(), subnet, [10, 0, 0, 2 + port].into());
        record.set_security_groups(vec![group]).unwrap();
        record.set_source_dest_check(flags & (1 << port) != 0);
        router.attach(&record).unwrap();
        nics.push(record.id());
    }
    nics.push(ids.next_id());

    let mut now = 0i64;
    while let Some((&[from, dt, lo, hi], tail)) = rest.split_first_chunk::<4>() {
        let len = usize::from(u16::from_le_bytes([lo, hi])).min(tail.len());
        let (packet, next) = tail.split_at(len);
        rest = next;
        now += i64::from(dt) * 100;
        let from = nics[usize::from(from) % nics.len()];
        if let Verdict::Deliver { to, packet: delivered } = router.route(Instant::from_millis(now), from, packet) {
            assert!(router.is_attached(to));
            assert!(packet.starts_with(delivered));
        }
        if dt == 0xff {
            router.expire(Instant::from_millis(now));
        }
    }
    for nic in &nics[..3] {
        let table = router.conntrack(*nic).unwrap();
        assert!(table.len() <= capacity);
    }
});
