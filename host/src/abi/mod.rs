//! The host side of the guest ABI: one file per imported `weft:*`
//! namespace, each with a `register` that lists every import it defines.
//!
//! These files stay thin: decode the guest's arguments, call the domain
//! module, encode the result. Names and codes come from `weft_abi`, which the
//! guest SDK compiles against too.

pub mod chain;
pub mod log;
pub mod mesh;
pub mod net;

use crate::runtime::State;
use wasmtime::Linker;

/// Adds every `weft:*` import to `linker`.
pub fn register(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    chain::register(linker)?;
    log::register(linker)?;
    mesh::register(linker)?;
    net::register(linker)?;
    Ok(())
}

/// Reads `len` bytes at `ptr` from the caller's exported memory.
///
/// Traps (returns `Err`) when the caller has no memory export or the range is
/// outside it: a bad pointer is a bug the guest must not get past.
pub(crate) fn read_guest_bytes<T>(
    caller: &mut wasmtime::Caller<'_, T>,
    ptr: u32,
    len: u32,
    max: usize,
) -> wasmtime::Result<Vec<u8>> {
    let memory = caller
        .get_export("memory")
        .and_then(|export| export.into_memory())
        .ok_or_else(|| wasmtime::format_err!("weft: the guest exports no `memory`"))?;
    let data = memory.data(&caller);
    let start = ptr as usize;
    let end = start
        .checked_add(len as usize)
        .filter(|&end| end <= data.len())
        .ok_or_else(|| {
            wasmtime::format_err!("weft: pointer range {start}+{len} is outside guest memory")
        })?;
    Ok(data[start..end.min(start + max)].to_vec())
}

fn guest_memory<T>(caller: &mut wasmtime::Caller<'_, T>) -> wasmtime::Result<wasmtime::Memory> {
    caller
        .get_export("memory")
        .and_then(|export| export.into_memory())
        .ok_or_else(|| wasmtime::format_err!("weft: the guest exports no `memory`"))
}

/// Traps unless `ptr..ptr+len` is inside the caller's memory.
pub(crate) fn check_guest_range<T>(
    caller: &mut wasmtime::Caller<'_, T>,
    ptr: u32,
    len: u32,
) -> wasmtime::Result<()> {
    let memory = guest_memory(caller)?;
    guest_range(&*caller, memory, ptr, len as usize).map(drop)
}

/// The range `ptr..ptr+len` of `memory`, for a caller that has its memory
/// at hand already; traps when it is outside.
pub(crate) fn guest_range(
    store: impl wasmtime::AsContext,
    memory: wasmtime::Memory,
    ptr: u32,
    len: usize,
) -> wasmtime::Result<std::ops::Range<usize>> {
    within(memory.data_size(store), ptr, len)
}

/// The range `ptr..ptr+len` of a memory of `size` bytes, for a caller that
/// has the memory's bytes at hand; traps when it is outside.
pub(crate) fn within(
    size: usize,
    ptr: u32,
    len: usize,
) -> wasmtime::Result<std::ops::Range<usize>> {
    let start = ptr as usize;
    match start.checked_add(len) {
        Some(end) if end <= size => Ok(start..end),
        _ => Err(wasmtime::format_err!(
            "weft: pointer range {ptr}+{len} is outside guest memory"
        )),
    }
}

/// Writes `bytes` at `ptr` in the caller's memory; traps when out of range.
pub(crate) fn write_guest_bytes<T>(
    caller: &mut wasmtime::Caller<'_, T>,
    ptr: u32,
    bytes: &[u8],
) -> wasmtime::Result<()> {
    let memory = guest_memory(caller)?;
    memory.write(caller, ptr as usize, bytes).map_err(|_| {
        wasmtime::format_err!(
            "weft: pointer range {ptr}+{} is outside guest memory",
            bytes.len()
        )
    })
}
