//! `weft:log`: log lines from the guest, attributed to its instance.
//!
//! Contract of `write(level, ptr, len) -> errno`:
//! - returns `OK` and records the line (cut to `MAX_LINE` bytes, decoded as
//!   lossy UTF-8) at `level`;
//! - returns `INVALID_ARGUMENT` for an unknown level, `LIMIT` once the
//!   instance has written `MAX_LINES` lines;
//! - traps if `ptr..ptr+len` is outside the guest's memory.

use crate::runtime::InstanceId;
use crate::runtime::State;
use crate::runtime::stdio::LineSink;
use std::sync::Arc;
use std::time::SystemTime;
use wasmtime::{Caller, Linker};
use weft_abi::errno;
use weft_abi::log::{Level, MAX_LINE, MAX_LINES, MODULE, WRITE};

/// Adds `weft:log` to the linker.
pub fn register(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    linker.func_wrap(MODULE, WRITE, write)?;
    Ok(())
}

fn write(mut caller: Caller<'_, State>, level: i32, ptr: u32, len: u32) -> wasmtime::Result<i32> {
    let Some(level) = Level::from_i32(level) else {
        return Ok(errno::INVALID_ARGUMENT);
    };
    if caller.data().log.is_full() {
        return Ok(errno::LIMIT);
    }
    let bytes = super::read_guest_bytes(&mut caller, ptr, len, MAX_LINE)?;
    caller
        .data_mut()
        .log
        .push(level, String::from_utf8_lossy(&bytes).into_owned());
    Ok(errno::OK)
}

/// One line a guest logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// When it was written.
    pub time: SystemTime,
    /// Its level.
    pub level: Level,
    /// The text.
    pub message: String,
}

/// The log of one instance: kept for its outcome and emitted as `tracing`
/// events under the `weft::guest` target with the instance and module.
#[derive(Debug)]
pub struct GuestLog {
    instance: InstanceId,
    module: Arc<str>,
    lines: Vec<LogLine>,
    count: usize,
    /// Where lines go as they are written (services); otherwise they are
    /// kept for the outcome.
    sink: Option<Arc<dyn LineSink>>,
}

impl GuestLog {
    /// An empty log for `instance` of `module`.
    pub fn new(instance: InstanceId, module: Arc<str>) -> Self {
        GuestLog {
            instance,
            module,
            lines: Vec::new(),
            count: 0,
            sink: None,
        }
    }

    /// Sends lines to `sink` as they are written instead of keeping them.
    pub fn streaming_to(mut self, sink: Arc<dyn LineSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    fn is_full(&self) -> bool {
        // A streaming log is bounded where it lands (the activity ring).
        self.sink.is_none() && self.count >= MAX_LINES as usize
    }

    fn push(&mut self, level: Level, message: String) {
        let (instance, module) = (self.instance.as_str(), &*self.module);
        match level {
            Level::Error => tracing::error!(target: "weft::guest", instance, module, "{message}"),
            Level::Warn => tracing::warn!(target: "weft::guest", instance, module, "{message}"),
            Level::Info => tracing::info!(target: "weft::guest", instance, module, "{message}"),
            Level::Debug => tracing::debug!(target: "weft::guest", instance, module, "{message}"),
            Level::Trace => tracing::trace!(target: "weft::guest", instance, module, "{message}"),
        }
        self.count += 1;
        match &self.sink {
            Some(sink) => sink.log(level, &message),
            None => self.lines.push(LogLine {
                time: SystemTime::now(),
                level,
                message,
            }),
        }
    }

    /// The lines written.
    pub fn into_lines(self) -> Vec<LogLine> {
        self.lines
    }
}
