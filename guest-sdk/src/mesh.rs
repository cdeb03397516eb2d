//! Mesh messaging: the ranks of a mesh job and their parent exchange
//! messages through host memory, and compute collectives the host carries
//! out natively.
//!
//! A rank is a `u32` from `0` to [`size`]` - 1`. [`PARENT`] names the job's
//! parent (a controller module, an external client or the CLI); a
//! controller module's [`rank`] is [`PARENT`]. [`ANY`] matches any source
//! or tag when receiving. Mailboxes are bounded: a send to a full one waits
//! (or fails with `WouldBlock`/`TimedOut` per its timeout). Every rank must
//! call the same collectives in the same order.
//!
//! Ranks join a running job (`POST /v1/meshes/{id}/ranks`, `weft mesh add`)
//! with the next numbers and leave when they end: [`size`] counts every
//! rank started so far, [`members`] lists the live ones, and
//! [`next_event`] tells of each join and departure. A collective round is
//! among the ranks live when its first call arrives; a rank that joins
//! takes part from the next round.
//!
//! ```no_run
//! use weft_guest::mesh::{self, Op};
//!
//! let me = mesh::rank();
//! let right = (me + 1) % mesh::size();
//! mesh::send(right, 0, b"hello")?;
//! let message = mesh::recv(mesh::ANY, 0)?;
//! let mut total = [me as u64];
//! mesh::allreduce(&mut total, Op::Sum)?;
//! # Ok::<(), mesh::Error>(())
//! ```

#![allow(unsafe_code)] // Calls the raw `weft:mesh` imports in `sys`, with pointers to live buffers.

use crate::sys::mesh as sys;
use std::fmt;
use std::time::Duration;
use weft_abi::errno;
use weft_abi::mesh as abi;

/// Any source or any tag, when receiving.
pub const ANY: u32 = abi::ANY as u32;
/// The job's parent, as a destination or source.
pub const PARENT: u32 = abi::PARENT as u32;
/// The tag of membership events (see [`next_event`]).
pub const MEMBERSHIP: u32 = abi::MEMBERSHIP as u32;

/// A failed mesh call: the host's error code.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Error(pub errno::Errno);

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({}: {})", self.0, errno::name(self.0))
    }
}

impl Error {
    /// Whether the call would have had to wait (a non-blocking attempt).
    pub fn would_block(self) -> bool {
        self.0 == errno::WOULD_BLOCK
    }

    /// Whether the call's timeout passed.
    pub fn timed_out(self) -> bool {
        self.0 == errno::TIMED_OUT
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "weft mesh: {}", errno::name(self.0))
    }
}

impl std::error::Error for Error {}

impl From<Error> for std::io::Error {
    fn from(error: Error) -> Self {
        use std::io::ErrorKind::*;
        let kind = match error.0 {
            errno::WOULD_BLOCK => WouldBlock,
            errno::TIMED_OUT => TimedOut,
            errno::NO_NETWORK => NetworkUnreachable,
            errno::INVALID_ARGUMENT => InvalidInput,
            _ => Other,
        };
        std::io::Error::new(kind, error.to_string())
    }
}

fn check(code: errno::Errno) -> Result<(), Error> {
    match code {
        errno::OK => Ok(()),
        code => Err(Error(code)),
    }
}

/// One received message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The sender's rank, or [`PARENT`].
    pub src: u32,
    /// The tag.
    pub tag: u32,
    /// The payload.
    pub data: Vec<u8>,
}

/// This instance's rank ([`PARENT`] for a controller module). Panics
/// outside a mesh.
pub fn rank() -> u32 {
    try_rank().expect("weft mesh: not running in a mesh")
}

/// This instance's rank, or an error outside a mesh.
pub fn try_rank() -> Result<u32, Error> {
    let mut out = 0u32;
    // SAFETY: `out` is a live u32 the host writes into.
    check(unsafe { sys::rank(&mut out) })?;
    Ok(out)
}

/// The number of ranks started so far, live or ended (the parent not
/// counted): ranks are numbered `0..size()`. Panics outside a mesh.
pub fn size() -> u32 {
    let mut out = 0u32;
    // SAFETY: `out` is a live u32 the host writes into.
    check(unsafe { sys::size(&mut out) }).expect("weft mesh: not running in a mesh");
    out
}

fn timeout_ms(timeout: Option<Duration>) -> i64 {
    match timeout {
        None => -1,
        Some(d) => d.as_millis().min(i64::MAX as u128) as i64,
    }
}

/// Sends `data` to `dst` (a rank or [`PARENT`]) with `tag`, waiting while
/// its mailbox is full.
pub fn send(dst: u32, tag: u32, data: &[u8]) -> Result<(), Error> {
    send_timeout(dst, tag, data, None)
}

/// [`send`] without waiting: `WOULD_BLOCK` when the mailbox is full.
pub fn try_send(dst: u32, tag: u32, data: &[u8]) -> Result<(), Error> {
    send_timeout(dst, tag, data, Some(Duration::ZERO))
}

/// [`send`], waiting at most `timeout` (`None`: as long as it takes).
pub fn send_timeout(
    dst: u32,
    tag: u32,
    data: &[u8],
    timeout: Option<Duration>,
) -> Result<(), Error> {
    let timeout = timeout_ms(timeout);
    // First without waiting, as a plain call (the usual case: there is
    // room); only a full mailbox takes the call that can wait.
    // SAFETY: `data` is a live slice for the duration of the calls.
    let code = unsafe { sys::send_now(dst as i32, tag as i32, data.as_ptr(), data.len()) };
    if code != errno::WOULD_BLOCK || timeout == 0 {
        return check(code);
    }
    // SAFETY: as above.
    check(unsafe { sys::send(dst as i32, tag as i32, data.as_ptr(), data.len(), timeout) })
}

/// Receives the oldest message from `src` with `tag` (either may be
/// [`ANY`]), waiting for one.
pub fn recv(src: u32, tag: u32) -> Result<Message, Error> {
    recv_timeout(src, tag, None)
}

/// [`recv`] without waiting: `WOULD_BLOCK` when nothing matches.
pub fn try_recv(src: u32, tag: u32) -> Result<Message, Error> {
    recv_timeout(src, tag, Some(Duration::ZERO))
}

/// [`recv`], waiting at most `timeout` (`None`: as long as it takes).
pub fn recv_timeout(src: u32, tag: u32, timeout: Option<Duration>) -> Result<Message, Error> {
    // Room for small messages up front; a longer one takes a second call.
    let mut data = Vec::with_capacity(256);
    let (src, tag) = recv_into(src, tag, &mut data, timeout)?;
    Ok(Message { src, tag, data })
}

/// Receives into `buf` (resized to the message's length, reusing its
/// allocation); returns the source and tag.
pub fn recv_into(
    src: u32,
    tag: u32,
    buf: &mut Vec<u8>,
    timeout: Option<Duration>,
) -> Result<(u32, u32), Error> {
    let (mut src, mut tag) = (src, tag);
    let mut timeout = timeout_ms(timeout);
    loop {
        let mut info = [0u32; 3];
        let cap = buf.capacity();
        // First as a plain call that may look again for a few
        // microseconds (a peer on another core answers within them); only
        // then the call that can wait.
        // SAFETY: the host writes at most `cap` bytes into `buf`'s spare
        // capacity and 12 bytes into `info`; `set_len` below covers only
        // the bytes it reported writing.
        let spin = i32::from(timeout != 0);
        let mut code = unsafe {
            sys::recv_now(
                src as i32,
                tag as i32,
                buf.as_mut_ptr(),
                cap,
                &mut info,
                spin,
            )
        };
        if code == errno::WOULD_BLOCK && timeout != 0 {
            // SAFETY: as above.
            code = unsafe {
                sys::recv(
                    src as i32,
                    tag as i32,
                    buf.as_mut_ptr(),
                    cap,
                    timeout,
                    &mut info,
                )
            };
        }
        match code {
            errno::OK => {
                // SAFETY: the host initialized `info[2] <= cap` bytes.
                unsafe { buf.set_len(info[2] as usize) };
                return Ok((info[0], info[1]));
            }
            errno::TRUNCATED => {
                // The message stays queued: make room and take exactly it.
                buf.clear();
                buf.reserve_exact(info[2] as usize);
                (src, tag, timeout) = (info[0], info[1], -1);
            }
            code => return Err(Error(code)),
        }
    }
}

/// Waits until every rank has called `barrier`.
pub fn barrier() -> Result<(), Error> {
    // SAFETY: no pointers.
    check(unsafe { sys::barrier() })
}

/// Copies `root`'s `buf` into every other rank's `buf` (all the same
/// length).
pub fn broadcast(root: u32, buf: &mut [u8]) -> Result<(), Error> {
    // SAFETY: `buf` is live and writable for the call.
    check(unsafe { sys::broadcast(root as i32, buf.as_mut_ptr(), buf.len()) })
}

/// A reduction operation, computed by the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Sum (integers wrap).
    Sum,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
}

impl Op {
    fn abi(self) -> i32 {
        match self {
            Op::Sum => abi::op::SUM,
            Op::Min => abi::op::MIN,
            Op::Max => abi::op::MAX,
        }
    }
}

/// An element type the host can reduce: `f64`, `i64`, `u64`.
pub trait Element: Copy + sealed::Sealed {
    /// The ABI's type code.
    const TY: i32;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f64 {}
    impl Sealed for i64 {}
    impl Sealed for u64 {}
}

impl Element for f64 {
    const TY: i32 = abi::ty::F64;
}
impl Element for i64 {
    const TY: i32 = abi::ty::I64;
}
impl Element for u64 {
    const TY: i32 = abi::ty::U64;
}

fn reduce_raw<T: Element>(root: i32, values: &mut [T], op: Op) -> Result<(), Error> {
    // SAFETY: `values` is live and writable; wasm32 is little-endian, as
    // the ABI's elements are, and every `Element` is 8 bytes.
    check(unsafe {
        sys::reduce(
            root,
            op.abi(),
            T::TY,
            values.as_mut_ptr().cast(),
            values.len(),
        )
    })
}

/// Combines every rank's `values` element-wise with `op`; the result
/// replaces `values` on `root` only.
pub fn reduce<T: Element>(root: u32, values: &mut [T], op: Op) -> Result<(), Error> {
    reduce_raw(root as i32, values, op)
}

/// Combines every rank's `values` element-wise with `op`; the result
/// replaces `values` on every rank.
pub fn allreduce<T: Element>(values: &mut [T], op: Op) -> Result<(), Error> {
    reduce_raw(abi::ANY, values, op)
}

/// Every member's `data` (all the same length), in rank order, on
/// `root`: `Some` there, `None` elsewhere. The root sizes its buffer for
/// the members live now: when ranks join or leave, agree on the
/// membership first (else `MISMATCH`).
pub fn gather(root: u32, data: &[u8]) -> Result<Option<Vec<u8>>, Error> {
    let at_root = rank() == root;
    let mut out = if at_root {
        vec![0u8; data.len() * members()?.ranks.len()]
    } else {
        Vec::new()
    };
    // SAFETY: both buffers are live for the call; `out` is writable.
    check(unsafe {
        sys::gather(
            root as i32,
            data.as_ptr(),
            data.len(),
            out.as_mut_ptr(),
            out.len(),
        )
    })?;
    Ok(at_root.then_some(out))
}

/// Cuts `root`'s `data` into one equal piece per member of the round and
/// gives the `i`-th piece to the `i`-th member in rank order (rank `i` when
/// no rank has joined or left), into `piece`. `data` is only read on the
/// root.
pub fn scatter(root: u32, data: &[u8], piece: &mut [u8]) -> Result<(), Error> {
    // SAFETY: both buffers are live for the call; `piece` is writable.
    check(unsafe {
        sys::scatter(
            root as i32,
            data.as_ptr(),
            data.len(),
            piece.as_mut_ptr(),
            piece.len(),
        )
    })
}

/// `rank`'s address on the mesh subnet, for the SDK's sockets.
pub fn addr(rank: u32) -> Result<std::net::Ipv4Addr, Error> {
    let mut out = 0u32;
    // SAFETY: `out` is a live u32 the host writes into.
    check(unsafe { sys::addr(rank as i32, &mut out) })?;
    Ok(std::net::Ipv4Addr::from(out))
}

/// The ranks live now and the membership epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Members {
    /// One more for every rank that joined or left the job.
    pub epoch: u64,
    /// The live ranks, ascending.
    pub ranks: Vec<u32>,
}

/// The ranks live now (started and not ended), and the epoch.
pub fn members() -> Result<Members, Error> {
    let mut ranks: Vec<u32> = Vec::with_capacity(64);
    loop {
        let mut info = [0u64; 2];
        let cap = ranks.capacity();
        // SAFETY: the host writes at most `cap` u32s into `ranks`' spare
        // capacity and 16 bytes into `info`.
        check(unsafe { sys::members(ranks.as_mut_ptr(), cap, &mut info) })?;
        let count = info[0] as usize;
        if count <= cap {
            // SAFETY: the host initialized `count <= cap` entries.
            unsafe { ranks.set_len(count) };
            return Ok(Members {
                epoch: info[1],
                ranks,
            });
        }
        ranks.reserve_exact(count);
    }
}

/// A change of membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// `rank` joined the job.
    Joined { rank: u32, epoch: u64 },
    /// `rank` ended.
    Left { rank: u32, epoch: u64 },
}

/// The oldest membership event for this member (the parent and every
/// live rank hear of each other rank joining or leaving), waiting at most
/// `timeout` (`None`: as long as it takes). Events wait in a small queue of
/// their own, apart from messages (`ANY` never matches them); past 256 the
/// oldest are dropped, so [`members`] is the truth.
pub fn next_event(timeout: Option<Duration>) -> Result<Event, Error> {
    let mut data = Vec::with_capacity(12);
    let (rank, _) = recv_into(ANY, MEMBERSHIP, &mut data, timeout)?;
    let joined = data.get(..4) == Some(&1u32.to_le_bytes()[..]);
    let epoch = data
        .get(4..12)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes);
    Ok(if joined {
        Event::Joined { rank, epoch }
    } else {
        Event::Left { rank, epoch }
    })
}
