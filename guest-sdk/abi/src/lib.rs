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

    /// A short, stable name for an error code, for messages.
    pub const fn name(code: Errno) -> &'static str {
        match code {
            OK => "ok",
            INVALID_ARGUMENT => "invalid argument",
            LIMIT => "limit reached",
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
