//! Timers and closing sockets: what `poll` does for TCP besides smoltcp.
//!
//! smoltcp retransmits a SYN or a FIN for ever and has no backlog timer, so
//! the endpoint keeps its own: a connection attempt fails as unreachable
//! after [`HANDSHAKE_TIMEOUT`], a half-open connection in a backlog is reset
//! after as long, and a socket whose close does not finish within
//! [`CLOSE_TIMEOUT`] is aborted. A deadline is armed at the first poll that
//! sees it, since socket calls carry no time.

use std::net::SocketAddrV4;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::State;

use super::{Conn, Phase, v4};
use crate::endpoint::slots::Slots;
use crate::endpoint::{
    CLOSE_TIMEOUT, Endpoint, Entry, HANDSHAKE_TIMEOUT, Instant, MAX_TIME_WAIT, SocketError,
};

/// A socket closed by its owner, finishing its close in the background.
#[derive(Debug)]
pub(in crate::endpoint) struct Closing {
    handle: SocketHandle,
    /// When it is aborted if not closed yet; set at the first poll.
    deadline: Option<Instant>,
    /// The local address it still holds, for an actively opened one.
    pub(super) holds: Option<SocketAddrV4>,
}

impl Closing {
    /// Its smoltcp socket.
    pub(super) fn handle(&self) -> SocketHandle {
        self.handle
    }
}

/// Frees the oldest socket waiting in TIME-WAIT, if any, to make room for
/// a new one: a socket that has finished its close counts against the
/// limit only while nothing else needs its slot (Linux keeps TIME-WAIT
/// apart from its sockets for the same reason). Returns whether one was.
pub(in crate::endpoint) fn reclaim_time_wait(
    slots: &mut Slots,
    closing: &mut Vec<Closing>,
) -> bool {
    let Some(at) = closing
        .iter()
        .position(|c| slots.tcp_ref(c.handle).state() == State::TimeWait)
    else {
        return false;
    };
    let handle = closing.remove(at).handle;
    slots.remove(handle);
    true
}

/// Frees a closed socket now, or once its RST is sent.
pub(super) fn retire(slots: &mut Slots, closing: &mut Vec<Closing>, handle: SocketHandle) {
    let socket = slots.tcp_ref(handle);
    if socket.state() == State::Closed && socket.local_endpoint().is_none() {
        slots.remove(handle);
    } else {
        closing.push(Closing {
            handle,
            deadline: None,
            holds: None,
        });
    }
}

impl Endpoint {
    /// Whether a new socket fits, after reclaiming one in TIME-WAIT if
    /// need be.
    pub(in crate::endpoint) fn has_room(&mut self) -> bool {
        self.slots.has_room() || reclaim_time_wait(&mut self.slots, &mut self.closing)
    }

    /// Brings every connection up to date with its socket.
    pub(in crate::endpoint) fn observe_conns(&mut self) -> bool {
        let mut changed = false;
        for entry in self.entries.values_mut() {
            if let Entry::Tcp(conn) = entry {
                changed |= conn.observe(&self.slots);
            }
        }
        changed
    }

    /// Arms and fires our timers: connection attempts that got no answer,
    /// half-open connections in a backlog, closes that do not finish.
    pub(in crate::endpoint) fn tcp_timers(&mut self, now: Instant) -> bool {
        let Endpoint {
            entries,
            slots,
            closing,
            ..
        } = self;
        let mut changed = false;
        for entry in entries.values_mut() {
            match entry {
                Entry::Tcp(conn) => {
                    changed |= conn.observe(slots);
                    if let Phase::Connecting { deadline } = &mut conn.phase {
                        let at = *deadline.get_or_insert(now + HANDSHAKE_TIMEOUT);
                        if now >= at {
                            slots.tcp(conn.handle).abort();
                            conn.phase = Phase::Failed(SocketError::Unreachable);
                            changed = true;
                        }
                    }
                }
                Entry::Listener(l) => changed |= l.expire_half_open(slots, now),
                Entry::Udp(_) => {}
            }
        }
        for c in closing.iter_mut() {
            let at = *c.deadline.get_or_insert(now + CLOSE_TIMEOUT);
            let tcp = slots.tcp(c.handle);
            if now >= at && !matches!(tcp.state(), State::Closed | State::TimeWait) {
                tcp.abort();
                changed = true;
            }
        }
        changed
    }

    /// The earliest of our timers, for `poll_at`; `now` for unarmed ones.
    pub(in crate::endpoint) fn tcp_deadline(&self, now: Instant) -> Option<Instant> {
        let mut at: Option<Instant> = None;
        let mut consider = |t: Instant| at = Some(at.map_or(t, |a| a.min(t)));
        for entry in self.entries.values() {
            match entry {
                Entry::Tcp(conn) => {
                    if let Phase::Connecting { deadline } = conn.phase {
                        consider(deadline.unwrap_or(now));
                    }
                }
                Entry::Listener(l) => {
                    if let Some(deadline) = l.half_open_deadline(&self.slots) {
                        consider(deadline);
                    }
                }
                Entry::Udp(_) => {}
            }
        }
        for c in &self.closing {
            let state = self.slots.tcp_ref(c.handle).state();
            if !matches!(state, State::Closed | State::TimeWait) {
                consider(c.deadline.unwrap_or(now));
            }
        }
        at
    }

    /// Frees closed sockets whose close has finished (their RST, if any, sent).
    /// Beyond [`MAX_TIME_WAIT`] sockets in TIME-WAIT, frees the oldest.
    pub(in crate::endpoint) fn reap_closing(&mut self) -> bool {
        let Endpoint { slots, closing, .. } = self;
        let before = closing.len();
        let mut time_wait = 0;
        closing.retain(|c| {
            let tcp = slots.tcp_ref(c.handle);
            let state = tcp.state();
            let done = state == State::Closed && tcp.local_endpoint().is_none();
            if done {
                slots.remove(c.handle);
            }
            time_wait += usize::from(state == State::TimeWait);
            !done
        });
        while time_wait > MAX_TIME_WAIT && reclaim_time_wait(slots, closing) {
            time_wait -= 1;
        }
        closing.len() != before
    }

    /// Closes a connection whose id is gone: gracefully if it is open.
    pub(in crate::endpoint) fn close_conn(&mut self, conn: Conn) {
        let tcp = self.slots.tcp(conn.handle);
        if tcp.state() == State::Closed && tcp.local_endpoint().is_none() {
            self.slots.remove(conn.handle);
            return;
        }
        // Open: FIN after the data; connecting: abandoned (RST).
        tcp.close();
        self.closing.push(Closing {
            handle: conn.handle,
            deadline: None,
            holds: conn.active.then_some(conn.local),
        });
    }

    /// Aborts the closing sockets whose local address `matches`.
    pub(in crate::endpoint) fn abort_closing(&mut self, matches: impl Fn(SocketAddrV4) -> bool) {
        let Endpoint { slots, closing, .. } = self;
        for c in closing.iter() {
            let tcp = slots.tcp(c.handle);
            if v4(tcp.local_endpoint()).is_some_and(&matches) {
                tcp.abort();
            }
        }
    }
}
