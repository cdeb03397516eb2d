//! weft: a unikernel-style sandbox host.
//!
//! One host process runs user code as WebAssembly instances. The crate is laid
//! out as the architecture is (see `DESIGN.md`):
//!
//! - [`runtime`]: the wasmtime engine, module loading with a compiled-artifact
//!   cache, invocations under limits, and the module [`runtime::registry`].
//! - [`node`]: one host's registry, runtime, [`activity`] and [`metrics`]
//!   behind one handle, with the policy the API exposes.
//! - [`network`]: subnets, security groups and interface records, stored
//!   and mirrored into the `weft-netstack` router; an endpoint per attached
//!   record serving guests' sockets; [`network::gateway`]s joining a subnet
//!   to the host (port forwards, outbound NAT, a TUN device).
//! - [`service`]: long-running, supervised instances with restart policies.
//! - [`chain`]: chains of modules run in order in this host, each step's
//!   output handed to the next without a copy in the host, the next step's
//!   instance prepared while the current one runs.
//! - [`mesh`]: mesh jobs: ranks wired into an in-memory mesh with bounded
//!   mailboxes and host-computed collectives, an ephemeral subnet, and a
//!   lifetime bound to their parent.
//! - [`api`]: the HTTP API (axum), its OpenAPI document, SSE feeds and the
//!   embedded dashboard.
//! - [`abi`]: the host side of the guest ABI, one file per `weft:*` import
//!   namespace.
//! - [`store`]: persistent state in one redb database.
//! - [`cli`]: the `weft` command line: `run` and `mesh run` (in process),
//!   `serve`, `dev`, and the client commands that talk to a running server.
//! - [`dev`]: `weft dev`'s watcher: build guests, redeploy on change, run
//!   the ones that declare themselves services behind loopback URLs.
//! - [`units`]: human units (`2s`, `64MiB`) for flags and messages.
//!
//! The virtual network's data path (router, security groups, connection
//! tracking, smoltcp endpoints) lives in the `weft-netstack` crate.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use weft::runtime::{Invocation, Runtime, RuntimeConfig};
//!
//! let runtime = Runtime::new(RuntimeConfig::default())?;
//! let module = runtime.load(&std::fs::read("hello.wasm")?)?;
//! let outcome = runtime
//!     .invoke(&module, Invocation::new("hello", "world"))
//!     .await
//!     .map_err(|failed| anyhow::anyhow!("{failed}"))?;
//! assert_eq!(&outcome.output[..], b"hello, world!\n");
//! # Ok(()) }
//! ```

// The OpenAPI document (`api::openapi`) is one large `json!` literal.
#![recursion_limit = "512"]

pub mod abi;
pub mod activity;
pub mod api;
pub mod chain;
pub mod cli;
pub mod dev;
pub mod limit;
pub mod mesh;
pub mod metrics;
pub mod network;
pub mod node;
pub mod runtime;
pub mod service;
pub mod store;
pub mod units;

/// The default data directory: `$WEFT_DATA`, else `$XDG_DATA_HOME/weft`, else
/// `~/.local/share/weft`, else `./.weft`.
pub fn default_data_dir() -> std::path::PathBuf {
    use std::path::PathBuf;
    let from_env = |key: &str| {
        std::env::var_os(key)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = from_env("WEFT_DATA") {
        return dir;
    }
    if let Some(dir) = from_env("XDG_DATA_HOME") {
        return dir.join("weft");
    }
    if let Some(home) = from_env("HOME") {
        return home.join(".local/share/weft");
    }
    PathBuf::from(".weft")
}
