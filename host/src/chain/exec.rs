//! The executor: runs a [`Plan`]'s steps in order on the calling task.
//!
//! While step *i* runs, step *i + 1*'s instance is prepared (taken from its
//! warm pool, or instantiated) in the same task: both futures are polled by
//! one `join`, so the preparation runs on the same worker thread, in the
//! gaps where step *i* yields (every epoch tick, or while it waits in a host
//! call), and step *i + 1* starts on the thread whose caches hold step *i*'s
//! output. Each step's output is one `Bytes` handed to the next step as its
//! input without a copy (see `chain::held` for where those bytes live).
//!
//! The first step that traps, hits a limit or exits non-zero stops the
//! chain; the steps after it never start, and an instance already prepared
//! for the next step goes back to its pool unused.

use super::plan::{Plan, Step};
use super::warm::WarmPools;
use crate::abi::log::LogLine;
use crate::runtime::{Cancel, Failed, Runtime};
use bytes::Bytes;
use serde::Serialize;
use std::time::{Duration, Instant};

/// How one step went.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    /// Its index, from 0.
    pub index: usize,
    /// Its module.
    pub module: String,
    /// The instance that ran it.
    pub instance: String,
    /// How long it ran, in microseconds.
    pub duration_us: u64,
    /// Bytes of input.
    pub input_bytes: u64,
    /// Bytes of output (0 when it failed).
    pub output_bytes: u64,
    /// Bytes of its input that came as pages moved from the previous step's
    /// memory rather than copied (see `runtime::pages`).
    pub input_moved: u64,
    /// Whether its instance came ready from the warm pool.
    pub warm: bool,
    /// `ok`, or the failure's stable code (`nonzero_exit` for an exit code
    /// other than 0).
    pub status: &'static str,
}

/// What a step left besides its output: stderr and log lines.
#[derive(Debug, Default)]
pub struct Trail {
    /// Its stderr, up to the limit.
    pub stderr: Bytes,
    /// Its `weft:log` lines.
    pub logs: Vec<LogLine>,
}

/// A chain that ran to its end.
#[derive(Debug)]
pub struct Ran {
    /// The last step's output.
    pub output: Bytes,
    /// Every step, in order.
    pub steps: Vec<StepReport>,
    /// Every step's stderr and log lines, in order.
    pub trails: Vec<Trail>,
    /// Wall-clock time of the whole chain.
    pub duration: Duration,
}

/// A chain stopped by a failing step.
#[derive(Debug)]
pub struct StepFailed {
    /// The failing step's index.
    pub index: usize,
    /// Its module.
    pub module: String,
    /// The stable code: a `Failure` code, or `nonzero_exit`.
    pub code: &'static str,
    /// What happened, in words.
    pub reason: String,
    /// Its exit code, when it exited non-zero.
    pub exit_code: Option<i32>,
    /// The guest's wasm backtrace, when there is one.
    pub backtrace: Option<String>,
    /// The steps that ran, the failing one last (absent when it never
    /// started).
    pub steps: Vec<StepReport>,
    /// Their stderr and log lines, in the same order.
    pub trails: Vec<Trail>,
    /// Wall-clock time of the chain up to the failure.
    pub duration: Duration,
}

impl std::fmt::Display for StepFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "step {} ({}): {}", self.index, self.module, self.reason)
    }
}

/// Runs `plan` on `input`, preparing each next step from `pools` while the
/// current one runs. `cancel` stops whichever step is running. With
/// `move_pages`, a step's output region is handed over to the next step,
/// which may move its pages in rather than copy them (see
/// `runtime::pages`).
pub async fn run(
    runtime: &Runtime,
    pools: &WarmPools,
    plan: &Plan,
    input: Bytes,
    cancel: Option<Cancel>,
    move_pages: bool,
) -> Result<Ran, Box<StepFailed>> {
    let started = Instant::now();
    let deadline = plan.timeout.map(|t| started + t);
    let mut steps: Vec<StepReport> = Vec::with_capacity(plan.steps.len());
    let mut trails: Vec<Trail> = Vec::with_capacity(plan.steps.len());
    let mut next = Some(pools.prepare(runtime, &plan.steps[0]).await);
    let mut data = input;
    // Whether `data` is the output region of the step before, which only
    // `data` holds.
    let mut held = false;
    for (index, step) in plan.steps.iter().enumerate() {
        let stop = |code, reason, steps, trails, exit_code, backtrace| {
            Box::new(StepFailed {
                index,
                module: step.module.clone(),
                code,
                reason,
                exit_code,
                backtrace,
                steps,
                trails,
                duration: started.elapsed(),
            })
        };
        let (mut prepared, warm) = match next.take() {
            Some(Ok(ready)) => ready,
            Some(Err(failed)) => {
                let reason = failed.failure.to_string();
                return Err(stop(
                    failed.failure.code(),
                    reason,
                    steps,
                    trails,
                    None,
                    None,
                ));
            }
            None => unreachable!("every step but the first is prepared by the one before"),
        };
        let input_bytes = data.len() as u64;
        if held && move_pages {
            prepared.hand_over_input(data);
        } else {
            prepared.set_input(data);
        }
        prepared.start_clock();
        if let Some(deadline) = deadline {
            prepared.cap_deadline(deadline);
        }
        if let Some(cancel) = &cancel {
            prepared.set_cancel(cancel.clone());
        }
        let instance = prepared.instance().to_string();
        let following = plan.steps.get(index + 1);
        let (result, prepared_next) = tokio::join!(biased; prepared.run(), async {
            match following {
                Some(step) => Some(pools.prepare(runtime, step).await),
                None => None,
            }
        });
        next = prepared_next;
        let mut report = StepReport {
            index,
            module: step.module.clone(),
            instance,
            duration_us: 0,
            input_bytes,
            output_bytes: 0,
            input_moved: 0,
            warm,
            status: "ok",
        };
        match result {
            Ok(outcome) if outcome.exit_code == 0 => {
                report.duration_us = outcome.duration.as_micros() as u64;
                report.output_bytes = outcome.output.len() as u64;
                report.input_moved = outcome.input_moved;
                steps.push(report);
                trails.push(Trail {
                    stderr: outcome.stderr,
                    logs: outcome.logs,
                });
                data = outcome.output;
                held = outcome.held;
            }
            Ok(outcome) => {
                give_back(pools, following, next);
                report.duration_us = outcome.duration.as_micros() as u64;
                report.status = "nonzero_exit";
                steps.push(report);
                trails.push(Trail {
                    stderr: outcome.stderr,
                    logs: outcome.logs,
                });
                let reason = format!("exited with code {}", outcome.exit_code);
                return Err(stop(
                    "nonzero_exit",
                    reason,
                    steps,
                    trails,
                    Some(outcome.exit_code),
                    None,
                ));
            }
            Err(failed) => {
                give_back(pools, following, next);
                let Failed {
                    failure,
                    stderr,
                    logs,
                    backtrace,
                    duration,
                    ..
                } = *failed;
                report.duration_us = duration.as_micros() as u64;
                report.status = failure.code();
                steps.push(report);
                trails.push(Trail { stderr, logs });
                let mut reason = failure.to_string();
                if failure.code() == "deadline_exceeded"
                    && deadline.is_some_and(|d| Instant::now() >= d)
                {
                    reason.push_str(&format!(
                        " (the chain's deadline of {} passed)",
                        crate::units::format_duration(plan.timeout.unwrap_or_default())
                    ));
                }
                return Err(stop(failure.code(), reason, steps, trails, None, backtrace));
            }
        }
    }
    Ok(Ran {
        output: data,
        steps,
        trails,
        duration: started.elapsed(),
    })
}

/// Returns an unused prepared instance to its pool.
fn give_back(
    pools: &WarmPools,
    step: Option<&Step>,
    prepared: Option<Result<(crate::runtime::Prepared, bool), Box<Failed>>>,
) {
    if let (Some(step), Some(Ok((prepared, _)))) = (step, prepared) {
        pools.give_back(step, prepared);
    }
}
