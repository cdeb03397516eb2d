//! The TUN device of a gateway: a kernel interface holding the gateway
//! address, so the host kernel routes the subnet to it, and two threads
//! carrying datagrams across.
//!
//! The reader waits on the device with `poll` (so it notices the device
//! going away within [`TICK`]), reads what is there in batches and hands
//! them to the router at the gateway's port. The writer drains a bounded
//! queue the pump fills; when the queue is full, datagrams are dropped and
//! counted, as a congested link drops them.

#![allow(unsafe_code)] // ioctl, poll and fcntl on the device; each call says why it is sound.

use super::{GatewayCounters, bump};
use crate::network::Network;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tun_tap::{Iface, Mode};
use weft_netstack::{Cidr, NicId};

/// How often the threads look whether the device is still wanted.
const TICK: Duration = Duration::from_millis(100);
/// Datagrams waiting for the device, at most.
const QUEUE: usize = 4096;
/// Datagrams read per turn of the router's lock, at most.
const BATCH: usize = 64;
/// The device's MTU: the largest IPv4 datagram, as on the virtual network,
/// so nothing is fragmented on the way.
const MTU: i32 = 65_535;

/// Why a device could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TunError {
    /// No CAP_NET_ADMIN.
    #[error(
        "creating the TUN device `{0}` needs CAP_NET_ADMIN: run weft as root, or give it the \
         capability (setcap cap_net_admin+ep /path/to/weft)"
    )]
    Permission(String),
    /// No TUN driver.
    #[error("no TUN driver (/dev/net/tun is missing): load the `tun` kernel module")]
    NoDriver,
    /// Anything else the kernel said.
    #[error("TUN device `{name}`: {what}: {source}")]
    Os {
        name: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Checks a device name: 1 to 15 bytes, letters, digits, `-`, `_`, `.`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a network device name (1 to 15 letters, digits, `-`, `_` or `.`)"
        ))
    }
}

/// An open TUN device; its threads stop when it is dropped.
pub struct Device {
    iface: Arc<Iface>,
    stop: Arc<AtomicBool>,
}

impl Device {
    /// Makes the device `name`, gives it `ip` in `cidr` (so the kernel
    /// routes the block to it), sets its MTU and brings it up.
    pub fn open(name: &str, ip: Ipv4Addr, cidr: Cidr) -> Result<Device, TunError> {
        let iface =
            Iface::without_packet_info(name, Mode::Tun).map_err(|e| match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => TunError::Permission(name.to_owned()),
                Some(libc::ENOENT) | Some(libc::ENODEV) => TunError::NoDriver,
                _ => TunError::Os {
                    name: name.to_owned(),
                    what: "cannot create it",
                    source: e,
                },
            })?;
        configure(iface.name(), ip, cidr).map_err(|(what, source)| TunError::Os {
            name: name.to_owned(),
            what,
            source,
        })?;
        set_nonblocking(iface.as_raw_fd()).map_err(|source| TunError::Os {
            name: name.to_owned(),
            what: "cannot make it non-blocking",
            source,
        })?;
        Ok(Device {
            iface: Arc::new(iface),
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Starts carrying datagrams between the device and gateway port `nic`;
    /// returns the queue the pump writes to.
    pub fn start(
        &self,
        network: Weak<Network>,
        nic: NicId,
        counters: Arc<GatewayCounters>,
    ) -> SyncSender<Vec<u8>> {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let (iface, stop) = (self.iface.clone(), self.stop.clone());
        let name = format!("weft-tun-{}", self.iface.name());
        let reader = {
            let (iface, stop) = (iface.clone(), stop.clone());
            move || read_loop(&iface, &stop, &network, nic, &counters)
        };
        let spawned = std::thread::Builder::new()
            .name(name.clone())
            .spawn(reader)
            .and_then(|_| {
                std::thread::Builder::new()
                    .name(name)
                    .spawn(move || write_loop(&iface, &stop, rx))
            });
        if let Err(error) = spawned {
            tracing::error!("cannot start the TUN device's threads: {error}");
        }
        tx
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn read_loop(
    iface: &Iface,
    stop: &AtomicBool,
    network: &Weak<Network>,
    nic: NicId,
    counters: &GatewayCounters,
) {
    let fd = iface.as_raw_fd();
    let mut buf = vec![0u8; MTU as usize];
    while !stop.load(Ordering::Relaxed) {
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for the duration of the call.
        let ready = unsafe { libc::poll(&mut poll, 1, TICK.as_millis() as i32) };
        if ready <= 0 {
            continue;
        }
        let mut batch = Vec::new();
        while batch.len() < BATCH {
            match iface.recv(&mut buf) {
                Ok(0) => break,
                Ok(n) => batch.push(buf[..n].to_vec()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!("reading the TUN device: {e}");
                    return;
                }
            }
        }
        let Some(network) = network.upgrade() else {
            return;
        };
        for _ in &batch {
            bump(&counters.tun_in);
        }
        network.inject(nic, &batch);
    }
}

fn write_loop(iface: &Iface, stop: &AtomicBool, rx: Receiver<Vec<u8>>) {
    let fd = iface.as_raw_fd();
    while !stop.load(Ordering::Relaxed) {
        let packet = match rx.recv_timeout(TICK) {
            Ok(packet) => packet,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        loop {
            match iface.send(&packet) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut poll = libc::pollfd {
                        fd,
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd, for the duration of the call.
                    unsafe { libc::poll(&mut poll, 1, TICK.as_millis() as i32) };
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                }
                // The kernel refused this datagram (e.g. malformed): drop it.
                Err(_) => break,
            }
        }
    }
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own, with integer arguments.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Gives device `name` its address, netmask and MTU and brings it up, with
/// the `SIOCSIF*` ioctls on a throwaway socket.
fn configure(name: &str, ip: Ipv4Addr, cidr: Cidr) -> Result<(), (&'static str, io::Error)> {
    // SAFETY: a plain socket call; the descriptor is closed below.
    let socket = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if socket < 0 {
        return Err(("cannot open a control socket", io::Error::last_os_error()));
    }
    let result = (|| {
        let call = |request, what, set: &dyn Fn(&mut libc::ifreq)| {
            let mut req = ifreq(name);
            set(&mut req);
            // SAFETY: `req` is a valid ifreq naming the device, as these
            // requests take.
            if unsafe { libc::ioctl(socket, request, &mut req) } < 0 {
                return Err((what, io::Error::last_os_error()));
            }
            Ok(req)
        };
        call(libc::SIOCSIFADDR, "cannot set its address", &|r| {
            r.ifr_ifru.ifru_addr = sockaddr(ip)
        })?;
        call(libc::SIOCSIFNETMASK, "cannot set its netmask", &|r| {
            r.ifr_ifru.ifru_netmask = sockaddr(cidr.netmask())
        })?;
        call(libc::SIOCSIFMTU, "cannot set its MTU", &|r| {
            r.ifr_ifru.ifru_mtu = MTU
        })?;
        let current = call(libc::SIOCGIFFLAGS, "cannot read its flags", &|_| {})?;
        // SAFETY: SIOCGIFFLAGS filled the flags member.
        let flags = unsafe { current.ifr_ifru.ifru_flags };
        call(libc::SIOCSIFFLAGS, "cannot bring it up", &|r| {
            r.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short
        })?;
        Ok(())
    })();
    // SAFETY: closing the socket opened above.
    unsafe { libc::close(socket) };
    result
}

fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in req
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *slot = byte as libc::c_char;
    }
    req
}

fn sockaddr(ip: Ipv4Addr) -> libc::sockaddr {
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size, and the kernel
    // reads this one as a sockaddr_in (its family says so).
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(addr) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names() {
        for good in ["weft0", "gw-1", "a.b_c"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "this-name-is-too-long", "a b", "a/b", "..", "wéft"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
