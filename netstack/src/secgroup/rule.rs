//! One allow rule: protocol, port range and peer, parsed from their text forms.
//!
//! A [`Rule`] can only hold a valid combination: port ranges exist only for
//! TCP and UDP, and a range's first port is at most its last. The text forms
//! (`"tcp"`, `"8000-8099"`, `"10.0.0.0/16"`, `"sg-…"`, `"any"`) are what the
//! API and the JSON store use; parsing them never panics.
//!
//! ```
//! use weft_netstack::secgroup::{Peer, PortRange, Protocol, Rule};
//!
//! let web = Rule::new(Protocol::Tcp, Some("80".parse().unwrap()), "10.0.0.0/16".parse().unwrap()).unwrap();
//! assert_eq!(web.to_string(), "tcp 80 10.0.0.0/16");
//! assert!(Rule::new(Protocol::Icmp, Some(PortRange::single(7)), Peer::Any).is_err());
//! ```

use core::fmt;
use core::net::Ipv4Addr;
use core::str::FromStr;

use crate::cidr::Cidr;
use crate::flow::{Flow, Transport};
use crate::id::GroupId;

/// Which transport a rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP, optionally limited to a port range.
    Tcp,
    /// UDP, optionally limited to a port range.
    Udp,
    /// ICMP, every type.
    Icmp,
    /// Every IP protocol, TCP/UDP/ICMP and the others alike.
    All,
}

impl Protocol {
    /// The lowercase name: `tcp`, `udp`, `icmp`, `all`.
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::All => "all",
        }
    }

    /// Whether a datagram of `transport` is of this protocol.
    pub fn matches(self, transport: &Transport) -> bool {
        matches!(
            (self, transport),
            (Protocol::All, _)
                | (Protocol::Tcp, Transport::Tcp { .. })
                | (Protocol::Udp, Transport::Udp { .. })
                | (Protocol::Icmp, Transport::Icmp(_))
        )
    }
}

/// Why a rule or one of its parts did not parse or is not a valid combination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// Not one of `tcp`, `udp`, `icmp`, `all`.
    #[error("protocol must be tcp, udp, icmp or all")]
    Protocol,
    /// Not `N` or `N-M` with 0 ≤ N ≤ M ≤ 65535.
    #[error("ports must be N or N-M with N ≤ M ≤ 65535")]
    Ports,
    /// A port range on a protocol other than TCP or UDP.
    #[error("a port range is only valid with tcp or udp, not {0}")]
    PortsWithoutPorts(&'static str),
    /// Not `any`, a CIDR block or a group id.
    #[error("peer must be `any`, an IPv4 CIDR block or a security group id")]
    Peer,
}

impl FromStr for Protocol {
    type Err = RuleError;

    fn from_str(s: &str) -> Result<Protocol, RuleError> {
        match s {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "icmp" => Ok(Protocol::Icmp),
            "all" => Ok(Protocol::All),
            _ => Err(RuleError::Protocol),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An inclusive range of ports, `first ≤ last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    /// `first..=last`, or `None` if `first > last`.
    pub const fn new(first: u16, last: u16) -> Option<PortRange> {
        if first <= last {
            Some(PortRange { first, last })
        } else {
            None
        }
    }

    /// A single port.
    pub const fn single(port: u16) -> PortRange {
        PortRange {
            first: port,
            last: port,
        }
    }

    /// The first port.
    pub const fn first(&self) -> u16 {
        self.first
    }

    /// The last port.
    pub const fn last(&self) -> u16 {
        self.last
    }

    /// Whether `port` is in the range.
    pub const fn contains(&self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }
}

/// A decimal port: digits only, no sign or leading zeros, ≤ 65535.
fn parse_port(s: &str) -> Option<u16> {
    let canonical = !s.is_empty()
        && s.len() <= 5
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    if canonical { s.parse().ok() } else { None }
}

impl FromStr for PortRange {
    type Err = RuleError;

    /// Accepts `80` or `8000-8099`.
    fn from_str(s: &str) -> Result<PortRange, RuleError> {
        let (first, last) = match s.split_once('-') {
            Some((first, last)) => (parse_port(first), parse_port(last)),
            None => (parse_port(s), parse_port(s)),
        };
        match (first, last) {
            (Some(first), Some(last)) => PortRange::new(first, last).ok_or(RuleError::Ports),
            _ => Err(RuleError::Ports),
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// Who is on the other end: the source for ingress, the destination for egress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    /// Any address.
    Any,
    /// Addresses in a block.
    Cidr(Cidr),
    /// Addresses of the attached interfaces that are members of a group.
    Group(GroupId),
}

impl FromStr for Peer {
    type Err = RuleError;

    /// Accepts `any`, a CIDR block (`10.0.0.0/16`) or a group id (`sg-…`).
    fn from_str(s: &str) -> Result<Peer, RuleError> {
        if s == "any" {
            Ok(Peer::Any)
        } else if s.starts_with("sg-") {
            s.parse().map(Peer::Group).map_err(|_| RuleError::Peer)
        } else {
            s.parse().map(Peer::Cidr).map_err(|_| RuleError::Peer)
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Any => f.write_str("any"),
            Peer::Cidr(cidr) => cidr.fmt(f),
            Peer::Group(group) => group.fmt(f),
        }
    }
}

/// An allow rule. Invariant: `ports` is `None` unless the protocol is TCP or
/// UDP; `None` there means every port.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "RuleRepr", into = "RuleRepr")]
pub struct Rule {
    protocol: Protocol,
    ports: Option<PortRange>,
    peer: Peer,
}

impl Rule {
    /// A rule; errors if `ports` is given for ICMP or all protocols.
    pub fn new(
        protocol: Protocol,
        ports: Option<PortRange>,
        peer: Peer,
    ) -> Result<Rule, RuleError> {
        match (protocol, ports) {
            (Protocol::Icmp | Protocol::All, Some(_)) => {
                Err(RuleError::PortsWithoutPorts(protocol.name()))
            }
            _ => Ok(Rule {
                protocol,
                ports,
                peer,
            }),
        }
    }

    /// Every protocol and port, to or from `peer`.
    pub const fn all(peer: Peer) -> Rule {
        Rule {
            protocol: Protocol::All,
            ports: None,
            peer,
        }
    }

    /// The protocol.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The destination ports, for TCP and UDP; `None` is every port.
    pub fn ports(&self) -> Option<PortRange> {
        self.ports
    }

    /// The peer.
    pub fn peer(&self) -> Peer {
        self.peer
    }

    /// Whether the rule allows `flow` when `peer` is the other end;
    /// `in_group` answers whether `peer` belongs to a group and is only asked
    /// for group peers.
    ///
    /// Port ranges apply to the destination port in both directions: the
    /// service port of a server for ingress, of the remote end for egress.
    pub fn matches(
        &self,
        flow: &Flow,
        peer: Ipv4Addr,
        in_group: &mut dyn FnMut(GroupId) -> bool,
    ) -> bool {
        if !self.protocol.matches(&flow.transport) {
            return false;
        }
        if let (Some(range), Some(port)) = (self.ports, flow.transport.dst_port())
            && !range.contains(port)
        {
            return false;
        }
        match self.peer {
            Peer::Any => true,
            Peer::Cidr(cidr) => cidr.contains(peer),
            Peer::Group(group) => in_group(group),
        }
    }
}

impl fmt::Display for Rule {
    /// `tcp 80 10.0.0.0/16`, `icmp any`, `udp 53-54 sg-…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ports {
            Some(ports) => write!(f, "{} {} {}", self.protocol, ports, self.peer),
            None => write!(f, "{} {}", self.protocol, self.peer),
        }
    }
}

/// The serialized form: `{"protocol":"tcp","ports":"80","peer":"any"}`.
#[derive(serde::Serialize, serde::Deserialize)]
struct RuleRepr {
    protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ports: Option<String>,
    peer: String,
}

impl TryFrom<RuleRepr> for Rule {
    type Error = RuleError;

    fn try_from(repr: RuleRepr) -> Result<Rule, RuleError> {
        let ports = repr.ports.as_deref().map(str::parse).transpose()?;
        Rule::new(repr.protocol.parse()?, ports, repr.peer.parse()?)
    }
}

impl From<Rule> for RuleRepr {
    fn from(rule: Rule) -> RuleRepr {
        RuleRepr {
            protocol: rule.protocol.to_string(),
            ports: rule.ports.map(|p| p.to_string()),
            peer: rule.peer.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Icmp, TcpFlags};

    fn flow(transport: Transport) -> Flow {
        Flow {
            src: "10.0.0.2".parse().unwrap(),
            dst: "10.0.0.3".parse().unwrap(),
            transport,
        }
    }

    fn tcp_to(port: u16) -> Flow {
        flow(Transport::Tcp {
            src_port: 50000,
            dst_port: port,
            flags: TcpFlags::SYN,
        })
    }

    #[test]
    fn parses_protocols_ports_and_peers() {
        assert_eq!("udp".parse(), Ok(Protocol::Udp));
        assert_eq!("TCP".parse::<Protocol>(), Err(RuleError::Protocol));
        assert_eq!("80".parse(), Ok(PortRange::single(80)));
        assert_eq!(
            "8000-8099".parse(),
            PortRange::new(8000, 8099).ok_or(RuleError::Ports)
        );
        assert_eq!(
            "0-65535".parse(),
            PortRange::new(0, u16::MAX).ok_or(RuleError::Ports)
        );
        for bad in [
            "", "-", "80-", "-80", "90-80", "65536", "080", "+80", "8 0", "1-2-3", "a",
        ] {
            assert_eq!(bad.parse::<PortRange>(), Err(RuleError::Ports), "{bad:?}");
        }
        assert_eq!("any".parse(), Ok(Peer::Any));
        assert_eq!(
            "sg-000000000001".parse(),
            Ok(Peer::Group(GroupId::from_entropy(1)))
        );
        assert_eq!(
            "10.0.0.0/8".parse(),
            Ok(Peer::Cidr("10.0.0.0/8".parse().unwrap()))
        );
        for bad in ["", "ANY", "sg-1", "10.0.0.1/8", "10.0.0.1"] {
            assert_eq!(bad.parse::<Peer>(), Err(RuleError::Peer), "{bad:?}");
        }
    }

    #[test]
    fn ports_only_with_tcp_and_udp() {
        let ports = Some(PortRange::single(22));
        assert!(Rule::new(Protocol::Tcp, ports, Peer::Any).is_ok());
        assert!(Rule::new(Protocol::Udp, ports, Peer::Any).is_ok());
        assert_eq!(
            Rule::new(Protocol::Icmp, ports, Peer::Any),
            Err(RuleError::PortsWithoutPorts("icmp"))
        );
        assert_eq!(
            Rule::new(Protocol::All, ports, Peer::Any),
            Err(RuleError::PortsWithoutPorts("all"))
        );
    }

    #[test]
    fn matching() {
        let peer: Ipv4Addr = "10.0.0.3".parse().unwrap();
        let never = &mut |_| false;
        let web = Rule::new(Protocol::Tcp, "80-81".parse().ok(), Peer::Any).unwrap();
        assert!(web.matches(&tcp_to(80), peer, never));
        assert!(web.matches(&tcp_to(81), peer, never));
        assert!(!web.matches(&tcp_to(82), peer, never));
        let udp = flow(Transport::Udp {
            src_port: 80,
            dst_port: 80,
        });
        assert!(!web.matches(&udp, peer, never));

        let all_tcp = Rule::new(Protocol::Tcp, None, Peer::Any).unwrap();
        assert!(all_tcp.matches(&tcp_to(1), peer, never));

        let ping = flow(Transport::Icmp(Icmp::EchoRequest { ident: 1 }));
        let icmp = Rule::new(Protocol::Icmp, None, Peer::Any).unwrap();
        assert!(icmp.matches(&ping, peer, never));
        assert!(!icmp.matches(&tcp_to(80), peer, never));
        assert!(Rule::all(Peer::Any).matches(&flow(Transport::Other(47)), peer, never));

        let cidr = Rule::all("10.0.0.0/30".parse().unwrap());
        assert!(cidr.matches(&ping, peer, never));
        assert!(!cidr.matches(&ping, "10.0.0.4".parse().unwrap(), never));

        let group = GroupId::from_entropy(5);
        let by_group = Rule::all(Peer::Group(group));
        assert!(!by_group.matches(&ping, peer, never));
        assert!(by_group.matches(&ping, peer, &mut |g| g == group));
    }

    #[test]
    fn text_and_serde_forms() {
        let rule = Rule::new(
            Protocol::Udp,
            "53".parse().ok(),
            "sg-00000000000a".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(rule.to_string(), "udp 53 sg-00000000000a");
        assert_eq!(Rule::all(Peer::Any).to_string(), "all any");
        let json = serde_json::to_string(&rule).unwrap();
        assert_eq!(
            json,
            r#"{"protocol":"udp","ports":"53","peer":"sg-00000000000a"}"#
        );
        assert_eq!(serde_json::from_str::<Rule>(&json).unwrap(), rule);
        let all = serde_json::from_str::<Rule>(r#"{"protocol":"all","peer":"any"}"#).unwrap();
        assert_eq!(all, Rule::all(Peer::Any));
        for bad in [
            r#"{"protocol":"icmp","ports":"1","peer":"any"}"#,
            r#"{"protocol":"tcp","ports":"2-1","peer":"any"}"#,
            r#"{"protocol":"gre","peer":"any"}"#,
            r#"{"protocol":"tcp","peer":"10.0.0.1/8"}"#,
        ] {
            assert!(serde_json::from_str::<Rule>(bad).is_err(), "{bad}");
        }
    }
}
