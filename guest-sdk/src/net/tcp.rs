//! TCP: listeners and connected streams.

use super::{
    Timeout, check, check_timeout, close, decode_addr, ip_arg, local_addr_of, peer_addr_of, v4,
};
use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::{SocketAddrV4, ToSocketAddrs};
use std::time::Duration;

/// A TCP listener.
#[derive(Debug)]
pub struct TcpListener {
    handle: i32,
    nonblocking: Cell<bool>,
}

impl TcpListener {
    /// Listens on `addr` (`0.0.0.0:PORT` for every address of the instance).
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        let addr = v4(addr)?;
        let (ip, port) = ip_arg(&addr);
        let mut handle = 0;
        // SAFETY: `handle` is a live i32 the host writes the handle into.
        #[allow(unsafe_code)]
        check(unsafe { crate::sys::net::tcp_listen(ip, port, &mut handle) })?;
        Ok(TcpListener {
            handle,
            nonblocking: Cell::new(false),
        })
    }

    /// Waits for a connection (unless non-blocking).
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddrV4)> {
        let timeout = Timeout {
            timeout: None,
            nonblocking: self.nonblocking.get(),
        };
        let mut handle = 0;
        let mut addr = [0u32; 2];
        // SAFETY: both outputs are live locals of the right size.
        #[allow(unsafe_code)]
        check(unsafe {
            crate::sys::net::tcp_accept(self.handle, timeout.ms(), &mut handle, &mut addr)
        })?;
        Ok((TcpStream::from_handle(handle), decode_addr(addr)))
    }

    /// Accepted connections, forever.
    pub fn incoming(&self) -> impl Iterator<Item = io::Result<TcpStream>> + '_ {
        std::iter::repeat_with(|| self.accept().map(|(stream, _)| stream))
    }

    /// Makes `accept` return `WouldBlock` instead of waiting.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.nonblocking.set(nonblocking);
        Ok(())
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddrV4> {
        local_addr_of(self.handle)
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        close(self.handle);
    }
}

/// A TCP connection.
#[derive(Debug)]
pub struct TcpStream {
    handle: i32,
    read: Cell<Timeout>,
    write: Cell<Timeout>,
}

impl TcpStream {
    fn from_handle(handle: i32) -> TcpStream {
        TcpStream {
            handle,
            read: Cell::new(Timeout::default()),
            write: Cell::new(Timeout::default()),
        }
    }

    /// Connects to `addr`, waiting for the handshake as long as it takes.
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        Self::connect_with(v4(addr)?, -1)
    }

    /// Connects to `addr`, giving up after `timeout`.
    pub fn connect_timeout(addr: &SocketAddrV4, timeout: Duration) -> io::Result<TcpStream> {
        check_timeout(Some(timeout))?;
        Self::connect_with(*addr, timeout.as_millis().max(1) as i64)
    }

    fn connect_with(addr: SocketAddrV4, timeout_ms: i64) -> io::Result<TcpStream> {
        let (ip, port) = ip_arg(&addr);
        let mut handle = 0;
        // SAFETY: `handle` is a live i32.
        #[allow(unsafe_code)]
        check(unsafe { crate::sys::net::tcp_connect(ip, port, timeout_ms, &mut handle) })?;
        Ok(TcpStream::from_handle(handle))
    }

    /// How long a read may wait (`None`: as long as it takes).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        check_timeout(timeout)?;
        let mut t = self.read.get();
        t.timeout = timeout;
        self.read.set(t);
        Ok(())
    }

    /// How long a write may wait.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        check_timeout(timeout)?;
        let mut t = self.write.get();
        t.timeout = timeout;
        self.write.set(t);
        Ok(())
    }

    /// Makes reads and writes return `WouldBlock` instead of waiting.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        for cell in [&self.read, &self.write] {
            let mut t = cell.get();
            t.nonblocking = nonblocking;
            cell.set(t);
        }
        Ok(())
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddrV4> {
        peer_addr_of(self.handle)
    }

    /// This end's address.
    pub fn local_addr(&self) -> io::Result<SocketAddrV4> {
        local_addr_of(self.handle)
    }

    /// Closes the sending side: the peer reads end-of-file.
    pub fn shutdown_write(&self) -> io::Result<()> {
        // SAFETY: plain call with our handle.
        #[allow(unsafe_code)]
        check(unsafe { crate::sys::net::shutdown(self.handle) })
    }
}

impl Read for &TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0u32;
        // SAFETY: `buf` is a live, writable slice of `buf.len()` bytes.
        #[allow(unsafe_code)]
        check(unsafe {
            crate::sys::net::recv(
                self.handle,
                buf.as_mut_ptr(),
                buf.len(),
                self.read.get().ms(),
                &mut n,
            )
        })?;
        Ok(n as usize)
    }
}

impl Write for &TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut n = 0u32;
        // SAFETY: `buf` is a live slice of `buf.len()` bytes.
        #[allow(unsafe_code)]
        check(unsafe {
            crate::sys::net::send(
                self.handle,
                buf.as_ptr(),
                buf.len(),
                self.write.get().ms(),
                &mut n,
            )
        })?;
        Ok(n as usize)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        close(self.handle);
    }
}
