//! Gateways: where a subnet meets the host.
//!
//! A gateway is an interface record of its own, holding the subnet's
//! gateway address (its first), attached to the gateway rather than to an
//! instance, with the source/destination check off and the `gateway`
//! security group (everything in, everything out: the instances' groups
//! decide). The router sends it what the subnet's instances address to the
//! gateway or to anything outside the subnet ([`Router::set_gateway`]).
//! Its endpoint is *transparent*: it terminates connections to any address.
//!
//! What reaches the gateway goes, in this order:
//!
//! 1. to its endpoint, when one of the endpoint's sockets holds the
//!    destination port (a port forward's connection, a NAT flow);
//! 2. to the TUN device, if the gateway has one, when it is for the gateway
//!    address (the host kernel holds it on the device) or when NAT is off;
//! 3. with NAT on, a new TCP connection or UDP flow is taken by the endpoint
//!    and carried over a host socket ([`nat`]), if the host's egress
//!    allow-list admits the destination; the gateway address stands for
//!    the host's loopback. A refused one is counted and answered with a
//!    reset (TCP) or port unreachable (UDP);
//! 4. anything else goes to the endpoint, which answers pings to the
//!    gateway address and resets the rest; ICMP for outside is dropped.
//!
//! Port forwards ([`forward`]) listen on a host address and connect, from
//! the gateway address, to an instance address: they follow the address,
//! so re-attaching the record moves them, and the instance's ingress rules
//! apply to them.
//!
//! [`Router::set_gateway`]: weft_netstack::Router::set_gateway

mod forward;
mod nat;
mod tun;

pub use forward::{Forward, ForwardCounters, ForwardInfo, ForwardRequest, Proto};
pub use nat::TCP_IDLE;

use super::sockets;
use super::{Inner, Network, NetworkError, invalid, not_found};
use crate::limit::{LOG_EVERY, Quota, Throttle};
use crate::store::Kind;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use weft_netstack::flow::Transport;
use weft_netstack::router::Counters;
use weft_netstack::secgroup::{Peer, Rule};
use weft_netstack::{Cidr, Flow, NicId, Record, SubnetId};

/// The name of the group every gateway's record is in: all ingress, all
/// egress, so that the instances' own groups decide what crosses.
pub const GATEWAY_GROUP: &str = "gateway";

/// A gateway as stored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Gateway {
    /// `gw-` and 12 hex digits.
    pub id: String,
    /// The subnet it serves.
    pub subnet: String,
    /// Its interface record (holding the subnet's gateway address).
    pub nic: String,
    /// The gateway address.
    pub ip: Ipv4Addr,
    /// Outbound NAT to host sockets.
    pub nat: bool,
    /// The TUN device's name, if it has one.
    pub tun: Option<String>,
    /// When it was created (ms since the epoch).
    pub created_ms: u64,
}

/// What a gateway did.
#[derive(Debug, Default)]
pub struct GatewayCounters {
    /// TCP connections carried by NAT.
    pub nat_tcp: AtomicU64,
    /// UDP flows carried by NAT.
    pub nat_udp: AtomicU64,
    /// Connections and flows refused by the egress allow-list (or NAT off).
    pub nat_denied: AtomicU64,
    /// NAT flows that failed on the host side (refused, unreachable).
    pub nat_failed: AtomicU64,
    /// NAT's TCP connections closed for carrying nothing for the idle limit.
    pub nat_idle: AtomicU64,
    /// Connections and flows refused because their guest address held
    /// [`nat::FLOWS_PER_SOURCE`] NAT destinations open already.
    pub nat_limited: AtomicU64,
    /// Datagrams from the TUN device into the network.
    pub tun_in: AtomicU64,
    /// Datagrams from the network to the TUN device.
    pub tun_out: AtomicU64,
    /// Datagrams for the TUN device dropped (its queue was full).
    pub tun_dropped: AtomicU64,
}

impl GatewayCounters {
    fn snapshot(&self) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "nat_tcp": get(&self.nat_tcp),
            "nat_udp": get(&self.nat_udp),
            "nat_denied": get(&self.nat_denied),
            "nat_failed": get(&self.nat_failed),
            "nat_idle": get(&self.nat_idle),
            "nat_limited": get(&self.nat_limited),
            "tun_in": get(&self.tun_in),
            "tun_out": get(&self.tun_out),
            "tun_dropped": get(&self.tun_dropped),
        })
    }
}

pub(super) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A gateway with what it is doing now.
#[derive(Clone, Debug)]
pub struct GatewayInfo {
    /// As stored.
    pub gateway: Gateway,
    /// The subnet's block.
    pub cidr: Option<Cidr>,
    /// `up`, or why it is not (e.g. its TUN device could not be made).
    pub status: String,
    /// Its own counters.
    pub counters: serde_json::Value,
    /// Its router port's counters.
    pub port: Option<Counters>,
}

/// The gateway's side of its router port, read by the pump.
#[derive(Debug)]
pub(super) struct Port {
    id: String,
    ip: Ipv4Addr,
    nat: bool,
    tun: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    counters: Arc<GatewayCounters>,
    /// NAT destinations each guest address holds open.
    quota: Arc<Quota<Ipv4Addr>>,
}

/// Gateways' and forwards' running parts, beside the network's lock.
#[derive(Default)]
pub(super) struct Running {
    counters: HashMap<String, Arc<GatewayCounters>>,
    status: HashMap<String, String>,
    tuns: HashMap<String, tun::Device>,
    forwards: HashMap<String, forward::Running>,
    nat: Option<tokio::sync::mpsc::UnboundedSender<nat::Job>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("tuns", &self.tuns.len())
            .field("forwards", &self.forwards.len())
            .finish()
    }
}

impl Inner {
    /// The block of `gateway`'s subnet, while the subnet exists.
    fn cidr_of(&self, gateway: &Gateway) -> Option<Cidr> {
        let sid: SubnetId = gateway.subnet.parse().ok()?;
        self.subnets.get(&sid).map(|(subnet, _)| subnet.cidr())
    }

    /// The gateway port of subnet `sid`.
    fn gateway_of(&self, sid: SubnetId) -> Option<&Port> {
        self.gateways
            .iter()
            .find(|(nic, _)| self.nics.get(nic).is_some_and(|r| r.subnet() == sid))
            .map(|(_, port)| port)
    }
}

fn gateway_id() -> String {
    format!("gw-{:012x}", super::entropy() & 0xffff_ffff_ffff)
}

impl Network {
    fn running(&self) -> std::sync::MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets how long a TCP connection through a gateway may carry nothing
    /// either way before it is closed (at least 1 ms).
    pub fn set_tcp_idle(&self, idle: Duration) {
        let ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX).max(1);
        self.tcp_idle_ms.store(ms, Ordering::Relaxed);
    }

    /// How long a TCP connection through a gateway (a forward's or NAT's)
    /// may carry nothing either way before it is closed.
    pub fn tcp_idle(&self) -> Duration {
        Duration::from_millis(self.tcp_idle_ms.load(Ordering::Relaxed))
    }

    /// Sets the host's egress allow-list: NAT carries only connections to
    /// these blocks (none: NAT reaches nothing).
    pub fn set_egress_allow(&self, allow: Vec<Cidr>) {
        *self.egress_allow.write().unwrap_or_else(|p| p.into_inner()) = allow;
    }

    /// The host's egress allow-list.
    pub fn egress_allow(&self) -> Vec<Cidr> {
        self.egress_allow
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn egress_allowed(&self, ip: Ipv4Addr) -> bool {
        self.egress_allow
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|cidr| cidr.contains(ip))
    }

    /// The id of the `gateway` group, made on first use.
    fn gateway_group(&self) -> Result<weft_netstack::GroupId, NetworkError> {
        if let Some(group) = self.groups().iter().find(|g| g.name() == GATEWAY_GROUP) {
            return Ok(group.id());
        }
        let all = Rule::all(Peer::Any);
        Ok(self
            .create_group(GATEWAY_GROUP, vec![all], Some(vec![all]))?
            .id())
    }

    /// Creates the gateway of `subnet`: with outbound NAT if `nat`, and a
    /// TUN device named `tun` holding the gateway address, routing the
    /// subnet into the host kernel. Nothing is stored if the device cannot
    /// be made.
    pub fn create_gateway(
        self: &Arc<Self>,
        subnet: &str,
        nat: bool,
        tun: Option<String>,
    ) -> Result<GatewayInfo, NetworkError> {
        let sid: SubnetId = subnet.parse().map_err(|_| not_found("subnet", subnet))?;
        let (cidr, ip) = {
            let inner = self.lock();
            let (subnet, _) = inner
                .subnets
                .get(&sid)
                .ok_or_else(|| not_found("subnet", sid))?;
            if let Some(port) = inner.gateway_of(sid) {
                return Err(NetworkError::Conflict(format!(
                    "{sid} has a gateway already: {}",
                    port.id
                )));
            }
            (subnet.cidr(), subnet.gateway())
        };
        if let Some(name) = &tun {
            tun::check_name(name).map_err(invalid)?;
        }
        let group = self.gateway_group()?;
        let gateway = Gateway {
            id: gateway_id(),
            subnet: sid.to_string(),
            nic: NicId::from_entropy(super::entropy()).to_string(),
            ip,
            nat,
            tun,
            created_ms: crate::activity::now_ms(),
        };
        // The device first: without it, nothing changes.
        let device = match &gateway.tun {
            Some(name) => Some(tun::Device::open(name, ip, cidr).map_err(invalid)?),
            None => None,
        };
        let mut record = Record::new(gateway.nic.parse().expect("a fresh id"), sid, ip);
        record.set_source_dest_check(false);
        record.set_security_groups(vec![group]).map_err(invalid)?;
        record
            .set_description(format!("gateway {}", gateway.id))
            .map_err(invalid)?;
        record
            .attach(&gateway.id, crate::activity::now_ms())
            .map_err(invalid)?;
        {
            let mut inner = self.lock();
            // Checked again under the lock that stores it: two requests for
            // the same subnet cannot both get its address.
            if let Some(holder) = inner.nics.values().find(|r| r.owns(ip)) {
                return Err(NetworkError::Conflict(format!(
                    "{ip} is held by {} ({})",
                    holder.id(),
                    holder.description()
                )));
            }
            self.store
                .put(Kind::Nic, &record.id().to_string(), &record)?;
            if let Err(error) = self.store.put(Kind::Gateway, &gateway.id, &gateway) {
                let _ = self.store.remove(Kind::Nic, &record.id().to_string());
                return Err(error.into());
            }
            inner.nics.insert(record.id(), record.clone());
        }
        self.bring_up(&gateway, device);
        self.gateway(&gateway.id)
    }

    /// Puts a stored gateway's port into the router, makes its endpoint
    /// transparent, and starts its device.
    fn bring_up(self: &Arc<Self>, gateway: &Gateway, device: Option<tun::Device>) {
        let counters = self
            .running()
            .counters
            .entry(gateway.id.clone())
            .or_default()
            .clone();
        let nic: NicId = match gateway.nic.parse() {
            Ok(nic) => nic,
            Err(_) => return,
        };
        let tx = device
            .as_ref()
            .map(|device| device.start(Arc::downgrade(self), nic, counters.clone()));
        let status = {
            let mut inner = self.lock();
            let now = self.now();
            let record = inner.nics.get(&nic).cloned();
            let cidr = inner.cidr_of(gateway);
            match (record, cidr) {
                (Some(record), Some(cidr)) => {
                    if !inner.router.is_attached(nic)
                        && let Err(error) = inner.router.attach(&record)
                    {
                        tracing::warn!(gateway = %gateway.id, "cannot attach its record: {error}");
                    }
                    if !inner.endpoints.contains_key(&nic) {
                        inner.start_endpoint(&record, now);
                    }
                    if let Some(endpoint) = inner.endpoints.get_mut(&nic) {
                        endpoint.set_transparent(true);
                    }
                    let _ = inner.router.set_gateway(cidr, nic);
                    // Its group lets everything through both ways: it
                    // keeps no table that the flows of the instances behind
                    // it could fill (one could fill it for all of them).
                    inner.router.set_tracking(nic, false);
                    inner.gateways.insert(
                        nic,
                        Port {
                            id: gateway.id.clone(),
                            ip: gateway.ip,
                            nat: gateway.nat,
                            tun: tx,
                            counters,
                            quota: Quota::new(nat::FLOWS_PER_SOURCE),
                        },
                    );
                    None
                }
                _ => Some("its record or subnet is missing".to_owned()),
            }
        };
        let mut running = self.running();
        if let Some(device) = device {
            running.tuns.insert(gateway.id.clone(), device);
        }
        match status {
            Some(status) => running.status.insert(gateway.id.clone(), status),
            None => running.status.remove(&gateway.id),
        };
    }

    /// Every gateway.
    pub fn gateways(&self) -> Vec<GatewayInfo> {
        let stored: Vec<Gateway> = self.store.all_of(Kind::Gateway).unwrap_or_default();
        stored.into_iter().map(|g| self.describe(g)).collect()
    }

    /// One gateway.
    pub fn gateway(&self, id: &str) -> Result<GatewayInfo, NetworkError> {
        self.store
            .get::<Gateway>(Kind::Gateway, id)?
            .map(|g| self.describe(g))
            .ok_or_else(|| not_found("gateway", id))
    }

    fn describe(&self, gateway: Gateway) -> GatewayInfo {
        let (cidr, port) = {
            let inner = self.lock();
            let cidr = inner.cidr_of(&gateway);
            let port = gateway
                .nic
                .parse()
                .ok()
                .and_then(|nic| inner.router.counters(nic).cloned());
            (cidr, port)
        };
        let running = self.running();
        GatewayInfo {
            status: running
                .status
                .get(&gateway.id)
                .cloned()
                .unwrap_or_else(|| "up".to_owned()),
            counters: running
                .counters
                .get(&gateway.id)
                .map(|c| c.snapshot())
                .unwrap_or_default(),
            cidr,
            port,
            gateway,
        }
    }

    /// Deletes a gateway no forward uses: its device goes, its record is
    /// removed, and the subnet has no way out any more.
    pub fn delete_gateway(&self, id: &str) -> Result<(), NetworkError> {
        let gateway = self.gateway(id)?.gateway;
        let users: Vec<String> = self
            .forwards()
            .into_iter()
            .filter(|f| self.gateway_for(*f.forward.to.ip()).as_deref() == Some(id))
            .map(|f| f.forward.id)
            .collect();
        if !users.is_empty() {
            return Err(NetworkError::Conflict(format!(
                "{id} carries {}: remove them first",
                users.join(", ")
            )));
        }
        let nic: NicId = gateway.nic.parse().map_err(invalid)?;
        {
            let mut inner = self.lock();
            self.store.remove(Kind::Gateway, id)?;
            self.store.remove(Kind::Nic, &gateway.nic)?;
            inner.gateways.remove(&nic);
            if let Some(cidr) = inner.cidr_of(&gateway)
                && let Some(previous) = inner.router.remove_gateway(cidr)
                && previous != nic
            {
                // Not ours (cannot happen while one gateway a subnet):
                // leave it.
                let _ = inner.router.set_gateway(cidr, previous);
            }
            inner.router.detach(nic);
            inner.stop_endpoint(nic);
            inner.drop_instance(id);
            inner.nics.remove(&nic);
        }
        let mut running = self.running();
        running.tuns.remove(id);
        running.status.remove(id);
        running.counters.remove(id);
        Ok(())
    }

    /// The gateway (its id) of the subnet holding `ip`.
    fn gateway_for(&self, ip: Ipv4Addr) -> Option<String> {
        let inner = self.lock();
        let (subnet, _) = inner
            .subnets
            .values()
            .find(|(s, _)| s.cidr().contains(ip))?;
        inner.gateway_of(subnet.id()).map(|port| port.id.clone())
    }

    /// Whether `nic` is a gateway's record (managed with its gateway).
    pub(super) fn managed_by(inner: &Inner, nic: NicId) -> Option<String> {
        inner.gateways.get(&nic).map(|p| p.id.clone())
    }

    /// Brings back the stored gateways and forwards (after a restart) and
    /// starts carrying NAT flows. Needs a tokio runtime.
    pub fn start_gateways(self: &Arc<Self>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.running().nat = Some(tx);
        nat::spawn(Arc::downgrade(self), rx);
        let stored: Vec<Gateway> = self.store.all_of(Kind::Gateway).unwrap_or_default();
        for gateway in stored {
            let device = match &gateway.tun {
                Some(name) => match tun::Device::open(name, gateway.ip, self.cidr_of(&gateway)) {
                    Ok(device) => Some(device),
                    Err(error) => {
                        tracing::warn!(gateway = %gateway.id, "{error}");
                        self.bring_up(&gateway, None);
                        self.running()
                            .status
                            .insert(gateway.id.clone(), error.to_string());
                        continue;
                    }
                },
                None => None,
            };
            self.bring_up(&gateway, device);
        }
        self.restore_forwards();
    }

    fn cidr_of(&self, gateway: &Gateway) -> Cidr {
        self.lock()
            .cidr_of(gateway)
            .unwrap_or(Cidr::host(gateway.ip))
    }

    /// Routes a datagram the router delivered to gateway port `nic` (see
    /// the module docs for where it goes).
    pub(super) fn at_gateway(&self, inner: &mut Inner, nic: NicId, packet: &[u8]) {
        let Some(port) = inner.gateways.get(&nic) else {
            return;
        };
        let Ok((flow, _)) = Flow::parse(packet) else {
            return;
        };
        let to_gateway = flow.dst == port.ip;
        let (tcp, dst_port, opens) = match flow.transport {
            Transport::Tcp {
                dst_port, flags, ..
            } => (Some(true), dst_port, flags.syn && !flags.ack && !flags.rst),
            Transport::Udp { dst_port, .. } => (Some(false), dst_port, true),
            _ => (None, 0, false),
        };
        let local = SocketAddrV4::new(flow.dst, dst_port);
        let taken = tcp.is_some_and(|tcp| {
            inner
                .endpoints
                .get(&nic)
                .is_some_and(|e| e.port_in_use(tcp, local))
        });
        if !taken {
            if let Some(tun) = &port.tun
                && (to_gateway || !port.nat)
            {
                match tun.try_send(packet.to_vec()) {
                    Ok(()) => bump(&port.counters.tun_out),
                    Err(_) => bump(&port.counters.tun_dropped),
                }
                return;
            }
            if tcp.is_none() && !to_gateway {
                // ICMP and other protocols are not carried outside.
                return;
            }
            if let Some(tcp) = tcp
                && opens
            {
                let (id, nat, counters) = (port.id.clone(), port.nat, port.counters.clone());
                let quota = port.quota.clone();
                let target = if to_gateway {
                    SocketAddr::from((Ipv4Addr::LOCALHOST, dst_port))
                } else {
                    SocketAddr::from(local)
                };
                // Port 0 is no destination: binding it would take any free
                // port, and hold a socket for traffic that never comes.
                let allowed = match target {
                    SocketAddr::V4(v4) => nat && dst_port != 0 && self.egress_allowed(*v4.ip()),
                    SocketAddr::V6(_) => false,
                };
                if !allowed {
                    static REFUSED: Throttle = Throttle::new(LOG_EVERY);
                    bump(&counters.nat_denied);
                    if let Some(skipped) = REFUSED.admit() {
                        tracing::info!(
                            gateway = %id,
                            from = %flow.src,
                            to = %target,
                            skipped,
                            "outbound connection refused: not in the egress allow-list"
                        );
                    }
                } else if let Some(held) = quota.take(flow.src) {
                    match sockets::bind_on(inner, &id, nic, local, tcp) {
                        Ok(handle) => {
                            let job = nat::Job {
                                gateway: id.clone(),
                                handle,
                                target,
                                tcp,
                                counters,
                                _place: held,
                            };
                            if let Some(jobs) = &self.running().nat {
                                let _ = jobs.send(job);
                            }
                        }
                        Err(error) => {
                            static NO_ROOM: Throttle = Throttle::new(LOG_EVERY);
                            bump(&counters.nat_failed);
                            if let Some(skipped) = NO_ROOM.admit() {
                                tracing::warn!(
                                    gateway = %id,
                                    skipped,
                                    "no room for a NAT flow: {error:?}"
                                );
                            }
                        }
                    }
                } else {
                    static LIMITED: Throttle = Throttle::new(LOG_EVERY);
                    bump(&counters.nat_limited);
                    if let Some(skipped) = LIMITED.admit() {
                        tracing::info!(
                            gateway = %id,
                            from = %flow.src,
                            skipped,
                            "outbound connection refused: {} NAT destinations open from this address already",
                            nat::FLOWS_PER_SOURCE
                        );
                    }
                }
            }
        }
        if let Some(endpoint) = inner.endpoints.get_mut(&nic) {
            endpoint.receive(packet);
        }
    }

    /// Takes a datagram from outside (the TUN device) into the network at
    /// gateway port `nic`.
    pub(super) fn inject(&self, nic: NicId, packets: &[Vec<u8>]) {
        let mut inner = self.lock();
        let now = self.now();
        for packet in packets {
            self.route_datagram(&mut inner, now, nic, packet);
        }
        if self.pump_locked(&mut inner) {
            self.changed.notify_waiters();
        }
    }
}

/// Parses an egress allow-list entry: a CIDR block or one address.
pub fn parse_allow(text: &str) -> Result<Cidr, String> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<Ipv4Addr>() {
        return Ok(Cidr::host(ip));
    }
    text.parse::<Cidr>()
        .map_err(|e| format!("`{text}` is not an IPv4 block (10.0.0.0/8) or address: {e}"))
}
