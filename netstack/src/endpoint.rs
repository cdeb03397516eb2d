//! Endpoints: a smoltcp interface per attached record, serving guests' sockets.
//!
//! An [`Endpoint`] is what an instance holds on the virtual network through
//! one interface record: its addresses, a smoltcp [`Interface`] over a queue
//! device (raw IPv4, no Ethernet), and the TCP and UDP sockets its guests
//! open, named by [`SocketId`]. Like the rest of the crate it does no I/O and
//! reads no clock: the host hands it datagrams the router delivered
//! ([`receive`](Endpoint::receive)), runs it ([`poll`](Endpoint::poll), with
//! the time), takes what it sends ([`take_outgoing`](Endpoint::take_outgoing))
//! and asks when to run it next ([`poll_at`](Endpoint::poll_at)). Socket
//! calls only touch buffers; what they start happens at the next poll.
//!
//! What it does with a received datagram, before smoltcp sees it: one that
//! [`Flow::parse`](crate::flow::Flow::parse) refuses, or that is not for one of
//! the endpoint's addresses, is dropped; an ICMP echo request is answered here
//! (smoltcp's own answering is a feature this crate does not enable); a TCP
//! SYN that repeats one a connection already answered is dropped (that
//! connection retransmits its SYN-ACK), and so is a SYN for a listener whose
//! backlog is full, so the peer retries as it would against Linux. Everything
//! else goes to smoltcp, with every checksum verified; a segment for no
//! socket gets an RST, a UDP datagram for no socket an ICMP port unreachable.
//! Nothing here panics on any datagram.
//!
//! Addresses: the interface holds the primary address (source of every
//! connection and of UDP sent from `0.0.0.0`) and accepts any destination
//! (smoltcp's "any IP"), because an interface record has up to 16 addresses
//! and smoltcp's interface holds two; the screening above is what limits it
//! to the endpoint's own. Sockets may bind any of them.
//!
//! Bounded: sockets ([`Limits::max_sockets`], counting every smoltcp socket a
//! listener keeps for its backlog and sockets still closing), buffers per
//! socket, the receive queue, and time: a connection attempt or a half-open
//! accepted connection gives up after [`HANDSHAKE_TIMEOUT`], a closed socket
//! is aborted if its close has not finished after [`CLOSE_TIMEOUT`].
//! Established connections have no idle timeout and no keep-alive.
//!
//! Deterministic: the same calls with the same times give the same
//! datagrams; smoltcp's randomness is seeded from the addresses and the
//! creation time.
//!
//! ```
//! use weft_netstack::endpoint::{Endpoint, Instant, Limits};
//! use weft_netstack::packet;
//!
//! let me = "10.0.1.2".parse().unwrap();
//! let mut endpoint = Endpoint::new(&[me], 24, "10.0.1.1".parse().unwrap(), Limits::default(), Instant::ZERO);
//! let ping = packet::icmp_echo_request("10.0.1.3".parse().unwrap(), me, 7, 1, b"hi");
//! assert!(endpoint.receive(&ping));
//! endpoint.poll(Instant::from_millis(1));
//! let pong = endpoint.take_outgoing().unwrap();
//! assert_eq!(pong, packet::icmp_echo_reply(me, "10.0.1.3".parse().unwrap(), 7, 1, b"hi"));
//! ```

mod device;
mod ingress;
mod slots;
mod tcp;
mod udp;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::iface::{Config, Interface, PollResult};
use smoltcp::time::Duration;
use smoltcp::wire::{HardwareAddress, IpCidr, Ipv4Cidr};

pub use smoltcp::time::Instant;

use self::ingress::Screened;
use self::slots::Slots;

/// Ephemeral ports, for `tcp_connect` without a port and `udp_bind` to port 0.
pub const EPHEMERAL_PORTS: core::ops::RangeInclusive<u16> = 49152..=65535;
/// How long a connection attempt waits for its handshake (SYNs are resent at
/// 1, 3, 7, 15 and 31 s), and how long an accepted connection may stay
/// half-open before it is reset.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a closed TCP socket may take to finish its close before it is
/// aborted and its slot freed. TIME-WAIT itself lasts 10 s.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Sockets an endpoint keeps in TIME-WAIT at most; past it, the oldest is
/// freed. Every socket costs every poll (smoltcp walks them all), and on
/// this network no old segment can still be on its way, so a long
/// TIME-WAIT queue buys nothing (Linux bounds it too: `tcp_max_tw_buckets`).
pub const MAX_TIME_WAIT: usize = 64;
/// The largest UDP payload an IPv4 datagram can carry.
pub const MAX_UDP_PAYLOAD: usize = 65_507;
/// The size of each UDP socket's payload rings, at least; see [`Limits::udp_payload`].
pub const UDP_RING_BYTES: usize = 256 * 1024;

/// Per-endpoint limits. Values out of range are brought into range by
/// [`Endpoint::new`] (see each field); [`Endpoint::limits`] tells the ones in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Live smoltcp sockets: TCP connections (closing ones too), every socket
    /// a listener keeps for its backlog, and UDP sockets. Default 1024.
    pub max_sockets: usize,
    /// Receive and transmit buffer of each TCP socket, in bytes; the receive
    /// buffer is the advertised window. Default 256 KiB; 1 to 1 GiB.
    pub tcp_buffer: usize,
    /// Datagrams buffered per UDP socket, each way. Default 64; 1 to 65536.
    pub udp_packets: usize,
    /// The largest UDP payload sent or received, default (and at most)
    /// [`MAX_UDP_PAYLOAD`]. Buffers are not `udp_packets × udp_payload`:
    /// each direction has a ring of `udp_packets` datagrams sharing
    /// max([`UDP_RING_BYTES`], `udp_packets` × 2 KiB, 2 × `udp_payload`)
    /// bytes, so small datagrams fill the packet count and large ones the bytes.
    pub udp_payload: usize,
    /// Datagrams [`receive`](Endpoint::receive)d and not yet polled; more
    /// are dropped and counted. Also bounds the outgoing queue: past it,
    /// sockets keep their data until [`take_outgoing`](Endpoint::take_outgoing)
    /// drains it. Default 4096.
    pub rx_queue: usize,
    /// Connections per listener not yet accepted, half-open ones included.
    /// Default 16; at least 1.
    pub backlog: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_sockets: 1024,
            tcp_buffer: 256 * 1024,
            udp_packets: 64,
            udp_payload: MAX_UDP_PAYLOAD,
            rx_queue: 4096,
            backlog: 16,
        }
    }
}

impl Limits {
    fn normalized(self) -> Limits {
        Limits {
            tcp_buffer: self.tcp_buffer.clamp(1, 1 << 30),
            udp_packets: self.udp_packets.clamp(1, 1 << 16),
            udp_payload: self.udp_payload.min(MAX_UDP_PAYLOAD),
            backlog: self.backlog.max(1),
            ..self
        }
    }
}

/// A socket, as its endpoint names it. Ids are never reused within an
/// endpoint's life, so a stale id is [`SocketError::NoSuchSocket`], never
/// another socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(u64);

impl SocketId {
    /// The id as a number, e.g. for logs. 64 bits, so an endpoint that
    /// lives as long as the host (a gateway's) never runs out.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

/// Why a socket call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SocketError {
    /// Nothing to do yet: try again after the next poll.
    #[error("operation would block")]
    WouldBlock,
    /// [`Limits::max_sockets`] reached (or a datagram over [`Limits::udp_payload`]).
    #[error("socket limit reached")]
    Limit,
    /// The address and port are bound or listened on by this endpoint already.
    #[error("address in use")]
    AddressInUse,
    /// Not an address of this endpoint (or it was removed, or no ephemeral port is free).
    #[error("address not available")]
    AddressNotAvailable,
    /// The peer answered our SYN with an RST.
    #[error("connection refused")]
    ConnectionRefused,
    /// The connection was reset or aborted after it was established.
    #[error("connection reset")]
    ConnectionReset,
    /// Not connected, or no longer sendable (shut down or closed).
    #[error("not connected")]
    NotConnected,
    /// The wrong operation for this kind of socket or its state.
    #[error("invalid state for this operation")]
    InvalidState,
    /// No such socket: never opened here, or closed.
    #[error("no such socket")]
    NoSuchSocket,
    /// The remote address cannot be reached: unspecified, broadcast,
    /// multicast, loopback or port 0; or no answer to the SYNs within
    /// [`HANDSHAKE_TIMEOUT`].
    #[error("address unreachable")]
    Unreachable,
}

/// An endpoint's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams accepted by [`Endpoint::receive`].
    pub rx_datagrams: u64,
    /// Datagrams handed out by [`Endpoint::take_outgoing`].
    pub tx_datagrams: u64,
    /// Datagrams [`Endpoint::receive`] refused: queue full or over 65535 bytes.
    pub rx_dropped: u64,
    /// Sockets refused for [`Limits::max_sockets`].
    pub sockets_refused: u64,
}

/// What a [`SocketId`] names.
#[derive(Debug)]
enum Entry {
    Tcp(tcp::Conn),
    Listener(tcp::Listener),
    Udp(udp::Bound),
}

/// A smoltcp interface and the sockets on it. See the [module docs](self).
pub struct Endpoint {
    limits: Limits,
    prefix_len: u8,
    addresses: Vec<Ipv4Addr>,
    iface: Interface,
    device: device::Queue,
    slots: Slots,
    inbound: VecDeque<Vec<u8>>,
    entries: BTreeMap<SocketId, Entry>,
    /// TCP sockets closed by their owner, finishing in the background.
    closing: Vec<tcp::Closing>,
    next_id: u64,
    next_port: u16,
    /// The time of the last poll.
    now: Instant,
    stats: Stats,
    /// Accepts datagrams for, and binds, any host address.
    transparent: bool,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("addresses", &self.addresses)
            .field("sockets", &self.entries.len())
            .field("slots", &self.slots.live())
            .field("closing", &self.closing.len())
            .field("inbound", &self.inbound.len())
            .field("outgoing", &self.device.tx.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl Endpoint {
    /// An interface holding `ips` (primary first) in a subnet of
    /// `prefix_len` bits, with the subnet's `gateway` as default route.
    /// Addresses that cannot be a host's (unspecified, loopback, multicast,
    /// broadcast) and repeats are ignored; a prefix over 32 is taken as 32.
    pub fn new(
        ips: &[Ipv4Addr],
        prefix_len: u8,
        gateway: Ipv4Addr,
        limits: Limits,
        now: Instant,
    ) -> Endpoint {
        let limits = limits.normalized();
        let addresses = host_addresses(ips);
        // The creation time is mixed in so that a record attached again gets
        // fresh initial sequence numbers and ephemeral ports: reusing the last
        // incarnation's would collide with flows the router and the peers
        // still track. Deterministic for a given (addresses, now).
        let seed = splitmix64(seed(&addresses) ^ now.total_micros() as u64);
        let mut device = device::Queue::new(limits.rx_queue);
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut device, now);
        iface.set_any_ip(true);
        // The table holds one default route, and it is empty: cannot fail.
        let _ = iface.routes_mut().add_default_ipv4_route(gateway);
        let span = u64::from(EPHEMERAL_PORTS.end() - EPHEMERAL_PORTS.start()) + 1;
        let mut endpoint = Endpoint {
            limits,
            prefix_len: prefix_len.min(32),
            addresses,
            iface,
            device,
            slots: Slots::new(limits),
            inbound: VecDeque::new(),
            entries: BTreeMap::new(),
            closing: Vec::new(),
            next_id: 1,
            // `seed % span` < 16384, so it fits and the sum stays in range.
            next_port: EPHEMERAL_PORTS.start() + (seed % span) as u16,
            now,
            stats: Stats::default(),
            transparent: false,
        };
        endpoint.configure_iface();
        endpoint
    }

    /// Replaces the addresses (e.g. secondary IPs changed), filtered as in
    /// [`new`](Self::new). Sockets bound to an address no longer held are
    /// aborted: connections fail with [`SocketError::ConnectionReset`],
    /// listeners and UDP sockets bound to it with
    /// [`SocketError::AddressNotAvailable`]. Sockets bound to `0.0.0.0` stay.
    pub fn set_addresses(&mut self, ips: &[Ipv4Addr]) {
        let addresses = host_addresses(ips);
        let removed: Vec<Ipv4Addr> = self
            .addresses
            .iter()
            .copied()
            .filter(|ip| !addresses.contains(ip))
            .collect();
        self.addresses = addresses;
        self.configure_iface();
        if !removed.is_empty() {
            self.abort_bound_to(&removed);
        }
    }

    /// Makes the endpoint transparent (or not): it then takes datagrams for
    /// any host address, not only its own, and its sockets may bind any
    /// host address. A gateway terminating guests' connections to the
    /// outside (NAT, as slirp does) listens on each destination a guest
    /// asks for. Off by default. Turning it off leaves sockets bound to
    /// other addresses as they are.
    pub fn set_transparent(&mut self, on: bool) {
        self.transparent = on;
    }

    /// Whether a socket holds `local`'s port (on `local`'s address or on
    /// `0.0.0.0`): for TCP a listener, a connection this endpoint opened,
    /// or one still closing; for UDP a bound socket. A router port shared
    /// with something else (a gateway's, with a TUN device) tells by this
    /// which datagrams are the endpoint's.
    pub fn port_in_use(&self, tcp: bool, local: SocketAddrV4) -> bool {
        if tcp {
            self.tcp_port_taken(local)
        } else {
            self.udp_port_taken(local)
        }
    }

    /// The addresses, primary first.
    pub fn addresses(&self) -> Vec<Ipv4Addr> {
        self.addresses.clone()
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Queues an inbound IPv4 datagram, as the router delivered it, for the
    /// next poll. Returns false, and counts a drop, when
    /// [`Limits::rx_queue`] datagrams wait already or it is over 65535 bytes.
    pub fn receive(&mut self, datagram: &[u8]) -> bool {
        if self.inbound.len() >= self.limits.rx_queue || datagram.len() > crate::router::DEFAULT_MTU
        {
            self.stats.rx_dropped += 1;
            return false;
        }
        self.inbound.push_back(datagram.to_vec());
        self.stats.rx_datagrams += 1;
        true
    }

    /// Runs the stack at `now`: processes the queued datagrams, timers and
    /// sockets, and queues what is to be sent. Returns true if anything may
    /// have changed (a socket's readiness, something to send).
    pub fn poll(&mut self, now: Instant) -> bool {
        self.now = now;
        let mut changed = false;
        while let Some(datagram) = self.inbound.pop_front() {
            changed = true;
            match self.screen(&datagram) {
                Screened::Drop => {}
                Screened::Reply(reply) => {
                    // Past the outgoing limit, pings go unanswered.
                    if self.device.has_room() {
                        self.device.tx.push_back(reply);
                    }
                }
                Screened::Deliver { syn_port } => {
                    self.device.rx.push_back(datagram);
                    let _ =
                        self.iface
                            .poll_ingress_single(now, &mut self.device, self.slots.set_mut());
                    if let Some(port) = syn_port {
                        self.sort_listeners(Some(port));
                    }
                }
            }
        }
        changed |= self.tcp_timers(now);
        let queued = self.device.tx.len();
        if self.iface.poll(now, &mut self.device, self.slots.set_mut())
            == PollResult::SocketStateChanged
        {
            changed = true;
        }
        changed |= self.device.tx.len() != queued;
        changed |= self.sort_listeners(None);
        changed |= self.observe_conns();
        changed |= self.reap_closing();
        changed
    }

    /// The next datagram to hand to the router, oldest first.
    pub fn take_outgoing(&mut self) -> Option<Vec<u8>> {
        let datagram = self.device.tx.pop_front()?;
        self.stats.tx_datagrams += 1;
        Some(datagram)
    }

    /// When [`poll`](Self::poll) should run again at the latest, if no
    /// datagram arrives before: `now` if there is work already (queued
    /// datagrams, data to send), the earliest timer otherwise, or `None`
    /// if nothing is pending.
    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        if !self.inbound.is_empty() {
            return Some(now);
        }
        let smoltcp = self.iface.poll_at(now, self.slots.set());
        let ours = self.tcp_deadline(now);
        let at = match (smoltcp, ours) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        at.map(|at| at.max(now))
    }

    /// A socket's local address: the real port of an ephemeral bind, and
    /// `0.0.0.0` for a socket bound to every address.
    pub fn local_addr(&self, socket: SocketId) -> Result<SocketAddrV4, SocketError> {
        match self.entries.get(&socket) {
            None => Err(SocketError::NoSuchSocket),
            Some(Entry::Tcp(conn)) => Ok(conn.local),
            Some(Entry::Listener(listener)) => Ok(listener.local),
            Some(Entry::Udp(bound)) => Ok(bound.local),
        }
    }

    /// The peer of a TCP connection; [`SocketError::NotConnected`] while it
    /// connects or after it failed, [`SocketError::InvalidState`] for
    /// listeners and UDP sockets.
    pub fn peer_addr(&self, socket: SocketId) -> Result<SocketAddrV4, SocketError> {
        match self.entries.get(&socket) {
            None => Err(SocketError::NoSuchSocket),
            Some(Entry::Tcp(conn)) => match self.conn_phase(conn) {
                tcp::Phase::Open | tcp::Phase::Closed => Ok(conn.remote),
                tcp::Phase::Connecting { .. } | tcp::Phase::Failed(_) => {
                    Err(SocketError::NotConnected)
                }
            },
            Some(_) => Err(SocketError::InvalidState),
        }
    }

    /// Closes a socket; its id is unknown from now on. A TCP connection
    /// closes gracefully (FIN after the data sent so far) and its slot is
    /// freed when the close completes, or aborted after [`CLOSE_TIMEOUT`];
    /// a listener resets the connections it had not handed out and frees
    /// its backlog; a UDP socket is freed at once.
    pub fn close(&mut self, socket: SocketId) -> Result<(), SocketError> {
        match self.entries.remove(&socket) {
            None => Err(SocketError::NoSuchSocket),
            Some(Entry::Tcp(conn)) => {
                self.close_conn(conn);
                Ok(())
            }
            Some(Entry::Listener(listener)) => {
                self.close_listener(listener);
                Ok(())
            }
            Some(Entry::Udp(bound)) => {
                self.slots.remove(bound.handle);
                Ok(())
            }
        }
    }

    /// Aborts every socket, e.g. when the record is detached: TCP
    /// connections send an RST at the next poll and fail with
    /// [`SocketError::ConnectionReset`], as do listeners (whose backlog is
    /// reset and freed) and UDP sockets. Ids stay valid until closed, and
    /// new sockets may be opened.
    pub fn abort_all(&mut self) {
        let ids: Vec<SocketId> = self.entries.keys().copied().collect();
        for id in ids {
            self.abort_entry(id, SocketError::ConnectionReset);
        }
        self.abort_closing(|_| true);
    }

    /// Live smoltcp sockets: connections (closing ones too), every socket
    /// listeners keep for their backlog, UDP sockets.
    pub fn socket_count(&self) -> usize {
        self.slots.live()
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Holds the primary address in the interface (see the module docs).
    fn configure_iface(&mut self) {
        let primary = self.addresses.first().copied();
        let prefix_len = self.prefix_len;
        self.iface.update_ip_addrs(|addrs| {
            addrs.clear();
            if let Some(ip) = primary {
                // Room for two; `host_addresses` kept only unicast addresses.
                let _ = addrs.push(IpCidr::Ipv4(Ipv4Cidr::new(ip, prefix_len)));
            }
        });
    }

    fn holds(&self, ip: Ipv4Addr) -> bool {
        self.addresses.contains(&ip) || (self.transparent && is_host(ip))
    }

    /// A local address to bind: `0.0.0.0` or one of ours.
    fn check_local(&self, ip: Ipv4Addr) -> Result<(), SocketError> {
        if ip.is_unspecified() || self.holds(ip) {
            Ok(())
        } else {
            Err(SocketError::AddressNotAvailable)
        }
    }

    /// A remote address to send to: a possible host, on a real port.
    fn check_remote(&self, remote: SocketAddrV4) -> Result<(), SocketError> {
        let ip = *remote.ip();
        let subnet_broadcast = self.addresses.first().is_some_and(|&primary| {
            let cidr = Ipv4Cidr::new(primary, self.prefix_len);
            cidr.prefix_len() < 31 && cidr.broadcast() == Some(ip)
        });
        if remote.port() == 0
            || ip.is_unspecified()
            || ip.is_broadcast()
            || ip.is_multicast()
            || ip.is_loopback()
            || subnet_broadcast
        {
            Err(SocketError::Unreachable)
        } else {
            Ok(())
        }
    }

    /// Counts and returns a refusal for the socket limit.
    fn refuse(&mut self) -> SocketError {
        self.stats.sockets_refused += 1;
        SocketError::Limit
    }

    /// Checks that an id is left, before anything is created.
    fn check_id(&self) -> Result<(), SocketError> {
        if self.next_id == u64::MAX {
            Err(SocketError::Limit)
        } else {
            Ok(())
        }
    }

    /// The next id; [`check_id`](Self::check_id) said there is one.
    fn take_id(&mut self) -> SocketId {
        let id = SocketId(self.next_id);
        self.next_id = self.next_id.saturating_add(1);
        id
    }

    /// The next ephemeral port not in `taken`, from a cursor that moves on.
    fn ephemeral(&mut self, taken: &HashSet<u16>) -> Option<u16> {
        for _ in EPHEMERAL_PORTS {
            let port = self.next_port;
            self.next_port = if port == *EPHEMERAL_PORTS.end() {
                *EPHEMERAL_PORTS.start()
            } else {
                port + 1
            };
            if !taken.contains(&port) {
                return Some(port);
            }
        }
        None
    }

    /// Aborts every socket bound to one of `removed`.
    fn abort_bound_to(&mut self, removed: &[Ipv4Addr]) {
        let ids: Vec<SocketId> = self.entries.keys().copied().collect();
        for id in ids {
            let local = match self.entries.get(&id) {
                Some(Entry::Tcp(conn)) => conn.local,
                Some(Entry::Listener(listener)) => listener.local,
                Some(Entry::Udp(bound)) => bound.local,
                None => continue,
            };
            if removed.contains(local.ip()) {
                let error = match self.entries.get(&id) {
                    Some(Entry::Tcp(_)) => SocketError::ConnectionReset,
                    _ => SocketError::AddressNotAvailable,
                };
                self.abort_entry(id, error);
            }
        }
        self.abort_pending_to(removed);
        self.abort_closing(|local| removed.contains(local.ip()));
    }

    fn abort_entry(&mut self, id: SocketId, error: SocketError) {
        let Endpoint {
            entries,
            slots,
            closing,
            ..
        } = self;
        match entries.get_mut(&id) {
            None => {}
            Some(Entry::Tcp(conn)) => conn.abort(slots, error),
            Some(Entry::Listener(listener)) => listener.abort(slots, closing, error),
            Some(Entry::Udp(bound)) => bound.abort(slots, error),
        }
    }
}

/// The usable addresses among `ips`, in order, without repeats.
/// Whether `ip` can be a host's address: not unspecified, loopback,
/// multicast or broadcast.
fn is_host(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || ip.is_broadcast())
}

fn host_addresses(ips: &[Ipv4Addr]) -> Vec<Ipv4Addr> {
    let mut addresses: Vec<Ipv4Addr> = Vec::with_capacity(ips.len());
    for &ip in ips {
        if is_host(ip) && !addresses.contains(&ip) {
            addresses.push(ip);
        }
    }
    addresses
}

/// smoltcp's random seed (initial sequence numbers, IP ids), from the
/// addresses: deterministic, and different for different endpoints.
fn seed(addresses: &[Ipv4Addr]) -> u64 {
    let mut seed = 0x5745_4654_u64; // "WEFT"
    for ip in addresses {
        seed = splitmix64(seed ^ u64::from(u32::from(*ip)));
    }
    seed
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
