//! Why an instance failed, as a closed set of reasons a user can act on.
//!
//! wasmtime reports failures as an error chain (a `Trap` code, our own
//! interrupt type, a WASI exit); [`Failure::classify`] turns that chain, plus
//! what the limiter and output sink saw, into one [`Failure`] whose `Display`
//! is the one line `weft run` prints and whose [`Failure::code`] is the stable
//! code the API returns.

use super::limits::{Denied, Limits};
use crate::units::{format_duration, format_size};
use std::fmt;
use std::time::Duration;
use wasmtime::Trap;

/// Raised from the epoch callback to stop a running instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Interrupt {
    /// The instance's wall-clock deadline passed.
    #[error("deadline exceeded")]
    Deadline,
    /// The host stopped it (a service being stopped, its parent gone).
    #[error("stopped by the host")]
    Killed,
}

/// The reason an instance failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Still running when its wall-clock deadline passed.
    Deadline { limit: Duration },
    /// Stopped by the host on purpose.
    Killed,
    /// Asked for more linear memory than its limit.
    MemoryLimit { limit: u64, requested: u64 },
    /// Asked for more table elements than its limit.
    TableLimit { limit: u64, requested: u64 },
    /// Exhausted its wasm call stack.
    StackOverflow,
    /// Read or wrote outside its linear memory.
    OutOfBounds,
    /// Executed `unreachable` (a Rust panic or abort lands here).
    Unreachable,
    /// Used all its fuel.
    OutOfFuel { fuel: u64 },
    /// Wrote more output than its limit.
    OutputLimit { limit: usize },
    /// Any other trap, by wasmtime's description.
    Trap { message: String },
    /// The module has no `_start` export to run.
    NoEntryPoint,
    /// Instantiation failed for a reason other than a limit.
    Instantiate { message: String },
    /// The host failed while serving the instance.
    Host { message: String },
}

impl Failure {
    /// A short, stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Failure::Deadline { .. } => "deadline_exceeded",
            Failure::Killed => "killed",
            Failure::MemoryLimit { .. } => "memory_limit",
            Failure::TableLimit { .. } => "table_limit",
            Failure::StackOverflow => "stack_overflow",
            Failure::OutOfBounds => "out_of_bounds",
            Failure::Unreachable => "unreachable",
            Failure::OutOfFuel { .. } => "out_of_fuel",
            Failure::OutputLimit { .. } => "output_limit",
            Failure::Trap { .. } => "trap",
            Failure::NoEntryPoint => "no_entry_point",
            Failure::Instantiate { .. } => "instantiate",
            Failure::Host { .. } => "host_error",
        }
    }

    /// Classifies the error an instance ended with.
    ///
    /// A refused growth takes precedence over the trap that follows it (Rust
    /// guests abort with `unreachable` when allocation fails), and an
    /// overflowed output over the panic the failed write causes.
    pub fn classify(
        error: &wasmtime::Error,
        limits: &Limits,
        denied: Option<Denied>,
        output_overflowed: bool,
    ) -> Failure {
        match error.downcast_ref::<Interrupt>() {
            Some(Interrupt::Deadline) => {
                return Failure::Deadline {
                    limit: limits.timeout.unwrap_or_default(),
                };
            }
            Some(Interrupt::Killed) => return Failure::Killed,
            None => {}
        }
        if output_overflowed {
            return Failure::OutputLimit {
                limit: limits.output,
            };
        }
        match denied {
            Some(Denied::Memory { desired }) => {
                return Failure::MemoryLimit {
                    limit: limits.memory,
                    requested: desired,
                };
            }
            Some(Denied::Table { desired }) => {
                return Failure::TableLimit {
                    limit: limits.table_elements,
                    requested: desired,
                };
            }
            None => {}
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::StackOverflow) => Failure::StackOverflow,
            Some(Trap::MemoryOutOfBounds) => Failure::OutOfBounds,
            Some(Trap::UnreachableCodeReached) => Failure::Unreachable,
            Some(Trap::OutOfFuel) => Failure::OutOfFuel {
                fuel: limits.fuel.unwrap_or_default(),
            },
            Some(Trap::Interrupt) => Failure::Deadline {
                limit: limits.timeout.unwrap_or_default(),
            },
            Some(other) => Failure::Trap {
                message: other
                    .to_string()
                    .trim_start_matches("wasm trap: ")
                    .to_owned(),
            },
            None => Failure::Host {
                message: format!("{error:#}"),
            },
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Deadline { limit } => write!(
                f,
                "deadline exceeded: still running after {}",
                format_duration(*limit)
            ),
            Failure::Killed => write!(f, "stopped by the host"),
            Failure::MemoryLimit { limit, requested } => write!(
                f,
                "memory limit exceeded: the guest asked for {} of linear memory, the limit is {}",
                format_size(*requested),
                format_size(*limit)
            ),
            Failure::TableLimit { limit, requested } => write!(
                f,
                "table limit exceeded: the guest asked for {requested} table elements, the limit is {limit}"
            ),
            Failure::StackOverflow => {
                write!(f, "stack overflow: the guest exhausted its call stack")
            }
            Failure::OutOfBounds => write!(f, "out-of-bounds memory access"),
            Failure::Unreachable => {
                write!(f, "unreachable executed (the guest panicked or aborted)")
            }
            Failure::OutOfFuel { fuel } => {
                write!(f, "fuel exhausted: the guest used all {fuel} units")
            }
            Failure::OutputLimit { limit } => write!(
                f,
                "output limit exceeded: the guest wrote more than {}",
                format_size(*limit as u64)
            ),
            Failure::Trap { message } => write!(f, "trap: {message}"),
            Failure::NoEntryPoint => write!(
                f,
                "the module has no `_start` export: weft runs WASI commands (build a binary, not a library)"
            ),
            Failure::Instantiate { message } => write!(f, "instantiation failed: {message}"),
            Failure::Host { message } => write!(f, "host error: {message}"),
        }
    }
}
