//! The weft guest ABI: the names, error codes and flag values that the host
//! (`weft-host`) and the guest SDK (`weft-guest`) both compile against, so the
//! two sides cannot drift apart.
//!
//! Every import weft provides lives in a wasm import module named `weft:*`,
//! one per namespace (`weft:log`, later `weft:chain`, `weft:mesh`,
//! `weft:net`). Pointers and lengths are `i32` offsets into the guest's
//! linear memory; every function returns an [`errno::Errno`] (`0` on success)
//! unless its contract says otherwise. `docs/abi.md` is the prose version of
//! this file, with each function's contract.
//!
//! Two tiers of failure, as in wasmtime's `TrappableError`: conditions a
//! program can handle come back as an error code; things a program must not do
//! (a pointer outside its memory, an unknown handle) trap the instance.

#![no_std]

/// The ABI version. Bumped on any incompatible change to the names or
/// contracts below.
pub const VERSION: u32 = 1;

/// Error codes returned by host functions.
pub mod errno {
    /// The type every `weft:*` function returns.
    pub type Errno = i32;

    /// Success.
    pub const OK: Errno = 0;
    /// An argument was out of its allowed range (for example an unknown log
    /// level).
    pub const INVALID_ARGUMENT: Errno = 1;
    /// A per-instance limit was reached (for example the log line budget);
    /// the call had no effect.
    pub const LIMIT: Errno = 2;
    /// The operation would block and the call was non-blocking.
    pub const WOULD_BLOCK: Errno = 3;
    /// The operation did not complete within its timeout.
    pub const TIMED_OUT: Errno = 4;
    /// The peer refused the connection.
    pub const CONNECTION_REFUSED: Errno = 5;
    /// The connection was reset (or its interface was detached).
    pub const CONNECTION_RESET: Errno = 6;
    /// The socket is not connected.
    pub const NOT_CONNECTED: Errno = 7;
    /// The address is already in use by this instance.
    pub const ADDRESS_IN_USE: Errno = 8;
    /// The address is not one of this instance's.
    pub const ADDRESS_NOT_AVAILABLE: Errno = 9;
    /// The instance holds no interface that can reach the address.
    pub const NO_NETWORK: Errno = 10;
    /// The address cannot be reached.
    pub const UNREACHABLE: Errno = 11;
    /// The operation does not apply to this kind of socket or its state.
    pub const INVALID_STATE: Errno = 12;

    /// A short, stable name for an error code, for messages.
    pub const fn name(code: Errno) -> &'static str {
        match code {
            OK => "ok",
            INVALID_ARGUMENT => "invalid argument",
            LIMIT => "limit reached",
            WOULD_BLOCK => "operation would block",
            TIMED_OUT => "timed out",
            CONNECTION_REFUSED => "connection refused",
            CONNECTION_RESET => "connection reset",
            NOT_CONNECTED => "not connected",
            ADDRESS_IN_USE => "address in use",
            ADDRESS_NOT_AVAILABLE => "address not available",
            NO_NETWORK => "no network interface",
            UNREACHABLE => "unreachable",
            INVALID_STATE => "invalid socket state",
            _ => "unknown error",
        }
    }
}

/// `weft:log`: structured log lines attributed to the calling instance.
pub mod log {
    /// The import module name.
    pub const MODULE: &str = "weft:log";

    /// `write(level: i32, ptr: i32, len: i32) -> errno`
    ///
    /// Appends one log line (UTF-8, lossily decoded) at `level` to the
    /// instance's log. Lines longer than [`MAX_LINE`] bytes are truncated.
    /// Returns `INVALID_ARGUMENT` for an unknown level and `LIMIT` once the
    /// instance has written [`MAX_LINES`] lines. Traps if `ptr..ptr+len` is
    /// outside the guest's memory.
    pub const WRITE: &str = "write";

    /// Longest line kept, in bytes; the rest is cut off.
    pub const MAX_LINE: usize = 4096;
    /// Lines one instance may write before `write` returns `LIMIT`.
    pub const MAX_LINES: u32 = 10_000;

    /// Log levels, most severe first.
    #[repr(i32)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
    pub enum Level {
        /// Something failed.
        Error = 1,
        /// Something looks wrong.
        Warn = 2,
        /// Normal operation.
        Info = 3,
        /// Detail for developers.
        Debug = 4,
        /// Very verbose detail.
        Trace = 5,
    }

    impl Level {
        /// Decodes a level received over the ABI.
        pub const fn from_i32(raw: i32) -> Option<Level> {
            Some(match raw {
                1 => Level::Error,
                2 => Level::Warn,
                3 => Level::Info,
                4 => Level::Debug,
                5 => Level::Trace,
                _ => return None,
            })
        }

        /// Lower-case name, as printed in logs.
        pub const fn as_str(self) -> &'static str {
            match self {
                Level::Error => "error",
                Level::Warn => "warn",
                Level::Info => "info",
                Level::Debug => "debug",
                Level::Trace => "trace",
            }
        }
    }
}

/// `weft:net`: TCP and UDP sockets on the instance's interface records.
///
/// Addresses are an IPv4 address as a big-endian `i32` (`10.0.1.5` is
/// `0x0a000105`) and a port as `i32`; `0.0.0.0` means every address of the
/// instance. Sockets are `i32` handles, valid until `close`. `timeout_ms` is
/// `-1` to wait as long as it takes, `0` for a non-blocking attempt
/// (`WOULD_BLOCK`), or a number of milliseconds (`TIMED_OUT`). A waiting call
/// suspends only the calling instance. An unknown handle traps.
pub mod net {
    /// The import module name.
    pub const MODULE: &str = "weft:net";

    /// `tcp_listen(ip, port, out_handle) -> errno`
    pub const TCP_LISTEN: &str = "tcp_listen";
    /// `tcp_accept(listener, timeout_ms: i64, out_handle, out_addr) -> errno`;
    /// `out_addr` receives 8 bytes: ip (u32 LE of the big-endian value), port (u32 LE).
    pub const TCP_ACCEPT: &str = "tcp_accept";
    /// `tcp_connect(ip, port, timeout_ms: i64, out_handle) -> errno`
    pub const TCP_CONNECT: &str = "tcp_connect";
    /// `send(handle, ptr, len, timeout_ms: i64, out_written) -> errno`: TCP only.
    pub const SEND: &str = "send";
    /// `recv(handle, ptr, len, timeout_ms: i64, out_read) -> errno`: TCP only;
    /// 0 bytes read means the peer closed.
    pub const RECV: &str = "recv";
    /// `shutdown(handle) -> errno`: half-close the sending side (TCP).
    pub const SHUTDOWN: &str = "shutdown";
    /// `udp_bind(ip, port, out_handle) -> errno`
    pub const UDP_BIND: &str = "udp_bind";
    /// `udp_send_to(handle, ip, port, ptr, len, timeout_ms: i64) -> errno`
    pub const UDP_SEND_TO: &str = "udp_send_to";
    /// `udp_recv_from(handle, ptr, len, timeout_ms: i64, out_read, out_addr) -> errno`
    pub const UDP_RECV_FROM: &str = "udp_recv_from";
    /// `local_addr(handle, out_addr) -> errno`
    pub const LOCAL_ADDR: &str = "local_addr";
    /// `peer_addr(handle, out_addr) -> errno`
    pub const PEER_ADDR: &str = "peer_addr";
    /// `close(handle) -> errno`
    pub const CLOSE: &str = "close";
    /// `interfaces(out_ptr, max, out_count) -> errno`: writes up to `max`
    /// addresses (u32 LE of the big-endian value each), primary of each
    /// interface first.
    pub const INTERFACES: &str = "interfaces";

    /// Sockets one instance may hold.
    pub const MAX_SOCKETS: usize = 1024;
}
