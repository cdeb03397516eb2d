//! UDP sockets.

use super::{Timeout, check, check_timeout, close, decode_addr, ip_arg, local_addr_of, v4};
use std::cell::Cell;
use std::io;
use std::net::{SocketAddrV4, ToSocketAddrs};
use std::time::Duration;

/// A UDP socket.
#[derive(Debug)]
pub struct UdpSocket {
    handle: i32,
    read: Cell<Timeout>,
}

impl UdpSocket {
    /// Binds `addr` (`0.0.0.0:0` for any address and an ephemeral port).
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        let addr = v4(addr)?;
        let (ip, port) = ip_arg(&addr);
        let mut handle = 0;
        // SAFETY: `handle` is a live i32.
        #[allow(unsafe_code)]
        check(unsafe { crate::sys::net::udp_bind(ip, port, &mut handle) })?;
        Ok(UdpSocket {
            handle,
            read: Cell::new(Timeout::default()),
        })
    }

    /// Sends one datagram to `addr`; returns its length.
    pub fn send_to(&self, buf: &[u8], addr: impl ToSocketAddrs) -> io::Result<usize> {
        let to = v4(addr)?;
        let (ip, port) = ip_arg(&to);
        let timeout = Timeout {
            timeout: Some(Duration::from_secs(5)),
            nonblocking: self.read.get().nonblocking,
        };
        // SAFETY: `buf` is a live slice.
        #[allow(unsafe_code)]
        check(unsafe {
            crate::sys::net::udp_send_to(
                self.handle,
                ip,
                port,
                buf.as_ptr(),
                buf.len(),
                timeout.ms(),
            )
        })?;
        Ok(buf.len())
    }

    /// Receives one datagram (cut to `buf`), with its sender.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddrV4)> {
        let mut n = 0u32;
        let mut addr = [0u32; 2];
        // SAFETY: `buf`, `n` and `addr` are live and writable.
        #[allow(unsafe_code)]
        check(unsafe {
            crate::sys::net::udp_recv_from(
                self.handle,
                buf.as_mut_ptr(),
                buf.len(),
                self.read.get().ms(),
                &mut n,
                &mut addr,
            )
        })?;
        Ok((n as usize, decode_addr(addr)))
    }

    /// How long `recv_from` may wait.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        check_timeout(timeout)?;
        let mut t = self.read.get();
        t.timeout = timeout;
        self.read.set(t);
        Ok(())
    }

    /// Makes calls return `WouldBlock` instead of waiting.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        let mut t = self.read.get();
        t.nonblocking = nonblocking;
        self.read.set(t);
        Ok(())
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddrV4> {
        local_addr_of(self.handle)
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        close(self.handle);
    }
}
