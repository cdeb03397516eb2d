//! Outbound NAT: what a guest opens to the outside, carried over host
//! sockets.
//!
//! The pump binds the destination the guest asked for on the gateway's
//! transparent endpoint (a listener for TCP, a socket for UDP) and hands a
//! [`Job`] here. A TCP job accepts the guest's connection, connects a host
//! socket to the destination and splices the two; if the host connection
//! fails, the guest's connection is reset. A UDP job keeps one host socket
//! per guest address (so answers find their way back) and ends after
//! [`UDP_IDLE`] without traffic.

use super::{GatewayCounters, bump};
use crate::limit::{Held, LOG_EVERY, Throttle};
use crate::network::sockets::GuestNet;
use crate::network::{Network, Wait};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedReceiver;

/// How long a host connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A UDP flow with no datagram either way for this long ends.
pub const UDP_IDLE: Duration = Duration::from_secs(60);
/// How long a TCP connection through a gateway (NAT's, or a forward's) may
/// carry nothing either way before it is closed, unless the host says
/// otherwise (`weft serve --tcp-idle`): a client that connects and goes
/// quiet must not hold a forward's connection, and a gateway socket,
/// forever. 350 s, as cloud NAT gateways close idle connections.
pub const TCP_IDLE: Duration = Duration::from_secs(350);
/// Guest addresses one UDP destination keeps host sockets for, at most.
pub const UDP_FLOWS: usize = 256;
/// How long a TCP job waits for more connections to the same destination
/// after the first, before closing its listener.
const LINGER: Duration = Duration::from_millis(500);
/// Bytes moved per read.
const CHUNK: usize = 64 * 1024;

/// NAT destinations one guest address may hold open on a gateway at once:
/// a quarter of the gateway's sockets (`weft_abi::net::MAX_SOCKETS`), so
/// that one guest sending to every port it can think of cannot take them
/// all from the others on its subnet.
pub const FLOWS_PER_SOURCE: usize = 256;

/// A destination a guest opened, bound on the gateway's endpoint.
#[derive(Debug)]
pub(crate) struct Job {
    /// The gateway (its instance name on the network).
    pub gateway: String,
    /// The listener (TCP) or socket (UDP) on the gateway's endpoint.
    pub handle: i32,
    /// Where it goes on the host.
    pub target: SocketAddr,
    /// TCP or UDP.
    pub tcp: bool,
    /// The gateway's counters.
    pub counters: Arc<GatewayCounters>,
    /// Its place in the opening guest's quota, given back when the job
    /// (and so this) is dropped.
    pub _place: Held<Ipv4Addr>,
}

/// Runs the jobs the pump queues, until the network goes.
pub(super) fn spawn(network: Weak<Network>, mut jobs: UnboundedReceiver<Job>) {
    tokio::spawn(async move {
        while let Some(job) = jobs.recv().await {
            let Some(strong) = network.upgrade() else {
                return;
            };
            let net = GuestNet::new(strong, job.gateway.clone(), None);
            if job.tcp {
                tokio::spawn(tcp(net, job));
            } else {
                tokio::spawn(udp(net, job));
            }
        }
    });
}

async fn tcp(net: GuestNet, job: Job) {
    let mut wait = Wait::For(CONNECT_TIMEOUT);
    while let Ok((conn, _)) = net.tcp_accept(job.handle, wait).await {
        wait = Wait::For(LINGER);
        let (net, counters, target) = (net.clone(), job.counters.clone(), job.target);
        tokio::spawn(async move {
            match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(target))
                .await
            {
                Ok(Ok(stream)) => {
                    bump(&counters.nat_tcp);
                    let idle = net.network().tcp_idle();
                    if splice(&net, conn, stream, idle).await.idled {
                        bump(&counters.nat_idle);
                    }
                }
                outcome => {
                    bump(&counters.nat_failed);
                    let why = match outcome {
                        Ok(Err(error)) => error.to_string(),
                        _ => "timed out".to_owned(),
                    };
                    static FAILED: Throttle = Throttle::new(LOG_EVERY);
                    if let Some(skipped) = FAILED.admit() {
                        tracing::info!(%target, skipped, "NAT: cannot connect on the host: {why}");
                    }
                    let _ = net.close(conn).await;
                }
            }
        });
    }
    let _ = net.close(job.handle).await;
}

async fn udp(net: GuestNet, job: Job) {
    bump(&job.counters.nat_udp);
    let net = Arc::new(net);
    let mut flows: HashMap<SocketAddrV4, Arc<tokio::net::UdpSocket>> = HashMap::new();
    let mut readers = tokio::task::JoinSet::new();
    while let Ok((data, from)) = net
        .udp_recv_from(job.handle, 65_536, Wait::For(UDP_IDLE))
        .await
    {
        let socket = match flows.get(&from) {
            Some(socket) => socket.clone(),
            None if flows.len() >= UDP_FLOWS => continue,
            None => {
                let bind: SocketAddr = match job.target {
                    SocketAddr::V4(v4) if v4.ip().is_loopback() => ([127, 0, 0, 1], 0).into(),
                    _ => ([0, 0, 0, 0], 0).into(),
                };
                let socket = match tokio::net::UdpSocket::bind(bind).await {
                    Ok(socket) if socket.connect(job.target).await.is_ok() => Arc::new(socket),
                    _ => {
                        bump(&job.counters.nat_failed);
                        continue;
                    }
                };
                flows.insert(from, socket.clone());
                let (net, reply, handle) = (net.clone(), socket.clone(), job.handle);
                readers.spawn(async move {
                    let mut buf = vec![0u8; 65_536];
                    while let Ok(Ok(n)) = tokio::time::timeout(UDP_IDLE, reply.recv(&mut buf)).await
                    {
                        let _ = net
                            .udp_send_to(handle, &buf[..n], from, Wait::For(Duration::from_secs(1)))
                            .await;
                    }
                });
                socket
            }
        };
        let _ = socket.send(&data).await;
    }
    readers.abort_all();
    let _ = net.close(job.handle).await;
}

/// What [`splice`] carried.
pub(super) struct Spliced {
    /// Bytes to the guest.
    pub to_guest: u64,
    /// Bytes from the guest.
    pub from_guest: u64,
    /// Whether it was closed for carrying nothing for its idle limit.
    pub idled: bool,
}

/// Moves bytes both ways between guest connection `conn` and a host
/// stream until both sides have closed, or either fails, or nothing has
/// moved either way for `idle`; then closes `conn` (and the host stream).
pub(super) async fn splice(
    net: &GuestNet,
    conn: i32,
    stream: tokio::net::TcpStream,
    idle: Duration,
) -> Spliced {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let started = tokio::time::Instant::now();
    // When bytes last moved, either way: ms since `started`.
    let moved = AtomicU64::new(0);
    let touch = || moved.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
    let quiet_until = || started + Duration::from_millis(moved.load(Ordering::Relaxed)) + idle;
    // Each direction ends with (bytes, whether it ended cleanly).
    let inbound = async {
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            let n = match reader.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(_) => return (total, false),
            };
            touch();
            let mut sent = 0;
            while sent < n {
                match net.send(conn, &buf[sent..n], Wait::Forever).await {
                    Ok(k) => sent += k,
                    Err(_) => return (total, false),
                }
            }
            total += n as u64;
        }
        (total, net.shutdown(conn).await.is_ok())
    };
    let outbound = async {
        let mut total = 0u64;
        loop {
            match net.recv(conn, CHUNK, Wait::Forever).await {
                Ok(data) if data.is_empty() => break,
                Ok(data) => {
                    touch();
                    if writer.write_all(&data).await.is_err() {
                        return (total, false);
                    }
                    total += data.len() as u64;
                }
                Err(_) => return (total, false),
            }
        }
        (total, writer.shutdown().await.is_ok())
    };
    tokio::pin!(inbound, outbound);
    let (mut to_guest, mut from_guest) = (None, None);
    let mut idled = false;
    while to_guest.is_none() || from_guest.is_none() {
        tokio::select! {
            () = tokio::time::sleep_until(quiet_until()) => {
                // Bytes may have moved since the sleep began.
                if tokio::time::Instant::now() >= quiet_until() {
                    idled = true;
                    break;
                }
            }
            done = &mut inbound, if to_guest.is_none() => {
                to_guest = Some(done.0);
                if !done.1 { break; }
            }
            done = &mut outbound, if from_guest.is_none() => {
                from_guest = Some(done.0);
                if !done.1 { break; }
            }
        }
    }
    let _ = net.close(conn).await;
    Spliced {
        to_guest: to_guest.unwrap_or(0),
        from_guest: from_guest.unwrap_or(0),
        idled,
    }
}
