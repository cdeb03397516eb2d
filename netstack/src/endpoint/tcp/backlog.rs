//! Listeners and their backlog.
//!
//! A smoltcp socket that listens *becomes* the connection when a SYN
//! arrives; smoltcp has no backlog. So a [`Listener`] keeps up to
//! [`Limits::backlog`](crate::endpoint::Limits::backlog) sockets: listening
//! ones, and pending ones that left the LISTEN state (half-open or
//! established) and wait for [`Endpoint::tcp_accept`], which hands out the
//! established ones oldest first. Each socket that leaves LISTEN is replaced
//! by a fresh listening one while the backlog and the socket limit allow.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::State;
use smoltcp::socket::{AnySocket, tcp};

use super::{Closing, listen_endpoint, reclaim_time_wait, retire, v4};
use crate::endpoint::slots::Slots;
use crate::endpoint::{Endpoint, Entry, HANDSHAKE_TIMEOUT, Instant, SocketError};

/// A listening socket with an id, and its backlog.
#[derive(Debug)]
pub(in crate::endpoint) struct Listener {
    pub(in crate::endpoint) local: SocketAddrV4,
    listening: Vec<SocketHandle>,
    pub(super) pending: VecDeque<Pending>,
    pub(super) failure: Option<SocketError>,
}

/// A connection that left LISTEN and waits to be accepted.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    pub(super) handle: SocketHandle,
    since: Instant,
}

impl Listener {
    /// A listener on `local` with no socket yet; [`refill`](Self::refill) adds them.
    pub(super) fn new(local: SocketAddrV4) -> Listener {
        Listener {
            local,
            listening: Vec::new(),
            pending: VecDeque::new(),
            failure: None,
        }
    }

    /// Adds listening sockets until the backlog is full or the limit reached.
    pub(super) fn refill(
        &mut self,
        slots: &mut Slots,
        closing: &mut Vec<Closing>,
        backlog: usize,
    ) -> bool {
        let mut added = false;
        while self.failure.is_none()
            && self.listening.len() + self.pending.len() < backlog
            && (slots.has_room() || reclaim_time_wait(slots, closing))
        {
            let mut socket = slots.new_tcp();
            // The port is non-zero and the socket new: cannot fail.
            if socket.listen(listen_endpoint(self.local)).is_err() {
                break;
            }
            self.listening.push(slots.add(socket));
            added = true;
        }
        added
    }

    /// Moves sockets that left LISTEN to the pending queue, in order, and
    /// back if an RST returned them to LISTEN; retires the ones that closed.
    pub(super) fn sort(
        &mut self,
        slots: &mut Slots,
        closing: &mut Vec<Closing>,
        now: Instant,
    ) -> bool {
        let before = (self.listening.len(), self.pending.len());
        let mut left = Vec::new();
        self.listening.retain(|&handle| {
            let listening = slots.tcp_ref(handle).state() == State::Listen;
            if !listening {
                left.push(handle);
            }
            listening
        });
        let mut retired = false;
        let pending = std::mem::take(&mut self.pending);
        for entry in pending {
            match slots.tcp_ref(entry.handle).state() {
                State::Listen => self.listening.push(entry.handle),
                State::Closed | State::TimeWait => {
                    retire(slots, closing, entry.handle);
                    retired = true;
                }
                _ => self.pending.push_back(entry),
            }
        }
        self.pending.extend(
            left.into_iter()
                .map(|handle| Pending { handle, since: now }),
        );
        retired || before != (self.listening.len(), self.pending.len())
    }

    /// Resets the backlog and frees it; the listener fails with `error`.
    pub(in crate::endpoint) fn abort(
        &mut self,
        slots: &mut Slots,
        closing: &mut Vec<Closing>,
        error: SocketError,
    ) {
        for handle in self.listening.drain(..) {
            slots.remove(handle);
        }
        for entry in self.pending.drain(..) {
            slots.tcp(entry.handle).abort();
            retire(slots, closing, entry.handle);
        }
        self.failure.get_or_insert(error);
    }

    /// Resets the half-open connections that have waited
    /// [`HANDSHAKE_TIMEOUT`] for the peer's ACK, so that peers which never
    /// complete their handshake cannot hold the backlog.
    pub(super) fn expire_half_open(&mut self, slots: &mut Slots, now: Instant) -> bool {
        let mut expired = false;
        for entry in &self.pending {
            let tcp = slots.tcp(entry.handle);
            if tcp.state() == State::SynReceived && now >= entry.since + HANDSHAKE_TIMEOUT {
                tcp.abort();
                expired = true;
            }
        }
        expired
    }

    /// When the first half-open connection expires.
    pub(super) fn half_open_deadline(&self, slots: &Slots) -> Option<Instant> {
        self.pending
            .iter()
            .filter(|entry| slots.tcp_ref(entry.handle).state() == State::SynReceived)
            .map(|entry| entry.since + HANDSHAKE_TIMEOUT)
            .min()
    }

    fn matches(&self, local: SocketAddrV4) -> bool {
        self.local.port() == local.port()
            && (self.local.ip().is_unspecified() || self.local.ip() == local.ip())
    }
}

impl Endpoint {
    /// Whether a SYN from `remote` to `local` may reach smoltcp: not if a
    /// connection with that 4-tuple exists (a retransmitted SYN, which a
    /// listening socket would otherwise take for a second connection), nor
    /// if the listener for `local` has no listening socket left.
    pub(in crate::endpoint) fn admits_syn(
        &self,
        local: SocketAddrV4,
        remote: SocketAddrV4,
    ) -> bool {
        let duplicate = self.slots.set().iter().any(|(_, socket)| {
            tcp::Socket::downcast(socket).is_some_and(|tcp| {
                !matches!(tcp.state(), State::Listen | State::Closed)
                    && v4(tcp.local_endpoint()) == Some(local)
                    && v4(tcp.remote_endpoint()) == Some(remote)
            })
        });
        if duplicate {
            return false;
        }
        !self.entries.values().any(|entry| {
            matches!(entry, Entry::Listener(l)
                if l.failure.is_none() && l.matches(local) && l.listening.is_empty())
        })
    }

    /// Sorts the backlog of every listener (or of those on `port`) and
    /// refills it.
    pub(in crate::endpoint) fn sort_listeners(&mut self, port: Option<u16>) -> bool {
        let Endpoint {
            entries,
            slots,
            closing,
            limits,
            now,
            ..
        } = self;
        let mut changed = false;
        for entry in entries.values_mut() {
            if let Entry::Listener(l) = entry
                && port.is_none_or(|p| p == l.local.port())
            {
                changed |= l.sort(slots, closing, *now);
                changed |= l.refill(slots, closing, limits.backlog);
            }
        }
        changed
    }

    /// Closes a listener whose id is gone: its backlog is reset and freed.
    pub(in crate::endpoint) fn close_listener(&mut self, mut listener: Listener) {
        listener.abort(
            &mut self.slots,
            &mut self.closing,
            SocketError::ConnectionReset,
        );
    }

    /// Aborts the connections waiting in backlogs whose local address is
    /// one of `removed`.
    pub(in crate::endpoint) fn abort_pending_to(&mut self, removed: &[Ipv4Addr]) {
        let Endpoint { entries, slots, .. } = self;
        for entry in entries.values_mut() {
            if let Entry::Listener(l) = entry {
                for p in &l.pending {
                    let tcp = slots.tcp(p.handle);
                    if v4(tcp.local_endpoint()).is_some_and(|local| removed.contains(local.ip())) {
                        tcp.abort();
                    }
                }
            }
        }
    }
}
