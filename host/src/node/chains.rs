//! The node's policy around chains: the ceilings a definition must stay
//! under, admission (a chain run takes one of the node's running slots for
//! its whole life: it runs one step at a time), and the activity log and
//! metrics of every step, as if each step were an invocation.

use super::Node;
use crate::activity::{Finished, Status};
use crate::chain::{Ceilings, ChainError, Chains, Definition, Plan, PlanError, Ran, StepFailed};
use crate::runtime::Limits;
use crate::runtime::registry::{Entry, RegistryError};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

/// What a caller asks of one chain run.
#[derive(Clone, Debug, Default)]
pub struct ChainRequest {
    /// The first step's input.
    pub input: Bytes,
    /// The whole chain's deadline, instead of the definition's.
    pub timeout: Option<Duration>,
}

/// Why a chain run produced no output.
#[derive(Debug, thiserror::Error)]
pub enum ChainRunError {
    /// No chain has that name.
    #[error("no chain named `{0}`")]
    NotFound(String),
    /// A step names a module that is not deployed (any more).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Too many instances are running.
    #[error("at capacity: {0} instances are running; try again shortly")]
    Busy(usize),
    /// The request asked for something not allowed.
    #[error("{0}")]
    BadRequest(String),
    /// The store failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// A step failed; the steps after it did not run.
    #[error("{0}")]
    Step(Box<StepFailed>),
}

impl Node {
    /// The chains: definitions, warm pools, recent runs.
    pub fn chains(&self) -> &Chains {
        &self.chains
    }

    /// What a chain definition's limits must stay under.
    pub fn chain_ceilings(&self) -> Ceilings {
        Ceilings {
            timeout: self.config.max_timeout,
            memory: self.config.runtime.max_memory,
        }
    }

    /// The stored chain `name`.
    pub fn chain(&self, name: &str) -> Result<Definition, ChainRunError> {
        self.chains
            .get(name)
            .map_err(ChainError::from)?
            .ok_or_else(|| ChainRunError::NotFound(name.to_owned()))
    }

    /// Runs `definition` on `request`, recording every step that ran in the
    /// activity log and the metrics.
    pub async fn invoke_chain(
        &self,
        definition: &Definition,
        request: ChainRequest,
    ) -> Result<Ran, ChainRunError> {
        if let Some(timeout) = request.timeout
            && timeout > self.config.max_timeout
        {
            return Err(ChainRunError::BadRequest(format!(
                "timeout {} is above this server's maximum of {}",
                crate::units::format_duration(timeout),
                crate::units::format_duration(self.config.max_timeout)
            )));
        }
        let mut plan = Plan::new(definition, &self.registry, &self.config.limits)?;
        if request.timeout.is_some() {
            plan.timeout = request.timeout;
        }
        let Ok(_slot) = self.slots.clone().try_acquire_owned() else {
            self.metrics.busy();
            return Err(ChainRunError::Busy(self.config.max_running));
        };
        let started_ms = crate::activity::now_ms();
        let result = self
            .chains
            .run(self.registry.runtime(), &plan, request.input, None)
            .await;
        let (steps, trails, failure) = match &result {
            Ok(ran) => (&ran.steps, &ran.trails, None),
            Err(failed) => (&failed.steps, &failed.trails, Some(failed)),
        };
        let mut offset_ms = 0;
        for (step, trail) in steps.iter().zip(trails) {
            let failed_here = failure.filter(|f| f.index == step.index);
            let exited = failed_here.is_none_or(|f| f.exit_code.is_some());
            let finished = Finished {
                instance: step.instance.clone(),
                module: step.module.clone(),
                started_ms: started_ms + offset_ms,
                duration_us: step.duration_us,
                status: if exited { Status::Ok } else { Status::Failed },
                exit_code: if exited {
                    Some(failed_here.and_then(|f| f.exit_code).unwrap_or(0))
                } else {
                    None
                },
                code: failed_here.filter(|_| !exited).map(|f| f.code),
                reason: failed_here.filter(|_| !exited).map(|f| f.reason.clone()),
                input_bytes: step.input_bytes,
                output_bytes: step.output_bytes,
            };
            offset_ms += step.duration_us / 1000;
            self.metrics.invocation(
                &step.module,
                finished.code.unwrap_or("ok"),
                Duration::from_micros(step.duration_us),
            );
            self.activity.finished(finished, &trail.logs, &trail.stderr);
        }
        result.map_err(ChainRunError::Step)
    }
}

impl crate::chain::Modules for Node {
    fn module(&self, name: &str) -> Result<Option<Arc<Entry>>, RegistryError> {
        self.registry.get(name)
    }

    fn limits(&self) -> Limits {
        self.config.limits.clone()
    }
}
