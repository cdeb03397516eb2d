use core::net::SocketAddrV4;

use super::*;
use crate::flow::TcpFlags;
use crate::id::{Generator, SubnetId};
use crate::packet;
use crate::secgroup::{Peer, Protocol, Rule};

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 1, last)
}

fn sa(last: u8, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip(last), port)
}

fn t(secs: i64) -> Instant {
    Instant::from_secs(secs)
}

/// A router with an "open" group (all ingress) and a "closed" one (the
/// defaults: no ingress, all egress), and helpers to attach records.
struct Net {
    router: Router,
    ids: Generator,
    subnet: SubnetId,
    open: GroupId,
    closed: GroupId,
}

impl Net {
    fn new(config: Config) -> Net {
        let mut ids = Generator::from_seed(1);
        let (subnet, open, closed) = (ids.next_id(), ids.next_id(), ids.next_id());
        let mut router = Router::new(config);
        let mut group = SecurityGroup::new(open, "open").unwrap();
        group
            .add_rule(Direction::Ingress, Rule::all(Peer::Any))
            .unwrap();
        router.set_group(group);
        router.set_group(SecurityGroup::new(closed, "closed").unwrap());
        Net {
            router,
            ids,
            subnet,
            open,
            closed,
        }
    }

    fn record(&mut self, last: u8, group: GroupId) -> Record {
        let mut record = Record::new(self.ids.next_id(), self.subnet, ip(last));
        record.set_security_groups(vec![group]).unwrap();
        record
    }

    fn attach(&mut self, last: u8, group: GroupId) -> NicId {
        let record = self.record(last, group);
        self.router.attach(&record).unwrap();
        record.id()
    }

    fn send(&mut self, now: i64, from: NicId, packet: &[u8]) -> Result<NicId, DropReason> {
        match self.router.route(t(now), from, packet) {
            Verdict::Deliver {
                to,
                packet: delivered,
            } => {
                assert_eq!(delivered, packet);
                Ok(to)
            }
            Verdict::Drop(reason) => Err(reason),
        }
    }
}

fn tcp(from: SocketAddrV4, to: SocketAddrV4, flags: TcpFlags) -> Vec<u8> {
    packet::tcp(from, to, flags, b"")
}

#[test]
fn replies_pass_without_an_ingress_rule() {
    let mut net = Net::new(Config::default());
    let (client, server) = (net.attach(2, net.closed), net.attach(3, net.open));
    assert_eq!(
        net.send(0, client, &tcp(sa(2, 40000), sa(3, 80), TcpFlags::SYN)),
        Ok(server)
    );
    // The client's group allows no ingress, yet the reply passes.
    assert_eq!(
        net.send(0, server, &tcp(sa(3, 80), sa(2, 40000), TcpFlags::SYN_ACK)),
        Ok(client)
    );
    assert_eq!(
        net.send(0, client, &tcp(sa(2, 40000), sa(3, 80), TcpFlags::ACK)),
        Ok(server)
    );
    // A new flow towards the client is denied, counted on the client.
    assert_eq!(
        net.send(0, server, &tcp(sa(3, 80), sa(2, 40001), TcpFlags::SYN)),
        Err(DropReason::IngressDenied)
    );
    let counters = net.router.counters(client).unwrap();
    assert_eq!((counters.tx_packets, counters.rx_packets), (2, 1));
    assert_eq!(counters.drops(DropReason::IngressDenied), 1);
    assert_eq!(net.router.counters(server).unwrap().dropped(), 0);
    assert_eq!(counters.tx_bytes, 80);
}

#[test]
fn rule_changes_apply_to_new_flows_only() {
    let mut net = Net::new(Config::default());
    let (client, server) = (net.attach(2, net.open), net.attach(3, net.open));
    let syn = |port| tcp(sa(2, port), sa(3, 22), TcpFlags::SYN);
    assert_eq!(net.send(0, client, &syn(40000)), Ok(server));
    assert_eq!(
        net.send(0, server, &tcp(sa(3, 22), sa(2, 40000), TcpFlags::SYN_ACK)),
        Ok(client)
    );

    let mut closed = net.router.group(net.open).unwrap().clone();
    closed.remove_rule(Direction::Ingress, &Rule::all(Peer::Any));
    net.router.set_group(closed);
    // The tracked flow goes on, both ways; a new one is denied.
    assert_eq!(
        net.send(1, client, &tcp(sa(2, 40000), sa(3, 22), TcpFlags::ACK)),
        Ok(server)
    );
    assert_eq!(
        net.send(1, server, &tcp(sa(3, 22), sa(2, 40000), TcpFlags::ACK)),
        Ok(client)
    );
    assert_eq!(
        net.send(1, client, &syn(40001)),
        Err(DropReason::IngressDenied)
    );
    // Until it expires (300 s idle once established).
    assert_eq!(
        net.send(302, client, &tcp(sa(2, 40000), sa(3, 22), TcpFlags::ACK)),
        Err(DropReason::IngressDenied)
    );

    // Removing the group altogether denies even egress.
    net.router.remove_group(net.open);
    assert_eq!(
        net.send(303, client, &syn(40002)),
        Err(DropReason::EgressDenied)
    );
}

#[test]
fn source_check() {
    let mut net = Net::new(Config::default());
    let (a, b) = (net.attach(2, net.open), net.attach(3, net.open));
    let spoofed = tcp(sa(9, 1000), sa(3, 80), TcpFlags::SYN);
    assert_eq!(net.send(0, a, &spoofed), Err(DropReason::SourceCheck));
    assert_eq!(
        net.router
            .counters(a)
            .unwrap()
            .drops(DropReason::SourceCheck),
        1
    );

    // Turn the check off through an update of the same record.
    let mut a_record = Record::new(a, net.subnet, ip(2));
    a_record.set_security_groups(vec![net.open]).unwrap();
    a_record.set_source_dest_check(false);
    net.router.update(&a_record).unwrap();
    assert_eq!(net.send(0, a, &spoofed), Ok(b));
}

#[test]
fn no_route_detach_and_reattach() {
    let mut net = Net::new(Config::default());
    let a = net.attach(2, net.open);
    let b_record = net.record(3, net.open);
    net.router.attach(&b_record).unwrap();
    let syn = tcp(sa(2, 1), sa(3, 80), TcpFlags::SYN);
    assert_eq!(net.send(0, a, &syn), Ok(b_record.id()));
    assert_eq!(
        net.send(0, a, &tcp(sa(2, 1), sa(200, 80), TcpFlags::SYN)),
        Err(DropReason::NoRoute)
    );
    // The gateway has no port yet.
    assert_eq!(
        net.send(0, a, &tcp(sa(2, 1), sa(1, 80), TcpFlags::SYN)),
        Err(DropReason::NoRoute)
    );

    let final_counters = net.router.detach(b_record.id()).unwrap();
    assert_eq!(final_counters.rx_packets, 1);
    assert!(net.router.detach(b_record.id()).is_none());
    assert_eq!(net.send(1, a, &syn), Err(DropReason::NoRoute));
    assert_eq!(
        net.send(1, b_record.id(), &syn),
        Err(DropReason::UnknownPort)
    );
    assert_eq!(net.router.totals().drops(DropReason::UnknownPort), 1);

    net.router.attach(&b_record).unwrap();
    assert_eq!(
        net.router.counters(b_record.id()).unwrap().rx_packets,
        0,
        "fresh counters"
    );
    assert_eq!(net.send(2, a, &syn), Ok(b_record.id()));
    assert_eq!(
        net.router.attach(&b_record),
        Err(AttachError::AlreadyAttached(b_record.id()))
    );
}

#[test]
fn addresses_are_held_by_one_port() {
    let mut net = Net::new(Config::default());
    let a = net.attach(2, net.open);
    let other = net.record(2, net.open);
    assert_eq!(
        net.router.attach(&other),
        Err(AttachError::AddressInUse {
            address: ip(2),
            holder: a
        })
    );
    assert_eq!(
        net.router.update(&other),
        Err(AttachError::NotAttached(other.id()))
    );

    // Moving a secondary address from one port to another.
    let mut b = net.record(3, net.open);
    b.add_secondary_ip(ip(10)).unwrap();
    net.router.attach(&b).unwrap();
    assert_eq!(net.router.port_of(ip(10)), Some(b.id()));
    let mut a_record = Record::new(a, net.subnet, ip(2));
    a_record.add_secondary_ip(ip(10)).unwrap();
    assert_eq!(
        net.router.update(&a_record),
        Err(AttachError::AddressInUse {
            address: ip(10),
            holder: b.id()
        })
    );
    b.remove_secondary_ip(ip(10));
    net.router.update(&b).unwrap();
    net.router.update(&a_record).unwrap();
    assert_eq!(net.router.port_of(ip(10)), Some(a));
    assert_eq!(net.router.port_of(ip(3)), Some(b.id()));
    assert_eq!(net.router.ports().count(), 2);
}

#[test]
fn size_and_shape_checks() {
    let mut net = Net::new(Config {
        mtu: 1500,
        ..Config::default()
    });
    let (a, b) = (net.attach(2, net.open), net.attach(3, net.open));
    let big = packet::udp(sa(2, 1), sa(3, 2), &[0; 1473]);
    assert_eq!(big.len(), 1501);
    assert_eq!(net.send(0, a, &big), Err(DropReason::TooLarge));
    assert_eq!(
        net.send(0, a, &packet::udp(sa(2, 1), sa(3, 2), &[0; 1472])),
        Ok(b)
    );
    assert_eq!(net.send(0, a, &[0x45, 0, 0]), Err(DropReason::Malformed));
    assert_eq!(net.send(0, a, &[]), Err(DropReason::Malformed));
    let mut fragment = packet::udp(sa(2, 1), sa(3, 2), b"x");
    let mut header = smoltcp::wire::Ipv4Packet::new_unchecked(&mut fragment);
    header.set_more_frags(true);
    header.fill_checksum();
    assert_eq!(net.send(0, a, &fragment), Err(DropReason::Fragmented));
    let counters = net.router.counters(a).unwrap();
    assert_eq!(counters.drops(DropReason::TooLarge), 1);
    assert_eq!(counters.drops(DropReason::Malformed), 2);
    assert_eq!(counters.drops(DropReason::Fragmented), 1);
    assert_eq!(net.router.totals().dropped(), 4);
}

#[test]
fn trailing_bytes_are_not_forwarded() {
    let mut net = Net::new(Config::default());
    let (a, b) = (net.attach(2, net.open), net.attach(3, net.open));
    let datagram = packet::udp(sa(2, 1), sa(3, 2), b"hi");
    let mut padded = datagram.clone();
    padded.extend_from_slice(&[0; 6]);
    assert_eq!(
        net.router.route(t(0), a, &padded),
        Verdict::Deliver {
            to: b,
            packet: &datagram[..]
        }
    );
}

#[test]
fn peer_groups_resolve_through_attached_ports() {
    let mut net = Net::new(Config::default());
    let (app, db): (GroupId, GroupId) = (net.ids.next_id(), net.ids.next_id());
    net.router
        .set_group(SecurityGroup::new(app, "app").unwrap());
    let mut db_group = SecurityGroup::new(db, "db").unwrap();
    db_group
        .add_rule(
            Direction::Ingress,
            Rule::new(Protocol::Tcp, "5432".parse().ok(), Peer::Group(app)).unwrap(),
        )
        .unwrap();
    net.router.set_group(db_group);
    let (web, other, database) = (
        net.attach(2, app),
        net.attach(3, net.closed),
        net.attach(4, db),
    );
    let query = |last| tcp(sa(last, 1000), sa(4, 5432), TcpFlags::SYN);
    assert_eq!(net.send(0, web, &query(2)), Ok(database));
    assert_eq!(
        net.send(0, other, &query(3)),
        Err(DropReason::IngressDenied)
    );
    assert_eq!(
        net.send(0, web, &tcp(sa(2, 1000), sa(4, 22), TcpFlags::SYN)),
        Err(DropReason::IngressDenied)
    );
    // Membership follows the port: once detached, its address is nobody's.
    net.router.detach(web);
    let mut reattached = Record::new(net.ids.next_id(), net.subnet, ip(2));
    reattached.set_security_groups(vec![net.closed]).unwrap();
    net.router.attach(&reattached).unwrap();
    assert_eq!(
        net.send(
            1,
            reattached.id(),
            &tcp(sa(2, 1001), sa(4, 5432), TcpFlags::SYN)
        ),
        Err(DropReason::IngressDenied)
    );
}

#[test]
fn routes_and_the_destination_check() {
    let mut net = Net::new(Config::default());
    let client = net.attach(2, net.open);
    let mut nat = net.record(3, net.open);
    net.router.attach(&nat).unwrap();
    let outside: Cidr = "0.0.0.0/0".parse().unwrap();
    assert_eq!(net.router.set_route(outside, nat.id()), Ok(None));
    let out = tcp(
        sa(2, 1000),
        SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 443),
        TcpFlags::SYN,
    );
    assert_eq!(net.send(0, client, &out), Err(DropReason::DestinationCheck));
    assert_eq!(
        net.router
            .counters(nat.id())
            .unwrap()
            .drops(DropReason::DestinationCheck),
        1
    );

    nat.set_source_dest_check(false);
    net.router.update(&nat).unwrap();
    assert_eq!(net.send(0, client, &out), Ok(nat.id()));
    // The NAT instance's answers from the outside address reach the client.
    let back = tcp(
        SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 443),
        sa(2, 1000),
        TcpFlags::SYN_ACK,
    );
    assert_eq!(net.send(0, nat.id(), &back), Ok(client));
    // Attached addresses win over routes; a route never leads back.
    assert_eq!(
        net.send(0, client, &tcp(sa(2, 1), sa(3, 2), TcpFlags::SYN)),
        Ok(nat.id())
    );
    let loop_back = tcp(
        sa(3, 1),
        SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 9), 2),
        TcpFlags::SYN,
    );
    assert_eq!(net.send(0, nat.id(), &loop_back), Err(DropReason::NoRoute));

    // Longest prefix first.
    let narrow: Cidr = "192.0.2.0/24".parse().unwrap();
    net.router.set_route(narrow, client).unwrap();
    assert_eq!(
        net.send(0, nat.id(), &loop_back),
        Err(DropReason::DestinationCheck)
    );
    assert_eq!(net.router.remove_route(narrow), Some(client));
    assert_eq!(net.router.set_route(outside, client), Ok(Some(nat.id())));
    assert_eq!(net.router.remove_route(narrow), None);
    for i in 1..MAX_ROUTES {
        net.router
            .set_route(Cidr::host(Ipv4Addr::from_bits(i as u32)), client)
            .unwrap();
    }
    assert_eq!(
        net.router.set_route(narrow, client),
        Err(RouteError::TooMany)
    );
}

#[test]
fn gateways_route_by_source_block() {
    let mut net = Net::new(Config::default());
    let client = net.attach(2, net.open);
    let mut gateway = net.record(1, net.open);
    gateway.set_source_dest_check(false);
    net.router.attach(&gateway).unwrap();
    let outside = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 443);
    let out = tcp(sa(2, 1000), outside, TcpFlags::SYN);
    assert_eq!(net.send(0, client, &out), Err(DropReason::NoRoute));

    let subnet: Cidr = "10.0.1.0/24".parse().unwrap();
    assert_eq!(net.router.set_gateway(subnet, gateway.id()), Ok(None));
    assert_eq!(net.send(0, client, &out), Ok(gateway.id()));
    // Answers from the outside come back in through the gateway.
    let back = tcp(outside, sa(2, 1000), TcpFlags::SYN_ACK);
    assert_eq!(net.send(0, gateway.id(), &back), Ok(client));
    // A source outside the block has no gateway; nor does the gateway
    // route back to itself.
    assert_eq!(
        net.send(0, gateway.id(), &tcp(outside, sa(9, 1), TcpFlags::SYN)),
        Err(DropReason::NoRoute)
    );
    // A static route for the destination wins over the source's gateway.
    let other = net.attach(3, net.open);
    let block: Cidr = "192.0.2.0/24".parse().unwrap();
    net.router.set_route(block, other).unwrap();
    assert_eq!(
        net.send(0, client, &tcp(sa(2, 1001), outside, TcpFlags::SYN)),
        Err(DropReason::DestinationCheck)
    );
    net.router.remove_route(block);
    assert_eq!(net.router.remove_gateway(subnet), Some(gateway.id()));
    assert_eq!(
        net.send(0, client, &tcp(sa(2, 1002), outside, TcpFlags::SYN)),
        Err(DropReason::NoRoute)
    );
}

#[test]
fn ping_and_related_errors() {
    let mut net = Net::new(Config::default());
    let (a, b) = (net.attach(2, net.closed), net.attach(3, net.closed));
    // Nothing is allowed in: a ping is denied, but a's own ping gets its reply.
    assert_eq!(
        net.send(0, b, &packet::icmp_echo_request(ip(3), ip(2), 1, 1, b"")),
        Err(DropReason::IngressDenied)
    );
    let mut open = net.router.group(net.closed).unwrap().clone();
    open.add_rule(
        Direction::Ingress,
        Rule::new(Protocol::Icmp, None, Peer::Any).unwrap(),
    )
    .unwrap();
    net.router.set_group(open);
    assert_eq!(
        net.send(0, a, &packet::icmp_echo_request(ip(2), ip(3), 7, 1, b"")),
        Ok(b)
    );
    let mut closed = net.router.group(net.closed).unwrap().clone();
    closed.remove_rule(
        Direction::Ingress,
        &Rule::new(Protocol::Icmp, None, Peer::Any).unwrap(),
    );
    net.router.set_group(closed);
    assert_eq!(
        net.send(0, b, &packet::icmp_echo_reply(ip(3), ip(2), 7, 1, b"")),
        Ok(a)
    );
    assert_eq!(
        net.send(0, b, &packet::icmp_echo_reply(ip(3), ip(2), 8, 1, b"")),
        Err(DropReason::IngressDenied)
    );

    // A UDP datagram, then the port-unreachable about it comes back.
    let datagram = packet::udp(sa(2, 5000), sa(3, 53), b"q");
    let mut open = net.router.group(net.closed).unwrap().clone();
    open.add_rule(
        Direction::Ingress,
        Rule::new(Protocol::Udp, None, Peer::Any).unwrap(),
    )
    .unwrap();
    net.router.set_group(open);
    assert_eq!(net.send(0, a, &datagram), Ok(b));
    assert_eq!(
        net.send(0, b, &packet::icmp_unreachable(ip(3), ip(2), 3, &datagram)),
        Ok(a)
    );
    let unrelated = packet::udp(sa(2, 5001), sa(3, 53), b"q");
    assert_eq!(
        net.send(0, b, &packet::icmp_unreachable(ip(3), ip(2), 3, &unrelated)),
        Err(DropReason::IngressDenied)
    );
}

#[test]
fn hairpin_traffic_is_filtered_both_ways() {
    let mut net = Net::new(Config::default());
    let a = net.attach(2, net.closed);
    let own = tcp(sa(2, 1000), sa(2, 80), TcpFlags::SYN);
    assert_eq!(net.send(0, a, &own), Err(DropReason::IngressDenied));
    let b = net.attach(3, net.open);
    assert_eq!(
        net.send(0, b, &tcp(sa(3, 1000), sa(3, 80), TcpFlags::SYN)),
        Ok(b)
    );
    assert_eq!(
        net.send(0, b, &tcp(sa(3, 80), sa(3, 1000), TcpFlags::SYN_ACK)),
        Ok(b)
    );
    assert_eq!(net.router.conntrack(b).unwrap().len(), 2);
    let counters = net.router.counters(b).unwrap();
    assert_eq!((counters.tx_packets, counters.rx_packets), (2, 2));
}

/// Connection tracking tables of two flows each.
fn tables_of_two() -> Config {
    Config {
        conntrack: conntrack::Config {
            capacity: 2,
            ..Default::default()
        },
        ..Config::default()
    }
}

#[test]
fn a_full_table_drops_new_flows_and_changes_nothing() {
    let mut net = Net::new(tables_of_two());
    let (a, b, c) = (
        net.attach(2, net.open),
        net.attach(3, net.open),
        net.attach(4, net.open),
    );
    // Fill b's table from c.
    for port in 0..2 {
        assert_eq!(
            net.send(0, c, &packet::udp(sa(4, port), sa(3, 9), b"")),
            Ok(b)
        );
    }
    // a's flow fits a's table but not b's: dropped, counted on b, and a's
    // table is left as it was.
    assert_eq!(
        net.send(0, a, &packet::udp(sa(2, 1), sa(3, 9), b"")),
        Err(DropReason::ConntrackFull)
    );
    assert_eq!(
        net.router
            .counters(b)
            .unwrap()
            .drops(DropReason::ConntrackFull),
        1
    );
    assert_eq!(net.router.conntrack(a).unwrap().len(), 0);
    assert_eq!(net.router.conntrack(b).unwrap().refused(), 1);
    // Tracked flows still pass.
    assert_eq!(net.send(0, b, &packet::udp(sa(3, 9), sa(4, 0), b"")), Ok(c));
    // After expiry there is room; expire() purges.
    assert_eq!(
        net.send(31, a, &packet::udp(sa(2, 1), sa(3, 9), b"")),
        Ok(b)
    );
    assert_eq!(net.router.expire(t(31)), 2);
    // A bare RST opens nothing, so it needs no room.
    assert_eq!(
        net.send(31, c, &tcp(sa(4, 1), sa(3, 2), TcpFlags::RST)),
        Ok(b)
    );
}

#[test]
fn an_untracked_port_keeps_no_table_and_the_others_still_track_their_side() {
    let mut net = Net::new(tables_of_two());
    // Two instances that take nothing in, and a port that lets everything
    // through both ways (a gateway's), untracked.
    let (a, c) = (net.attach(2, net.closed), net.attach(4, net.closed));
    let gateway = net.attach(3, net.open);
    assert!(net.router.set_tracking(gateway, false));
    assert!(!net.router.set_tracking(net.ids.next_id(), false));
    // Each instance fills its own table; the gateway takes all four flows.
    for (from, last) in [(a, 2), (c, 4)] {
        for port in 0..2 {
            assert_eq!(
                net.send(0, from, &packet::udp(sa(last, port), sa(3, 9), b"")),
                Ok(gateway)
            );
        }
    }
    assert_eq!(net.router.conntrack(gateway).unwrap().len(), 0);
    assert_eq!(net.router.conntrack(a).unwrap().len(), 2);
    // Answers reach the instances, through their own tables.
    assert_eq!(
        net.send(0, gateway, &packet::udp(sa(3, 9), sa(2, 1), b"")),
        Ok(a)
    );
    assert_eq!(
        net.send(0, gateway, &packet::udp(sa(3, 9), sa(4, 0), b"")),
        Ok(c)
    );
    // What the instances did not open, their groups refuse.
    assert_eq!(
        net.send(0, gateway, &packet::udp(sa(3, 9), sa(2, 7), b"")),
        Err(DropReason::IngressDenied)
    );
    // A full instance table still refuses the instance's next new flow.
    assert_eq!(
        net.send(0, a, &packet::udp(sa(2, 5), sa(3, 9), b"")),
        Err(DropReason::ConntrackFull)
    );
}
