//! The reference model: what the router should decide, written plainly.
//!
//! Flows are a list scanned in full, expired flows are removed before every
//! packet, rules are matched field by field, and packets are described
//! abstractly (`Pkt`) rather than parsed. It shares no code with the crate
//! but the packet builders that turn a `Pkt` into bytes.

use core::net::Ipv4Addr;

use weft_netstack::flow::TcpFlags;
use weft_netstack::packet;
use weft_netstack::router::DropReason;
use weft_netstack::secgroup::Direction;

use super::OTHER_PROTOCOL;

// ---------------------------------------------------------------- packets

/// A packet's transport, as the test thinks of it.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// Source port, destination port, flags.
    Tcp(u16, u16, TcpFlags),
    /// Source port, destination port.
    Udp(u16, u16),
    /// Identifier.
    EchoRequest(u16),
    EchoReply(u16),
    Other,
    /// Destination unreachable, quoting an earlier packet.
    Error(Box<Pkt>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pkt {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub body: Body,
}

/// The datagram `p` describes.
pub fn bytes(p: &Pkt) -> Vec<u8> {
    use core::net::SocketAddrV4 as S;
    match &p.body {
        Body::Tcp(sp, dp, flags) => {
            packet::tcp(S::new(p.src, *sp), S::new(p.dst, *dp), *flags, b"")
        }
        Body::Udp(sp, dp) => packet::udp(S::new(p.src, *sp), S::new(p.dst, *dp), b""),
        Body::EchoRequest(id) => packet::icmp_echo_request(p.src, p.dst, *id, 0, b""),
        Body::EchoReply(id) => packet::icmp_echo_reply(p.src, p.dst, *id, 0, b""),
        Body::Other => packet::raw(p.src, p.dst, OTHER_PROTOCOL, b""),
        Body::Error(quoted) => packet::icmp_unreachable(p.src, p.dst, 3, &bytes(quoted)),
    }
}

// ---------------------------------------------------------------- rules

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MProto {
    Tcp,
    Udp,
    Icmp,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MPeer {
    Any,
    Net([u8; 4], u8),
    Group(usize),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MRule {
    pub proto: MProto,
    pub ports: Option<(u16, u16)>,
    pub peer: MPeer,
}

#[derive(Debug, Clone, Default)]
pub struct MGroup {
    pub removed: bool,
    pub ingress: Vec<MRule>,
    pub egress: Vec<MRule>,
}

impl MGroup {
    pub fn rules(&mut self, ingress: bool) -> &mut Vec<MRule> {
        if ingress {
            &mut self.ingress
        } else {
            &mut self.egress
        }
    }
}

// ---------------------------------------------------------------- the model

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MState {
    Unreplied,
    Established,
    Closing,
    Datagram,
}

/// A tracked flow: its first packet's addresses and body, the direction
/// that packet crossed the port in, its state and when it expires (ms).
#[derive(Debug, Clone)]
pub struct MFlow {
    pub body: Body,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub origin: Direction,
    pub state: MState,
    pub deadline: u64,
}

/// How a packet relates to a port's tracked flows (index into its list).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum How {
    Original(usize),
    Reply(usize),
    Related,
}

#[derive(Debug, Default, Clone)]
pub struct MCounters {
    pub tx: u64,
    pub rx: u64,
    pub drops: Vec<(DropReason, u64)>,
}

pub struct MPort {
    pub ips: Vec<Ipv4Addr>,
    pub groups: Vec<usize>,
    pub check: bool,
    pub flows: Vec<MFlow>,
    pub counters: MCounters,
}

impl MPort {
    /// A port with no tracked flow and zero counters.
    pub fn new(ips: Vec<Ipv4Addr>, groups: Vec<usize>, check: bool) -> MPort {
        MPort {
            ips,
            groups,
            check,
            flows: Vec::new(),
            counters: MCounters::default(),
        }
    }
}

pub struct Model {
    pub ports: Vec<MPort>,
    pub groups: Vec<MGroup>,
    pub capacity: usize,
}

/// Whether `p` is `flow`'s first packet again, or a reply to it.
fn same_way_or_reply(flow: &MFlow, p: &Pkt) -> (bool, bool) {
    let forward = (p.src, p.dst) == (flow.src, flow.dst);
    let backward = (p.src, p.dst) == (flow.dst, flow.src);
    match (&flow.body, &p.body) {
        (Body::Tcp(a, b, _), Body::Tcp(x, y, _)) | (Body::Udp(a, b), Body::Udp(x, y)) => {
            (forward && (a, b) == (x, y), backward && (a, b) == (y, x))
        }
        (Body::EchoRequest(id), Body::EchoRequest(x)) => (forward && id == x, false),
        (Body::EchoRequest(id), Body::EchoReply(x)) => (false, backward && id == x),
        (Body::Other, Body::Other) => (forward, backward),
        _ => (false, false),
    }
}

fn timeout(state: MState, body: &Body) -> u64 {
    match (state, body) {
        (MState::Established, _) => 300_000,
        (MState::Unreplied | MState::Closing, _) => 30_000,
        (MState::Datagram, Body::EchoRequest(_)) => 10_000,
        (MState::Datagram, _) => 30_000,
    }
}

impl Model {
    pub fn owner(&self, ip: Ipv4Addr) -> Option<usize> {
        self.ports.iter().position(|p| p.ips.contains(&ip))
    }

    fn rule_matches(&self, rule: &MRule, p: &Pkt, peer: Ipv4Addr) -> bool {
        let protocol = matches!(
            (rule.proto, &p.body),
            (MProto::All, _)
                | (MProto::Tcp, Body::Tcp(..))
                | (MProto::Udp, Body::Udp(..))
                | (
                    MProto::Icmp,
                    Body::EchoRequest(_) | Body::EchoReply(_) | Body::Error(_)
                )
        );
        let ports = match (rule.ports, &p.body) {
            (None, _) => true,
            (Some((lo, hi)), Body::Tcp(_, dp, _) | Body::Udp(_, dp)) => lo <= *dp && *dp <= hi,
            (Some(_), _) => false,
        };
        let peer = match rule.peer {
            MPeer::Any => true,
            MPeer::Net(network, prefix) => {
                let mask = if prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - prefix)
                };
                peer.to_bits() & mask == u32::from_be_bytes(network)
            }
            MPeer::Group(g) => self
                .owner(peer)
                .is_some_and(|o| self.ports[o].groups.contains(&g)),
        };
        protocol && ports && peer
    }

    fn allows(&self, port: usize, direction: Direction, p: &Pkt) -> bool {
        let peer = if direction == Direction::Ingress {
            p.src
        } else {
            p.dst
        };
        self.ports[port].groups.iter().any(|&g| {
            let group = &self.groups[g];
            let rules = if direction == Direction::Ingress {
                &group.ingress
            } else {
                &group.egress
            };
            !group.removed && rules.iter().any(|r| self.rule_matches(r, p, peer))
        })
    }

    fn tracked(&self, port: usize, direction: Direction, p: &Pkt) -> Option<How> {
        let flows = &self.ports[port].flows;
        if let Body::Error(quoted) = &p.body {
            let about_a_flow = flows.iter().any(|f| {
                let (same, reply) = same_way_or_reply(f, quoted);
                (same && f.origin != direction) || (reply && f.origin == direction)
            });
            return (about_a_flow && p.dst == quoted.src).then_some(How::Related);
        }
        let original = flows
            .iter()
            .position(|f| f.origin == direction && same_way_or_reply(f, p).0);
        let reply = flows
            .iter()
            .position(|f| f.origin != direction && same_way_or_reply(f, p).1);
        original.map(How::Original).or(reply.map(How::Reply))
    }

    fn opens(p: &Pkt) -> bool {
        match p.body {
            Body::Tcp(_, _, flags) => !flags.rst,
            Body::Udp(..) | Body::EchoRequest(_) | Body::Other => true,
            Body::EchoReply(_) | Body::Error(_) => false,
        }
    }

    fn record(&mut self, port: usize, direction: Direction, how: Option<How>, p: &Pkt, now: u64) {
        let tcp = match p.body {
            Body::Tcp(_, _, flags) => Some(flags),
            _ => None,
        };
        let flows = &mut self.ports[port].flows;
        match how {
            Some(How::Related) => {}
            Some(How::Original(i) | How::Reply(i)) => {
                let flow = &mut flows[i];
                if let Some(flags) = tcp {
                    let reply = matches!(how, Some(How::Reply(_)));
                    flow.state = if flags.fin || flags.rst {
                        MState::Closing
                    } else if flow.state == MState::Unreplied && reply {
                        MState::Established
                    } else if flow.state == MState::Closing && !reply && flags.syn && !flags.ack {
                        MState::Unreplied
                    } else {
                        flow.state
                    };
                }
                flow.deadline = now + timeout(flow.state, &flow.body);
            }
            None if Self::opens(p) => {
                let state = match tcp {
                    Some(flags) if flags.fin => MState::Closing,
                    Some(_) => MState::Unreplied,
                    None => MState::Datagram,
                };
                let deadline = now + timeout(state, &p.body);
                flows.push(MFlow {
                    body: p.body.clone(),
                    src: p.src,
                    dst: p.dst,
                    origin: direction,
                    state,
                    deadline,
                });
            }
            None => {}
        }
    }

    pub fn decide(&mut self, now: u64, from: usize, p: &Pkt) -> Result<usize, (DropReason, usize)> {
        for port in &mut self.ports {
            port.flows.retain(|f| now < f.deadline);
        }
        let sender = &self.ports[from];
        if sender.check && !sender.ips.contains(&p.src) {
            return Err((DropReason::SourceCheck, from));
        }
        let to = self.owner(p.dst).ok_or((DropReason::NoRoute, from))?;
        let egress = self.tracked(from, Direction::Egress, p);
        if egress.is_none() && !self.allows(from, Direction::Egress, p) {
            return Err((DropReason::EgressDenied, from));
        }
        let ingress = self.tracked(to, Direction::Ingress, p);
        if ingress.is_none() && !self.allows(to, Direction::Ingress, p) {
            return Err((DropReason::IngressDenied, to));
        }
        let new = |how: Option<How>| usize::from(how.is_none() && Self::opens(p));
        let full =
            |port: usize, needed: usize| self.ports[port].flows.len() + needed > self.capacity;
        if from == to {
            if full(from, new(egress) + new(ingress)) {
                return Err((DropReason::ConntrackFull, from));
            }
        } else {
            if new(egress) > 0 && full(from, 1) {
                return Err((DropReason::ConntrackFull, from));
            }
            if new(ingress) > 0 && full(to, 1) {
                return Err((DropReason::ConntrackFull, to));
            }
        }
        self.record(from, Direction::Egress, egress, p, now);
        self.record(to, Direction::Ingress, ingress, p, now);
        Ok(to)
    }

    pub fn count(&mut self, outcome: Result<usize, (DropReason, usize)>, from: usize) {
        match outcome {
            Ok(to) => {
                self.ports[from].counters.tx += 1;
                self.ports[to].counters.rx += 1;
            }
            Err((reason, at)) => {
                let drops = &mut self.ports[at].counters.drops;
                match drops.iter_mut().find(|(r, _)| *r == reason) {
                    Some((_, n)) => *n += 1,
                    None => drops.push((reason, 1)),
                }
            }
        }
    }
}
