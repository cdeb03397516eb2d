//! Warm instances for chain steps: pre-instantiated, waiting for an input.
//!
//! A warm instance has its store, its WASI context (arguments, environment,
//! captured output) and its instance from a pooled copy-on-write slot, all
//! made before its input exists; running it only binds the input and starts
//! the clock. Instances are kept per *profile*: one module version with one
//! set of arguments, environment and limits, since all of those are baked
//! into the instance. Each profile keeps at most `per_profile` instances and
//! the pools together at most `total`, so warm instances can never take the
//! slots running instances need.

use super::plan::Step;
use crate::runtime::{Failed, InstanceId, Invocation, Prepared, Runtime};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Mutex;

/// Everything baked into a prepared instance.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Profile {
    module: String,
    digest: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    timeout_ms: Option<u128>,
    memory: u64,
    table_elements: u64,
    fuel: Option<u64>,
    output: usize,
    stderr: usize,
}

impl Profile {
    fn of(step: &Step) -> Profile {
        let limits = &step.limits;
        Profile {
            module: step.module.clone(),
            digest: step.entry.loaded.digest().to_owned(),
            args: step.args.clone(),
            env: step.env.clone(),
            timeout_ms: limits.timeout.map(|t| t.as_millis()),
            memory: limits.memory,
            table_elements: limits.table_elements,
            fuel: limits.fuel,
            output: limits.output,
            stderr: limits.stderr,
        }
    }
}

/// The warm pools of one node.
#[derive(Debug)]
pub struct WarmPools {
    pools: Mutex<HashMap<Profile, Vec<Prepared>>>,
    per_profile: usize,
    total: usize,
}

impl WarmPools {
    /// Pools keeping up to `per_profile` instances per profile and `total`
    /// in all; `per_profile == 0` keeps none.
    pub fn new(per_profile: usize, total: usize) -> Self {
        WarmPools {
            pools: Mutex::new(HashMap::new()),
            per_profile,
            total,
        }
    }

    /// Instances waiting now, in all pools.
    pub fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    /// Whether no instance is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An instance for `step`: a warm one when the pool has one (`true`),
    /// else one instantiated now (`false`).
    pub async fn prepare(
        &self,
        runtime: &Runtime,
        step: &Step,
    ) -> Result<(Prepared, bool), Box<Failed>> {
        let warm = self.lock().get_mut(&Profile::of(step)).and_then(Vec::pop);
        match warm {
            Some(prepared) => Ok((prepared, true)),
            None => Ok((instantiate(runtime, step).await?, false)),
        }
    }

    /// Returns an instance that was prepared for `step` but not run.
    pub fn give_back(&self, step: &Step, prepared: Prepared) {
        let mut pools = self.lock();
        let total: usize = pools.values().map(Vec::len).sum();
        let pool = pools.entry(Profile::of(step)).or_default();
        if pool.len() < self.per_profile && total < self.total {
            pool.push(prepared);
        }
    }

    /// Fills the pools of `steps`' profiles up to their size.
    pub async fn top_up(&self, runtime: &Runtime, steps: &[Step]) {
        for step in steps {
            let profile = Profile::of(step);
            loop {
                let wanted = {
                    let pools = self.lock();
                    let total: usize = pools.values().map(Vec::len).sum();
                    let have = pools.get(&profile).map_or(0, Vec::len);
                    have < self.per_profile && total < self.total
                };
                if !wanted {
                    break;
                }
                match instantiate(runtime, step).await {
                    Ok(prepared) => self.give_back(step, prepared),
                    Err(failed) => {
                        tracing::debug!(module = %step.module, "could not warm an instance: {failed}");
                        break;
                    }
                }
            }
        }
    }

    /// Drops every warm instance of module `name` (it was replaced or
    /// deleted).
    pub fn forget_module(&self, name: &str) {
        self.lock().retain(|profile, _| profile.module != name);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Profile, Vec<Prepared>>> {
        self.pools.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn instantiate(runtime: &Runtime, step: &Step) -> Result<Prepared, Box<Failed>> {
    let mut invocation = Invocation::new(step.module.clone(), Bytes::new());
    invocation.args = step.args.clone();
    invocation.env = step.env.clone();
    invocation.limits = step.limits.clone();
    runtime
        .prepare(&step.entry.loaded, invocation, InstanceId::new())
        .await
}
