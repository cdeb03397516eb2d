//! The smoltcp sockets of an endpoint, counted against [`Limits::max_sockets`].
//!
//! Every socket is added and removed here, so the count is exact. Handles
//! come only from [`Slots::add`] and are forgotten by their owner when
//! removed; a handle of the wrong kind is a bug in this module's callers,
//! never a property of network input.

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::{AnySocket, tcp, udp};

use super::{Limits, UDP_RING_BYTES};

/// The socket set and its limits.
pub(super) struct Slots {
    set: SocketSet<'static>,
    live: usize,
    limits: Limits,
}

impl core::fmt::Debug for Slots {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Slots").field("live", &self.live).finish()
    }
}

impl Slots {
    pub(super) fn new(limits: Limits) -> Slots {
        Slots {
            set: SocketSet::new(Vec::new()),
            live: 0,
            limits,
        }
    }

    pub(super) fn set(&self) -> &SocketSet<'static> {
        &self.set
    }

    pub(super) fn set_mut(&mut self) -> &mut SocketSet<'static> {
        &mut self.set
    }

    pub(super) fn live(&self) -> usize {
        self.live
    }

    /// Whether one more socket fits under the limit.
    pub(super) fn has_room(&self) -> bool {
        self.live < self.limits.max_sockets
    }

    pub(super) fn add<T: AnySocket<'static>>(&mut self, socket: T) -> SocketHandle {
        self.live += 1;
        self.set.add(socket)
    }

    pub(super) fn remove(&mut self, handle: SocketHandle) {
        self.live -= 1;
        self.set.remove(handle);
    }

    pub(super) fn tcp(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
        self.set.get_mut(handle)
    }

    pub(super) fn tcp_ref(&self, handle: SocketHandle) -> &tcp::Socket<'static> {
        self.set.get(handle)
    }

    pub(super) fn udp(&mut self, handle: SocketHandle) -> &mut udp::Socket<'static> {
        self.set.get_mut(handle)
    }

    /// A TCP socket with the endpoint's buffers: Nagle off (the guest
    /// decides when to write), ACKs delayed 1 ms rather than smoltcp's 10
    /// (a kernel sender over a TUN device went at half speed waiting for
    /// them; with no delay at all, a lost window update could leave both
    /// sides waiting with no timer armed, which the loss simulation
    /// caught), no keep-alive, no idle timeout.
    pub(super) fn new_tcp(&self) -> tcp::Socket<'static> {
        let size = self.limits.tcp_buffer;
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; size]),
            tcp::SocketBuffer::new(vec![0; size]),
        );
        socket.set_nagle_enabled(false);
        socket.set_ack_delay(Some(smoltcp::time::Duration::from_millis(1)));
        socket.set_keep_alive(None);
        socket.set_timeout(None);
        socket
    }

    /// A UDP socket: per direction, a ring of `udp_packets` datagrams sharing
    /// the bytes described at [`Limits::udp_payload`]. (A datagram that does
    /// not fit before the end of the byte ring wraps around, and the skipped
    /// end takes one of the `udp_packets` entries until it is read past.)
    pub(super) fn new_udp(&self) -> udp::Socket<'static> {
        let limits = &self.limits;
        let bytes = UDP_RING_BYTES
            .max(limits.udp_packets.saturating_mul(2048))
            .max(2 * limits.udp_payload);
        let ring = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; limits.udp_packets],
                vec![0; bytes],
            )
        };
        udp::Socket::new(ring(), ring())
    }
}
