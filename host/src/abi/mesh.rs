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

use super::{guest_range, within};
use crate::mesh::collective::{Call, Op, Type};
use crate::mesh::job::Shared;
use crate::mesh::lane::RING_MAX;
use crate::mesh::mailbox::{Data, Delivered, Payload};
use crate::mesh::{Member, MeshError, placement};
use crate::network::Wait;
use crate::runtime::State;
use crate::runtime::failure::Interrupt;
use bytes::Bytes;
use wasmtime::{Caller, Linker, Memory};
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
    linker.func_wrap(
        MODULE,
        SEND_NOW,
        |caller: Caller<'_, State>, dst: i32, tag: i32, ptr: i32, len: i32| {
            send_now(caller, dst, tag, ptr, len)
        },
    )?;
    linker.func_wrap(
        MODULE,
        RECV_NOW,
        |caller: Caller<'_, State>, src: i32, tag: i32, ptr: i32, cap: i32, out: i32, spin: i32| {
            recv_now(caller, src, tag, ptr, cap, out, spin != 0)
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

/// What every message call starts with: `NOT_IN_MESH` outside a mesh and
/// `INVALID_ARGUMENT` for a negative length (`Err`, the errno to answer);
/// else the length and the caller's memory.
fn opening(
    caller: &mut Caller<'_, State>,
    len: i32,
) -> wasmtime::Result<Result<(usize, Memory), i32>> {
    if caller.data().mesh.is_none() {
        return Ok(Err(errno::NOT_IN_MESH));
    }
    let len = match length(len) {
        Ok(len) => len,
        Err(error) => return answer::<()>(Err(error)).map(Err),
    };
    Ok(Ok((len, memory(caller)?)))
}

/// The caller's exported memory: looked up by name on its first
/// `weft:mesh` call, then kept in its [`Member`]. Traps when the guest
/// exports none.
fn memory(caller: &mut Caller<'_, State>) -> wasmtime::Result<Memory> {
    if let Some(memory) = caller.data().mesh.as_ref().and_then(|m| m.memory) {
        return Ok(memory);
    }
    let memory = caller
        .get_export("memory")
        .and_then(|export| export.into_memory())
        .ok_or_else(|| wasmtime::format_err!("weft: the guest exports no `memory`"))?;
    if let Some(member) = &mut caller.data_mut().mesh {
        member.memory = Some(memory);
    }
    Ok(memory)
}

/// Writes `bytes` at `ptr`; traps when the range is outside the memory.
fn write(caller: &mut Caller<'_, State>, memory: Memory, ptr: i32, bytes: &[u8]) -> Ret {
    let range = guest_range(&*caller, memory, ptr as u32, bytes.len())?;
    memory.data_mut(caller)[range].copy_from_slice(bytes);
    Ok(errno::OK)
}

/// Copies `len` bytes at `ptr` into a `Bytes` (the one copy out), in a
/// buffer from `job`'s pool when it is large. Traps when the range is
/// outside the guest's memory.
fn copy_out(
    caller: &Caller<'_, State>,
    memory: Memory,
    job: &Shared,
    ptr: i32,
    len: usize,
) -> wasmtime::Result<Bytes> {
    let range = guest_range(caller, memory, ptr as u32, len)?;
    let mut buf = job.pool().take(len);
    buf.extend_from_slice(&memory.data(caller)[range]);
    Ok(Bytes::from(buf))
}

/// [`copy_out`] for the collectives.
fn take_bytes(
    caller: &mut Caller<'_, State>,
    member: &Member,
    ptr: i32,
    len: usize,
) -> wasmtime::Result<Bytes> {
    let memory = memory(caller)?;
    copy_out(caller, memory, &member.job, ptr, len)
}

/// Traps unless `ptr..ptr+len` is inside the guest's memory.
fn check(caller: &mut Caller<'_, State>, ptr: i32, len: usize) -> wasmtime::Result<()> {
    let memory = memory(caller)?;
    guest_range(caller, memory, ptr as u32, len).map(drop)
}

/// The hot path: one lookup of the caller's state, no reference count
/// touched (both ends of a ping-pong would share its cache line), one
/// copy out of the guest's memory.
async fn send(
    mut caller: Caller<'_, State>,
    dst: i32,
    tag: i32,
    ptr: i32,
    len: i32,
    timeout: i64,
) -> Ret {
    let (len, memory) = match opening(&mut caller, len)? {
        Ok(opened) => opened,
        Err(code) => return Ok(code),
    };
    let member = caller.data().mesh.as_ref().expect("checked by opening");
    // Refuse an oversized message before copying anything.
    if len > member.job.max_message() {
        guest_range(&caller, memory, ptr as u32, len)?;
        return Ok(errno::TOO_LARGE);
    }
    let data = copy_out(&caller, memory, &member.job, ptr, len)?;
    let sent = member
        .job
        .send(member.rank, dst, tag, data.into(), Wait::from_ms(timeout))
        .await;
    answer(sent)
}

/// `send_now`: the fast path. Nothing is allocated for a message that
/// fits a lane's ring: it goes from the guest's memory into the ring.
fn send_now(mut caller: Caller<'_, State>, dst: i32, tag: i32, ptr: i32, len: i32) -> Ret {
    let (len, memory) = match opening(&mut caller, len)? {
        Ok(opened) => opened,
        Err(code) => return Ok(code),
    };
    let (bytes, state) = memory.data_and_store_mut(&mut caller);
    let member = state.mesh.as_mut().expect("checked by opening");
    let range = within(bytes.len(), ptr as u32, len)?;
    let job = &member.job;
    if len > job.max_message() {
        return Ok(errno::TOO_LARGE);
    }
    let routes = &mut member.routes;
    if let Some(route) = routes.to.as_ref().filter(|r| r.dst() == dst)
        && job.send_routed(member.rank, route, tag, &bytes[range.clone()])
    {
        return Ok(errno::OK);
    }
    let data = if len <= RING_MAX {
        Data::Borrowed(&bytes[range])
    } else {
        let mut buf = job.pool().take(len);
        buf.extend_from_slice(&bytes[range]);
        Data::Held(Payload::Shared(buf.into()))
    };
    let sent = job.try_send(member.rank, dst, tag, data);
    if sent.is_ok() && routes.to.as_ref().is_none_or(|r| r.dst() != dst) {
        routes.to = job.route(member.rank, dst);
    }
    answer(sent)
}

/// `recv_now`: the fast path. With `spin`, on a rank's own thread with a
/// core to itself, looks again for up to [`placement::TIGHT`] first.
fn recv_now(
    mut caller: Caller<'_, State>,
    src: i32,
    tag: i32,
    ptr: i32,
    cap: i32,
    out: i32,
    spin: bool,
) -> Ret {
    let (cap, memory) = match opening(&mut caller, cap)? {
        Ok(opened) => opened,
        Err(code) => return Ok(code),
    };
    let (bytes, state) = memory.data_and_store_mut(&mut caller);
    let member = state.mesh.as_mut().expect("checked by opening");
    // A bad pointer traps before any message is taken.
    let into = within(bytes.len(), ptr as u32, cap)?;
    let info_at = within(bytes.len(), out as u32, 12)?;
    let (job, me) = (&member.job, member.rank);
    // Membership events do not travel in lanes.
    let route = member
        .routes
        .from
        .as_ref()
        .filter(|r| r.src() == src && tag != MEMBERSHIP);
    // The usual case: the next message on the lane from a named sender,
    // straight from its ring (with `spin`, once the lane shows something).
    // Nothing larger than two words travels between the calls. Anything
    // else the lane shows (a message in the overflow queue or set aside,
    // one for another tag, the ring's skip record ahead of a message not
    // yet written) is for the full look below, which goes on spinning.
    let mut spun = false;
    if let Some(route) = route {
        let mut took = job.recv_routed(me, route, tag, &mut bytes[into.clone()]);
        if took.is_none() && spin && !route.may_hold() {
            let looked = placement::spin(|| {
                route
                    .may_hold()
                    .then(|| job.recv_routed(me, route, tag, &mut bytes[into.clone()]))
            });
            // A whole spin with nothing on the lane is not spun again.
            spun = looked.is_none();
            took = looked.flatten();
        }
        if let Some((found, len)) = took {
            bytes[info_at].copy_from_slice(&info_bytes(src, found, len));
            return Ok(errno::OK);
        }
    }
    let mut look = || {
        let out = &mut bytes[into.clone()];
        match route.and_then(|route| job.recv_routed(me, route, tag, out)) {
            Some((tag, len)) => Ok(Delivered::Copied {
                src,
                tag,
                len,
                buffer: None,
            }),
            None => job.try_recv_into(me, src, tag, out),
        }
    };
    let mut received = look();
    if spin && !spun && matches!(received, Err(MeshError::WouldBlock)) {
        // Between looks, watch the lane the message will come on, when it
        // is known: a few loads.
        let looked = placement::spin(|| {
            if route.is_some_and(|route| !route.may_hold()) {
                return None;
            }
            let found = look();
            (!matches!(found, Err(MeshError::WouldBlock))).then_some(found)
        });
        if let Some(found) = looked {
            received = found;
        }
    }
    if route.is_none() && src >= 0 && tag != MEMBERSHIP && received.is_ok() {
        member.routes.from = member.job.route(src, me);
    }
    delivered(&mut bytes[info_at], &member.job, received)
}

/// Ends a receive whose message (if any) is in the caller's buffer:
/// writes `[src, tag, len]` to `info`, gives a message's buffer back to
/// the job's pool, and answers.
fn delivered(info: &mut [u8], job: &Shared, received: Result<Delivered, MeshError>) -> Ret {
    match received {
        Ok(Delivered::Copied {
            src,
            tag,
            len,
            buffer,
        }) => {
            info.copy_from_slice(&info_bytes(src, tag, len));
            if let Some(buffer) = buffer {
                job.pool().give(buffer);
            }
            Ok(errno::OK)
        }
        Ok(Delivered::TooLong { src, tag, len }) => {
            info.copy_from_slice(&info_bytes(src, tag, len));
            Ok(errno::TRUNCATED)
        }
        Err(error) => answer::<()>(Err(error)),
    }
}

/// What `recv` writes at `out_info`: `[src, tag, len]`, little-endian.
fn info_bytes(src: i32, tag: i32, len: usize) -> [u8; 12] {
    let mut info = [0u8; 12];
    info[..4].copy_from_slice(&(src as u32).to_le_bytes());
    info[4..8].copy_from_slice(&(tag as u32).to_le_bytes());
    info[8..].copy_from_slice(&(len as u32).to_le_bytes());
    info
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
    let (cap, memory) = match opening(&mut caller, cap)? {
        Ok(opened) => opened,
        Err(code) => return Ok(code),
    };
    // A bad pointer traps before any message is taken.
    guest_range(&caller, memory, ptr as u32, cap)?;
    guest_range(&caller, memory, out as u32, 12)?;
    let received = {
        let member = caller.data().mesh.as_ref().expect("checked by opening");
        member
            .job
            .recv(member.rank, src, tag, cap, Wait::from_ms(timeout))
            .await
    };
    // The memory may have grown meanwhile, never shrunk.
    let (bytes, state) = memory.data_and_store_mut(&mut caller);
    let member = state.mesh.as_ref().expect("checked by opening");
    let into = within(bytes.len(), ptr as u32, cap)?;
    let info_at = within(bytes.len(), out as u32, 12)?;
    let received = received.map(|r| Delivered::copy(r, &mut bytes[into]));
    delivered(&mut bytes[info_at], &member.job, received)
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
        check(&mut caller, ptr, len)?;
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
        check(&mut caller, out, out_len)?;
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
    check(&mut caller, out, piece)?;
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
            let memory = memory(caller)?;
            write(caller, memory, ptr, &data)
        }
        Ok(None) => Ok(errno::OK),
        Err(error) => answer::<()>(Err(error)),
    }
}
