//! The virtual router: forwards IPv4 datagrams between attached interfaces.
//!
//! Each attached [`Record`] is a *port*: its id, its addresses, its groups,
//! its source/destination check, its own [`ConnTrack`] table and its
//! [`Counters`]. [`Router::route`] takes a datagram an instance sent on a port
//! and decides, in this order:
//!
//! 1. [`TooLarge`](DropReason::TooLarge) if longer than the MTU;
//!    [`Malformed`](DropReason::Malformed) / [`Fragmented`](DropReason::Fragmented)
//!    if [`Flow::parse`] refuses it;
//! 2. [`SourceCheck`](DropReason::SourceCheck) if the sending port's check is
//!    on and the source is not one of its addresses;
//! 3. the receiving port: the attached port holding the destination address,
//!    else the longest-prefix [route](Router::set_route), else the
//!    [gateway](Router::set_gateway) of the block the source is in (never
//!    back to the sender); else [`NoRoute`](DropReason::NoRoute), as a router
//!    drops what it has no route for. A detached record's addresses have no
//!    route;
//! 4. [`DestinationCheck`](DropReason::DestinationCheck) if reached by a route
//!    at a port whose check is on;
//! 5. the sending port's egress: a packet of a flow tracked there passes,
//!    else its groups' egress rules decide ([`EgressDenied`](DropReason::EgressDenied));
//! 6. the receiving port's ingress, likewise ([`IngressDenied`](DropReason::IngressDenied));
//! 7. a new flow is tracked in both tables, or dropped as
//!    [`ConntrackFull`](DropReason::ConntrackFull) if either is full;
//!
//! and otherwise delivers it unchanged ([`Verdict::Deliver`]). The router is
//! not a hop: it rewrites nothing, not even the TTL, so instances on the
//! network look directly connected. It never panics on any datagram.
//!
//! Security groups are held by id ([`set_group`](Router::set_group)); a
//! change applies to the next new flow at once, while tracked flows keep
//! passing until they expire. A port naming a group the router does not hold
//! gets no rules from it. Group peers resolve through the groups of the
//! attached port that holds the peer address.
//!
//! ```
//! use weft_netstack::{id::*, packet, record::Record, router::{Config, Router, Verdict}};
//! use weft_netstack::{flow::TcpFlags, secgroup::{Direction, Peer, Protocol, Rule, SecurityGroup}};
//! use smoltcp::time::Instant;
//!
//! let mut ids = Generator::from_seed(1);
//! let (subnet, group): (SubnetId, GroupId) = (ids.next_id(), ids.next_id());
//! let mut web = SecurityGroup::new(group, "web").unwrap();
//! web.add_rule(Direction::Ingress, Rule::new(Protocol::Tcp, "80".parse().ok(), Peer::Any).unwrap()).unwrap();
//!
//! let mut client = Record::new(ids.next_id(), subnet, "10.0.1.2".parse().unwrap());
//! let mut server = Record::new(ids.next_id(), subnet, "10.0.1.3".parse().unwrap());
//! client.set_security_groups(vec![group]).unwrap();
//! server.set_security_groups(vec![group]).unwrap();
//!
//! let mut router = Router::new(Config::default());
//! router.set_group(web);
//! router.attach(&client).unwrap();
//! router.attach(&server).unwrap();
//!
//! let syn = packet::tcp("10.0.1.2:40000".parse().unwrap(), "10.0.1.3:80".parse().unwrap(), TcpFlags::SYN, b"");
//! let verdict = router.route(Instant::from_secs(0), client.id(), &syn);
//! assert_eq!(verdict, Verdict::Deliver { to: server.id(), packet: &syn[..] });
//! ```

mod counters;

use std::collections::HashMap;

use core::net::Ipv4Addr;

use smoltcp::time::Instant;

pub use counters::{Counters, DropReason};

use crate::cidr::Cidr;
use crate::conntrack::{self, ConnTrack, Match};
use crate::flow::{Flow, ParseError};
use crate::id::{GroupId, NicId};
use crate::record::Record;
use crate::secgroup::{self, Direction, SecurityGroup};

/// The default MTU: the largest IPv4 datagram. Endpoints should use the same
/// MTU, so that nothing on the network needs fragmenting.
pub const DEFAULT_MTU: usize = 65_535;
/// The most static routes a router holds; lookup is linear in them.
pub const MAX_ROUTES: usize = 64;

/// A router's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The longest datagram forwarded, in bytes (the buffer handed to
    /// [`Router::route`], trailing bytes included). Default [`DEFAULT_MTU`].
    pub mtu: usize,
    /// Size and timeouts of each port's connection tracking table; the
    /// capacity is per port, so memory is bounded by ports × capacity.
    pub conntrack: conntrack::Config,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            mtu: DEFAULT_MTU,
            conntrack: conntrack::Config::default(),
        }
    }
}

/// What to do with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Verdict<'a> {
    /// Hand `packet` (the datagram trimmed to its IPv4 total length) to the
    /// instance behind port `to`.
    Deliver {
        /// The receiving port.
        to: NicId,
        /// The datagram, unchanged.
        packet: &'a [u8],
    },
    /// Drop it; it was counted.
    Drop(DropReason),
}

/// Why a record could not be attached or updated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    /// The record is attached already.
    #[error("{0} is already attached")]
    AlreadyAttached(NicId),
    /// The record is not attached (for [`Router::update`]).
    #[error("{0} is not attached")]
    NotAttached(NicId),
    /// Another attached record holds one of its addresses.
    #[error("{address} is held by {holder}")]
    AddressInUse {
        /// The address.
        address: Ipv4Addr,
        /// The attached record holding it.
        holder: NicId,
    },
}

/// Why a route was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The router holds [`MAX_ROUTES`] routes already.
    #[error("a router holds at most {MAX_ROUTES} routes")]
    TooMany,
}

#[derive(Debug)]
struct Port {
    ips: Vec<Ipv4Addr>,
    groups: Vec<GroupId>,
    check: bool,
    /// Whether flows are tracked on this side (see [`Router::set_tracking`]).
    track: bool,
    conntrack: ConnTrack,
    counters: Counters,
}

impl Port {
    fn owns(&self, ip: Ipv4Addr) -> bool {
        self.ips.contains(&ip)
    }
}

/// What the read-only half of [`Router::route`] decided for a datagram that
/// may pass: where to, and how each side's table relates to the flow.
struct Pass {
    to: NicId,
    egress: Option<Match>,
    ingress: Option<Match>,
}

/// The virtual router. See the [module docs](self) for what it decides.
#[derive(Debug)]
pub struct Router {
    config: Config,
    ports: HashMap<NicId, Port>,
    by_ip: HashMap<Ipv4Addr, NicId>,
    /// Static routes, longest prefix first.
    routes: Vec<(Cidr, NicId)>,
    /// Default routes by source block (a subnet's gateway), longest first.
    gateways: Vec<(Cidr, NicId)>,
    groups: HashMap<GroupId, SecurityGroup>,
    totals: Counters,
}

impl Router {
    /// A router with no port, group or route.
    pub fn new(config: Config) -> Router {
        Router {
            config,
            ports: HashMap::new(),
            by_ip: HashMap::new(),
            routes: Vec::new(),
            gateways: Vec::new(),
            groups: HashMap::new(),
            totals: Counters::default(),
        }
    }

    /// The router's settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Attaches `record` as a port: traffic to its addresses flows to it from
    /// now on, under its groups, with a fresh connection tracking table and
    /// counters. Errs if it is attached or another port holds an address.
    pub fn attach(&mut self, record: &Record) -> Result<(), AttachError> {
        if self.ports.contains_key(&record.id()) {
            return Err(AttachError::AlreadyAttached(record.id()));
        }
        self.check_addresses(record)?;
        for ip in record.ips() {
            self.by_ip.insert(ip, record.id());
        }
        self.ports.insert(
            record.id(),
            Port {
                ips: record.ips().collect(),
                groups: record.security_groups().to_vec(),
                check: record.source_dest_check(),
                track: true,
                conntrack: ConnTrack::new(self.config.conntrack),
                counters: Counters::default(),
            },
        );
        Ok(())
    }

    /// Applies an attached record's new addresses, groups and check, keeping
    /// its tracked flows and counters. Errs if it is not attached or another
    /// port holds one of the new addresses (then nothing changes).
    pub fn update(&mut self, record: &Record) -> Result<(), AttachError> {
        if !self.ports.contains_key(&record.id()) {
            return Err(AttachError::NotAttached(record.id()));
        }
        self.check_addresses(record)?;
        let Some(port) = self.ports.get_mut(&record.id()) else {
            return Err(AttachError::NotAttached(record.id()));
        };
        for ip in port.ips.drain(..) {
            self.by_ip.remove(&ip);
        }
        port.ips = record.ips().collect();
        port.groups = record.security_groups().to_vec();
        port.check = record.source_dest_check();
        for ip in record.ips() {
            self.by_ip.insert(ip, record.id());
        }
        Ok(())
    }

    fn check_addresses(&self, record: &Record) -> Result<(), AttachError> {
        for address in record.ips() {
            if let Some(&holder) = self.by_ip.get(&address)
                && holder != record.id()
            {
                return Err(AttachError::AddressInUse { address, holder });
            }
        }
        Ok(())
    }

    /// Detaches a port: its addresses have no route from now on and its
    /// tracked flows are forgotten. Returns its final counters, or `None` if
    /// it was not attached. Routes through it stay and drop as `NoRoute`
    /// until it is attached again.
    pub fn detach(&mut self, nic: NicId) -> Option<Counters> {
        let port = self.ports.remove(&nic)?;
        for ip in &port.ips {
            self.by_ip.remove(ip);
        }
        Some(port.counters)
    }

    /// Whether `nic` is attached.
    pub fn is_attached(&self, nic: NicId) -> bool {
        self.ports.contains_key(&nic)
    }

    /// The attached ports, in no particular order.
    pub fn ports(&self) -> impl Iterator<Item = NicId> + '_ {
        self.ports.keys().copied()
    }

    /// The attached port holding `ip`.
    pub fn port_of(&self, ip: Ipv4Addr) -> Option<NicId> {
        self.by_ip.get(&ip).copied()
    }

    /// Adds or replaces a security group; returns the one it replaced.
    /// New flows are judged by it at once.
    pub fn set_group(&mut self, group: SecurityGroup) -> Option<SecurityGroup> {
        self.groups.insert(group.id(), group)
    }

    /// Removes a security group; ports naming it get no rules from it.
    pub fn remove_group(&mut self, id: GroupId) -> Option<SecurityGroup> {
        self.groups.remove(&id)
    }

    /// A security group the router holds.
    pub fn group(&self, id: GroupId) -> Option<&SecurityGroup> {
        self.groups.get(&id)
    }

    /// Routes `cidr` to the port `nic` (e.g. a NAT instance), replacing any
    /// route for the same block; returns the port it replaced. Addresses held
    /// by attached ports are never routed.
    pub fn set_route(&mut self, cidr: Cidr, nic: NicId) -> Result<Option<NicId>, RouteError> {
        set_in(&mut self.routes, cidr, nic)
    }

    /// Removes the route for `cidr`; returns its port.
    pub fn remove_route(&mut self, cidr: Cidr) -> Option<NicId> {
        let at = self.routes.iter().position(|(c, _)| *c == cidr)?;
        Some(self.routes.remove(at).1)
    }

    /// Sets whether flows are tracked on port `nic`'s side (they are, from
    /// attachment); `false` when it is not attached. Untracked, its groups
    /// decide every datagram on their own and it keeps no table: for a port
    /// whose groups let everything pass both ways, such as a gateway's,
    /// whose table the many flows of the instances behind it would otherwise
    /// fill (one instance could fill it for all). The instances' own tables
    /// still track their side of each flow.
    pub fn set_tracking(&mut self, nic: NicId, track: bool) -> bool {
        let Some(port) = self.ports.get_mut(&nic) else {
            return false;
        };
        port.track = track;
        if !track {
            port.conntrack = ConnTrack::new(self.config.conntrack);
        }
        true
    }

    /// Makes port `nic` the gateway of the block `source` (a subnet): a
    /// datagram from an address in it, to an address no port holds and no
    /// route covers, goes to `nic`. Replaces the block's gateway; returns the
    /// port it replaced.
    pub fn set_gateway(&mut self, source: Cidr, nic: NicId) -> Result<Option<NicId>, RouteError> {
        set_in(&mut self.gateways, source, nic)
    }

    /// Removes the gateway of the block `source`; returns its port.
    pub fn remove_gateway(&mut self, source: Cidr) -> Option<NicId> {
        let at = self.gateways.iter().position(|(c, _)| *c == source)?;
        Some(self.gateways.remove(at).1)
    }

    /// A port's counters, if attached.
    pub fn counters(&self, nic: NicId) -> Option<&Counters> {
        self.ports.get(&nic).map(|p| &p.counters)
    }

    /// The sum over every port ever attached, plus the drops counted on no
    /// port ([`DropReason::UnknownPort`]).
    pub fn totals(&self) -> &Counters {
        &self.totals
    }

    /// A port's connection tracking table, if attached.
    pub fn conntrack(&self, nic: NicId) -> Option<&ConnTrack> {
        self.ports.get(&nic).map(|p| &p.conntrack)
    }

    /// Purges expired flows from every port's table; returns how many. Call
    /// it every second or so; tables also purge themselves when full.
    pub fn expire(&mut self, now: Instant) -> usize {
        self.ports
            .values_mut()
            .map(|p| p.conntrack.expire(now))
            .sum()
    }

    /// Decides what to do with `packet`, which the instance behind port
    /// `from` sent, at time `now`; counts the outcome. See the module docs.
    pub fn route<'a>(&mut self, now: Instant, from: NicId, packet: &'a [u8]) -> Verdict<'a> {
        if !self.ports.contains_key(&from) {
            self.totals.count_drop(DropReason::UnknownPort);
            return Verdict::Drop(DropReason::UnknownPort);
        }
        let outcome = self
            .decide(now, from, packet)
            .and_then(|(flow, datagram, pass)| {
                self.commit(now, from, &flow, &pass)?;
                Ok((pass.to, datagram))
            });
        match outcome {
            Ok((to, datagram)) => {
                let len = datagram.len();
                if let Some(port) = self.ports.get_mut(&from) {
                    port.counters.count_tx(len);
                }
                if let Some(port) = self.ports.get_mut(&to) {
                    port.counters.count_rx(len);
                }
                self.totals.count_tx(len);
                self.totals.count_rx(len);
                Verdict::Deliver {
                    to,
                    packet: datagram,
                }
            }
            Err((reason, at)) => {
                if let Some(port) = self.ports.get_mut(&at) {
                    port.counters.count_drop(reason);
                }
                self.totals.count_drop(reason);
                Verdict::Drop(reason)
            }
        }
    }

    /// Steps 1–6 of the module docs; changes nothing. Errors carry the port
    /// to count the drop on.
    fn decide<'a>(
        &self,
        now: Instant,
        from: NicId,
        packet: &'a [u8],
    ) -> Result<(Flow, &'a [u8], Pass), (DropReason, NicId)> {
        let drop = |reason| (reason, from);
        let sender = self.ports.get(&from).ok_or(drop(DropReason::UnknownPort))?;
        if packet.len() > self.config.mtu {
            return Err(drop(DropReason::TooLarge));
        }
        let (flow, datagram) = Flow::parse(packet).map_err(|e| match e {
            ParseError::Fragment => drop(DropReason::Fragmented),
            _ => drop(DropReason::Malformed),
        })?;
        if sender.check && !sender.owns(flow.src) {
            return Err(drop(DropReason::SourceCheck));
        }
        let (to, receiver) = self
            .next_port(from, flow.src, flow.dst)
            .ok_or(drop(DropReason::NoRoute))?;
        if receiver.check && !receiver.owns(flow.dst) {
            return Err((DropReason::DestinationCheck, to));
        }
        let egress = sender.conntrack.lookup(now, &flow, Direction::Egress);
        if egress.is_none() && !self.allows(sender, Direction::Egress, &flow) {
            return Err(drop(DropReason::EgressDenied));
        }
        let ingress = receiver.conntrack.lookup(now, &flow, Direction::Ingress);
        if ingress.is_none() && !self.allows(receiver, Direction::Ingress, &flow) {
            return Err((DropReason::IngressDenied, to));
        }
        Ok((
            flow,
            datagram,
            Pass {
                to,
                egress,
                ingress,
            },
        ))
    }

    /// The port a datagram from `src` for `dst` goes to: the holder of the
    /// address, else the longest-prefix route, else the gateway of the
    /// source's block, unless that leads back to `from` or to a port not
    /// attached.
    fn next_port(&self, from: NicId, src: Ipv4Addr, dst: Ipv4Addr) -> Option<(NicId, &Port)> {
        if let Some(&holder) = self.by_ip.get(&dst) {
            return self.ports.get(&holder).map(|p| (holder, p));
        }
        let &(_, target) = self
            .routes
            .iter()
            .find(|(cidr, _)| cidr.contains(dst))
            .or_else(|| self.gateways.iter().find(|(cidr, _)| cidr.contains(src)))?;
        if target == from {
            return None;
        }
        self.ports.get(&target).map(|p| (target, p))
    }

    /// Whether `port`'s groups allow `flow` in `direction`.
    fn allows(&self, port: &Port, direction: Direction, flow: &Flow) -> bool {
        let groups: Vec<&SecurityGroup> = port
            .groups
            .iter()
            .filter_map(|id| self.groups.get(id))
            .collect();
        let peer_groups = |ip: Ipv4Addr| {
            self.by_ip
                .get(&ip)
                .and_then(|nic| self.ports.get(nic))
                .map(|p| p.groups.clone())
                .unwrap_or_default()
        };
        secgroup::allows(direction, &groups, flow, &peer_groups)
    }

    /// Step 7: tracks a new flow on both sides, or refreshes a tracked one.
    /// Room is reserved on both sides before anything changes, so a drop
    /// leaves both tables as they were.
    fn commit(
        &mut self,
        now: Instant,
        from: NicId,
        flow: &Flow,
        pass: &Pass,
    ) -> Result<(), (DropReason, NicId)> {
        let opens = ConnTrack::opens(flow);
        let tracks = |nic: NicId| self.ports.get(&nic).is_some_and(|p| p.track);
        let need = |nic: NicId, matched: Option<Match>| {
            usize::from(tracks(nic) && matched.is_none() && opens)
        };
        let (need_egress, need_ingress) = (need(from, pass.egress), need(pass.to, pass.ingress));
        if from == pass.to {
            self.reserve(now, from, need_egress + need_ingress)?;
        } else {
            self.reserve(now, from, need_egress)?;
            self.reserve(now, pass.to, need_ingress)?;
        }
        let sides = [
            (from, Direction::Egress, pass.egress),
            (pass.to, Direction::Ingress, pass.ingress),
        ];
        for (nic, direction, matched) in sides {
            let Some(port) = self.ports.get_mut(&nic).filter(|p| p.track) else {
                continue;
            };
            match matched {
                Some(how) => port.conntrack.refresh(now, flow, direction, how),
                None => {
                    // Cannot be refused: room was reserved above.
                    let _ = port.conntrack.insert(now, flow, direction);
                }
            }
        }
        Ok(())
    }

    /// Reserves room for `needed` new flows in `nic`'s table.
    fn reserve(
        &mut self,
        now: Instant,
        nic: NicId,
        needed: usize,
    ) -> Result<(), (DropReason, NicId)> {
        if needed == 0 {
            return Ok(());
        }
        // `decide` found the port attached and nothing detached it since.
        let port = self
            .ports
            .get_mut(&nic)
            .ok_or((DropReason::UnknownPort, nic))?;
        port.conntrack
            .reserve(now, needed)
            .map_err(|_| (DropReason::ConntrackFull, nic))
    }
}

/// Sets `cidr → nic` in a table kept longest prefix first; returns the port
/// it replaced.
fn set_in(
    table: &mut Vec<(Cidr, NicId)>,
    cidr: Cidr,
    nic: NicId,
) -> Result<Option<NicId>, RouteError> {
    if let Some(entry) = table.iter_mut().find(|(c, _)| *c == cidr) {
        return Ok(Some(core::mem::replace(&mut entry.1, nic)));
    }
    if table.len() >= MAX_ROUTES {
        return Err(RouteError::TooMany);
    }
    table.push((cidr, nic));
    table.sort_by_key(|(c, _)| core::cmp::Reverse(c.prefix_len()));
    Ok(None)
}

#[cfg(test)]
mod tests;
