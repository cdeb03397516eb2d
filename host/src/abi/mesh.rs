//! `weft:mesh`: messages and collectives between a mesh job's ranks and
//! its parent.
//!
//! Each function returns an errno (see `weft_abi::mesh` and `docs/abi.md`
//! for every contract): `NOT_IN_MESH` in an instance outside a mesh,
//! otherwise what the [`mesh`](crate::mesh) domain answers. It traps when a
//! pointer range is outside the guest's memory. Waiting calls (`send` to a
//! full mailbox, `recv`, the collectives) suspend only this instance; when
//! the job stops, a waiting instance ends with
//! [`Interrupt::Killed`](crate::runtime::failure::Interrupt).
//!
//! `size` counts every rank started so far (ranks join while a job runs);
//! `members` lists the live ones and the membership epoch.
//!
//! Copies: `send` copies the message once out of the sender's memory into
//! a `Bytes`; `recv` copies it once into the receiver's memory.

use crate::mesh::collective::{Call, Op, Type};
use crate::mesh::mailbox::Received;
use crate::mesh::{Member, MeshError};
use crate::network::Wait;
use crate::runtime::State;
use crate::runtime::failure::Interrupt;
use bytes::Bytes;
use wasmtime::{Caller, Linker};
use weft_abi::errno;
use weft_abi::mesh::*;

type Ret = wasmtime::Result<i32>;

/// Adds `weft:mesh` to the linker.
pub fn register(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    linker.func_wrap(MODULE, RANK, |mut caller: Caller<'_, State>, out: i32| {
        let Some(member) = member(&caller) else {
            return Ok(errno::NOT_IN_MESH);
        };
        write_u32s(&mut caller, out, &[member.rank as u32])
    })?;
    linker.func_wrap(MODULE, SIZE, |mut caller: Caller<'_, State>, out: i32| {
        let Some(member) = member(&caller) else {
            return Ok(errno::NOT_IN_MESH);
        };
        write_u32s(&mut caller, out, &[member.job.size()])
    })?;
    linker.func_wrap(
        MODULE,
        MEMBERS,
        |mut caller: Caller<'_, State>, ptr: i32, cap: i32, out: i32| {
            let Some(member) = member(&caller) else {
                return Ok(errno::NOT_IN_MESH);
            };
            let Ok(cap) = usize::try_from(cap) else {
                return Ok(errno::INVALID_ARGUMENT);
            };
            let Some(bytes) = cap.checked_mul(4).filter(|&b| b <= u32::MAX as usize) else {
                return Ok(errno::INVALID_ARGUMENT);
            };
            super::check_guest_range(&mut caller, ptr as u32, bytes as u32)?;
            super::check_guest_range(&mut caller, out as u32, 16)?;
            let (live, epoch) = member.job.members();
            let shown: Vec<u32> = live.iter().copied().take(cap).collect();
            write_u32s(&mut caller, ptr, &shown)?;
            let mut info = (live.len() as u64).to_le_bytes().to_vec();
            info.extend_from_slice(&epoch.to_le_bytes());
            super::write_guest_bytes(&mut caller, out as u32, &info)?;
            Ok(errno::OK)
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        SEND,
        |caller, (dst, tag, ptr, len, timeout): (i32, i32, i32, i32, i64)| {
            Box::new(send(caller, dst, tag, ptr, len, timeout))
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        RECV,
        |caller, (src, tag, ptr, cap, timeout, out): (i32, i32, i32, i32, i64, i32)| {
            Box::new(recv(caller, src, tag, ptr, cap, timeout, out))
        },
    )?;
    linker.func_wrap_async(MODULE, BARRIER, |caller, (): ()| {
        Box::new(async move {
            let Some(member) = member(&caller) else {
                return Ok(errno::NOT_IN_MESH);
            };
            answer(collective(&member, Call::Barrier).await)
        })
    })?;
    linker.func_wrap_async(
        MODULE,
        BROADCAST,
        |caller, (root, ptr, len): (i32, i32, i32)| Box::new(broadcast(caller, root, ptr, len)),
    )?;
    linker.func_wrap_async(
        MODULE,
        REDUCE,
        |caller, (root, op, ty, ptr, count): (i32, i32, i32, i32, i32)| {
            Box::new(reduce(caller, root, op, ty, ptr, count))
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        GATHER,
        |caller, (root, ptr, len, out, out_len): (i32, i32, i32, i32, i32)| {
            Box::new(gather(caller, root, ptr, len, out, out_len))
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        SCATTER,
        |caller, (root, ptr, len, out, out_len): (i32, i32, i32, i32, i32)| {
            Box::new(scatter(caller, root, ptr, len, out, out_len))
        },
    )?;
    linker.func_wrap(
        MODULE,
        ADDR,
        |mut caller: Caller<'_, State>, rank: i32, out: i32| {
            let Some(member) = member(&caller) else {
                return Ok(errno::NOT_IN_MESH);
            };
            match member.job.addr(rank) {
                Ok(ip) => write_u32s(&mut caller, out, &[u32::from(ip)]),
                Err(error) => answer::<()>(Err(error)),
            }
        },
    )?;
    Ok(())
}

fn member(caller: &Caller<'_, State>) -> Option<Member> {
    caller.data().mesh.clone()
}

/// Turns a result into the guest's errno, or stops the instance.
fn answer<T>(result: Result<T, MeshError>) -> Ret {
    match result {
        Ok(_) => Ok(errno::OK),
        Err(MeshError::Cancelled) => Err(Interrupt::Killed.into()),
        Err(error) => Ok(error.errno()),
    }
}

fn write_u32s(caller: &mut Caller<'_, State>, out: i32, values: &[u32]) -> Ret {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    super::write_guest_bytes(caller, out as u32, &bytes)?;
    Ok(errno::OK)
}

/// A guest length: negative ones are refused as arguments.
fn length(len: i32) -> Result<usize, MeshError> {
    usize::try_from(len).map_err(|_| MeshError::Invalid(format!("length {len} is negative")))
}

/// Copies `len` bytes at `ptr` into a `Bytes` (the one copy out), in a
/// buffer from the job's pool when there is one. Traps when the range is
/// outside the guest's memory.
fn take_bytes(
    caller: &mut Caller<'_, State>,
    member: &Member,
    ptr: i32,
    len: usize,
) -> wasmtime::Result<Bytes> {
    super::check_guest_range(caller, ptr as u32, len as u32)?;
    let memory = caller
        .get_export("memory")
        .and_then(|export| export.into_memory())
        .ok_or_else(|| wasmtime::format_err!("weft: the guest exports no `memory`"))?;
    let start = ptr as u32 as usize;
    let mut buf = member.job.pool().take(len);
    buf.extend_from_slice(&memory.data(&*caller)[start..start + len]);
    Ok(Bytes::from(buf))
}

async fn send(
    mut caller: Caller<'_, State>,
    dst: i32,
    tag: i32,
    ptr: i32,
    len: i32,
    timeout: i64,
) -> Ret {
    let Some(member) = member(&caller) else {
        return Ok(errno::NOT_IN_MESH);
    };
    let len = match length(len) {
        Ok(len) => len,
        Err(error) => return answer::<()>(Err(error)),
    };
    // Refuse an oversized message before copying anything.
    if len > member.job.max_message() {
        super::check_guest_range(&mut caller, ptr as u32, len as u32)?;
        return Ok(errno::TOO_LARGE);
    }
    let data = take_bytes(&mut caller, &member, ptr, len)?;
    let sent = member
        .job
        .send(member.rank, dst, tag, data, Wait::from_ms(timeout))
        .await;
    answer(sent)
}

async fn recv(
    mut caller: Caller<'_, State>,
    src: i32,
    tag: i32,
    ptr: i32,
    cap: i32,
    timeout: i64,
    out: i32,
) -> Ret {
    let Some(member) = member(&caller) else {
        return Ok(errno::NOT_IN_MESH);
    };
    let cap = match length(cap) {
        Ok(cap) => cap,
        Err(error) => return answer::<()>(Err(error)),
    };
    // A bad pointer traps before any message is taken.
    super::check_guest_range(&mut caller, ptr as u32, cap as u32)?;
    super::check_guest_range(&mut caller, out as u32, 12)?;
    let received = member
        .job
        .recv(member.rank, src, tag, cap, Wait::from_ms(timeout))
        .await;
    match received {
        Ok(Received::Message(message)) => {
            super::write_guest_bytes(&mut caller, ptr as u32, &message.data)?;
            let info = [
                message.src as u32,
                message.tag as u32,
                message.data.len() as u32,
            ];
            member.job.pool().give(message.data);
            write_u32s(&mut caller, out, &info)
        }
        Ok(Received::TooLong { src, tag, len }) => {
            write_u32s(&mut caller, out, &[src as u32, tag as u32, len as u32])?;
            Ok(errno::TRUNCATED)
        }
        Err(error) => answer::<()>(Err(error)),
    }
}

fn root_of(root: i32) -> Result<u32, MeshError> {
    u32::try_from(root).map_err(|_| MeshError::Invalid(format!("no rank {root}")))
}

async fn broadcast(mut caller: Caller<'_, State>, root: i32, ptr: i32, len: i32) -> Ret {
    let Some(member) = member(&caller) else {
        return Ok(errno::NOT_IN_MESH);
    };
    let (root, len) = match (root_of(root), length(len)) {
        (Ok(root), Ok(len)) => (root, len),
        (Err(error), _) | (_, Err(error)) => return answer::<()>(Err(error)),
    };
    let data = if member.rank == root as i32 {
        Some(take_bytes(&mut caller, &member, ptr, len)?)
    } else {
        super::check_guest_range(&mut caller, ptr as u32, len as u32)?;
        None
    };
    let call = Call::Broadcast { root, len, data };
    let result = collective(&member, call).await;
    finish(&mut caller, result, ptr)
}

async fn reduce(
    mut caller: Caller<'_, State>,
    root: i32,
    op: i32,
    ty: i32,
    ptr: i32,
    count: i32,
) -> Ret {
    let Some(member) = member(&caller) else {
        return Ok(errno::NOT_IN_MESH);
    };
    let root = match root {
        ANY => None,
        root => match root_of(root) {
            Ok(root) => Some(root),
            Err(error) => return answer::<()>(Err(error)),
        },
    };
    let (Some(op), Some(ty), Ok(count)) = (Op::from_abi(op), Type::from_abi(ty), length(count))
    else {
        return Ok(errno::INVALID_ARGUMENT);
    };
    let Some(len) = count.checked_mul(8).filter(|&len| len <= u32::MAX as usize) else {
        return Ok(errno::INVALID_ARGUMENT);
    };
    let data = take_bytes(&mut caller, &member, ptr, len)?;
    let result = collective(&member, Call::Reduce { root, op, ty, data }).await;
    finish(&mut caller, result, ptr)
}

async fn gather(
    mut caller: Caller<'_, State>,
    root: i32,
    ptr: i32,
    len: i32,
    out: i32,
    out_len: i32,
) -> Ret {
    let Some(member) = member(&caller) else {
        return Ok(errno::NOT_IN_MESH);
    };
    let (root, len, out_len) = match (root_of(root), length(len), length(out_len)) {
        (Ok(root), Ok(len), Ok(out_len)) => (root, len, out_len),
        (Err(error), ..) | (_, Err(error), _) | (.., Err(error)) => {
            return answer::<()>(Err(error));
        }
    };
    // The root's buffer must hold a piece per member of the round, which
    // is known only when the round completes (else every rank gets
    // MISMATCH).
    let at_root = member.rank == root as i32;
    if at_root {
        super::check_guest_range(&mut caller, out as u32, out_len as u32)?;
    }
    let data = take_bytes(&mut caller, &member, ptr, len)?;
    let call = Call::Gather {
        root,
        data,
        out: at_root.then_some(out_len),
    };
    let result = collective(&member, call).await;
    finish(&mut caller, result, out)
}

async fn scatter(
    mut caller: Caller<'_, State>,
    root: i32,
    ptr: i32,
    len: i32,
    out: i32,
    out_len: i32,
) -> Ret {
    let Some(member) = member(&caller) else {
        return Ok(errno::NOT_IN_MESH);
    };
    let (root, len, piece) = match (root_of(root), length(len), length(out_len)) {
        (Ok(root), Ok(len), Ok(piece)) => (root, len, piece),
        (Err(error), ..) | (_, Err(error), _) | (.., Err(error)) => {
            return answer::<()>(Err(error));
        }
    };
    super::check_guest_range(&mut caller, out as u32, piece as u32)?;
    // `len` must be a piece per member of the round: checked when it
    // completes (else every rank gets MISMATCH).
    let data = if member.rank == root as i32 {
        Some(take_bytes(&mut caller, &member, ptr, len)?)
    } else {
        None
    };
    let result = collective(&member, Call::Scatter { root, piece, data }).await;
    finish(&mut caller, result, out)
}

async fn collective(member: &Member, call: Call) -> Result<Option<Bytes>, MeshError> {
    let done = member.job.collective(member.rank, call).await?;
    done.for_rank(member.rank as u32)
}

/// Writes this rank's part of a collective's result at `ptr` (the one copy
/// in).
fn finish(
    caller: &mut Caller<'_, State>,
    result: Result<Option<Bytes>, MeshError>,
    ptr: i32,
) -> Ret {
    match result {
        Ok(Some(data)) => {
            super::write_guest_bytes(caller, ptr as u32, &data)?;
            Ok(errno::OK)
        }
        Ok(None) => Ok(errno::OK),
        Err(error) => answer::<()>(Err(error)),
    }
}
