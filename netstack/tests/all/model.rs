//! Property: security-group and conntrack decisions of the router equal
//! those of a plain reference model, over random groups, rules, membership,
//! source checks, table sizes and traffic (TCP, UDP, ICMP echo and errors,
//! another protocol), including replies, ICMP errors about earlier packets,
//! rule changes, group removal and the passing of time.
//!
//! The model is in `reference.rs`; this file generates cases, mirrors them
//! into a router and compares every verdict and, at the end, every counter.

mod reference;

use core::net::Ipv4Addr;

use proptest::prelude::*;
use smoltcp::time::Instant;
use weft_netstack::cidr::Cidr;
use weft_netstack::conntrack;
use weft_netstack::flow::TcpFlags;
use weft_netstack::id::{Generator, GroupId, NicId, SubnetId};
use weft_netstack::record::Record;
use weft_netstack::router::{Config, Router, Verdict};
use weft_netstack::secgroup::{Direction, Peer, PortRange, Protocol, Rule, SecurityGroup};

const PORTS: usize = 4;
const GROUPS: usize = 3;
/// Addresses packets use: the four ports' primaries, port 3's secondary, and
/// one nobody holds.
const ADDRESSES: [[u8; 4]; 6] = [
    [10, 0, 0, 2],
    [10, 0, 0, 3],
    [10, 0, 0, 4],
    [10, 0, 0, 5],
    [10, 0, 0, 10],
    [10, 0, 0, 20],
];
const L4_PORTS: [u16; 5] = [22, 80, 1000, 1001, 5000];
const FLAGS: [TcpFlags; 5] = [
    TcpFlags::SYN,
    TcpFlags::SYN_ACK,
    TcpFlags::ACK,
    TcpFlags::FIN_ACK,
    TcpFlags::RST,
];
const OTHER_PROTOCOL: u8 = 47;

use reference::{Body, MGroup, MPeer, MPort, MProto, MRule, Model, Pkt, bytes};

fn addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(ADDRESSES[i])
}

fn port_ips(port: usize) -> Vec<Ipv4Addr> {
    match port {
        3 => vec![addr(3), addr(4)],
        _ => vec![addr(port)],
    }
}

// ---------------------------------------------------------------- the router side

fn to_rule(rule: &MRule, group_ids: &[GroupId]) -> Rule {
    let protocol = match rule.proto {
        MProto::Tcp => Protocol::Tcp,
        MProto::Udp => Protocol::Udp,
        MProto::Icmp => Protocol::Icmp,
        MProto::All => Protocol::All,
    };
    let ports = rule.ports.map(|(lo, hi)| PortRange::new(lo, hi).unwrap());
    let peer = match rule.peer {
        MPeer::Any => Peer::Any,
        MPeer::Net(network, prefix) => Peer::Cidr(Cidr::new(network.into(), prefix).unwrap()),
        MPeer::Group(g) => Peer::Group(group_ids[g]),
    };
    Rule::new(protocol, ports, peer).unwrap()
}

fn sync_group(router: &mut Router, group_ids: &[GroupId], g: usize, model: &MGroup) {
    if model.removed {
        router.remove_group(group_ids[g]);
        return;
    }
    let mut group = SecurityGroup::new(group_ids[g], format!("g{g}")).unwrap();
    group.remove_rule(Direction::Egress, &Rule::all(Peer::Any));
    for (direction, rules) in [
        (Direction::Ingress, &model.ingress),
        (Direction::Egress, &model.egress),
    ] {
        for rule in rules {
            group.add_rule(direction, to_rule(rule, group_ids)).unwrap();
        }
    }
    router.set_group(group);
}

// ---------------------------------------------------------------- generation

#[derive(Debug, Clone)]
enum Op {
    Send {
        from: usize,
        spoof: Option<usize>,
        dst: usize,
        body: Body,
    },
    Reply {
        index: usize,
        flags: TcpFlags,
    },
    /// An ICMP error about an earlier packet, to its source or elsewhere.
    Error {
        index: usize,
        to: Option<usize>,
    },
    Advance(u64),
    AddRule {
        group: usize,
        ingress: bool,
        rule: MRule,
    },
    RemoveRule {
        group: usize,
        ingress: bool,
        index: usize,
    },
    ToggleGroup(usize),
}

fn rule() -> impl Strategy<Value = MRule> {
    let protos = [MProto::Tcp, MProto::Udp, MProto::Icmp, MProto::All];
    let ports = [None, Some((22, 22)), Some((80, 1000)), Some((1001, 1001))];
    let peers = [
        MPeer::Any,
        MPeer::Any,
        MPeer::Net([10, 0, 0, 0], 30),
        MPeer::Net([10, 0, 0, 4], 31),
        MPeer::Net([10, 0, 0, 10], 32),
        MPeer::Net([0, 0, 0, 0], 0),
        MPeer::Group(0),
        MPeer::Group(1),
        MPeer::Group(2),
    ];
    (0..4usize, 0..4usize, 0..peers.len()).prop_map(move |(p, r, q)| {
        let proto = protos[p];
        let ports = if matches!(proto, MProto::Tcp | MProto::Udp) {
            ports[r]
        } else {
            None
        };
        MRule {
            proto,
            ports,
            peer: peers[q],
        }
    })
}

fn body() -> impl Strategy<Value = Body> {
    let port = || (0..L4_PORTS.len()).prop_map(|i| L4_PORTS[i]);
    prop_oneof![
        4 => (port(), port(), 0..FLAGS.len()).prop_map(|(s, d, f)| Body::Tcp(s, d, FLAGS[f])),
        3 => (port(), port()).prop_map(|(s, d)| Body::Udp(s, d)),
        2 => (0..3u16).prop_map(Body::EchoRequest),
        1 => (0..3u16).prop_map(Body::EchoReply),
        1 => Just(Body::Other),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let advances = [
        0u64, 1, 999, 1_000, 9_999, 10_000, 29_999, 30_000, 299_999, 300_000,
    ];
    // Mostly to a port's primary address; sometimes its secondary or an
    // address nobody holds.
    let dst = prop_oneof![8 => 0..PORTS, 1 => PORTS..ADDRESSES.len()];
    prop_oneof![
        16 => (0..PORTS, prop::option::weighted(0.05, 0..ADDRESSES.len()), dst, body())
            .prop_map(|(from, spoof, dst, body)| Op::Send { from, spoof, dst, body }),
        16 => (any::<usize>(), 0..FLAGS.len()).prop_map(|(index, f)| Op::Reply { index, flags: FLAGS[f] }),
        2 => (any::<usize>(), prop::option::weighted(0.2, 0..ADDRESSES.len()))
            .prop_map(|(index, to)| Op::Error { index, to }),
        6 => (0..advances.len()).prop_map(move |i| Op::Advance(advances[i])),
        2 => (0..GROUPS, any::<bool>(), rule()).prop_map(|(group, ingress, rule)| Op::AddRule { group, ingress, rule }),
        1 => (0..GROUPS, any::<bool>(), any::<usize>())
            .prop_map(|(group, ingress, index)| Op::RemoveRule { group, ingress, index }),
        1 => (0..GROUPS).prop_map(Op::ToggleGroup),
    ]
}

#[derive(Debug, Clone)]
struct Setup {
    groups: Vec<(Vec<MRule>, Vec<MRule>)>,
    membership: Vec<Vec<usize>>,
    checks: Vec<bool>,
    capacity: usize,
}

fn setup() -> impl Strategy<Value = Setup> {
    let rules = |max| prop::collection::vec(rule(), 0..max);
    // Most groups keep the default egress rule, as most real ones do.
    let all_any = MRule {
        proto: MProto::All,
        ports: None,
        peer: MPeer::Any,
    };
    let egress = prop_oneof![3 => Just(vec![all_any]), 1 => rules(3)];
    (
        prop::collection::vec((rules(6), egress), GROUPS),
        prop::collection::vec(prop::collection::vec(0..GROUPS, 1..3), PORTS),
        prop::collection::vec(prop::bool::weighted(0.8), PORTS),
        1..7usize,
    )
        .prop_map(|(groups, membership, checks, capacity)| Setup {
            groups,
            membership,
            checks,
            capacity,
        })
}

fn dedup<T: PartialEq>(items: Vec<T>) -> Vec<T> {
    let mut out = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

// ---------------------------------------------------------------- the property

fn run(setup: Setup, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut ids = Generator::from_seed(1);
    let subnet: SubnetId = ids.next_id();
    let group_ids: Vec<GroupId> = (0..GROUPS).map(|_| ids.next_id()).collect();
    let conntrack = conntrack::Config {
        capacity: setup.capacity,
        ..Default::default()
    };
    let mut router = Router::new(Config {
        conntrack,
        ..Config::default()
    });
    let mut model = Model {
        ports: Vec::new(),
        groups: Vec::new(),
        capacity: setup.capacity,
    };

    for (g, (ingress, egress)) in setup.groups.into_iter().enumerate() {
        let group = MGroup {
            removed: false,
            ingress: dedup(ingress),
            egress: dedup(egress),
        };
        sync_group(&mut router, &group_ids, g, &group);
        model.groups.push(group);
    }
    let mut nics: Vec<NicId> = Vec::new();
    for port in 0..PORTS {
        let ips = port_ips(port);
        let groups = dedup(setup.membership[port].clone());
        let mut record = Record::new(ids.next_id(), subnet, ips[0]);
        for ip in &ips[1..] {
            record.add_secondary_ip(*ip).unwrap();
        }
        record
            .set_security_groups(groups.iter().map(|&g| group_ids[g]).collect())
            .unwrap();
        record.set_source_dest_check(setup.checks[port]);
        router.attach(&record).unwrap();
        nics.push(record.id());
        model
            .ports
            .push(MPort::new(ips, groups, setup.checks[port]));
    }

    let mut now = 0u64;
    let mut history: Vec<(usize, Pkt)> = Vec::new();
    for op in ops {
        let sent = match op {
            Op::Send {
                from,
                spoof,
                dst,
                body,
            } => {
                let src = spoof.map_or(model.ports[from].ips[0], addr);
                Some((
                    from,
                    Pkt {
                        src,
                        dst: addr(dst),
                        body,
                    },
                ))
            }
            Op::Reply { index, flags } if !history.is_empty() => {
                let (from, p) = &history[index % history.len()];
                let back = match p.body {
                    Body::Tcp(s, d, _) => Some(Body::Tcp(d, s, flags)),
                    Body::Udp(s, d) => Some(Body::Udp(d, s)),
                    Body::EchoRequest(id) => Some(Body::EchoReply(id)),
                    Body::EchoReply(id) => Some(Body::EchoRequest(id)),
                    Body::Other => Some(Body::Other),
                    Body::Error(_) => None,
                };
                let sender = model.owner(p.dst).unwrap_or(*from);
                back.map(|body| {
                    (
                        sender,
                        Pkt {
                            src: p.dst,
                            dst: p.src,
                            body,
                        },
                    )
                })
            }
            Op::Error { index, to } if !history.is_empty() => {
                let (from, p) = &history[index % history.len()];
                let sender = model.owner(p.dst).unwrap_or(*from);
                let dst = to.map_or(p.src, addr);
                Some((
                    sender,
                    Pkt {
                        src: p.dst,
                        dst,
                        body: Body::Error(Box::new(p.clone())),
                    },
                ))
            }
            Op::Reply { .. } | Op::Error { .. } => None,
            Op::Advance(ms) => {
                now += ms;
                None
            }
            Op::AddRule {
                group,
                ingress,
                rule,
            } => {
                let rules = model.groups[group].rules(ingress);
                if !rules.contains(&rule) {
                    rules.push(rule);
                }
                sync_group(&mut router, &group_ids, group, &model.groups[group]);
                None
            }
            Op::RemoveRule {
                group,
                ingress,
                index,
            } => {
                let rules = model.groups[group].rules(ingress);
                if !rules.is_empty() {
                    rules.remove(index % rules.len());
                }
                sync_group(&mut router, &group_ids, group, &model.groups[group]);
                None
            }
            Op::ToggleGroup(group) => {
                model.groups[group].removed ^= true;
                sync_group(&mut router, &group_ids, group, &model.groups[group]);
                None
            }
        };
        let Some((from, p)) = sent else { continue };
        let datagram = bytes(&p);
        let expected = model.decide(now, from, &p);
        let actual = match router.route(Instant::from_millis(now as i64), nics[from], &datagram) {
            Verdict::Deliver { to, packet } => {
                prop_assert_eq!(packet, &datagram[..]);
                Ok(nics.iter().position(|n| *n == to).unwrap())
            }
            Verdict::Drop(reason) => Err(reason),
        };
        prop_assert_eq!(
            actual,
            expected.map_err(|(reason, _)| reason),
            "t={}ms port {} sent {:?}",
            now,
            from,
            p
        );
        model.count(expected, from);
        history.push((from, p));
    }

    for (port, nic) in nics.iter().enumerate() {
        let counters = router.counters(*nic).unwrap();
        let expected = &model.ports[port].counters;
        prop_assert_eq!(
            (counters.tx_packets, counters.rx_packets),
            (expected.tx, expected.rx),
            "port {}",
            port
        );
        for (reason, n) in counters.drop_counts() {
            let want = expected
                .drops
                .iter()
                .find(|(r, _)| *r == reason)
                .map_or(0, |(_, n)| *n);
            prop_assert_eq!(n, want, "port {} {}", port, reason);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn router_decisions_equal_the_reference_model(setup in setup(), ops in prop::collection::vec(op(), 1..150)) {
        run(setup, ops)?;
    }
}
