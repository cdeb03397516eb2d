//! The weft guest ABI: the names, error codes and flag values that the host
//! (`weft-host`) and the guest SDK (`weft-guest`) both compile against, so the
//! two sides cannot drift apart.
//!
//! Every import weft provides lives in a wasm import module named `weft:*`,
//! one per namespace (`weft:log`, `weft:net`, `weft:mesh`, `weft:chain`). Pointers and lengths are `i32` offsets into the guest's
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

    // `weft:chain` codes start at 16, clear of the other namespaces'.

    /// `chain::call` named a module that is not deployed.
    pub const NO_SUCH_MODULE: Errno = 16;
    /// `chain::call` would nest deeper than [`crate::chain::MAX_DEPTH`].
    pub const DEPTH_LIMIT: Errno = 17;
    /// The called module failed (trapped, hit a limit or exited non-zero);
    /// the pending result holds the reason as text.
    pub const CALL_FAILED: Errno = 18;
    /// Chaining is not available to this instance (it runs without a module
    /// registry, as under `weft run`).
    pub const UNAVAILABLE: Errno = 19;

    // `weft:mesh` codes start at 32, clear of the other namespaces'.

    /// The calling instance is not part of a mesh.
    pub const NOT_IN_MESH: Errno = 32;
    /// The message is larger than the mesh's message size cap.
    pub const TOO_LARGE: Errno = 33;
    /// The peer (a rank or the parent) has ended or does not exist; the
    /// message was not delivered.
    pub const PEER_GONE: Errno = 34;
    /// The receive buffer is smaller than the matched message, which stays
    /// queued; its source, tag and length were written back.
    pub const TRUNCATED: Errno = 35;
    /// The ranks entered different collectives, or the same one with
    /// different roots, lengths, operations or types.
    pub const MISMATCH: Errno = 36;

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
            NO_SUCH_MODULE => "no such module",
            DEPTH_LIMIT => "call depth limit reached",
            CALL_FAILED => "the called module failed",
            UNAVAILABLE => "chaining unavailable",
            NOT_IN_MESH => "not in a mesh",
            TOO_LARGE => "message too large",
            PEER_GONE => "peer gone",
            TRUNCATED => "buffer too small for the message",
            MISMATCH => "collective mismatch",
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
    /// `send_raw(ptr, len) -> errno`: hands the bytes, an IPv4 datagram as
    /// the guest built it, to the router on the instance's first interface
    /// record. The router treats it as any datagram the instance sends: a
    /// forged source (with the source/destination check on), a denied flow,
    /// a malformed or oversized datagram is dropped and counted on the
    /// record's port. `OK` once handed over, dropped or not; `NO_NETWORK`
    /// without a record; `INVALID_ARGUMENT` past [`MAX_RAW`] bytes (not read).
    pub const SEND_RAW: &str = "send_raw";

    /// Sockets one instance may hold.
    pub const MAX_SOCKETS: usize = 1024;
    /// The longest `send_raw` accepted: twice the largest IPv4 datagram, so
    /// that an oversized one reaches the router and is counted there.
    pub const MAX_RAW: usize = 131_072;
}

/// `weft:chain`: the invocation's input and output without copies in the
/// host, and synchronous calls to other modules.
///
/// The input is the same byte string as stdin, behind one cursor: what one
/// of them has read, the other will not see. A declared output region is
/// handed to the next step (or the HTTP response) straight from the guest's
/// linear memory. Every function traps when a pointer range is outside the
/// guest's memory.
pub mod chain {
    /// The import module name.
    pub const MODULE: &str = "weft:chain";

    /// `input_len(out_len: *mut u32) -> errno`: bytes of input not read yet.
    pub const INPUT_LEN: &str = "input_len";
    /// `input(ptr, len, out_read: *mut u32) -> errno`: copies up to `len`
    /// bytes of the remaining input to `ptr`; `0` read means the end. The
    /// host lets go of the input (and of the previous step's instance it
    /// lives in) once all of it has been read.
    pub const INPUT: &str = "input";
    /// `input_in_place(out_ptr: *mut u32, out_len: *mut u32) -> errno`:
    /// places the whole remaining input in pages of the instance's memory
    /// that the host adds for it, past the guest's own heap, and writes
    /// where (`out_ptr`) and how long (`out_len`). The bytes are the
    /// guest's from then on, for the rest of its life; nothing frees them.
    /// A step prepared ahead (a chain's warm instance) may already have
    /// those pages, so the hop costs the copy alone. `LIMIT` when the pages
    /// would pass the memory limit; `UNAVAILABLE` as for `input`.
    pub const INPUT_IN_PLACE: &str = "input_in_place";
    /// `output(ptr, len) -> errno`: declares `ptr..ptr+len` as the
    /// invocation's output, taken when the instance ends (anything written
    /// to stdout comes first). The guest must leave those bytes alone from
    /// then on. A later call replaces the region. `LIMIT` when `len` is
    /// above the output limit (the instance then fails with
    /// `output_limit` if it does not recover).
    pub const OUTPUT: &str = "output";
    /// `call(name_ptr, name_len, in_ptr, in_len, out_len: *mut u32) -> errno`:
    /// runs module `name` on the input, to completion, and keeps its output
    /// as the pending result, whose length is written to `out_len`. Returns
    /// `NO_SUCH_MODULE`, `DEPTH_LIMIT`, `UNAVAILABLE`, or `CALL_FAILED` with
    /// the reason as the pending result.
    pub const CALL: &str = "call";
    /// `result(ptr, len) -> errno`: copies the pending result (up to `len`
    /// bytes) to `ptr` and lets go of it. `INVALID_ARGUMENT` when no result
    /// is pending.
    pub const RESULT: &str = "result";
    /// `depth(out: *mut u32) -> errno`: how deep in `call`s this instance
    /// runs (0 for a chain step or a plain invocation).
    pub const DEPTH: &str = "depth";

    /// Nested `call`s allowed below a top-level instance; the call that
    /// would go deeper gets `DEPTH_LIMIT`.
    pub const MAX_DEPTH: u32 = 8;
    /// Longest module name `call` accepts.
    pub const MAX_NAME: usize = 64;
}

/// `weft:mesh`: messages and collectives between the ranks of a mesh job
/// and its parent.
///
/// A rank is a `u32` from `0` to `size - 1`; two values are reserved:
/// [`ANY`] (`-1` as `i32`) matches any source or tag in `recv`, and
/// [`PARENT`] (`-2`) names the job's parent (a controller module, an
/// external client or the CLI). Tags are `0..=i32::MAX`. `timeout_ms` is
/// `-1` to wait as long as it takes, `0` for a non-blocking attempt
/// (`WOULD_BLOCK`), or milliseconds (`TIMED_OUT`). A waiting call suspends
/// only the calling instance; when the job ends, a waiting rank stops at
/// once. Every function returns `NOT_IN_MESH` in an instance that is not
/// part of a mesh, and traps when a pointer range is outside its memory.
pub mod mesh {
    /// The import module name.
    pub const MODULE: &str = "weft:mesh";

    /// Matches any source or any tag in `recv`.
    pub const ANY: i32 = -1;
    /// The job's parent, as a destination or a source.
    pub const PARENT: i32 = -2;
    /// The tag of membership events in `recv`: a rank joined or left the
    /// job. `ANY` never matches it; the event's source is the rank, its
    /// 12 bytes are `[joined: u32 LE (1 joined, 0 left)][epoch: u64 LE]`.
    pub const MEMBERSHIP: i32 = -3;

    /// `rank(out_rank: *mut u32) -> errno`: the caller's rank, or
    /// [`PARENT`] for a controller module.
    pub const RANK: &str = "rank";
    /// `size(out_size: *mut u32) -> errno`: how many ranks the job has (the
    /// parent not counted).
    pub const SIZE: &str = "size";
    /// `send(dst, tag, ptr, len, timeout_ms: i64) -> errno`: queues one
    /// message in `dst`'s mailbox, waiting while it is full. `TOO_LARGE`
    /// past the job's message cap, `PEER_GONE` when `dst` has ended,
    /// `INVALID_ARGUMENT` for an unknown rank or a negative tag.
    pub const SEND: &str = "send";
    /// `recv(src, tag, ptr, cap, timeout_ms: i64, out_info: *mut [u32; 3]) -> errno`:
    /// takes the oldest message matching `src` and `tag` (either may be
    /// [`ANY`]) into `ptr..ptr+cap` and writes `[src, tag, len]`. When the
    /// message is longer than `cap` it stays queued, `out_info` is written
    /// and the call returns `TRUNCATED`.
    pub const RECV: &str = "recv";
    /// `send_now(dst, tag, ptr, len) -> errno`: [`SEND`] with a timeout of
    /// 0 (`WOULD_BLOCK` when the mailbox is full), as a plain call that
    /// never suspends the instance: the fast path, tried before `send`.
    pub const SEND_NOW: &str = "send_now";
    /// `recv_now(src, tag, ptr, cap, out_info: *mut [u32; 3], spin) -> errno`:
    /// [`RECV`] with a timeout of 0, as a plain call that never suspends
    /// the instance. With `spin` 1, a caller with a core to itself has the
    /// host look again for a few microseconds before `WOULD_BLOCK`: the
    /// fast path, tried before `recv`.
    pub const RECV_NOW: &str = "recv_now";
    /// `barrier() -> errno`: returns once every rank has called it.
    pub const BARRIER: &str = "barrier";
    /// `broadcast(root, ptr, len) -> errno`: `root`'s `len` bytes are copied
    /// into every other rank's buffer; every rank passes the same `len`.
    pub const BROADCAST: &str = "broadcast";
    /// `reduce(root, op, ty, ptr, count) -> errno`: combines `count`
    /// elements of type `ty` (8 bytes each, little-endian) from every rank
    /// with `op`, in rank order, and writes the result over `root`'s buffer,
    /// or over every rank's buffer when `root` is [`ANY`] (allreduce).
    pub const REDUCE: &str = "reduce";
    /// `gather(root, ptr, len, out_ptr, out_len) -> errno`: every rank's
    /// `len` bytes, in rank order, into `root`'s `out_ptr` (`out_len` must
    /// be `size * len` there; ignored elsewhere).
    pub const GATHER: &str = "gather";
    /// `scatter(root, ptr, len, out_ptr, out_len) -> errno`: `root`'s `len`
    /// bytes (`size * out_len`) cut into `size` pieces; rank `i` gets piece
    /// `i` in `out_ptr..out_ptr+out_len`. `len` is ignored off the root.
    pub const SCATTER: &str = "scatter";
    /// `addr(rank, out_ip: *mut u32) -> errno`: `rank`'s address on the
    /// mesh subnet (the big-endian value as a `u32`); `NO_NETWORK` when the
    /// job has no subnet.
    pub const ADDR: &str = "addr";
    /// `members(ptr: *mut u32, cap: u32, out_info: *mut [u64; 2]) -> errno`:
    /// the ranks live now, ascending, as many as fit in `cap` entries at
    /// `ptr`; `out_info` gets `[count, epoch]` (the epoch grows by one at
    /// every join and every departure). Ranks join while the job runs
    /// (`POST /v1/meshes/{id}/ranks`) with new numbers: `size` counts every
    /// rank started so far, live or ended.
    pub const MEMBERS: &str = "members";

    /// The default cap on one message, in bytes.
    pub const MAX_MESSAGE: usize = 16 << 20;
    /// Messages one mailbox holds by default from each sender before that
    /// sender waits.
    pub const MAILBOX_MESSAGES: usize = 1024;
    /// Bytes of messages past 1 KiB (and of small ones queued behind them)
    /// one mailbox holds by default, from every sender, before senders
    /// wait (one message is always admitted into an empty mailbox).
    pub const MAILBOX_BYTES: usize = 64 << 20;

    /// Reduction operations (`op` of `reduce`).
    pub mod op {
        /// Sum (integers wrap).
        pub const SUM: i32 = 0;
        /// Minimum (for `f64`, as `f64::min`: a NaN loses to a number).
        pub const MIN: i32 = 1;
        /// Maximum (for `f64`, as `f64::max`).
        pub const MAX: i32 = 2;
    }

    /// Element types (`ty` of `reduce`).
    pub mod ty {
        /// IEEE 754 double.
        pub const F64: i32 = 0;
        /// Signed 64-bit integer.
        pub const I64: i32 = 1;
        /// Unsigned 64-bit integer.
        pub const U64: i32 = 2;
    }
}
