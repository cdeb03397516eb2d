//! Warm instances for chain steps: pre-instantiated, waiting for an input.
//!
//! A warm instance has its store, its WASI context (arguments, environment,
//! captured output) and its instance from a pooled copy-on-write slot, all
//! made before its input exists; running it only binds the input and starts
//! the clock. Instances are kept per *profile*: one module version with one
//! set of arguments, environment and limits, since all of those are baked
//! into the instance. A chain that runs a profile in *n* of its steps wants
//! *n* ready at once, so a profile keeps up to `per_profile` instances for
//! each step of the chain that uses it, and the pools together at most
//! `total`, so warm instances can never take the slots running instances
//! need.

use super::Placed;
use super::plan::Step;
use crate::runtime::{Failed, InstanceId, Invocation, Prepared, Runtime};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

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

/// One profile's instances.
#[derive(Debug, Default)]
struct Pool {
    ready: Vec<Prepared>,
    /// The last input an instance of this profile placed in place
    /// (`weft:chain`'s `input_in_place`); each instance prepared next sets
    /// that much room aside for its own.
    placed: Arc<Placed>,
}

/// The warm pools of one node.
#[derive(Debug)]
pub struct WarmPools {
    pools: Mutex<HashMap<Profile, Pool>>,
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
        waiting(&self.lock())
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
        let (warm, placed) = {
            let mut pools = self.lock();
            let pool = pools.entry(Profile::of(step)).or_default();
            (pool.ready.pop(), pool.placed.clone())
        };
        match warm {
            Some(prepared) => Ok((prepared, true)),
            None => Ok((instantiate(runtime, step, placed).await?, false)),
        }
    }

    /// Returns an instance that was prepared for `step` but not run.
    pub fn give_back(&self, step: &Step, prepared: Prepared) {
        self.keep(&Profile::of(step), prepared, self.per_profile);
    }

    /// Keeps `prepared` if its profile has fewer than `size` waiting and
    /// the pools have room; drops it otherwise.
    fn keep(&self, profile: &Profile, prepared: Prepared, size: usize) {
        let mut pools = self.lock();
        let total = waiting(&pools);
        let pool = pools.entry(profile.clone()).or_default();
        if total < self.total && pool.ready.len() < size {
            pool.ready.push(prepared);
        }
    }

    /// Fills the pools of `steps`' profiles: `per_profile` instances for
    /// each step that uses the profile.
    pub async fn top_up(&self, runtime: &Runtime, steps: &[Step]) {
        let mut wanted: Vec<(Profile, &Step, usize)> = Vec::new();
        for step in steps {
            let profile = Profile::of(step);
            match wanted.iter_mut().find(|(p, _, _)| *p == profile) {
                Some((_, _, size)) => *size += self.per_profile,
                None => wanted.push((profile, step, self.per_profile)),
            }
        }
        for (profile, step, size) in wanted {
            loop {
                let short = {
                    let mut pools = self.lock();
                    let total = waiting(&pools);
                    let pool = pools.entry(profile.clone()).or_default();
                    (pool.ready.len() < size && total < self.total).then(|| pool.placed.clone())
                };
                let Some(placed) = short else {
                    break;
                };
                match instantiate(runtime, step, placed).await {
                    Ok(prepared) => self.keep(&profile, prepared, size),
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Profile, Pool>> {
        self.pools.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Instances waiting in all of `pools`.
fn waiting(pools: &HashMap<Profile, Pool>) -> usize {
    pools.values().map(|pool| pool.ready.len()).sum()
}

/// An instance for `step`, with room set aside for an input the size of
/// the last one its profile placed in place (`placed`; faulted in ahead
/// unless that one's pages were moved in), and reporting its own there.
async fn instantiate(
    runtime: &Runtime,
    step: &Step,
    placed: Arc<Placed>,
) -> Result<Prepared, Box<Failed>> {
    let mut invocation = Invocation::new(step.module.clone(), Bytes::new());
    invocation.args = step.args.clone();
    invocation.env = step.env.clone();
    invocation.limits = step.limits.clone();
    let mut prepared = runtime
        .prepare(&step.entry.loaded, invocation, InstanceId::new())
        .await?;
    prepared.reserve_input(
        placed.len.load(Ordering::Relaxed),
        !placed.moved.load(Ordering::Relaxed),
    );
    prepared.report_placed_to(placed);
    Ok(prepared)
}
