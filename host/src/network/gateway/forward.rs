//! Port forwards: a host address and port carried to an instance address
//! and port, from the gateway of the instance's subnet.
//!
//! A TCP forward accepts on the host and connects, from the gateway
//! address, to the target; a UDP forward keeps one gateway socket per
//! client address. The target is an address, not an instance: whoever
//! holds the record holding it gets the traffic, and that instance's
//! ingress rules decide. At most [`MAX_CONNECTIONS`] connections (or UDP
//! clients) per forward at once, and at most [`PER_CLIENT`] of them from
//! one client address; past either, a new connection is closed at once
//! and counted as refused, and the others carry on.

use super::nat::{CONNECT_TIMEOUT, UDP_IDLE, splice};
use super::{Network, NetworkError, invalid, not_found};
use crate::limit::Quota;
use crate::network::Wait;
use crate::network::sockets::GuestNet;
use crate::store::Kind;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Connections (TCP) or clients (UDP) one forward carries at once, at most.
pub const MAX_CONNECTIONS: usize = 256;
/// Connections (TCP) or client ports (UDP) one client address holds on
/// one forward at once, at most: half of [`MAX_CONNECTIONS`], so that a
/// client opening connections and holding them (or sending from every
/// port it has) cannot take a forward from everyone else.
pub const PER_CLIENT: usize = MAX_CONNECTIONS / 2;
/// The kernel's queue of connections not yet accepted: room for a burst
/// well past [`MAX_CONNECTIONS`], so that past the limit a client is
/// refused by weft (and counted) rather than left waiting by the kernel.
const LISTEN_BACKLOG: u32 = 1024;

/// A forward's protocol.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl std::str::FromStr for Proto {
    type Err = String;
    fn from_str(text: &str) -> Result<Proto, String> {
        match text {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            other => Err(format!("`{other}` is not a protocol: tcp or udp")),
        }
    }
}

/// A forward as stored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Forward {
    /// `fwd-` and 12 hex digits.
    pub id: String,
    /// TCP or UDP.
    pub proto: Proto,
    /// The host address it listens on (its real port, if 0 was asked).
    pub listen: SocketAddr,
    /// The instance address it carries to.
    pub to: SocketAddrV4,
    /// When it was created (ms since the epoch).
    pub created_ms: u64,
}

/// What a new forward asks for.
#[derive(Clone, Debug)]
pub struct ForwardRequest {
    /// The host address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// The instance address to carry to.
    pub to: SocketAddrV4,
    /// TCP or UDP.
    pub proto: Proto,
}

/// What a forward did.
#[derive(Debug, Default)]
pub struct ForwardCounters {
    /// Connections (or UDP clients) carried.
    pub connections: AtomicU64,
    /// Carried now.
    pub active: AtomicU64,
    /// Refused: over [`MAX_CONNECTIONS`], or from a client holding
    /// [`PER_CLIENT`] already.
    pub refused: AtomicU64,
    /// Of those refused, the ones whose client held [`PER_CLIENT`].
    pub limited: AtomicU64,
    /// The instance could not be reached (no gateway, nobody holds the
    /// address, refused, timed out).
    pub failed: AtomicU64,
    /// Closed for carrying nothing either way for the host's TCP idle
    /// limit ([`super::TCP_IDLE`] unless set).
    pub idle: AtomicU64,
    /// Bytes from host clients to the instance.
    pub bytes_in: AtomicU64,
    /// Bytes from the instance to host clients.
    pub bytes_out: AtomicU64,
}

impl ForwardCounters {
    fn snapshot(&self) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "connections": get(&self.connections),
            "active": get(&self.active),
            "refused": get(&self.refused),
            "limited": get(&self.limited),
            "failed": get(&self.failed),
            "idle": get(&self.idle),
            "bytes_in": get(&self.bytes_in),
            "bytes_out": get(&self.bytes_out),
        })
    }
}

/// A forward with what it is doing now.
#[derive(Clone, Debug)]
pub struct ForwardInfo {
    /// As stored.
    pub forward: Forward,
    /// `up`, or why not (e.g. its address could not be bound).
    pub status: String,
    /// Its counters.
    pub counters: serde_json::Value,
}

/// A forward's listening task; stops when dropped.
#[derive(Debug)]
pub(super) struct Running {
    task: Option<tokio::task::JoinHandle<()>>,
    counters: Arc<ForwardCounters>,
    status: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

fn forward_id() -> String {
    format!("fwd-{:012x}", super::super::entropy() & 0xffff_ffff_ffff)
}

/// A bound host socket, ready to serve.
enum Bound {
    Tcp(tokio::net::TcpListener),
    Udp(tokio::net::UdpSocket),
}

fn bind(proto: Proto, listen: SocketAddr) -> std::io::Result<Bound> {
    Ok(match proto {
        Proto::Tcp => {
            let socket = match listen {
                SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
            };
            socket.set_reuseaddr(true)?;
            socket.bind(listen)?;
            Bound::Tcp(socket.listen(LISTEN_BACKLOG)?)
        }
        Proto::Udp => {
            let socket = std::net::UdpSocket::bind(listen)?;
            socket.set_nonblocking(true)?;
            Bound::Udp(tokio::net::UdpSocket::from_std(socket)?)
        }
    })
}

impl Bound {
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            Bound::Tcp(l) => l.local_addr(),
            Bound::Udp(s) => s.local_addr(),
        }
    }
}

impl Network {
    /// Adds a forward and starts it. The target's subnet must have a
    /// gateway; the host address must be free. Needs a tokio runtime.
    pub fn add_forward(
        self: &Arc<Self>,
        request: ForwardRequest,
    ) -> Result<ForwardInfo, NetworkError> {
        if request.to.port() == 0 {
            return Err(invalid("the target needs a port"));
        }
        if self.gateway_for(*request.to.ip()).is_none() {
            return Err(NetworkError::Conflict(format!(
                "no gateway serves {}: create one for its subnet (weft gateway create --subnet ID)",
                request.to.ip()
            )));
        }
        let bound = bind(request.proto, request.listen).map_err(|e| {
            NetworkError::Conflict(format!("cannot listen on {}: {e}", request.listen))
        })?;
        let forward = Forward {
            id: forward_id(),
            proto: request.proto,
            listen: bound.local_addr().map_err(invalid)?,
            to: request.to,
            created_ms: crate::activity::now_ms(),
        };
        self.store.put(Kind::Forward, &forward.id, &forward)?;
        self.run_forward(&forward, Ok(bound));
        self.forward(&forward.id)
    }

    fn run_forward(self: &Arc<Self>, forward: &Forward, bound: std::io::Result<Bound>) {
        let counters = Arc::new(ForwardCounters::default());
        let network = Arc::downgrade(self);
        let (task, status) = match bound {
            Ok(Bound::Tcp(listener)) => (
                Some(tokio::spawn(serve_tcp(
                    network,
                    listener,
                    forward.to,
                    counters.clone(),
                ))),
                "up".to_owned(),
            ),
            Ok(Bound::Udp(socket)) => (
                Some(tokio::spawn(serve_udp(
                    network,
                    socket,
                    forward.to,
                    counters.clone(),
                ))),
                "up".to_owned(),
            ),
            Err(error) => (
                None,
                format!("cannot listen on {}: {error}", forward.listen),
            ),
        };
        self.running().forwards.insert(
            forward.id.clone(),
            Running {
                task,
                counters,
                status,
            },
        );
    }

    /// Starts the stored forwards again (after a restart).
    pub(super) fn restore_forwards(self: &Arc<Self>) {
        let stored: Vec<Forward> = self.store.all_of(Kind::Forward).unwrap_or_default();
        for forward in stored {
            let bound = bind(forward.proto, forward.listen);
            if let Err(error) = &bound {
                tracing::warn!(forward = %forward.id, "cannot listen on {}: {error}", forward.listen);
            }
            self.run_forward(&forward, bound);
        }
    }

    /// Every forward.
    pub fn forwards(&self) -> Vec<ForwardInfo> {
        let stored: Vec<Forward> = self.store.all_of(Kind::Forward).unwrap_or_default();
        stored
            .into_iter()
            .map(|f| self.describe_forward(f))
            .collect()
    }

    /// One forward.
    pub fn forward(&self, id: &str) -> Result<ForwardInfo, NetworkError> {
        self.store
            .get::<Forward>(Kind::Forward, id)?
            .map(|f| self.describe_forward(f))
            .ok_or_else(|| not_found("forward", id))
    }

    fn describe_forward(&self, forward: Forward) -> ForwardInfo {
        let running = self.running();
        let (status, counters) = match running.forwards.get(&forward.id) {
            Some(r) => (r.status.clone(), r.counters.snapshot()),
            None => ("stopped".to_owned(), ForwardCounters::default().snapshot()),
        };
        ForwardInfo {
            forward,
            status,
            counters,
        }
    }

    /// Removes a forward: it stops listening; connections it carries end.
    pub fn remove_forward(&self, id: &str) -> Result<(), NetworkError> {
        if !self.store.remove(Kind::Forward, id)? {
            return Err(not_found("forward", id));
        }
        self.running().forwards.remove(id);
        Ok(())
    }
}

/// The gateway's handle for reaching `to`, if its subnet has a gateway.
fn gateway_net(network: &Weak<Network>, to: SocketAddrV4) -> Option<GuestNet> {
    let network = network.upgrade()?;
    let gateway = network.gateway_for(*to.ip())?;
    Some(GuestNet::new(network, gateway, None))
}

async fn serve_tcp(
    network: Weak<Network>,
    listener: tokio::net::TcpListener,
    to: SocketAddrV4,
    counters: Arc<ForwardCounters>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let clients = Quota::new(PER_CLIENT);
    // Connection tasks end with the forward.
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors, or the like: back off and carry on.
                tracing::warn!("forward to {to}: accept: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        while tasks.try_join_next().is_some() {}
        let held = clients
            .take(peer.ip())
            .ok_or(Refused::Client)
            .and_then(|place| match slots.clone().try_acquire_owned() {
                Ok(slot) => Ok((slot, place)),
                Err(_) => Err(Refused::Full),
            });
        let held = match held {
            Ok(held) => held,
            Err(why) => {
                refuse(&counters, why);
                let _ = stream.set_zero_linger();
                drop(stream);
                continue;
            }
        };
        let Some(net) = gateway_net(&network, to) else {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let counters = counters.clone();
        tasks.spawn(async move {
            let _held = held;
            counters.active.fetch_add(1, Ordering::Relaxed);
            match net.tcp_connect(to, Wait::For(CONNECT_TIMEOUT)).await {
                Ok(conn) => {
                    counters.connections.fetch_add(1, Ordering::Relaxed);
                    let idle = net.network().tcp_idle();
                    let spliced = splice(&net, conn, stream, idle).await;
                    counters
                        .bytes_in
                        .fetch_add(spliced.to_guest, Ordering::Relaxed);
                    counters
                        .bytes_out
                        .fetch_add(spliced.from_guest, Ordering::Relaxed);
                    if spliced.idled {
                        counters.idle.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(_) => {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    let _ = stream.set_zero_linger();
                }
            }
            counters.active.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Why a forward refused a connection (or UDP client).
#[derive(Clone, Copy, Debug)]
enum Refused {
    /// The forward carries [`MAX_CONNECTIONS`].
    Full,
    /// Its client holds [`PER_CLIENT`].
    Client,
}

fn refuse(counters: &ForwardCounters, why: Refused) {
    counters.refused.fetch_add(1, Ordering::Relaxed);
    if let Refused::Client = why {
        counters.limited.fetch_add(1, Ordering::Relaxed);
    }
}

async fn serve_udp(
    network: Weak<Network>,
    socket: tokio::net::UdpSocket,
    to: SocketAddrV4,
    counters: Arc<ForwardCounters>,
) {
    let socket = Arc::new(socket);
    // Client address → the gateway socket carrying it.
    let clients: Arc<Mutex<HashMap<SocketAddr, i32>>> = Arc::default();
    let ports = Quota::new(PER_CLIENT);
    let mut tasks = tokio::task::JoinSet::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, client)) = socket.recv_from(&mut buf).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        while tasks.try_join_next().is_some() {}
        let Some(net) = gateway_net(&network, to) else {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let known = clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&client)
            .copied();
        let handle = match known {
            Some(handle) => handle,
            None if tasks.len() >= MAX_CONNECTIONS => {
                refuse(&counters, Refused::Full);
                continue;
            }
            None => {
                let Some(place) = ports.take(client.ip()) else {
                    refuse(&counters, Refused::Client);
                    continue;
                };
                let Ok(handle) = net
                    .udp_bind(SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0))
                    .await
                else {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                clients
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(client, handle);
                counters.connections.fetch_add(1, Ordering::Relaxed);
                counters.active.fetch_add(1, Ordering::Relaxed);
                let (net, socket, clients, counters) = (
                    net.clone(),
                    socket.clone(),
                    clients.clone(),
                    counters.clone(),
                );
                tasks.spawn(async move {
                    let _place = place;
                    while let Ok((data, _)) =
                        net.udp_recv_from(handle, 65_536, Wait::For(UDP_IDLE)).await
                    {
                        counters
                            .bytes_out
                            .fetch_add(data.len() as u64, Ordering::Relaxed);
                        let _ = socket.send_to(&data, client).await;
                    }
                    clients
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&client);
                    let _ = net.close(handle).await;
                    counters.active.fetch_sub(1, Ordering::Relaxed);
                });
                handle
            }
        };
        counters.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        if net
            .udp_send_to(handle, &buf[..n], to, Wait::For(Duration::from_secs(1)))
            .await
            .is_err()
        {
            counters.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}
