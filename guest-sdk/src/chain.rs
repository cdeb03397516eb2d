//! Chaining: the input and output without copies in the host, and calls
//! into other modules.
//!
//! [`input`] reads the whole input with one copy straight from where the
//! host holds it (in a chain: the previous step's memory); [`output`] hands
//! a buffer to the host as the output without any copy; the next step reads
//! it from here. [`input_in_place`] and [`output_slice`] do the same with
//! no allocation in the guest: the input lands in pages set aside for it,
//! which a warm chain step may have ready before its input exists. [`call`] runs another deployed module on some bytes and
//! returns its output.
//!
//! ```no_run
//! let text = weft_guest::chain::input();
//! let upper = weft_guest::chain::call("upper", &text).expect("upper failed");
//! weft_guest::chain::output(upper);
//! ```

// Calls into `weft:chain` (FFI); each block says why it is sound.
#![allow(unsafe_code)]

use crate::sys;
use std::fmt;
use weft_abi::errno;

/// Why [`call`] returned no output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// No module has that name.
    NoSuchModule(String),
    /// The call would nest deeper than `weft_abi::chain::MAX_DEPTH`.
    DepthLimit(String),
    /// The called module failed; the host's reason (with the end of its
    /// stderr).
    Failed(String),
    /// Calls are not available here (no module registry, as under
    /// `weft run`).
    Unavailable,
    /// The host answered with another error code.
    Other(i32),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoSuchModule(name) => write!(f, "chain::call: no module named `{name}`"),
            Error::DepthLimit(name) => write!(
                f,
                "chain::call to `{name}` refused: the depth limit of {} nested calls is reached",
                weft_abi::chain::MAX_DEPTH
            ),
            Error::Failed(reason) => write!(f, "chain::call failed: {reason}"),
            Error::Unavailable => write!(f, "chain::call is not available in this host"),
            Error::Other(code) => write!(f, "chain::call: {}", errno::name(*code)),
        }
    }
}

impl std::error::Error for Error {}

/// Reads the whole invocation input: one copy from the host's buffer into
/// a vector of exactly the right size. Falls back to reading stdin where
/// the input is not in memory (`weft run`).
pub fn input() -> Vec<u8> {
    let mut len = 0u32;
    // SAFETY: `len` is a live u32.
    if unsafe { sys::chain::input_len(&mut len) } != errno::OK {
        return crate::input();
    }
    let mut buf = Vec::with_capacity(len as usize);
    let mut read = 0u32;
    // SAFETY: the host writes at most `len` bytes into the spare capacity,
    // which is `len` bytes long, and reports how many in `read`.
    let code = unsafe { sys::chain::input(buf.as_mut_ptr(), len as usize, &mut read) };
    assert_eq!(code, errno::OK, "weft: reading the input failed");
    // SAFETY: the host initialized the first `read` bytes (`read <= len`).
    unsafe { buf.set_len(read.min(len) as usize) };
    // Anything that arrived on stdin's side of the cursor meanwhile is none:
    // the cursor is shared, and the guest has read nothing else.
    buf
}

/// The size from which [`input_in_place`] has the host place the input in
/// pages of its own.
pub const IN_PLACE_FROM: usize = 32 << 10;

/// Reads the whole invocation input into memory set aside for it, and
/// lends it for the rest of the instance's life: one copy from where the
/// host holds it (in a chain: the previous step's memory), no allocation.
/// The host adds the pages past this instance's heap; a chain step prepared
/// ahead may have them already, so its hop costs that one copy alone. The
/// bytes are yours to change in place and to hand on with [`output_slice`].
///
/// An input under [`IN_PLACE_FROM`] bytes is read into this instance's own
/// heap instead ([`input`], then leaked): the memory it started with most
/// likely has room for it, and new pages cost more than such a copy.
///
/// A second call finds no input left and returns an empty slice. Falls
/// back to reading stdin where the input is not in memory (`weft run`).
/// Panics if the pages would pass the instance's memory limit.
pub fn input_in_place() -> &'static mut [u8] {
    let mut len = 0u32;
    // SAFETY: `len` is a live u32.
    let known = unsafe { sys::chain::input_len(&mut len) } == errno::OK;
    if !known || (len as usize) < IN_PLACE_FROM {
        return input().leak();
    }
    let mut ptr = 0u32;
    // SAFETY: both are live u32s.
    match unsafe { sys::chain::input_in_place(&mut ptr, &mut len) } {
        errno::OK if len == 0 => &mut [],
        // SAFETY: the host copied `len` bytes to `ptr`, in pages it added to
        // this instance's memory for them alone: nothing else refers to
        // them, and nothing frees them while the instance lives.
        errno::OK => unsafe {
            std::slice::from_raw_parts_mut(ptr as usize as *mut u8, len as usize)
        },
        errno::UNAVAILABLE => crate::input().leak(),
        code => panic!(
            "weft: placing the input failed: {} (is it larger than the memory limit?)",
            errno::name(code)
        ),
    }
}

/// Makes `bytes` the invocation's output without a copy, as [`output`]
/// does, for bytes that already live as long as the instance (such as
/// those of [`input_in_place`]). Call it once, last.
///
/// Panics past the output limit; the host then reports `output_limit`.
pub fn output_slice(bytes: &'static [u8]) {
    // SAFETY: the bytes live, unchanged from here on, for the rest of the
    // instance's life, as the host requires.
    let code = unsafe { sys::chain::output(bytes.as_ptr(), bytes.len()) };
    assert_eq!(code, errno::OK, "weft: the output is larger than its limit");
}

/// Makes `bytes` the invocation's output without a copy: the host takes
/// them from this instance's memory when it ends. Call it once, last.
///
/// Panics past the output limit; the host then reports `output_limit`.
pub fn output(bytes: Vec<u8>) {
    let bytes = bytes.leak();
    // SAFETY: the slice is leaked, so it stays valid and unchanged for the
    // rest of the instance's life, as the host requires.
    let code = unsafe { sys::chain::output(bytes.as_ptr(), bytes.len()) };
    assert_eq!(code, errno::OK, "weft: the output is larger than its limit");
}

/// Runs module `module` on `input` and returns its output.
pub fn call(module: &str, input: &[u8]) -> Result<Vec<u8>, Error> {
    let mut len = 0u32;
    // SAFETY: the name and input are live slices; `len` is a live u32.
    let code = unsafe {
        sys::chain::call(
            module.as_ptr(),
            module.len(),
            input.as_ptr(),
            input.len(),
            &mut len,
        )
    };
    let pending = |len: u32| {
        let mut buf = vec![0u8; len as usize];
        // SAFETY: `buf` is `len` writable bytes.
        let code = unsafe { sys::chain::result(buf.as_mut_ptr(), buf.len()) };
        debug_assert_eq!(code, errno::OK);
        buf
    };
    match code {
        errno::OK => Ok(pending(len)),
        errno::CALL_FAILED => Err(Error::Failed(
            String::from_utf8_lossy(&pending(len)).into_owned(),
        )),
        errno::NO_SUCH_MODULE => Err(Error::NoSuchModule(module.to_owned())),
        errno::DEPTH_LIMIT => Err(Error::DepthLimit(module.to_owned())),
        errno::UNAVAILABLE => Err(Error::Unavailable),
        other => Err(Error::Other(other)),
    }
}

/// How many [`call`]s deep this instance runs: 0 for a chain step or a
/// plain invocation.
pub fn depth() -> u32 {
    let mut depth = 0u32;
    // SAFETY: `depth` is a live u32.
    unsafe { sys::chain::depth(&mut depth) };
    depth
}
