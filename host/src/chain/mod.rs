//! Chains: functions run one after the other in this host, each step's
//! output the next step's input, passed without a copy in the host.
//!
//! - [`plan`]: [`Definition`]s (stored, by name) and [`Plan`]s (modules
//!   resolved, limits fixed).
//! - [`exec`]: the executor, which prepares step *i + 1* on the same task
//!   while step *i* runs, and reports per-step timings or the failing step.
//! - [`warm`]: the warm pools of pre-instantiated instances, per profile.
//! - `held`: a step's output as a `Bytes` that points into the step's own
//!   linear memory and keeps its slot until the next step has read it.
//! - [`GuestChain`] and [`Calls`]: an instance's side of `weft:chain`
//!   (zero-copy input and output, and `chain::call` into other modules
//!   with a depth limit).
//!
//! How many copies a hop makes, and why, is in `docs/chains.md`.
//!
//! ```no_run
//! # async fn demo(node: std::sync::Arc<weft::node::Node>) -> anyhow::Result<()> {
//! use weft::chain::{Definition, StepDef};
//! let chains = node.chains();
//! let definition = Definition::new(
//!     "words",
//!     vec![StepDef::module("tokenize"), StepDef::module("count")],
//!     None,
//!     &node.chain_ceilings(),
//! )?;
//! chains.put(&definition, node.registry())?;
//! # Ok(()) }
//! ```

mod call;
pub mod exec;
mod guest;
pub(crate) mod held;
pub mod plan;
pub mod warm;

pub use call::{CallError, Calls};
pub use exec::{Ran, StepFailed, StepReport};
pub use guest::GuestChain;
pub(crate) use guest::{Placed, Room};
pub use plan::{Ceilings, Definition, DefinitionError, Plan, PlanError, StepDef};

use crate::runtime::registry::{Entry, Registry, RegistryError};
use crate::runtime::{Cancel, Limits, Runtime};
use crate::store::{Kind, Store, StoreError};
use bytes::Bytes;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use warm::WarmPools;

/// Runs kept for [`Chains::recent`].
pub const RECENT_RUNS: usize = 100;

/// Where `chain::call` finds modules: the node, seen from the runtime.
pub trait Modules: Send + Sync {
    /// Module `name`, loaded; `Ok(None)` when there is none.
    fn module(&self, name: &str) -> Result<Option<Arc<Entry>>, RegistryError>;
    /// The limits a called module runs under (its deadline is also capped
    /// by its caller's).
    fn limits(&self) -> Limits;
}

/// How the chains of a node are set up.
#[derive(Clone, Debug)]
pub struct ChainConfig {
    /// Warm instances kept per step profile (module version, arguments,
    /// environment, limits), for each step of a chain that uses it; 0
    /// keeps none.
    pub warm: usize,
    /// Warm instances kept in all.
    pub warm_total: usize,
    /// Whether a hop may move a large input's whole pages from the
    /// producer's memory into the consumer's rather than copy them (see
    /// `runtime::pages`); where the kernel cannot, hops copy anyway.
    pub move_pages: bool,
}

impl Default for ChainConfig {
    fn default() -> Self {
        ChainConfig {
            warm: 2,
            warm_total: 64,
            move_pages: true,
        }
    }
}

/// Why a chain could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// A step names a module that is not deployed.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One run, as kept for the dashboard and `GET /v1/chains/runs`.
#[derive(Clone, Debug, Serialize)]
pub struct RunRecord {
    /// The chain's name, `""` for an ad-hoc chain.
    pub chain: String,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// How long it took, in microseconds.
    pub duration_us: u64,
    /// `ok` or `failed`.
    pub status: &'static str,
    /// The failing step, when it failed.
    pub failed_step: Option<usize>,
    /// Why it failed.
    pub reason: Option<String>,
    /// The steps that ran.
    pub steps: Vec<StepReport>,
}

/// A node's chains: definitions in the store, warm pools, recent runs.
#[derive(Debug)]
pub struct Chains {
    store: Arc<Store>,
    pools: Arc<WarmPools>,
    runs: Mutex<VecDeque<RunRecord>>,
    config: ChainConfig,
}

impl Chains {
    /// The chains kept in `store`.
    pub fn new(store: Arc<Store>, config: ChainConfig) -> Self {
        Chains {
            store,
            pools: Arc::new(WarmPools::new(config.warm, config.warm_total)),
            runs: Mutex::new(VecDeque::new()),
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ChainConfig {
        &self.config
    }

    /// The warm pools.
    pub fn pools(&self) -> &WarmPools {
        &self.pools
    }

    /// Stores `definition` durably once every module it names is deployed;
    /// returns whether it replaced one.
    pub fn put(&self, definition: &Definition, registry: &Registry) -> Result<bool, ChainError> {
        for (index, step) in definition.steps.iter().enumerate() {
            if registry
                .record(&step.module)
                .map_err(PlanError::from)?
                .is_none()
            {
                return Err(PlanError::UnknownModule {
                    index,
                    module: step.module.clone(),
                }
                .into());
            }
        }
        let existed = self.get(&definition.name)?.is_some();
        self.store.put(Kind::Chain, &definition.name, definition)?;
        Ok(existed)
    }

    /// The chain named `name`.
    pub fn get(&self, name: &str) -> Result<Option<Definition>, StoreError> {
        self.store.get(Kind::Chain, name)
    }

    /// Every chain, by name.
    pub fn list(&self) -> Result<Vec<Definition>, StoreError> {
        self.store.all_of(Kind::Chain)
    }

    /// Deletes a chain; returns whether it existed.
    pub fn remove(&self, name: &str) -> Result<bool, StoreError> {
        self.store.remove(Kind::Chain, name)
    }

    /// Runs `plan` on `input` and records the run; then tops the warm pools
    /// of its steps back up, in the background.
    pub async fn run(
        &self,
        runtime: &Runtime,
        plan: &Plan,
        input: Bytes,
        cancel: Option<Cancel>,
    ) -> Result<Ran, Box<StepFailed>> {
        let started_ms = crate::activity::now_ms();
        let result = exec::run(
            runtime,
            &self.pools,
            plan,
            input,
            cancel,
            self.config.move_pages,
        )
        .await;
        let record = match &result {
            Ok(ran) => RunRecord {
                chain: plan.name.clone(),
                started_ms,
                duration_us: ran.duration.as_micros() as u64,
                status: "ok",
                failed_step: None,
                reason: None,
                steps: ran.steps.clone(),
            },
            Err(failed) => RunRecord {
                chain: plan.name.clone(),
                started_ms,
                duration_us: failed.duration.as_micros() as u64,
                status: "failed",
                failed_step: Some(failed.index),
                reason: Some(failed.reason.clone()),
                steps: failed.steps.clone(),
            },
        };
        {
            let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
            if runs.len() == RECENT_RUNS {
                runs.pop_front();
            }
            runs.push_back(record);
        }
        if self.config.warm > 0 {
            let (pools, runtime, steps) = (self.pools.clone(), runtime.clone(), plan.steps.clone());
            tokio::spawn(async move { pools.top_up(&runtime, &steps).await });
        }
        result
    }

    /// The most recent runs, newest first, of chain `name` (or of all).
    pub fn recent(&self, name: Option<&str>, limit: usize) -> Vec<RunRecord> {
        let runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.iter()
            .rev()
            .filter(|run| name.is_none_or(|name| run.chain == name))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Drops the warm instances of module `name` (it was replaced or
    /// deleted).
    pub fn forget_module(&self, name: &str) {
        self.pools.forget_module(name);
    }
}

#[cfg(test)]
mod tests;
