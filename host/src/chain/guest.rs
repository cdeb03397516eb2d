//! One instance's side of `weft:chain`: its input cursor, the output region
//! it declared, its call depth and the pending result of its last call.
//!
//! This is state only; `abi::chain` decodes the guest's arguments into
//! these methods and [`super::Calls`] runs the called module.

use crate::runtime::input::InputSource;
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use weft_abi::errno::{self, Errno};

/// A region of the guest's linear memory declared as its output.
#[derive(Debug)]
pub(crate) struct Region {
    pub memory: wasmtime::Memory,
    pub start: usize,
    pub len: usize,
}

/// Pages added to an instance's memory, ahead of its input, for
/// `input_in_place` to place it in.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Room {
    pub start: usize,
    pub len: usize,
}

/// The last input an instance of one warm pool placed in place
/// (`weft:chain`'s `input_in_place`): how long it was, and whether the last
/// one handed over by a step before had its pages moved in. The pool sets
/// that much room aside in each instance it prepares, faulted in ahead
/// unless pages are likely to be moved in: a move replaces them, and
/// letting go of pages faulted in costs more than faulting them in.
#[derive(Debug, Default)]
pub struct Placed {
    /// Its length.
    pub len: AtomicUsize,
    /// Whether the last input handed over had its pages moved in.
    pub moved: AtomicBool,
}

/// The `weft:chain` state of one instance.
#[derive(Debug, Default)]
pub struct GuestChain {
    input: Option<InputSource>,
    room: Option<Room>,
    /// The length of an input handed over whole by the step before (a
    /// region of its memory, and the only handle on it), while none of it
    /// has been read: its pages may be moved rather than copied.
    handed_over: Option<usize>,
    /// Bytes of input that came as moved pages rather than copied.
    moved: usize,
    /// Where an input placed in place is reported: the warm pool sets that
    /// much room aside in the next instance it prepares.
    placed: Option<Arc<Placed>>,
    output: Option<Region>,
    output_limit: usize,
    overflowed: bool,
    depth: u32,
    calls: Option<super::Calls>,
    pending: Option<Bytes>,
}

impl GuestChain {
    /// The state of a new instance: `input` is its stdin's source (`None`
    /// when stdin is inherited), `output_limit` its output limit, `calls`
    /// where its calls go (`None`: calls are unavailable).
    pub(crate) fn new(
        input: Option<InputSource>,
        output_limit: usize,
        calls: Option<super::Calls>,
    ) -> Self {
        GuestChain {
            input,
            output_limit,
            calls,
            ..GuestChain::default()
        }
    }

    /// The input source shared with stdin, when the input is in memory.
    pub(crate) fn input(&self) -> Option<&InputSource> {
        self.input.as_ref()
    }

    /// Replaces the input (stdin's too).
    pub(crate) fn set_input(&mut self, bytes: Bytes) {
        self.handed_over = None;
        if let Some(input) = &self.input {
            input.set(bytes);
        }
    }

    /// Replaces the input with the output region of a finished instance
    /// that nothing else holds (see `chain::held`): `input_in_place` may
    /// move its pages instead of copying them.
    pub(crate) fn hand_over_input(&mut self, bytes: Bytes) {
        let len = bytes.len();
        self.set_input(bytes);
        self.handed_over = self.input.is_some().then_some(len);
    }

    /// Whether the input's pages may be moved now that `remaining` bytes
    /// of it are left: it was handed over and none of it has been read.
    /// Asks once.
    pub(crate) fn take_handed_over(&mut self, remaining: usize) -> bool {
        self.handed_over.take() == Some(remaining)
    }

    /// Bytes of input that came as moved pages.
    pub(crate) fn moved(&self) -> usize {
        self.moved
    }

    /// Pages set aside ahead of the input, taken (they serve once).
    pub(crate) fn take_room(&mut self) -> Option<Room> {
        self.room.take()
    }

    pub(crate) fn set_room(&mut self, room: Room) {
        self.room = Some(room);
    }

    /// Reports inputs placed in place to `placed`.
    pub(crate) fn report_placed_to(&mut self, placed: Arc<Placed>) {
        self.placed = Some(placed);
    }

    /// Notes that an input of `len` bytes was placed in place; `moved`: of
    /// them, those that came as moved pages, when the input was handed over
    /// (`None` when it was not, which says nothing of what later hops of
    /// the profile will do).
    pub(crate) fn note_placed(&mut self, len: usize, moved: Option<usize>) {
        self.moved += moved.unwrap_or(0);
        if let Some(placed) = &self.placed {
            placed.len.store(len, Ordering::Relaxed);
            if let Some(moved) = moved {
                placed.moved.store(moved > 0, Ordering::Relaxed);
            }
        }
    }

    /// Declares `start..start+len` of `memory` as the output; the caller has
    /// checked the range. Returns `LIMIT` past the output limit.
    pub(crate) fn declare_output(
        &mut self,
        memory: wasmtime::Memory,
        start: usize,
        len: usize,
    ) -> Errno {
        if len > self.output_limit {
            self.overflowed = true;
            return errno::LIMIT;
        }
        self.output = Some(Region { memory, start, len });
        errno::OK
    }

    /// Whether the guest declared an output larger than its limit.
    pub(crate) fn output_overflowed(&self) -> bool {
        self.overflowed
    }

    /// The declared output region, taken.
    pub(crate) fn take_output(&mut self) -> Option<Region> {
        self.output.take()
    }

    /// How deep in calls this instance runs.
    pub(crate) fn depth(&self) -> u32 {
        self.depth
    }

    pub(crate) fn set_depth(&mut self, depth: u32) {
        self.depth = depth;
    }

    /// Where calls go, if they are available.
    pub(crate) fn calls(&self) -> Option<&super::Calls> {
        self.calls.as_ref()
    }

    /// Keeps the result (or the failure text) of a call for `result`.
    pub(crate) fn set_pending(&mut self, result: Bytes) {
        self.pending = Some(result);
    }

    /// The pending result, taken.
    pub(crate) fn take_pending(&mut self) -> Option<Bytes> {
        self.pending.take()
    }
}
