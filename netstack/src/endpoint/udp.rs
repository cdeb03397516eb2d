//! UDP: bound sockets sending and receiving whole datagrams.

use std::collections::HashSet;
use std::net::{SocketAddr, SocketAddrV4};

use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp::SendError;
use smoltcp::wire::{IpEndpoint, IpListenEndpoint};

use super::slots::Slots;
use super::{Endpoint, Entry, SocketError, SocketId};

/// A UDP socket with an id.
#[derive(Debug)]
pub(super) struct Bound {
    pub(super) handle: SocketHandle,
    /// `0.0.0.0` for every address; the real port.
    pub(super) local: SocketAddrV4,
    failure: Option<SocketError>,
}

impl Bound {
    /// Unbinds it: it receives nothing more, and its calls fail with `error`.
    pub(super) fn abort(&mut self, slots: &mut Slots, error: SocketError) {
        slots.udp(self.handle).close();
        self.failure.get_or_insert(error);
    }
}

impl Endpoint {
    /// Binds a UDP socket to `local` (`0.0.0.0`: every address of this
    /// endpoint; port 0: an ephemeral port, see [`local_addr`](Self::local_addr)).
    pub fn udp_bind(&mut self, local: SocketAddrV4) -> Result<SocketId, SocketError> {
        if !self.has_room() {
            return Err(self.refuse());
        }
        self.check_local(*local.ip())?;
        self.check_id()?;
        let port = if local.port() == 0 {
            let taken = self.udp_ports();
            self.ephemeral(&taken)
                .ok_or(SocketError::AddressNotAvailable)?
        } else if self.udp_port_taken(local) {
            return Err(SocketError::AddressInUse);
        } else {
            local.port()
        };
        let local = SocketAddrV4::new(*local.ip(), port);
        let mut socket = self.slots.new_udp();
        let endpoint = if local.ip().is_unspecified() {
            IpListenEndpoint::from(port)
        } else {
            IpListenEndpoint::from(local)
        };
        // The port is non-zero and the socket new: cannot fail.
        socket
            .bind(endpoint)
            .map_err(|_| SocketError::InvalidState)?;
        let handle = self.slots.add(socket);
        let id = self.take_id();
        self.entries.insert(
            id,
            Entry::Udp(Bound {
                handle,
                local,
                failure: None,
            }),
        );
        Ok(id)
    }

    /// Queues one datagram to `to`, sent at the next poll from the bound
    /// address (the primary one for a socket bound to `0.0.0.0`).
    /// [`SocketError::WouldBlock`] if the send ring is full,
    /// [`SocketError::Limit`] if over [`Limits::udp_payload`](super::Limits::udp_payload),
    /// [`SocketError::Unreachable`] for an address no host can have.
    pub fn udp_send_to(
        &mut self,
        socket: SocketId,
        data: &[u8],
        to: SocketAddrV4,
    ) -> Result<(), SocketError> {
        let bound = self.bound(socket)?;
        let handle = bound.handle;
        if data.len() > self.limits.udp_payload {
            return Err(SocketError::Limit);
        }
        self.check_remote(to)?;
        match self
            .slots
            .udp(handle)
            .send_slice(data, IpEndpoint::from(to))
        {
            Ok(()) => Ok(()),
            Err(SendError::BufferFull) => Err(SocketError::WouldBlock),
            Err(SendError::Unaddressable) => Err(SocketError::Unreachable),
        }
    }

    /// Takes one received datagram: the bytes copied (truncated to `buf`,
    /// the rest discarded, as `recvfrom` does) and the sender.
    /// [`SocketError::WouldBlock`] if none.
    pub fn udp_recv_from(
        &mut self,
        socket: SocketId,
        buf: &mut [u8],
    ) -> Result<(usize, SocketAddrV4), SocketError> {
        let handle = self.bound(socket)?.handle;
        let (payload, meta) = self
            .slots
            .udp(handle)
            .recv()
            .map_err(|_| SocketError::WouldBlock)?;
        let copied = payload.len().min(buf.len());
        buf[..copied].copy_from_slice(&payload[..copied]);
        match SocketAddr::from(meta.endpoint) {
            SocketAddr::V4(from) => Ok((copied, from)),
            // This crate speaks IPv4 only; nothing else is ever received.
            SocketAddr::V6(_) => Err(SocketError::WouldBlock),
        }
    }

    /// A UDP socket that has not failed.
    fn bound(&self, socket: SocketId) -> Result<&Bound, SocketError> {
        match self.entries.get(&socket) {
            None => Err(SocketError::NoSuchSocket),
            Some(Entry::Udp(bound)) => match bound.failure {
                Some(error) => Err(error),
                None => Ok(bound),
            },
            Some(_) => Err(SocketError::InvalidState),
        }
    }

    pub(super) fn udp_port_taken(&self, local: SocketAddrV4) -> bool {
        self.entries.values().any(|entry| {
            matches!(entry, Entry::Udp(b) if b.failure.is_none()
                && b.local.port() == local.port()
                && (b.local.ip() == local.ip() || b.local.ip().is_unspecified() || local.ip().is_unspecified()))
        })
    }

    fn udp_ports(&self) -> HashSet<u16> {
        self.entries
            .values()
            .filter_map(|entry| match entry {
                Entry::Udp(b) => Some(b.local.port()),
                _ => None,
            })
            .collect()
    }
}
