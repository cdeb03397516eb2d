//! `weft-guest`: the SDK a weft guest links (built for `wasm32-wasip1`).
//!
//! A weft module is an ordinary WASI command: its invocation input is stdin,
//! its output is stdout, and plain `std::io` keeps working. This crate adds
//! the weft-specific parts on top:
//!
//! - [`input`] / [`output`]: the invocation's input and output as bytes;
//! - [`log`]: log lines attributed to the instance in the host's logs;
//! - [`chain`]: the input and output without copies in the host, and
//!   synchronous calls into other modules (`chain::call`);
//! - [`net`]: TCP and UDP sockets on the instance's interface records;
//! - [`mesh`]: messages and host-computed collectives between the ranks
//!   of a mesh job and its parent;
//! - (later) chaining and mesh messaging.
//!
//! ```no_run
//! let name = weft_guest::input_string().unwrap_or_default();
//! weft_guest::log::info!("greeting {} bytes of name", name.len());
//! weft_guest::output(format!("hello, {}!\n", name.trim()).as_bytes());
//! ```
//!
//! Built for a native target (for tests and tooling), the imports are
//! replaced by plain stderr writes so the crate still compiles and behaves
//! sensibly.

pub use weft_abi as abi;

pub mod chain;
mod io;
pub mod log;
pub mod mesh;
pub mod net;
mod sys;

pub use io::{input, input_string, output, output_str};
