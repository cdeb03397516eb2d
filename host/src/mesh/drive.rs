//! Running a job: every rank (and a controller) as an instance on a
//! thread of its own (see [`placement`]), the lifetime rules applied as
//! they end, and the teardown.

use super::Member;
use super::job::{OnFailure, Output, Parent, Shared, Spec, Who};
use super::join::Launch;
use super::placement;
use super::status::{Ending, RankState, Report};
use crate::runtime::stdio::{LineSink, StreamKind};
use crate::runtime::{
    Failed, Failure, Input, InstanceId, Invocation, LoadedModule, Outcome, Runtime, Stdio,
};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::watch;
use weft_abi::log::Level;
use weft_abi::mesh::PARENT;

/// Sends a rank's output lines to the job's [`Output`].
#[derive(Debug)]
struct RankLines {
    rank: i32,
    instance: String,
    module: String,
    output: Arc<dyn Output>,
}

impl RankLines {
    fn who(&self) -> Who<'_> {
        Who {
            rank: self.rank,
            instance: &self.instance,
            module: &self.module,
        }
    }
}

impl LineSink for RankLines {
    fn line(&self, stream: StreamKind, text: &str) {
        self.output.line(&self.who(), stream, text);
    }

    fn log(&self, level: Level, message: &str) {
        self.output.log(&self.who(), level, message);
    }
}

/// Output nobody wants.
#[derive(Debug)]
struct Discard;

impl Output for Discard {
    fn line(&self, _: &Who<'_>, _: StreamKind, _: &str) {}
}

type Ran = (i32, Result<Outcome, Box<Failed>>);

/// What the driver needs to start one instance.
struct Starter<'a> {
    shared: &'a Arc<Shared>,
    runtime: &'a Runtime,
    spec: &'a Spec,
    output: &'a Arc<dyn Output>,
}

/// Each instance's id and module name, by rank.
type Names = std::collections::HashMap<i32, (String, String)>;

impl Starter<'_> {
    /// Starts a placed rank, on a thread of its own if `own_thread`.
    fn launch(
        &self,
        tasks: &mut tokio::task::JoinSet<Ran>,
        names: &mut Names,
        launch: Launch,
        own_thread: bool,
    ) {
        let slot = self
            .shared
            .rank(launch.rank as usize)
            .expect("placed before launched");
        let instance = slot.instance.clone();
        names.insert(
            launch.rank as i32,
            (instance.to_string(), launch.name.clone()),
        );
        let rank = launch.rank as i32;
        self.start(
            tasks,
            rank,
            &launch.name,
            &launch.module,
            instance,
            launch.args,
            own_thread,
        );
    }

    /// Starts rank `rank` (or the controller, as [`PARENT`]) in `tasks`:
    /// its instance runs on a thread of its own if `own_thread`, else as a
    /// task on the runtime.
    #[allow(clippy::too_many_arguments)]
    fn start(
        &self,
        tasks: &mut tokio::task::JoinSet<Ran>,
        rank: i32,
        name: &str,
        module: &LoadedModule,
        instance: InstanceId,
        args: Option<Vec<String>>,
        own_thread: bool,
    ) {
        let shared = self.shared;
        let mut env = self.spec.env.clone();
        env.push(("WEFT_MESH".into(), shared.id.to_string()));
        env.push((
            "WEFT_RANK".into(),
            if rank == PARENT {
                "parent".into()
            } else {
                rank.to_string()
            },
        ));
        let net = shared.net.lock().unwrap_or_else(|p| p.into_inner());
        let invocation = Invocation {
            program: name.to_owned(),
            args: args.unwrap_or_else(|| self.spec.args.clone()),
            env,
            preopens: Vec::new(),
            input: Input::Bytes(Bytes::new()),
            stdio: Stdio::Lines(Arc::new(RankLines {
                rank,
                instance: instance.to_string(),
                module: name.to_owned(),
                output: self.output.clone(),
            })),
            limits: self.spec.limits.clone(),
            cancel: Some(shared.cancel.clone()),
            net: match (&*net, rank) {
                (Some(net), r) if r >= 0 => {
                    Some(net.guest_net(instance.as_str(), shared.cancel.clone()))
                }
                _ => None,
            },
        };
        drop(net);
        if rank >= 0 {
            let slot = shared.rank(rank as usize).expect("placed before started");
            slot.set_state(RankState::Running);
            if rank as u32 >= shared.initial {
                self.output.joined(&Who {
                    rank,
                    instance: instance.as_str(),
                    module: name,
                });
            }
        }
        let member = Member::new(shared.clone(), rank);
        let (runtime, module) = (self.runtime.clone(), module.clone());
        let id = instance.clone();
        let run = async move {
            runtime
                .invoke_member(&module, invocation, instance, member)
                .await
        };
        if !own_thread {
            tasks.spawn(async move { (rank, placement::on_runtime(run).await) });
            return;
        }
        // Its mailbox's senders need not fence: it polls before it parks.
        shared.mailbox(rank).lighten();
        let name = if rank == PARENT {
            "weft-parent".to_owned()
        } else {
            format!("weft-rank-{rank}")
        };
        match placement::on_own_thread(name, Handle::current(), run) {
            Ok(ran) => {
                tasks.spawn(async move { (rank, ran.await) });
            }
            Err(error) => {
                // No thread to be had: the rank fails, as it would
                // without memory for its instance.
                tracing::error!(mesh = %shared.id, rank, "no thread for the rank: {error}");
                let failed = Failed {
                    instance: id,
                    failure: Failure::Host {
                        message: format!("no thread for the rank: {error}"),
                    },
                    stderr: Bytes::new(),
                    logs: Vec::new(),
                    backtrace: None,
                    duration: Duration::ZERO,
                };
                tasks.spawn(async move { (rank, Err(Box::new(failed))) });
            }
        }
    }
}

/// Runs the job's instances to their end, applies the lifetime rules, and
/// tears the mesh down. `launches` are the first ranks; `joins` brings the
/// ranks added while it runs.
pub(super) async fn drive(
    shared: Arc<Shared>,
    runtime: Runtime,
    spec: Spec,
    parent: Parent,
    launches: Vec<Launch>,
    mut joins: tokio::sync::mpsc::UnboundedReceiver<Launch>,
    report: watch::Sender<Option<Arc<Report>>>,
) {
    let output: Arc<dyn Output> = spec.output.clone().unwrap_or_else(|| Arc::new(Discard));
    let mut tasks = tokio::task::JoinSet::new();
    let starter = Starter {
        shared: &shared,
        runtime: &runtime,
        spec: &spec,
        output: &output,
    };
    let mut names = std::collections::HashMap::new();
    // The job's ranks get threads of their own if they all fit the cores
    // (a controller counts as one), else all run as tasks.
    let controller = matches!(parent, Parent::Controller { .. });
    let own_threads = placement::fits(launches.len() + usize::from(controller));
    for launch in launches {
        starter.launch(&mut tasks, &mut names, launch, own_threads);
    }
    if let Parent::Controller { name, module } = &parent {
        let instance = InstanceId::new();
        names.insert(PARENT, (instance.to_string(), name.clone()));
        starter.start(
            &mut tasks,
            PARENT,
            name,
            module,
            instance,
            None,
            own_threads,
        );
    }

    let mut controller_exit = None;
    let mut first_failure: Option<(i32, String, String, bool)> = None;
    let mut first_nonzero = None;
    let mut max_stop_latency = None::<u64>;
    loop {
        if tasks.is_empty() {
            // The last instance ended: unless a join is on its way, no
            // more can come (joins take this lock), and the job is over.
            let mut open = shared.joins.lock().unwrap_or_else(|p| p.into_inner());
            match joins.try_recv() {
                Ok(launch) => {
                    drop(open);
                    starter.launch(&mut tasks, &mut names, launch, placement::fits(1));
                }
                Err(_) => {
                    *open = None;
                    break;
                }
            }
        }
        let joined = tokio::select! {
            Some(launch) = joins.recv() => {
                starter.launch(&mut tasks, &mut names, launch, placement::fits(1));
                continue;
            }
            Some(joined) = tasks.join_next() => joined,
        };
        let Ok((rank, result)): Result<Ran, _> = joined else {
            tracing::error!(mesh = %shared.id, "a rank's task panicked");
            shared.stop(Ending::Stopped);
            continue;
        };
        let state = match &result {
            Ok(outcome) => RankState::Exited {
                exit_code: outcome.exit_code,
            },
            Err(failed) if failed.failure == Failure::Killed && shared.cancel.is_cancelled() => {
                let after = shared
                    .stopping()
                    .map(|(at, _)| at.elapsed())
                    .unwrap_or(Duration::ZERO);
                let us = after.as_micros() as u64;
                max_stop_latency = Some(max_stop_latency.unwrap_or(0).max(us));
                RankState::Stopped {
                    stop_latency_us: us,
                }
            }
            Err(failed) => RankState::Failed {
                code: failed.failure.code().to_owned(),
                reason: failed.failure.to_string(),
            },
        };
        if rank >= 0
            && let Some(net) = &*shared.net.lock().unwrap_or_else(|p| p.into_inner())
        {
            net.instance_ended(
                shared
                    .rank(rank as usize)
                    .expect("started")
                    .instance
                    .as_str(),
            );
        }
        if let Some((instance, module)) = names.get(&rank) {
            let who = Who {
                rank,
                instance,
                module,
            };
            output.ended(&who, &state);
        }
        if rank == PARENT {
            shared.parent_box.close(true);
            match &state {
                RankState::Exited { exit_code } => {
                    controller_exit = Some(*exit_code);
                    shared.stop(Ending::ControllerExited {
                        exit_code: *exit_code,
                    });
                }
                RankState::Failed { code, reason } => shared.stop(Ending::ControllerFailed {
                    code: code.clone(),
                    reason: reason.clone(),
                }),
                _ => {}
            }
            continue;
        }
        let slot = shared.rank(rank as usize).expect("started");
        slot.set_state(state.clone());
        slot.mailbox.close(true);
        let failed = !matches!(state, RankState::Exited { .. });
        let epoch = shared.collectives.depart(rank as u32, failed);
        shared.announce(rank as u32, false, epoch);
        shared.wake_receivers();
        match &state {
            RankState::Failed { code, reason } => {
                if first_failure.is_none() {
                    first_failure = Some((
                        rank,
                        code.clone(),
                        reason.clone(),
                        code == "deadline_exceeded",
                    ));
                }
                if spec.on_failure == OnFailure::Abort {
                    shared.stop(Ending::RankFailed {
                        rank: rank as u32,
                        code: code.clone(),
                        reason: reason.clone(),
                    });
                }
            }
            RankState::Exited { exit_code } if *exit_code != 0 => {
                first_nonzero.get_or_insert(*exit_code);
            }
            _ => {}
        }
    }
    // Every instance has ended. Why the job ended is settled now: a parent
    // that lets go after this point changes nothing.
    let ending = shared.stopping().map(|(_, ending)| ending);
    // The parent reads what is left, then sees the end.
    shared.parent_box.close(false);
    shared.remove_net();
    let (status, exit_code) = match &ending {
        Some(Ending::ControllerExited { exit_code }) => {
            (if *exit_code == 0 { "ok" } else { "failed" }, *exit_code)
        }
        Some(Ending::ControllerFailed { code, .. }) | Some(Ending::RankFailed { code, .. }) => (
            "failed",
            if code == "deadline_exceeded" {
                124
            } else {
                134
            },
        ),
        Some(Ending::ParentDisconnected | Ending::Stopped) => ("stopped", 130),
        None => match (&first_failure, first_nonzero) {
            (Some((_, _, _, deadline)), _) => ("failed", if *deadline { 124 } else { 134 }),
            (None, Some(code)) => ("failed", code),
            (None, None) => ("ok", controller_exit.unwrap_or(0)),
        },
    };
    let reason = ending.as_ref().map(ToString::to_string).or_else(|| {
        first_failure
            .as_ref()
            .map(|(rank, _, reason, _)| format!("rank {rank} failed: {reason}"))
    });
    let _ = report.send(Some(Arc::new(Report {
        status,
        exit_code,
        ending,
        reason,
        max_stop_latency_us: max_stop_latency,
    })));
}
