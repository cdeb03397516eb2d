//! Guests' sockets: what an instance's `weft:net` calls do to the endpoints
//! of the interface records it holds (the pump that moves their datagrams
//! is in `pump.rs`).
//!
//! A guest socket is a handle over one or more endpoint sockets: a listener
//! or UDP socket bound to `0.0.0.0` lives on every record the instance holds,
//! including records attached later (so a standby instance that listens
//! before it holds the record serves as soon as the record moves to it). A
//! TCP connection lives on one record; when that record is detached, the
//! connection is reset.
//!
//! Waiting calls never block a thread: they try, and on `WouldBlock` wait
//! for the network to change (every pump notifies) or for their timeout or
//! the instance's cancellation.

use super::{Inner, Network};
use crate::runtime::Cancel;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;
use weft_abi::errno::{self, Errno};
use weft_netstack::NicId;
use weft_netstack::endpoint::{Endpoint, SocketError, SocketId};

/// A socket as the guest sees it.
#[derive(Debug, Clone)]
pub(super) enum GuestSocket {
    /// A TCP listener: one endpoint listener per record that has the address.
    Listener {
        local: SocketAddrV4,
        parts: Vec<(NicId, SocketId)>,
    },
    /// A TCP connection on one record (`None` once that record is gone).
    Stream { part: Option<(NicId, SocketId)> },
    /// A UDP socket, like a listener.
    Udp {
        local: SocketAddrV4,
        parts: Vec<(NicId, SocketId)>,
    },
}

/// The sockets of one instance.
#[derive(Debug, Default)]
pub(super) struct InstanceSockets {
    sockets: HashMap<i32, GuestSocket>,
    next: i32,
}

/// What a failed call tells the guest, or that it must trap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetError {
    /// Return this error code.
    Code(Errno),
    /// The handle is unknown: the guest is broken; trap it.
    BadHandle,
    /// The instance was stopped while it waited.
    Cancelled,
}

impl From<SocketError> for NetError {
    fn from(error: SocketError) -> Self {
        NetError::Code(match error {
            SocketError::WouldBlock => errno::WOULD_BLOCK,
            SocketError::Limit => errno::LIMIT,
            SocketError::AddressInUse => errno::ADDRESS_IN_USE,
            SocketError::AddressNotAvailable => errno::ADDRESS_NOT_AVAILABLE,
            SocketError::ConnectionRefused => errno::CONNECTION_REFUSED,
            SocketError::ConnectionReset => errno::CONNECTION_RESET,
            SocketError::NotConnected => errno::NOT_CONNECTED,
            SocketError::InvalidState => errno::INVALID_STATE,
            SocketError::NoSuchSocket => errno::CONNECTION_RESET,
            SocketError::Unreachable => errno::UNREACHABLE,
            #[allow(unreachable_patterns)]
            _ => errno::UNREACHABLE,
        })
    }
}

/// How long a call may wait.
#[derive(Clone, Copy, Debug)]
pub enum Wait {
    /// Not at all: `WOULD_BLOCK`.
    No,
    /// Up to this long: then `TIMED_OUT`.
    For(Duration),
    /// As long as it takes.
    Forever,
}

impl Wait {
    /// From the ABI's `timeout_ms`: `-1` forever, `0` not at all.
    pub fn from_ms(ms: i64) -> Wait {
        match ms {
            0 => Wait::No,
            ms if ms < 0 => Wait::Forever,
            ms => Wait::For(Duration::from_millis(ms as u64)),
        }
    }
}

/// One instance's handle on the network, carried in its store.
#[derive(Clone, Debug)]
pub struct GuestNet {
    network: Arc<Network>,
    instance: String,
    cancel: Option<Cancel>,
}

fn would_block<T>(result: &Result<T, NetError>) -> bool {
    matches!(result, Err(NetError::Code(errno::WOULD_BLOCK)))
}

impl GuestNet {
    /// The network it is a view of.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// `instance`'s view of `network`; waits end early when `cancel` fires.
    pub fn new(network: Arc<Network>, instance: impl Into<String>, cancel: Option<Cancel>) -> Self {
        GuestNet {
            network,
            instance: instance.into(),
            cancel,
        }
    }

    /// Runs `op` under the network lock, pumps, and retries on `WouldBlock`
    /// until `wait` says stop.
    async fn run<T>(
        &self,
        wait: Wait,
        mut op: impl FnMut(&mut Inner, &str) -> Result<T, NetError>,
    ) -> Result<T, NetError> {
        let deadline = match wait {
            Wait::For(d) => Some(tokio::time::Instant::now() + d),
            _ => None,
        };
        loop {
            let changed = self.network.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let result = {
                let mut inner = self.network.lock();
                let result = op(&mut inner, &self.instance);
                if self.network.pump_locked(&mut inner) {
                    self.network.changed.notify_waiters();
                }
                result
            };
            if !would_block(&result) {
                return result;
            }
            match wait {
                Wait::No => return result,
                Wait::For(_) | Wait::Forever => {}
            }
            let cancelled = async {
                match &self.cancel {
                    Some(cancel) => cancel.cancelled().await,
                    None => std::future::pending().await,
                }
            };
            let timeout = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = changed => {}
                () = cancelled => return Err(NetError::Cancelled),
                () = timeout => return Err(NetError::Code(errno::TIMED_OUT)),
            }
        }
    }

    /// Listens on `local` (`0.0.0.0`: every address the instance holds, now
    /// or later).
    pub async fn tcp_listen(&self, local: SocketAddrV4) -> Result<i32, NetError> {
        self.run(Wait::No, |inner, instance| {
            if local.port() == 0 {
                return Err(NetError::Code(errno::INVALID_ARGUMENT));
            }
            let parts = bind_everywhere(inner, instance, local, Endpoint::tcp_listen)?;
            insert(inner, instance, GuestSocket::Listener { local, parts })
        })
        .await
    }

    /// Accepts a connection on a listener.
    pub async fn tcp_accept(
        &self,
        listener: i32,
        wait: Wait,
    ) -> Result<(i32, SocketAddrV4), NetError> {
        self.run(wait, |inner, instance| {
            let parts = match socket(inner, instance, listener)? {
                GuestSocket::Listener { parts, .. } => parts.clone(),
                _ => return Err(NetError::Code(errno::INVALID_STATE)),
            };
            for (nic, id) in parts {
                if let Some(endpoint) = inner.endpoints.get_mut(&nic) {
                    match endpoint.tcp_accept(id) {
                        Ok((conn, peer)) => {
                            let handle = insert(
                                inner,
                                instance,
                                GuestSocket::Stream {
                                    part: Some((nic, conn)),
                                },
                            )?;
                            return Ok((handle, peer));
                        }
                        Err(SocketError::WouldBlock) => {}
                        Err(error) => return Err(error.into()),
                    }
                }
            }
            Err(NetError::Code(errno::WOULD_BLOCK))
        })
        .await
    }

    /// Connects to `remote`, waiting for the handshake.
    pub async fn tcp_connect(&self, remote: SocketAddrV4, wait: Wait) -> Result<i32, NetError> {
        let handle = self
            .run(Wait::No, |inner, instance| {
                let nic = route_for(inner, instance, *remote.ip())?;
                let endpoint = inner
                    .endpoints
                    .get_mut(&nic)
                    .expect("held records have endpoints");
                let id = endpoint.tcp_connect(remote, None)?;
                insert(
                    inner,
                    instance,
                    GuestSocket::Stream {
                        part: Some((nic, id)),
                    },
                )
            })
            .await?;
        let connected = self
            .run(wait, |inner, instance| {
                let (nic, id) = stream(inner, instance, handle)?;
                match inner.endpoints.get(&nic).map(|e| e.tcp_connected(id)) {
                    Some(Ok(true)) => Ok(()),
                    Some(Ok(false)) => Err(NetError::Code(errno::WOULD_BLOCK)),
                    Some(Err(error)) => Err(error.into()),
                    None => Err(NetError::Code(errno::CONNECTION_RESET)),
                }
            })
            .await;
        if let Err(error) = connected {
            let _ = self.close(handle).await;
            return Err(error);
        }
        Ok(handle)
    }

    /// Sends bytes on a connection; returns how many were taken.
    pub async fn send(&self, handle: i32, data: &[u8], wait: Wait) -> Result<usize, NetError> {
        self.run(wait, |inner, instance| {
            let (nic, id) = stream(inner, instance, handle)?;
            let endpoint = inner
                .endpoints
                .get_mut(&nic)
                .ok_or(NetError::Code(errno::CONNECTION_RESET))?;
            Ok(endpoint.tcp_send(id, data)?)
        })
        .await
    }

    /// Receives bytes on a connection; 0 means the peer closed.
    pub async fn recv(&self, handle: i32, max: usize, wait: Wait) -> Result<Vec<u8>, NetError> {
        let max = max.min(1 << 20);
        let mut buf = Vec::new();
        let n = self
            .run(wait, |inner, instance| {
                let (nic, id) = stream(inner, instance, handle)?;
                let endpoint = inner
                    .endpoints
                    .get_mut(&nic)
                    .ok_or(NetError::Code(errno::CONNECTION_RESET))?;
                // As much room as there is to read (at least a byte, so
                // that EOF and errors are told), not `max` zeroed bytes.
                let ready = endpoint.tcp_recv_queue(id).unwrap_or(0);
                buf.resize(ready.max(1).min(max), 0);
                Ok(endpoint.tcp_recv(id, &mut buf)?)
            })
            .await?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Half-closes a connection.
    pub async fn shutdown(&self, handle: i32) -> Result<(), NetError> {
        self.run(Wait::No, |inner, instance| {
            let (nic, id) = stream(inner, instance, handle)?;
            match inner.endpoints.get_mut(&nic) {
                Some(endpoint) => Ok(endpoint.tcp_shutdown(id)?),
                None => Err(NetError::Code(errno::CONNECTION_RESET)),
            }
        })
        .await
    }

    /// Binds a UDP socket.
    pub async fn udp_bind(&self, local: SocketAddrV4) -> Result<i32, NetError> {
        self.run(Wait::No, |inner, instance| {
            let parts = bind_everywhere(inner, instance, local, Endpoint::udp_bind)?;
            let local = match (parts.first(), local.port()) {
                (Some(&(nic, id)), 0) => inner
                    .endpoints
                    .get(&nic)
                    .and_then(|e| e.local_addr(id).ok())
                    .map(|a| SocketAddrV4::new(*local.ip(), a.port()))
                    .unwrap_or(local),
                _ => local,
            };
            insert(inner, instance, GuestSocket::Udp { local, parts })
        })
        .await
    }

    /// Sends one datagram from the record that can reach `to`.
    pub async fn udp_send_to(
        &self,
        handle: i32,
        data: &[u8],
        to: SocketAddrV4,
        wait: Wait,
    ) -> Result<(), NetError> {
        self.run(wait, |inner, instance| {
            let parts = match socket(inner, instance, handle)? {
                GuestSocket::Udp { parts, .. } => parts.clone(),
                _ => return Err(NetError::Code(errno::INVALID_STATE)),
            };
            let nic = route_for(inner, instance, *to.ip())?;
            let (_, id) = parts
                .iter()
                .find(|(n, _)| *n == nic)
                .or(parts.first())
                .copied()
                .ok_or(NetError::Code(errno::NO_NETWORK))?;
            let endpoint = inner
                .endpoints
                .get_mut(&nic)
                .ok_or(NetError::Code(errno::NO_NETWORK))?;
            Ok(endpoint.udp_send_to(id, data, to)?)
        })
        .await
    }

    /// Receives one datagram on any of the socket's records.
    pub async fn udp_recv_from(
        &self,
        handle: i32,
        max: usize,
        wait: Wait,
    ) -> Result<(Vec<u8>, SocketAddrV4), NetError> {
        let mut buf = vec![0; max.min(65_536)];
        let (n, from) = self
            .run(wait, |inner, instance| {
                let parts = match socket(inner, instance, handle)? {
                    GuestSocket::Udp { parts, .. } => parts.clone(),
                    _ => return Err(NetError::Code(errno::INVALID_STATE)),
                };
                for (nic, id) in parts {
                    if let Some(endpoint) = inner.endpoints.get_mut(&nic) {
                        match endpoint.udp_recv_from(id, &mut buf) {
                            Ok(got) => return Ok(got),
                            Err(SocketError::WouldBlock) => {}
                            Err(error) => return Err(error.into()),
                        }
                    }
                }
                Err(NetError::Code(errno::WOULD_BLOCK))
            })
            .await?;
        buf.truncate(n);
        Ok((buf, from))
    }

    /// The socket's local address.
    pub async fn local_addr(&self, handle: i32) -> Result<SocketAddrV4, NetError> {
        self.run(Wait::No, |inner, instance| {
            match socket(inner, instance, handle)?.clone() {
                GuestSocket::Listener { local, .. } | GuestSocket::Udp { local, .. } => Ok(local),
                GuestSocket::Stream { part } => {
                    let (nic, id) = part.ok_or(NetError::Code(errno::CONNECTION_RESET))?;
                    let endpoint = inner
                        .endpoints
                        .get(&nic)
                        .ok_or(NetError::Code(errno::CONNECTION_RESET))?;
                    Ok(endpoint.local_addr(id)?)
                }
            }
        })
        .await
    }

    /// A connection's peer address.
    pub async fn peer_addr(&self, handle: i32) -> Result<SocketAddrV4, NetError> {
        self.run(Wait::No, |inner, instance| {
            let (nic, id) = stream(inner, instance, handle)?;
            let endpoint = inner
                .endpoints
                .get(&nic)
                .ok_or(NetError::Code(errno::CONNECTION_RESET))?;
            Ok(endpoint.peer_addr(id)?)
        })
        .await
    }

    /// Closes a socket.
    pub async fn close(&self, handle: i32) -> Result<(), NetError> {
        self.run(Wait::No, |inner, instance| {
            let socket = inner
                .instances
                .get_mut(instance)
                .and_then(|s| s.sockets.remove(&handle))
                .ok_or(NetError::BadHandle)?;
            close_parts(inner, parts_of(socket));
            Ok(())
        })
        .await
    }

    /// Hands an IPv4 datagram, as the guest built it, to the router on the
    /// instance's first record, as if its endpoint had sent it: the router
    /// checks its source, its groups and its form, and counts what it
    /// drops. A dropped datagram is not an error, as on a wire.
    pub async fn send_raw(&self, datagram: &[u8]) -> Result<(), NetError> {
        self.run(Wait::No, |inner, instance| {
            let nic = *held(inner, instance)
                .first()
                .ok_or(NetError::Code(errno::NO_NETWORK))?;
            let now = self.network.now();
            self.network.route_datagram(inner, now, nic, datagram);
            Ok(())
        })
        .await
    }

    /// The instance's addresses, primary of each record first.
    pub fn interfaces(&self) -> Vec<Ipv4Addr> {
        let inner = self.network.lock();
        held(&inner, &self.instance)
            .into_iter()
            .filter_map(|nic| inner.nics.get(&nic))
            .flat_map(|record| record.ips().collect::<Vec<_>>())
            .collect()
    }
}

/// Records `instance` holds, in id order.
pub(super) fn held(inner: &Inner, instance: &str) -> Vec<NicId> {
    inner
        .nics
        .values()
        .filter(|r| r.attachment().is_some_and(|a| a.instance == instance))
        .map(|r| r.id())
        .filter(|nic| inner.endpoints.contains_key(nic))
        .collect()
}

/// The records a bind to `ip` lives on: all for `0.0.0.0`, else the one
/// that holds `ip`.
fn nics_for(inner: &Inner, instance: &str, ip: Ipv4Addr) -> Result<Vec<NicId>, NetError> {
    let held = held(inner, instance);
    if ip.is_unspecified() {
        return Ok(held);
    }
    held.into_iter()
        .find(|nic| inner.nics.get(nic).is_some_and(|r| r.owns(ip)))
        .map(|nic| vec![nic])
        .ok_or(NetError::Code(errno::ADDRESS_NOT_AVAILABLE))
}

/// The record to send to `ip` from: the one whose subnet contains it, else
/// the first (its gateway).
fn route_for(inner: &Inner, instance: &str, ip: Ipv4Addr) -> Result<NicId, NetError> {
    let held = held(inner, instance);
    held.iter()
        .copied()
        .find(|nic| {
            inner
                .nics
                .get(nic)
                .and_then(|r| inner.subnets.get(&r.subnet()))
                .is_some_and(|(subnet, _)| subnet.cidr().contains(ip))
        })
        .or(held.first().copied())
        .ok_or(NetError::Code(errno::NO_NETWORK))
}

/// What a guest socket holds on the endpoints.
fn parts_of(socket: GuestSocket) -> Vec<(NicId, SocketId)> {
    match socket {
        GuestSocket::Listener { parts, .. } | GuestSocket::Udp { parts, .. } => parts,
        GuestSocket::Stream { part } => part.into_iter().collect(),
    }
}

/// Closes endpoint sockets (those on records already gone are gone).
fn close_parts(inner: &mut Inner, parts: Vec<(NicId, SocketId)>) {
    for (nic, id) in parts {
        if let Some(endpoint) = inner.endpoints.get_mut(&nic) {
            let _ = endpoint.close(id);
        }
    }
}

/// Binds `local` with `bind` on every record a bind to its address lives
/// on; all or nothing.
fn bind_everywhere(
    inner: &mut Inner,
    instance: &str,
    local: SocketAddrV4,
    bind: fn(&mut Endpoint, SocketAddrV4) -> Result<SocketId, SocketError>,
) -> Result<Vec<(NicId, SocketId)>, NetError> {
    let mut parts = Vec::new();
    for nic in nics_for(inner, instance, *local.ip())? {
        let Some(endpoint) = inner.endpoints.get_mut(&nic) else {
            continue;
        };
        match bind(endpoint, local) {
            Ok(id) => parts.push((nic, id)),
            Err(error) => {
                close_parts(inner, parts);
                return Err(error.into());
            }
        }
    }
    Ok(parts)
}

/// Binds `local` on the one record `nic` only, as a TCP listener (`tcp`) or
/// a UDP socket: how a gateway's transparent endpoint takes a destination
/// a guest asked for.
pub(super) fn bind_on(
    inner: &mut Inner,
    instance: &str,
    nic: NicId,
    local: SocketAddrV4,
    tcp: bool,
) -> Result<i32, NetError> {
    let endpoint = inner
        .endpoints
        .get_mut(&nic)
        .ok_or(NetError::Code(errno::NO_NETWORK))?;
    let socket = if tcp {
        let id = endpoint.tcp_listen(local)?;
        GuestSocket::Listener {
            local,
            parts: vec![(nic, id)],
        }
    } else {
        let id = endpoint.udp_bind(local)?;
        GuestSocket::Udp {
            local,
            parts: vec![(nic, id)],
        }
    };
    insert(inner, instance, socket)
}

/// Registers a guest socket; refused past `weft_abi::net::MAX_SOCKETS` per
/// instance (what it held on its endpoints is released).
fn insert(inner: &mut Inner, instance: &str, socket: GuestSocket) -> Result<i32, NetError> {
    let sockets = inner.instances.entry(instance.to_owned()).or_default();
    if sockets.sockets.len() >= weft_abi::net::MAX_SOCKETS {
        close_parts(inner, parts_of(socket));
        return Err(NetError::Code(errno::LIMIT));
    }
    let handle = next_handle(&mut sockets.next, |h| sockets.sockets.contains_key(&h));
    sockets.sockets.insert(handle, socket);
    Ok(handle)
}

/// The next positive handle after `*last` that is not `taken`, which
/// becomes `*last`. Handles wrap after `i32::MAX` (a gateway, which opens a
/// socket per NAT flow and lives as long as the host, gets there), and a
/// socket held since the first round must not be replaced; at most
/// `MAX_SOCKETS` are taken, so the search is short.
fn next_handle(last: &mut i32, taken: impl Fn(i32) -> bool) -> i32 {
    loop {
        *last = last.wrapping_add(1).max(1);
        if !taken(*last) {
            return *last;
        }
    }
}

fn socket<'a>(inner: &'a Inner, instance: &str, handle: i32) -> Result<&'a GuestSocket, NetError> {
    inner
        .instances
        .get(instance)
        .and_then(|s| s.sockets.get(&handle))
        .ok_or(NetError::BadHandle)
}

fn stream(inner: &Inner, instance: &str, handle: i32) -> Result<(NicId, SocketId), NetError> {
    match socket(inner, instance, handle)? {
        GuestSocket::Stream { part: Some(part) } => Ok(*part),
        GuestSocket::Stream { part: None } => Err(NetError::Code(errno::CONNECTION_RESET)),
        _ => Err(NetError::Code(errno::INVALID_STATE)),
    }
}

impl Inner {
    /// A record was attached to `instance`: its wildcard listeners and UDP
    /// sockets start listening on it too.
    pub(super) fn extend_wildcards(&mut self, instance: &str, nic: NicId) {
        let Some(sockets) = self.instances.get_mut(instance) else {
            return;
        };
        let Some(endpoint) = self.endpoints.get_mut(&nic) else {
            return;
        };
        for socket in sockets.sockets.values_mut() {
            match socket {
                GuestSocket::Listener { local, parts } if local.ip().is_unspecified() => {
                    if let Ok(id) = endpoint.tcp_listen(*local) {
                        parts.push((nic, id));
                    }
                }
                GuestSocket::Udp { local, parts } if local.ip().is_unspecified() => {
                    if let Ok(id) = endpoint.udp_bind(*local) {
                        parts.push((nic, id));
                    }
                }
                _ => {}
            }
        }
    }

    /// A record was detached: sockets on it lose that part; connections on
    /// it are reset.
    pub(super) fn forget_record(&mut self, nic: NicId) {
        for sockets in self.instances.values_mut() {
            for socket in sockets.sockets.values_mut() {
                match socket {
                    GuestSocket::Listener { parts, .. } | GuestSocket::Udp { parts, .. } => {
                        parts.retain(|(n, _)| *n != nic);
                    }
                    GuestSocket::Stream { part } if part.is_some_and(|(n, _)| n == nic) => {
                        *part = None;
                    }
                    GuestSocket::Stream { .. } => {}
                }
            }
        }
    }

    /// An instance ended: its sockets are closed.
    pub(super) fn drop_instance(&mut self, instance: &str) {
        let Some(sockets) = self.instances.remove(instance) else {
            return;
        };
        for socket in sockets.sockets.into_values() {
            close_parts(self, parts_of(socket));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::next_handle;

    #[test]
    fn handles_wrap_past_i32_max_to_the_first_free_one() {
        let mut last = 0;
        assert_eq!(next_handle(&mut last, |_| false), 1);
        assert_eq!(next_handle(&mut last, |_| false), 2);
        let mut last = i32::MAX - 1;
        assert_eq!(next_handle(&mut last, |_| false), i32::MAX);
        // 1 to 3 are still held: the next is 4, then 5.
        let held = |h: i32| (1..=3).contains(&h);
        assert_eq!(next_handle(&mut last, held), 4);
        assert_eq!(next_handle(&mut last, held), 5);
    }
}
