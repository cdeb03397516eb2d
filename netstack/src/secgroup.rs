//! Security groups: stateless allow-lists, combined per interface.
//!
//! A [`SecurityGroup`] holds ingress and egress [`Rule`]s; everything not
//! allowed is denied. A new group allows no ingress and all egress. An
//! interface's groups are combined as the union of their rules ([`allows`]).
//!
//! Groups by themselves are stateless: the state — replies to allowed flows
//! pass without a rule — is [`conntrack`](crate::conntrack)'s, and the
//! [`router`](crate::router) consults the rules only for packets of untracked
//! flows.
//!
//! ```
//! use weft_netstack::flow::{Flow, TcpFlags, Transport};
//! use weft_netstack::id::GroupId;
//! use weft_netstack::secgroup::{allows, Direction, Peer, Protocol, Rule, SecurityGroup};
//!
//! let mut web = SecurityGroup::new(GroupId::from_entropy(1), "web").unwrap();
//! web.add_rule(Direction::Ingress, Rule::new(Protocol::Tcp, "443".parse().ok(), Peer::Any).unwrap()).unwrap();
//!
//! let syn = Flow {
//!     src: "10.0.0.9".parse().unwrap(),
//!     dst: "10.0.0.2".parse().unwrap(),
//!     transport: Transport::Tcp { src_port: 40000, dst_port: 443, flags: TcpFlags::SYN },
//! };
//! assert!(allows(Direction::Ingress, &[&web], &syn, &|_| Vec::new()));
//! assert!(allows(Direction::Egress, &[&web], &syn, &|_| Vec::new()));
//! ```

mod rule;

use core::fmt;
use core::net::Ipv4Addr;

pub use rule::{Peer, PortRange, Protocol, Rule, RuleError};

use crate::flow::Flow;
use crate::id::GroupId;

/// The most rules a group holds in each direction. Evaluation is linear in
/// the rules of an interface's groups, so this bounds per-packet work.
pub const MAX_RULES_PER_DIRECTION: usize = 64;
/// The longest group name, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Which way a packet crosses an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// Into the interface, towards its instance. The peer is the source.
    Ingress,
    /// Out of the interface, from its instance. The peer is the destination.
    Egress,
}

impl Direction {
    /// The other direction.
    pub const fn reverse(self) -> Direction {
        match self {
            Direction::Ingress => Direction::Egress,
            Direction::Egress => Direction::Ingress,
        }
    }

    /// The address of the other end of `flow` seen in this direction.
    pub const fn peer(self, flow: &Flow) -> Ipv4Addr {
        match self {
            Direction::Ingress => flow.src,
            Direction::Egress => flow.dst,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        })
    }
}

/// Why a group or a change to it was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// The direction already has [`MAX_RULES_PER_DIRECTION`] rules.
    #[error("a group holds at most {MAX_RULES_PER_DIRECTION} {0} rules")]
    TooManyRules(Direction),
    /// The direction already has this rule.
    #[error("the group already has the {direction} rule `{rule}`")]
    Duplicate {
        /// Where.
        direction: Direction,
        /// The rule.
        rule: Rule,
    },
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("a group's name is at most {MAX_NAME_LEN} bytes")]
    NameTooLong,
}

/// A named set of ingress and egress allow rules.
///
/// Invariant: no direction holds a rule twice or more than
/// [`MAX_RULES_PER_DIRECTION`] rules.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "GroupRepr", into = "GroupRepr")]
pub struct SecurityGroup {
    id: GroupId,
    name: String,
    ingress: Vec<Rule>,
    egress: Vec<Rule>,
}

impl SecurityGroup {
    /// A group that allows no ingress and all egress (one egress rule,
    /// `all any`, which can be removed).
    pub fn new(id: GroupId, name: impl Into<String>) -> Result<SecurityGroup, GroupError> {
        let name = name.into();
        if name.len() > MAX_NAME_LEN {
            return Err(GroupError::NameTooLong);
        }
        Ok(SecurityGroup {
            id,
            name,
            ingress: Vec::new(),
            egress: vec![Rule::all(Peer::Any)],
        })
    }

    /// The group's id.
    pub fn id(&self) -> GroupId {
        self.id
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rules of one direction, in the order they were added.
    pub fn rules(&self, direction: Direction) -> &[Rule] {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    fn rules_mut(&mut self, direction: Direction) -> &mut Vec<Rule> {
        match direction {
            Direction::Ingress => &mut self.ingress,
            Direction::Egress => &mut self.egress,
        }
    }

    /// Adds a rule; errors if the direction has it already or is full.
    pub fn add_rule(&mut self, direction: Direction, rule: Rule) -> Result<(), GroupError> {
        let rules = self.rules_mut(direction);
        if rules.contains(&rule) {
            return Err(GroupError::Duplicate { direction, rule });
        }
        if rules.len() >= MAX_RULES_PER_DIRECTION {
            return Err(GroupError::TooManyRules(direction));
        }
        rules.push(rule);
        Ok(())
    }

    /// Removes a rule; returns whether it was there.
    pub fn remove_rule(&mut self, direction: Direction, rule: &Rule) -> bool {
        let rules = self.rules_mut(direction);
        let before = rules.len();
        rules.retain(|r| r != rule);
        rules.len() != before
    }
}

/// Whether the union of `groups`' rules for `direction` allows `flow`.
///
/// The peer is `flow.src` for ingress and `flow.dst` for egress.
/// `peer_groups` lists the groups the peer address belongs to; it is called
/// at most once, and only if a group-peer rule is reached. No groups allow
/// nothing.
pub fn allows(
    direction: Direction,
    groups: &[&SecurityGroup],
    flow: &Flow,
    peer_groups: &dyn Fn(Ipv4Addr) -> Vec<GroupId>,
) -> bool {
    let peer = direction.peer(flow);
    let mut membership: Option<Vec<GroupId>> = None;
    let mut in_group = |group: GroupId| {
        membership
            .get_or_insert_with(|| peer_groups(peer))
            .contains(&group)
    };
    groups
        .iter()
        .flat_map(|g| g.rules(direction))
        .any(|rule| rule.matches(flow, peer, &mut in_group))
}

/// The serialized form; deserializing re-checks the invariants.
#[derive(serde::Serialize, serde::Deserialize)]
struct GroupRepr {
    id: GroupId,
    name: String,
    ingress: Vec<Rule>,
    egress: Vec<Rule>,
}

impl TryFrom<GroupRepr> for SecurityGroup {
    type Error = GroupError;

    fn try_from(repr: GroupRepr) -> Result<SecurityGroup, GroupError> {
        let mut group = SecurityGroup::new(repr.id, repr.name)?;
        group.egress.clear();
        for (direction, rules) in [
            (Direction::Ingress, repr.ingress),
            (Direction::Egress, repr.egress),
        ] {
            for rule in rules {
                group.add_rule(direction, rule)?;
            }
        }
        Ok(group)
    }
}

impl From<SecurityGroup> for GroupRepr {
    fn from(group: SecurityGroup) -> GroupRepr {
        GroupRepr {
            id: group.id,
            name: group.name,
            ingress: group.ingress,
            egress: group.egress,
        }
    }
}

#[cfg(test)]
mod tests {
    use core::cell::Cell;

    use super::*;
    use crate::flow::{Icmp, TcpFlags, Transport};

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn group(n: u64) -> SecurityGroup {
        SecurityGroup::new(GroupId::from_entropy(n), format!("g{n}")).unwrap()
    }

    fn tcp(src: &str, dst: &str, dst_port: u16) -> Flow {
        Flow {
            src: ip(src),
            dst: ip(dst),
            transport: Transport::Tcp {
                src_port: 40000,
                dst_port,
                flags: TcpFlags::SYN,
            },
        }
    }

    fn nobody(_: Ipv4Addr) -> Vec<GroupId> {
        Vec::new()
    }

    #[test]
    fn a_new_group_allows_all_egress_and_no_ingress() {
        let g = group(1);
        let flow = tcp("10.0.0.2", "10.0.0.3", 80);
        assert!(allows(Direction::Egress, &[&g], &flow, &nobody));
        assert!(!allows(Direction::Ingress, &[&g], &flow, &nobody));
        assert!(!allows(Direction::Egress, &[], &flow, &nobody));
    }

    #[test]
    fn groups_combine_as_a_union() {
        let mut ssh = group(1);
        ssh.add_rule(
            Direction::Ingress,
            Rule::new(
                Protocol::Tcp,
                "22".parse().ok(),
                "10.0.0.0/24".parse().unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        let mut web = group(2);
        web.add_rule(
            Direction::Ingress,
            Rule::new(Protocol::Tcp, "80".parse().ok(), Peer::Any).unwrap(),
        )
        .unwrap();
        let both = [&ssh, &web];
        assert!(allows(
            Direction::Ingress,
            &both,
            &tcp("10.0.0.9", "10.0.0.2", 22),
            &nobody
        ));
        assert!(!allows(
            Direction::Ingress,
            &both,
            &tcp("10.0.1.9", "10.0.0.2", 22),
            &nobody
        ));
        assert!(allows(
            Direction::Ingress,
            &both,
            &tcp("10.0.1.9", "10.0.0.2", 80),
            &nobody
        ));
        assert!(!allows(
            Direction::Ingress,
            &[&ssh],
            &tcp("10.0.1.9", "10.0.0.2", 80),
            &nobody
        ));
    }

    #[test]
    fn the_peer_depends_on_direction() {
        let mut g = group(1);
        g.remove_rule(Direction::Egress, &Rule::all(Peer::Any));
        let only_db = Rule::all("10.0.5.0/24".parse().unwrap());
        g.add_rule(Direction::Egress, only_db).unwrap();
        g.add_rule(Direction::Ingress, only_db).unwrap();
        assert!(allows(
            Direction::Egress,
            &[&g],
            &tcp("10.0.0.2", "10.0.5.7", 5432),
            &nobody
        ));
        assert!(!allows(
            Direction::Egress,
            &[&g],
            &tcp("10.0.5.7", "10.0.0.2", 5432),
            &nobody
        ));
        assert!(allows(
            Direction::Ingress,
            &[&g],
            &tcp("10.0.5.7", "10.0.0.2", 5432),
            &nobody
        ));
        assert!(!allows(
            Direction::Ingress,
            &[&g],
            &tcp("10.0.0.2", "10.0.5.7", 5432),
            &nobody
        ));
    }

    #[test]
    fn group_peers_resolve_lazily_and_once() {
        let app = GroupId::from_entropy(7);
        let mut db = group(1);
        db.add_rule(
            Direction::Ingress,
            Rule::new(
                Protocol::Icmp,
                None,
                Peer::Cidr("192.0.2.0/24".parse().unwrap()),
            )
            .unwrap(),
        )
        .unwrap();
        db.add_rule(
            Direction::Ingress,
            Rule::new(Protocol::Tcp, "5432".parse().ok(), Peer::Group(app)).unwrap(),
        )
        .unwrap();
        db.add_rule(
            Direction::Ingress,
            Rule::new(Protocol::Udp, None, Peer::Group(app)).unwrap(),
        )
        .unwrap();
        let calls = Cell::new(0);
        let members = |ip: Ipv4Addr| {
            calls.set(calls.get() + 1);
            if ip == Ipv4Addr::new(10, 0, 0, 9) {
                vec![app]
            } else {
                Vec::new()
            }
        };
        let ping = Flow {
            src: ip("192.0.2.1"),
            dst: ip("10.0.0.2"),
            transport: Transport::Icmp(Icmp::EchoRequest { ident: 1 }),
        };
        assert!(allows(Direction::Ingress, &[&db], &ping, &members));
        assert_eq!(calls.get(), 0, "no group rule was reached");
        assert!(allows(
            Direction::Ingress,
            &[&db],
            &tcp("10.0.0.9", "10.0.0.2", 5432),
            &members
        ));
        assert!(!allows(
            Direction::Ingress,
            &[&db],
            &tcp("10.0.0.8", "10.0.0.2", 5432),
            &members
        ));
        let udp = Flow {
            src: ip("10.0.0.8"),
            dst: ip("10.0.0.2"),
            transport: Transport::Udp {
                src_port: 1,
                dst_port: 2,
            },
        };
        calls.set(0);
        assert!(!allows(Direction::Ingress, &[&db], &udp, &members));
        assert_eq!(calls.get(), 1, "two group rules, one lookup");
    }

    #[test]
    fn rule_set_limits() {
        let mut g = group(1);
        let rule = Rule::all(Peer::Any);
        assert_eq!(
            g.add_rule(Direction::Egress, rule),
            Err(GroupError::Duplicate {
                direction: Direction::Egress,
                rule
            })
        );
        for port in 0..MAX_RULES_PER_DIRECTION as u16 {
            g.add_rule(
                Direction::Ingress,
                Rule::new(Protocol::Tcp, Some(PortRange::single(port)), Peer::Any).unwrap(),
            )
            .unwrap();
        }
        assert_eq!(
            g.add_rule(
                Direction::Ingress,
                Rule::new(Protocol::Udp, None, Peer::Any).unwrap()
            ),
            Err(GroupError::TooManyRules(Direction::Ingress))
        );
        assert!(g.remove_rule(Direction::Egress, &rule));
        assert!(!g.remove_rule(Direction::Egress, &rule));
        assert!(g.rules(Direction::Egress).is_empty());
        assert_eq!(
            SecurityGroup::new(GroupId::from_entropy(1), "x".repeat(256)),
            Err(GroupError::NameTooLong)
        );
    }

    #[test]
    fn serde_round_trip_validates() {
        let mut g = group(3);
        g.add_rule(
            Direction::Ingress,
            Rule::new(Protocol::Tcp, "80".parse().ok(), Peer::Any).unwrap(),
        )
        .unwrap();
        let json = serde_json::to_string(&g).unwrap();
        assert_eq!(
            json,
            r#"{"id":"sg-000000000003","name":"g3","ingress":[{"protocol":"tcp","ports":"80","peer":"any"}],"egress":[{"protocol":"all","peer":"any"}]}"#
        );
        assert_eq!(serde_json::from_str::<SecurityGroup>(&json).unwrap(), g);
        let empty_egress = r#"{"id":"sg-000000000003","name":"g3","ingress":[],"egress":[]}"#;
        assert!(
            serde_json::from_str::<SecurityGroup>(empty_egress)
                .unwrap()
                .rules(Direction::Egress)
                .is_empty()
        );
        let dup = r#"{"id":"sg-000000000003","name":"g3","ingress":[],"egress":[{"protocol":"all","peer":"any"},{"protocol":"all","peer":"any"}]}"#;
        assert!(serde_json::from_str::<SecurityGroup>(dup).is_err());
    }
}
