//! TCP: the socket calls, and connections.
//!
//! Listeners and their backlog are in [`backlog`], timers and closing
//! sockets in [`upkeep`].
//!
//! A [`Conn`] follows its smoltcp socket's state after every poll and
//! remembers how it ended, since smoltcp forgets: refused (RST to our SYN),
//! unreachable (no answer within [`HANDSHAKE_TIMEOUT`]), reset, or closed
//! gracefully (both FINs exchanged).

mod backlog;
mod upkeep;

use std::collections::HashSet;
use std::net::{SocketAddr, SocketAddrV4};

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::{RecvError, State};
use smoltcp::wire::{IpEndpoint, IpListenEndpoint};

pub(super) use self::backlog::Listener;
pub(super) use self::upkeep::Closing;
use self::upkeep::{reclaim_time_wait, retire};
#[cfg(doc)]
use super::HANDSHAKE_TIMEOUT;
use super::slots::Slots;
use super::{Endpoint, Entry, Instant, SocketError, SocketId};

/// Where a connection is in its life, as its owner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Opened by `tcp_connect`, handshake not done. The deadline is set at
    /// the first poll, which sends the SYN.
    Connecting { deadline: Option<Instant> },
    /// Established (whatever happened since, short of the below).
    Open,
    /// Closed gracefully: both sides sent their FIN.
    Closed,
    /// Refused, unreachable, reset or aborted.
    Failed(SocketError),
}

/// A TCP connection with an id.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) handle: SocketHandle,
    pub(super) local: SocketAddrV4,
    pub(super) remote: SocketAddrV4,
    /// Opened by `tcp_connect`, so it holds its local port.
    active: bool,
    phase: Phase,
    /// Our side was shut down (FIN queued).
    shut: bool,
    /// The peer's FIN was seen.
    peer_fin: bool,
}

impl Conn {
    /// The phase and `peer_fin` that smoltcp's `state` implies.
    fn next(&self, state: State) -> (Phase, bool) {
        let peer_fin = self.peer_fin
            || matches!(
                state,
                State::CloseWait | State::LastAck | State::Closing | State::TimeWait
            );
        let phase = match (self.phase, state) {
            (Phase::Failed(_) | Phase::Closed, _) => self.phase,
            (Phase::Connecting { .. }, State::SynSent | State::SynReceived | State::Listen) => {
                self.phase
            }
            (Phase::Connecting { .. }, State::Closed) => {
                Phase::Failed(SocketError::ConnectionRefused)
            }
            (Phase::Connecting { .. }, _) => Phase::Open,
            // Only LAST-ACK and TIME-WAIT close without a reset, and both
            // mean that both FINs were sent.
            (Phase::Open, State::Closed) if self.shut && peer_fin => Phase::Closed,
            (Phase::Open, State::Closed) => Phase::Failed(SocketError::ConnectionReset),
            (Phase::Open, _) => Phase::Open,
        };
        (phase, peer_fin)
    }

    /// Follows the socket's state; returns whether anything changed.
    fn observe(&mut self, slots: &Slots) -> bool {
        let next = self.next(slots.tcp_ref(self.handle).state());
        let changed = next != (self.phase, self.peer_fin);
        (self.phase, self.peer_fin) = next;
        changed
    }

    /// Aborts it (an RST at the next poll, if it was connected) unless it
    /// has ended already.
    pub(super) fn abort(&mut self, slots: &mut Slots, error: SocketError) {
        self.observe(slots);
        if matches!(self.phase, Phase::Connecting { .. } | Phase::Open) {
            slots.tcp(self.handle).abort();
            self.phase = Phase::Failed(error);
        }
    }
}

fn listen_endpoint(local: SocketAddrV4) -> IpListenEndpoint {
    if local.ip().is_unspecified() {
        IpListenEndpoint::from(local.port())
    } else {
        IpListenEndpoint::from(local)
    }
}

fn v4(endpoint: Option<IpEndpoint>) -> Option<SocketAddrV4> {
    match SocketAddr::from(endpoint?) {
        SocketAddr::V4(address) => Some(address),
        SocketAddr::V6(_) => None,
    }
}

fn overlap(a: SocketAddrV4, b: SocketAddrV4) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

impl Endpoint {
    /// Listens on `local` (`0.0.0.0` for every address of this endpoint;
    /// the port must not be 0, else [`SocketError::InvalidState`]), keeping
    /// up to [`Limits::backlog`](super::Limits::backlog) connections waiting
    /// for [`tcp_accept`](Self::tcp_accept). The backlog's sockets count
    /// against the limit; one free slot is enough to listen.
    pub fn tcp_listen(&mut self, local: SocketAddrV4) -> Result<SocketId, SocketError> {
        if !self.has_room() {
            return Err(self.refuse());
        }
        if local.port() == 0 {
            return Err(SocketError::InvalidState);
        }
        self.check_local(*local.ip())?;
        if self.tcp_port_taken(local) {
            return Err(SocketError::AddressInUse);
        }
        self.check_id()?;
        let mut listener = Listener::new(local);
        listener.refill(&mut self.slots, &mut self.closing, self.limits.backlog);
        let id = self.take_id();
        self.entries.insert(id, Entry::Listener(listener));
        Ok(id)
    }

    /// The oldest connection that completed its handshake on `listener`,
    /// with the peer's address; [`SocketError::WouldBlock`] if none yet.
    pub fn tcp_accept(
        &mut self,
        listener: SocketId,
    ) -> Result<(SocketId, SocketAddrV4), SocketError> {
        self.check_id()?;
        let Endpoint {
            entries,
            slots,
            closing,
            limits,
            now,
            ..
        } = self;
        let l = match entries.get_mut(&listener) {
            None => return Err(SocketError::NoSuchSocket),
            Some(Entry::Listener(l)) => l,
            Some(_) => return Err(SocketError::InvalidState),
        };
        if let Some(error) = l.failure {
            return Err(error);
        }
        l.sort(slots, closing, *now);
        let ready = l.pending.iter().position(|p| {
            matches!(
                slots.tcp_ref(p.handle).state(),
                State::Established | State::CloseWait
            )
        });
        let Some(entry) = ready.and_then(|at| l.pending.remove(at)) else {
            return Err(SocketError::WouldBlock);
        };
        l.refill(slots, closing, limits.backlog);
        let socket = slots.tcp_ref(entry.handle);
        let (Some(local), Some(remote)) =
            (v4(socket.local_endpoint()), v4(socket.remote_endpoint()))
        else {
            // Established sockets have both ends.
            retire(slots, closing, entry.handle);
            return Err(SocketError::WouldBlock);
        };
        let conn = Conn {
            handle: entry.handle,
            local,
            remote,
            active: false,
            phase: Phase::Open,
            shut: false,
            peer_fin: socket.state() == State::CloseWait,
        };
        let id = self.take_id();
        self.entries.insert(id, Entry::Tcp(conn));
        Ok((id, remote))
    }

    /// Starts connecting to `remote` from the primary address and
    /// `local_port` (`None` or 0: an ephemeral port). The handshake happens
    /// during the next polls; see [`tcp_connected`](Self::tcp_connected).
    pub fn tcp_connect(
        &mut self,
        remote: SocketAddrV4,
        local_port: Option<u16>,
    ) -> Result<SocketId, SocketError> {
        if !self.has_room() {
            return Err(self.refuse());
        }
        self.check_remote(remote)?;
        let ip = *self
            .addresses
            .first()
            .ok_or(SocketError::AddressNotAvailable)?;
        self.check_id()?;
        let port = match local_port {
            Some(port) if port != 0 => {
                if self.tcp_port_taken(SocketAddrV4::new(ip, port)) {
                    return Err(SocketError::AddressInUse);
                }
                port
            }
            _ => {
                let taken = self.tcp_ports(true);
                match self.ephemeral(&taken) {
                    Some(port) => port,
                    None => {
                        // Every port is held. As Linux's `tcp_tw_reuse`,
                        // take one only a TIME-WAIT socket holds: on this
                        // network no old segment can still be on its way.
                        let live = self.tcp_ports(false);
                        let port = self
                            .ephemeral(&live)
                            .ok_or(SocketError::AddressNotAvailable)?;
                        self.abort_closing(|held| held.port() == port);
                        port
                    }
                }
            }
        };
        let local = SocketAddrV4::new(ip, port);
        let mut socket = self.slots.new_tcp();
        socket
            .connect(
                self.iface.context(),
                IpEndpoint::from(remote),
                IpListenEndpoint::from(local),
            )
            .map_err(|_| SocketError::Unreachable)?;
        let handle = self.slots.add(socket);
        let id = self.take_id();
        self.entries.insert(
            id,
            Entry::Tcp(Conn {
                handle,
                local,
                remote,
                active: true,
                phase: Phase::Connecting { deadline: None },
                shut: false,
                peer_fin: false,
            }),
        );
        Ok(id)
    }

    /// `Ok(true)` once established (and after, even closed gracefully),
    /// `Ok(false)` while connecting; [`SocketError::ConnectionRefused`] if
    /// the peer answered with an RST, [`SocketError::Unreachable`] if it did
    /// not answer within [`HANDSHAKE_TIMEOUT`], [`SocketError::ConnectionReset`]
    /// if reset since.
    pub fn tcp_connected(&self, socket: SocketId) -> Result<bool, SocketError> {
        let conn = self.conn(socket)?;
        match self.conn_phase(conn) {
            Phase::Connecting { .. } => Ok(false),
            Phase::Open | Phase::Closed => Ok(true),
            Phase::Failed(error) => Err(error),
        }
    }

    /// Copies as much of `data` into the send buffer as fits and returns
    /// how much; it is sent at the next polls. [`SocketError::WouldBlock`]
    /// if nothing fits or the handshake is not done;
    /// [`SocketError::NotConnected`] after a shutdown or close; the failure
    /// if the connection failed.
    pub fn tcp_send(&mut self, socket: SocketId, data: &[u8]) -> Result<usize, SocketError> {
        let (conn, slots) = self.conn_mut(socket)?;
        match conn.phase {
            Phase::Failed(error) => return Err(error),
            Phase::Connecting { .. } => return Err(SocketError::WouldBlock),
            Phase::Closed => return Err(SocketError::NotConnected),
            Phase::Open => {}
        }
        match slots.tcp(conn.handle).send_slice(data) {
            Ok(0) if !data.is_empty() => Err(SocketError::WouldBlock),
            Ok(sent) => Ok(sent),
            Err(_) => Err(SocketError::NotConnected),
        }
    }

    /// Copies received bytes into `buf`. `Ok(0)` for a non-empty `buf` means
    /// the peer closed (EOF) and everything was read;
    /// [`SocketError::WouldBlock`] if nothing arrived yet; the failure if
    /// the connection failed (unread data is lost with it).
    pub fn tcp_recv(&mut self, socket: SocketId, buf: &mut [u8]) -> Result<usize, SocketError> {
        let (conn, slots) = self.conn_mut(socket)?;
        if let Phase::Failed(error) = conn.phase {
            return Err(error);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let phase = conn.phase;
        let tcp = slots.tcp(conn.handle);
        match tcp.recv_slice(buf) {
            Ok(0) => Err(SocketError::WouldBlock),
            Ok(read) => Ok(read),
            Err(RecvError::Finished) => Ok(0),
            Err(RecvError::InvalidState) => match (phase, tcp.state()) {
                (Phase::Closed, _) => Ok(0),
                (_, State::SynSent | State::SynReceived) => Err(SocketError::WouldBlock),
                _ => Err(SocketError::NotConnected),
            },
        }
    }

    /// Bytes received on a connection and not read yet.
    pub fn tcp_recv_queue(&self, socket: SocketId) -> Result<usize, SocketError> {
        let conn = self.conn(socket)?;
        Ok(self.slots.tcp_ref(conn.handle).recv_queue())
    }

    /// Half-closes the sending side: a FIN follows the data already sent.
    /// [`SocketError::NotConnected`] while the handshake is not done.
    pub fn tcp_shutdown(&mut self, socket: SocketId) -> Result<(), SocketError> {
        let (conn, slots) = self.conn_mut(socket)?;
        match conn.phase {
            Phase::Failed(error) => Err(error),
            Phase::Connecting { .. } => Err(SocketError::NotConnected),
            Phase::Closed => Ok(()),
            Phase::Open => {
                slots.tcp(conn.handle).close();
                conn.shut = true;
                Ok(())
            }
        }
    }

    fn conn(&self, socket: SocketId) -> Result<&Conn, SocketError> {
        match self.entries.get(&socket) {
            None => Err(SocketError::NoSuchSocket),
            Some(Entry::Tcp(conn)) => Ok(conn),
            Some(_) => Err(SocketError::InvalidState),
        }
    }

    /// The connection, brought up to date with its socket, and the slots.
    fn conn_mut(&mut self, socket: SocketId) -> Result<(&mut Conn, &mut Slots), SocketError> {
        match self.entries.get_mut(&socket) {
            None => Err(SocketError::NoSuchSocket),
            Some(Entry::Tcp(conn)) => {
                conn.observe(&self.slots);
                Ok((conn, &mut self.slots))
            }
            Some(_) => Err(SocketError::InvalidState),
        }
    }

    /// A connection's phase as of its socket's state now.
    pub(super) fn conn_phase(&self, conn: &Conn) -> Phase {
        conn.next(self.slots.tcp_ref(conn.handle).state()).0
    }

    /// Whether a listener, or an actively opened socket (closing ones too),
    /// holds `local`'s port on an overlapping address. Accepted
    /// connections do not hold their listener's port.
    pub(super) fn tcp_port_taken(&self, local: SocketAddrV4) -> bool {
        let held = self.entries.values().any(|entry| match entry {
            Entry::Listener(l) => l.failure.is_none() && overlap(l.local, local),
            Entry::Tcp(c) => {
                c.active && !matches!(c.phase, Phase::Failed(_)) && overlap(c.local, local)
            }
            Entry::Udp(_) => false,
        });
        held || self
            .closing
            .iter()
            .any(|c| c.holds.is_some_and(|held| overlap(held, local)))
    }

    /// Every local port a TCP socket uses, for picking an ephemeral one;
    /// sockets in TIME-WAIT only if `time_wait`.
    fn tcp_ports(&self, time_wait: bool) -> HashSet<u16> {
        let mut ports: HashSet<u16> = self
            .entries
            .values()
            .filter_map(|entry| match entry {
                Entry::Listener(l) => Some(l.local.port()),
                Entry::Tcp(c) => Some(c.local.port()),
                Entry::Udp(_) => None,
            })
            .collect();
        ports.extend(
            self.closing
                .iter()
                .filter(|c| time_wait || self.slots.tcp_ref(c.handle()).state() != State::TimeWait)
                .filter_map(|c| c.holds.map(|h| h.port())),
        );
        ports
    }
}
