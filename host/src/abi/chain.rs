//! `weft:chain`: the invocation's input and output without a copy in the
//! host, and synchronous calls into other modules.
//!
//! Contracts (names and codes in `weft_abi::chain`):
//! - `input_len(out_len) -> errno`: writes the bytes of input not read yet
//!   (`u32`); `UNAVAILABLE` when stdin is inherited (`weft run`).
//! - `input(ptr, len, out_read) -> errno`: copies up to `len` bytes of the
//!   remaining input to `ptr` (the hop's one copy) and writes how many;
//!   `0` at the end. Shares its cursor with stdin. `UNAVAILABLE` as above.
//! - `input_in_place(out_ptr, out_len) -> errno`: places the remaining
//!   input into pages set aside for it: those a warm instance was given
//!   ahead (`Prepared::reserve_input`) when they are enough, else pages it
//!   grows the memory by now; writes where and how long. The input is
//!   copied (the hop's one copy), or, when the chain handed over the
//!   previous step's output region of 4 MiB or more, its whole pages are
//!   moved in and only the partial last page is copied
//!   (`runtime::pages`). `LIMIT` when the memory cannot grow that far.
//! - `output(ptr, len) -> errno`: declares `ptr..ptr+len` as the output,
//!   taken from the guest's memory when it ends; `LIMIT` past the output
//!   limit.
//! - `call(name_ptr, name_len, in_ptr, in_len, out_len) -> errno`: runs
//!   module `name` on the input to completion; `OK` with the output's
//!   length, or `CALL_FAILED` with the reason's length, in `out_len`, the
//!   bytes pending for `result`; `NO_SUCH_MODULE`, `DEPTH_LIMIT`,
//!   `UNAVAILABLE` with nothing pending; `INVALID_ARGUMENT` for a name
//!   longer than `MAX_NAME` or not UTF-8.
//! - `result(ptr, len) -> errno`: copies up to `len` bytes of the pending
//!   result to `ptr` and drops it; `INVALID_ARGUMENT` when none is pending.
//! - `depth(out) -> errno`: how many calls deep the instance runs.
//!
//! Every function traps when a pointer range is outside the guest's memory
//! or the guest exports no memory; nothing here panics on guest input.

use super::{check_guest_range, guest_memory, read_guest_bytes, write_guest_bytes};
use crate::chain::CallError;
use crate::runtime::State;
use crate::runtime::limits::WASM_PAGE;
use bytes::Bytes;
use wasmtime::{Caller, Linker};
use weft_abi::chain::*;
use weft_abi::errno;

type Ret = wasmtime::Result<i32>;

/// Adds `weft:chain` to the linker.
pub fn register(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    linker.func_wrap(MODULE, INPUT_LEN, input_len)?;
    linker.func_wrap(MODULE, INPUT, input)?;
    linker.func_wrap(MODULE, INPUT_IN_PLACE, input_in_place)?;
    linker.func_wrap(MODULE, OUTPUT, output)?;
    linker.func_wrap_async(
        MODULE,
        CALL,
        |caller, (name_ptr, name_len, in_ptr, in_len, out_len): (u32, u32, u32, u32, u32)| {
            Box::new(call(caller, name_ptr, name_len, in_ptr, in_len, out_len))
        },
    )?;
    linker.func_wrap(MODULE, RESULT, result)?;
    linker.func_wrap(MODULE, DEPTH, depth)?;
    Ok(())
}

fn write_u32(caller: &mut Caller<'_, State>, ptr: u32, value: u32) -> wasmtime::Result<()> {
    write_guest_bytes(caller, ptr, &value.to_le_bytes())
}

fn input_len(mut caller: Caller<'_, State>, out_len: u32) -> Ret {
    check_guest_range(&mut caller, out_len, 4)?;
    let Some(remaining) = caller.data().chain.input().map(|i| i.remaining()) else {
        return Ok(errno::UNAVAILABLE);
    };
    write_u32(
        &mut caller,
        out_len,
        remaining.min(u32::MAX as usize) as u32,
    )?;
    Ok(errno::OK)
}

fn input(mut caller: Caller<'_, State>, ptr: u32, len: u32, out_read: u32) -> Ret {
    check_guest_range(&mut caller, ptr, len)?;
    check_guest_range(&mut caller, out_read, 4)?;
    let Some(source) = caller.data().chain.input().cloned() else {
        return Ok(errno::UNAVAILABLE);
    };
    let bytes = source.take(len as usize);
    let read = bytes.len() as u32;
    write_guest_bytes(&mut caller, ptr, &bytes)?;
    // After the last piece the source holds nothing: dropping `bytes` may
    // free the previous step's instance, whose memory they point into.
    drop(bytes);
    write_u32(&mut caller, out_read, read)?;
    Ok(errno::OK)
}

fn input_in_place(mut caller: Caller<'_, State>, out_ptr: u32, out_len: u32) -> Ret {
    check_guest_range(&mut caller, out_ptr, 4)?;
    check_guest_range(&mut caller, out_len, 4)?;
    let Some(source) = caller.data().chain.input().cloned() else {
        return Ok(errno::UNAVAILABLE);
    };
    let len = source.remaining();
    let start = match caller.data_mut().chain.take_room() {
        _ if len == 0 => 0,
        Some(room) if room.len >= len => room.start,
        _ => {
            let memory = guest_memory(&mut caller)?;
            let pages = (len as u64).div_ceil(WASM_PAGE);
            match memory.grow(&mut caller, pages) {
                Ok(before) => (before * WASM_PAGE) as usize,
                Err(_) => return Ok(errno::LIMIT),
            }
        }
    };
    let handed_over = caller.data_mut().chain.take_handed_over(len);
    let bytes = source.take(len);
    let moved = if handed_over {
        move_in(&mut caller, start, &bytes)?
    } else {
        0
    };
    write_guest_bytes(&mut caller, (start + moved) as u32, &bytes[moved..])?;
    // The previous step's instance may go with these bytes.
    drop(bytes);
    caller
        .data_mut()
        .chain
        .note_placed(len, handed_over.then_some(moved));
    write_u32(&mut caller, out_ptr, start as u32)?;
    write_u32(&mut caller, out_len, len as u32)?;
    Ok(errno::OK)
}

/// Moves the whole pages of `input` (an output region handed over by the
/// step before, which nothing else holds) into the guest's memory at
/// `start` (the start of pages set aside for it), rather than copying them;
/// returns how many bytes moved, a whole number of pages from the start
/// (see `runtime::pages`).
#[allow(unsafe_code)] // Moves pages between two linear memories.
fn move_in(caller: &mut Caller<'_, State>, start: usize, input: &Bytes) -> wasmtime::Result<usize> {
    let memory = guest_memory(caller)?;
    let Some(room) = memory
        .data_mut(&mut *caller)
        .get_mut(start..start + input.len())
    else {
        return Ok(0);
    };
    // SAFETY: `room` is a unique borrow of this guest's memory, which runs
    // nothing while its host call does. `input` is a region of the memory
    // of a finished instance (`chain::held`), both memories are the
    // pooling allocator's private anonymous mappings, reserved for the
    // runtime's life, and `input` is the only handle on that region: the
    // chain handed it over and the input source gave it up whole. The
    // region reads as zeros afterwards, and `input` is dropped unread past
    // what did not move.
    Ok(
        unsafe {
            crate::runtime::pages::move_pages(room.as_mut_ptr(), input.as_ptr(), input.len())
        },
    )
}

fn output(mut caller: Caller<'_, State>, ptr: u32, len: u32) -> Ret {
    check_guest_range(&mut caller, ptr, len)?;
    let memory = super::guest_memory(&mut caller)?;
    Ok(caller
        .data_mut()
        .chain
        .declare_output(memory, ptr as usize, len as usize))
}

async fn call(
    mut caller: Caller<'_, State>,
    name_ptr: u32,
    name_len: u32,
    in_ptr: u32,
    in_len: u32,
    out_len: u32,
) -> Ret {
    check_guest_range(&mut caller, name_ptr, name_len)?;
    check_guest_range(&mut caller, in_ptr, in_len)?;
    check_guest_range(&mut caller, out_len, 4)?;
    if name_len as usize > MAX_NAME {
        return Ok(errno::INVALID_ARGUMENT);
    }
    let name = read_guest_bytes(&mut caller, name_ptr, name_len, MAX_NAME)?;
    let Ok(name) = String::from_utf8(name) else {
        return Ok(errno::INVALID_ARGUMENT);
    };
    let state = caller.data();
    let Some(calls) = state.chain.calls().cloned() else {
        return Ok(errno::UNAVAILABLE);
    };
    let (depth, deadline, cancel) = (
        state.chain.depth(),
        state.deadline(),
        state.cancel().cloned(),
    );
    // The caller's memory cannot be lent while it waits, so its input is
    // copied out once; the callee's output comes back without a copy.
    let input = Bytes::from(read_guest_bytes(
        &mut caller,
        in_ptr,
        in_len,
        in_len as usize,
    )?);
    let (code, pending) = match calls.call(&name, input, depth, deadline, cancel).await {
        Ok(output) => (errno::OK, Some(output)),
        Err(CallError::Failed(reason)) => (errno::CALL_FAILED, Some(Bytes::from(reason))),
        Err(CallError::NoSuchModule(_)) => (errno::NO_SUCH_MODULE, None),
        Err(CallError::DepthLimit { .. }) => (errno::DEPTH_LIMIT, None),
        Err(CallError::Unavailable(_)) => (errno::UNAVAILABLE, None),
    };
    if let Some(pending) = pending {
        let len = pending.len().min(u32::MAX as usize) as u32;
        caller.data_mut().chain.set_pending(pending);
        write_u32(&mut caller, out_len, len)?;
    }
    Ok(code)
}

fn result(mut caller: Caller<'_, State>, ptr: u32, len: u32) -> Ret {
    check_guest_range(&mut caller, ptr, len)?;
    let Some(pending) = caller.data_mut().chain.take_pending() else {
        return Ok(errno::INVALID_ARGUMENT);
    };
    let take = pending.len().min(len as usize);
    write_guest_bytes(&mut caller, ptr, &pending[..take])?;
    Ok(errno::OK)
}

fn depth(mut caller: Caller<'_, State>, out: u32) -> Ret {
    check_guest_range(&mut caller, out, 4)?;
    let depth = caller.data().chain.depth();
    write_u32(&mut caller, out, depth)?;
    Ok(errno::OK)
}
