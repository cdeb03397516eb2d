//! Sockets on the instance's interface records: [`TcpListener`],
//! [`TcpStream`] and [`UdpSocket`], shaped like `std::net`'s.
//!
//! Addresses are IPv4. Binding to `0.0.0.0` means every address the
//! instance holds, now or later (a standby service listens before its
//! record arrives). Blocking calls suspend only this instance; timeouts and
//! non-blocking mode work as in `std::net`.
//!
//! ```no_run
//! use std::io::{Read, Write};
//! use weft_guest::net::TcpListener;
//!
//! let listener = TcpListener::bind("0.0.0.0:7")?;
//! loop {
//!     let (mut stream, _peer) = listener.accept()?;
//!     let mut buf = [0; 4096];
//!     loop {
//!         let n = stream.read(&mut buf)?;
//!         if n == 0 { break; }
//!         stream.write_all(&buf[..n])?;
//!     }
//! }
//! # Ok::<(), std::io::Error>(())
//! ```

mod tcp;
mod udp;

pub use tcp::{TcpListener, TcpStream};
pub use udp::UdpSocket;

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::time::Duration;
use weft_abi::errno;

/// The instance's addresses, the primary of each interface record first.
pub fn interfaces() -> io::Result<Vec<Ipv4Addr>> {
    let mut raw = [0u32; 64];
    let mut count = 0u32;
    // SAFETY: `raw` has room for 64 addresses and `count` is a live u32.
    #[allow(unsafe_code)]
    let code = unsafe { crate::sys::net::interfaces(raw.as_mut_ptr(), raw.len(), &mut count) };
    check(code)?;
    Ok(raw[..(count as usize).min(raw.len())]
        .iter()
        .map(|&ip| Ipv4Addr::from(ip))
        .collect())
}

/// Sends `datagram`, a whole IPv4 datagram built by the caller, on the
/// instance's first interface record, as its network stack would. The
/// virtual router judges it like any other: with the record's
/// source/destination check on, a forged source address is dropped; so is
/// a flow its security groups deny, or a malformed or oversized datagram.
/// Drops are counted on the record's port, not reported here: `Ok` means
/// handed over. For tools that need raw packets (a NAT instance, a probe).
pub fn send_raw(datagram: &[u8]) -> io::Result<()> {
    // SAFETY: the pointer and length describe `datagram`, which outlives the call.
    #[allow(unsafe_code)]
    let code = unsafe { crate::sys::net::send_raw(datagram.as_ptr(), datagram.len()) };
    check(code)
}

/// Resolves `addr` to one IPv4 socket address (no DNS: literal addresses).
fn v4(addr: impl ToSocketAddrs) -> io::Result<SocketAddrV4> {
    addr.to_socket_addrs()?
        .find_map(|a| match a {
            SocketAddr::V4(v4) => Some(v4),
            SocketAddr::V6(_) => None,
        })
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "weft sockets are IPv4"))
}

/// A socket's own address.
fn local_addr_of(handle: i32) -> io::Result<SocketAddrV4> {
    let mut addr = [0u32; 2];
    // SAFETY: `addr` is a live [u32; 2].
    #[allow(unsafe_code)]
    check(unsafe { crate::sys::net::local_addr(handle, &mut addr) })?;
    Ok(decode_addr(addr))
}

/// A connection's peer address.
fn peer_addr_of(handle: i32) -> io::Result<SocketAddrV4> {
    let mut addr = [0u32; 2];
    // SAFETY: `addr` is a live [u32; 2].
    #[allow(unsafe_code)]
    check(unsafe { crate::sys::net::peer_addr(handle, &mut addr) })?;
    Ok(decode_addr(addr))
}

/// Closes a socket (its owner's `Drop`: each handle closed exactly once).
fn close(handle: i32) {
    // SAFETY: plain integer argument; the caller owns the handle.
    #[allow(unsafe_code)]
    unsafe {
        crate::sys::net::close(handle)
    };
}

fn ip_arg(addr: &SocketAddrV4) -> (i32, i32) {
    (u32::from(*addr.ip()) as i32, i32::from(addr.port()))
}

fn decode_addr(raw: [u32; 2]) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(raw[0]), raw[1] as u16)
}

/// A call's timeout in the ABI's terms.
#[derive(Clone, Copy, Debug, Default)]
struct Timeout {
    timeout: Option<Duration>,
    nonblocking: bool,
}

impl Timeout {
    fn ms(self) -> i64 {
        match (self.nonblocking, self.timeout) {
            (true, _) => 0,
            (false, None) => -1,
            (false, Some(d)) => d.as_millis().clamp(1, i64::MAX as u128) as i64,
        }
    }
}

fn check_timeout(timeout: Option<Duration>) -> io::Result<()> {
    if timeout == Some(Duration::ZERO) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot set a 0 duration timeout",
        ));
    }
    Ok(())
}

/// An errno as an `io::Error`.
fn check(code: errno::Errno) -> io::Result<()> {
    use io::ErrorKind::*;
    let kind = match code {
        errno::OK => return Ok(()),
        errno::WOULD_BLOCK => WouldBlock,
        errno::TIMED_OUT => TimedOut,
        errno::CONNECTION_REFUSED => ConnectionRefused,
        errno::CONNECTION_RESET => ConnectionReset,
        errno::NOT_CONNECTED => NotConnected,
        errno::ADDRESS_IN_USE => AddrInUse,
        errno::ADDRESS_NOT_AVAILABLE => AddrNotAvailable,
        errno::NO_NETWORK => NetworkUnreachable,
        errno::UNREACHABLE => HostUnreachable,
        errno::INVALID_ARGUMENT => InvalidInput,
        _ => Other,
    };
    Err(io::Error::new(kind, format!("weft: {}", errno::name(code))))
}
