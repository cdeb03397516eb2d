//! Per-instance limits and the resource limiter that enforces them.

use std::time::Duration;

/// Bytes in a wasm page.
pub const WASM_PAGE: u64 = 64 * 1024;
/// The largest linear memory a 32-bit wasm module can address.
pub const MAX_MEMORY: u64 = 4 << 30;

/// What one instance may use. Hitting any of these is a clean, reported
/// failure of that instance, never of the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory, in bytes, per memory. At most [`MAX_MEMORY`].
    pub memory: u64,
    /// Elements per table.
    pub table_elements: u64,
    /// Wall-clock time from the start of instantiation.
    pub timeout: Option<Duration>,
    /// Fuel (roughly, wasm instructions); needs an engine with metering on.
    pub fuel: Option<u64>,
    /// Bytes the guest may write to its output (stdout), when captured.
    pub output: usize,
    /// Bytes of stderr kept, when captured; more is dropped, not fatal.
    pub stderr: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 256 << 20,
            table_elements: 100_000,
            timeout: Some(Duration::from_secs(30)),
            fuel: None,
            output: 64 << 20,
            stderr: 1 << 20,
        }
    }
}

/// A growth the limiter refused, remembered so the failure that usually
/// follows (a Rust guest aborts when allocation fails) is reported as the
/// limit it really is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// A memory asked to grow to `desired` bytes.
    Memory { desired: u64 },
    /// A table asked to grow to `desired` elements.
    Table { desired: u64 },
}

/// The [`wasmtime::ResourceLimiter`] of one instance.
///
/// Refused growth follows the wasm spec (`memory.grow` returns -1) rather than
/// trapping, so a guest that copes with it keeps running; the refusal is
/// recorded in [`Limiter::denied`].
#[derive(Debug)]
pub struct Limiter {
    memory: usize,
    table_elements: usize,
    /// The first growth refused, if any.
    pub denied: Option<Denied>,
}

impl Limiter {
    /// A limiter for `limits`.
    pub fn new(limits: &Limits) -> Self {
        Limiter {
            memory: usize::try_from(limits.memory).unwrap_or(usize::MAX),
            table_elements: usize::try_from(limits.table_elements).unwrap_or(usize::MAX),
            denied: None,
        }
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory {
            self.denied.get_or_insert(Denied::Memory {
                desired: desired as u64,
            });
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            self.denied.get_or_insert(Denied::Table {
                desired: desired as u64,
            });
            return Ok(false);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn refuses_growth_past_the_limit_and_remembers_the_first() {
        let mut limiter = Limiter::new(&Limits {
            memory: 2 * WASM_PAGE,
            ..Limits::default()
        });
        assert!(limiter.memory_growing(0, 2 * 65536, None).unwrap());
        assert!(!limiter.memory_growing(0, 3 * 65536, None).unwrap());
        assert!(!limiter.memory_growing(0, 9 * 65536, None).unwrap());
        assert_eq!(limiter.denied, Some(Denied::Memory { desired: 3 * 65536 }));
    }
}
