//! A guest calling another module synchronously (`weft_guest::chain::call`).
//!
//! The called module runs to completion in a fresh instance on the caller's
//! task, one level deeper; the caller waits in its host call. Depth is
//! bounded by `weft_abi::chain::MAX_DEPTH`, so recursion ends with a
//! `DEPTH_LIMIT` answer to the guest, never with the host's stack: every
//! level runs wasm on its own fiber stack and adds only a few host frames.
//! The callee inherits what is left of the caller's deadline and stops when
//! the caller is stopped.

use super::Modules;
use crate::runtime::{Cancel, InstanceId, Invocation, Runtime};
use bytes::Bytes;
use std::sync::{Arc, Weak};
use std::time::Instant;
use weft_abi::chain::MAX_DEPTH;

/// Stderr kept in a failed call's reason.
const STDERR_IN_REASON: usize = 4096;

/// Where an instance's calls go: the runtime and the node's modules.
#[derive(Clone)]
pub struct Calls {
    runtime: Runtime,
    modules: Weak<dyn Modules>,
}

impl std::fmt::Debug for Calls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Calls").finish_non_exhaustive()
    }
}

/// Why a call produced no result.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No module has that name.
    #[error("no module named `{0}`")]
    NoSuchModule(String),
    /// The caller is already `MAX_DEPTH` calls deep.
    #[error(
        "chain::call to `{module}` refused: the depth limit of {MAX_DEPTH} nested calls is reached"
    )]
    DepthLimit {
        /// The module that was to be called.
        module: String,
    },
    /// The node is gone or cannot serve modules.
    #[error("chain::call is unavailable: {0}")]
    Unavailable(String),
    /// The callee trapped, hit a limit or exited non-zero.
    #[error("{0}")]
    Failed(String),
}

impl Calls {
    pub(crate) fn new(runtime: Runtime, modules: Weak<dyn Modules>) -> Self {
        Calls { runtime, modules }
    }

    /// Runs `module` on `input` as a call made at `depth`, within the
    /// caller's `deadline` and stopped by its `cancel`.
    pub(crate) async fn call(
        &self,
        module: &str,
        input: Bytes,
        depth: u32,
        deadline: Option<Instant>,
        cancel: Option<Cancel>,
    ) -> Result<Bytes, CallError> {
        if depth >= MAX_DEPTH {
            return Err(CallError::DepthLimit {
                module: module.to_owned(),
            });
        }
        let modules: Arc<dyn Modules> = self
            .modules
            .upgrade()
            .ok_or_else(|| CallError::Unavailable("the node is shutting down".into()))?;
        let entry = modules
            .module(module)
            .map_err(|e| CallError::Unavailable(e.to_string()))?
            .ok_or_else(|| CallError::NoSuchModule(module.to_owned()))?;
        let mut invocation = Invocation::new(module, input);
        invocation.limits = modules.limits();
        invocation.cancel = cancel;
        let mut prepared = self
            .runtime
            .prepare(&entry.loaded, invocation, InstanceId::new())
            .await
            .map_err(|failed| reason(module, &failed.failure.to_string(), &failed.stderr))?;
        prepared.set_call_depth(depth + 1);
        if let Some(deadline) = deadline {
            prepared.cap_deadline(deadline);
        }
        match prepared.run().await {
            Ok(outcome) if outcome.exit_code == 0 => Ok(outcome.output),
            Ok(outcome) => Err(reason(
                module,
                &format!("exited with code {}", outcome.exit_code),
                &outcome.stderr,
            )),
            Err(failed) => Err(reason(module, &failed.failure.to_string(), &failed.stderr)),
        }
    }
}

/// `module: what happened`, then the end of its stderr.
fn reason(module: &str, what: &str, stderr: &[u8]) -> CallError {
    let tail = &stderr[stderr.len().saturating_sub(STDERR_IN_REASON)..];
    let mut text = format!("{module}: {what}");
    if !tail.is_empty() {
        text.push('\n');
        text.push_str(String::from_utf8_lossy(tail).trim_end());
    }
    CallError::Failed(text)
}
