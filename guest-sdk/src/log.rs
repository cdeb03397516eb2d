//! Log lines that reach the host's log, attributed to this instance.
//!
//! Unlike writes to stderr, which weft also keeps, these carry a level and are
//! counted against the instance's line budget (`weft_abi::log::MAX_LINES`).
//!
//! ```no_run
//! weft_guest::log::info!("loaded {} records", 42);
//! weft_guest::log::warn!("slow path taken");
//! ```

pub use weft_abi::log::Level;

/// Why a log line was not recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error(pub weft_abi::errno::Errno);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "weft log: {}", weft_abi::errno::name(self.0))
    }
}

impl std::error::Error for Error {}

/// Writes one line at `level`. Lines past `weft_abi::log::MAX_LINE` bytes are
/// truncated by the host.
pub fn write(level: Level, message: &str) -> Result<(), Error> {
    // SAFETY: `message` is a live slice for the duration of the call; the host
    // only reads `len` bytes from `ptr`.
    #[allow(unsafe_code)]
    let code = unsafe { crate::sys::log::write(level as i32, message.as_ptr(), message.len()) };
    match code {
        weft_abi::errno::OK => Ok(()),
        other => Err(Error(other)),
    }
}

/// Formats and writes a line at a level, ignoring a refused line (logging
/// must never take a program down).
#[macro_export]
macro_rules! __weft_log {
    ($level:expr, $($arg:tt)+) => {{
        let _ = $crate::log::write($level, &::std::format!($($arg)+));
    }};
}

/// Logs at [`Level::Error`].
#[macro_export]
macro_rules! __weft_error { ($($arg:tt)+) => { $crate::__weft_log!($crate::log::Level::Error, $($arg)+) }; }
/// Logs at [`Level::Warn`].
#[macro_export]
macro_rules! __weft_warn { ($($arg:tt)+) => { $crate::__weft_log!($crate::log::Level::Warn, $($arg)+) }; }
/// Logs at [`Level::Info`].
#[macro_export]
macro_rules! __weft_info { ($($arg:tt)+) => { $crate::__weft_log!($crate::log::Level::Info, $($arg)+) }; }
/// Logs at [`Level::Debug`].
#[macro_export]
macro_rules! __weft_debug { ($($arg:tt)+) => { $crate::__weft_log!($crate::log::Level::Debug, $($arg)+) }; }
/// Logs at [`Level::Trace`].
#[macro_export]
macro_rules! __weft_trace { ($($arg:tt)+) => { $crate::__weft_log!($crate::log::Level::Trace, $($arg)+) }; }

pub use crate::__weft_debug as debug;
pub use crate::__weft_error as error;
pub use crate::__weft_info as info;
pub use crate::__weft_trace as trace;
pub use crate::__weft_warn as warn;
