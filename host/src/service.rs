//! Services: long-running instances, supervised.
//!
//! A service runs a module with no deadline; its stdout and stderr go to its
//! log line by line as they are written. When it ends, its restart policy
//! decides: `always` restarts it, `on-failure` restarts it after a trap or a
//! non-zero exit, `never` leaves it stopped. Restarts back off exponentially
//! (100 ms doubling to 30 s, reset after a run of 10 s or more). A service
//! keeps its id across restarts: it is the instance id other parts of weft
//! (NIC attachments) refer to. Services are stored, and a restarted host
//! starts them again.

use crate::activity::{Finished, LogLine, Running, Status as RunStatus, Stream, now_ms};
use crate::network::GuestNet;
use crate::node::Node;
use crate::runtime::stdio::{LineSink, StreamKind};
use crate::runtime::{Cancel, Input, InstanceId, Invocation, Limits, Stdio};
use crate::store::ServiceRecord;
use serde::Serialize;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::watch;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run at least this long resets the backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(10);

/// When a service is started again after it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// Whenever it ends.
    Always,
    /// When it traps, hits a limit or exits non-zero.
    OnFailure,
    /// Never.
    Never,
}

impl Restart {
    /// Parses `always`, `on-failure` or `never`.
    pub fn parse(text: &str) -> Option<Restart> {
        match text {
            "always" => Some(Restart::Always),
            "on-failure" => Some(Restart::OnFailure),
            "never" => Some(Restart::Never),
            _ => None,
        }
    }

    /// The policy's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::Always => "always",
            Restart::OnFailure => "on-failure",
            Restart::Never => "never",
        }
    }
}

/// Where a service is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// An instance is running.
    Running,
    /// It ended and will be started again after a pause.
    Restarting,
    /// It ended cleanly and its policy does not restart it, or it was
    /// stopped.
    Stopped,
    /// It failed and its policy does not restart it (or its module is
    /// gone).
    Failed,
}

/// A service as reported by the API.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// Its id (an instance id, stable across restarts).
    pub id: String,
    /// Its module.
    pub module: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its restart policy.
    pub restart: Restart,
    /// Where it is.
    pub state: State,
    /// How many times it was restarted.
    pub restarts: u32,
    /// When the current (or last) run started.
    pub started_ms: Option<u64>,
    /// How the last run ended.
    pub last_exit: Option<String>,
    /// When the service was created.
    pub created_ms: u64,
}

/// A supervised service.
#[derive(Debug)]
pub struct Handle {
    status: Arc<Mutex<Status>>,
    cancel: Cancel,
    stop: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Handle {
    /// Its current status.
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops the service: no more restarts, and the running instance ends
    /// within one epoch tick. Waits for the supervisor to finish.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        self.cancel.cancel();
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

/// Starts supervising `record` on the current tokio runtime.
pub fn spawn(node: &Arc<Node>, record: ServiceRecord, restart: Restart) -> Arc<Handle> {
    let status = Arc::new(Mutex::new(Status {
        id: record.id.clone(),
        module: record.module.clone(),
        args: record.args.clone(),
        restart,
        state: State::Running,
        restarts: 0,
        started_ms: None,
        last_exit: None,
        created_ms: record.created_ms,
    }));
    let cancel = Cancel::new();
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(supervise(
        Arc::downgrade(node),
        record,
        restart,
        status.clone(),
        cancel.clone(),
        stopped,
    ));
    Arc::new(Handle {
        status,
        cancel,
        stop,
        task: Mutex::new(Some(task)),
    })
}

/// Sends a service's output lines to the node's activity log.
#[derive(Debug)]
struct ServiceLog {
    node: Weak<Node>,
    instance: String,
    module: String,
}

impl LineSink for ServiceLog {
    fn line(&self, stream: StreamKind, text: &str) {
        if let Some(node) = self.node.upgrade() {
            node.activity().log_line(LogLine {
                time_ms: now_ms(),
                instance: self.instance.clone(),
                module: self.module.clone(),
                stream: match stream {
                    StreamKind::Stdout => Stream::Stdout,
                    StreamKind::Stderr => Stream::Stderr,
                },
                level: "info",
                message: text.to_owned(),
            });
        }
    }

    fn log(&self, level: weft_abi::log::Level, message: &str) {
        if let Some(node) = self.node.upgrade() {
            node.activity().log_line(LogLine {
                time_ms: now_ms(),
                instance: self.instance.clone(),
                module: self.module.clone(),
                stream: Stream::Log,
                level: level.as_str(),
                message: message.to_owned(),
            });
        }
    }
}

async fn supervise(
    node: Weak<Node>,
    record: ServiceRecord,
    restart: Restart,
    status: Arc<Mutex<Status>>,
    cancel: Cancel,
    mut stopped: watch::Receiver<bool>,
) {
    let set = |f: &dyn Fn(&mut Status)| f(&mut status.lock().unwrap_or_else(|p| p.into_inner()));
    let instance = InstanceId::parse(&record.id).unwrap_or_default();
    let mut backoff = FIRST_BACKOFF;
    loop {
        if *stopped.borrow() {
            break;
        }
        let Some(node) = node.upgrade() else { break };
        let failed = match node.registry().get(&record.module) {
            Ok(Some(entry)) => {
                let started_ms = now_ms();
                set(&|s| {
                    s.state = State::Running;
                    s.started_ms = Some(started_ms);
                });
                node.activity().started(Running {
                    instance: record.id.clone(),
                    module: record.module.clone(),
                    started_ms,
                });
                let invocation = Invocation {
                    program: record.module.clone(),
                    args: record.args.clone(),
                    env: record
                        .env
                        .iter()
                        .cloned()
                        .chain([("WEFT_INSTANCE".to_owned(), record.id.clone())])
                        .collect(),
                    preopens: Vec::new(),
                    input: Input::Bytes(bytes::Bytes::new()),
                    stdio: Stdio::Lines(Arc::new(ServiceLog {
                        node: Arc::downgrade(&node),
                        instance: record.id.clone(),
                        module: record.module.clone(),
                    })),
                    limits: Limits {
                        timeout: None,
                        ..node.config().limits.clone()
                    },
                    cancel: Some(cancel.clone()),
                    net: Some(GuestNet::new(
                        node.network().clone(),
                        record.id.clone(),
                        Some(cancel.clone()),
                    )),
                };
                let run_started = Instant::now();
                let result = node
                    .registry()
                    .runtime()
                    .invoke_as(&entry.loaded, invocation, instance.clone())
                    .await;
                // Its sockets go with it; its records stay attached.
                node.network().instance_ended(&record.id);
                if run_started.elapsed() >= HEALTHY_RUN {
                    backoff = FIRST_BACKOFF;
                }
                let (failed, exit, finished_status, code, reason, exit_code) = match &result {
                    Ok(outcome) => (
                        outcome.exit_code != 0,
                        format!("exit {}", outcome.exit_code),
                        RunStatus::Ok,
                        None,
                        None,
                        Some(outcome.exit_code),
                    ),
                    Err(failed) => (
                        true,
                        failed.failure.to_string(),
                        RunStatus::Failed,
                        Some(failed.failure.code()),
                        Some(failed.failure.to_string()),
                        None,
                    ),
                };
                let duration = run_started.elapsed();
                let (logs, stderr) = match &result {
                    Ok(outcome) => (outcome.logs.as_slice(), outcome.stderr.as_ref()),
                    Err(failed) => (failed.logs.as_slice(), failed.stderr.as_ref()),
                };
                node.metrics()
                    .invocation(&record.module, code.unwrap_or("ok"), duration);
                node.activity().finished(
                    Finished {
                        instance: record.id.clone(),
                        module: record.module.clone(),
                        started_ms,
                        duration_us: duration.as_micros() as u64,
                        status: finished_status,
                        exit_code,
                        code,
                        reason,
                        input_bytes: 0,
                        output_bytes: 0,
                    },
                    logs,
                    stderr,
                );
                set(&|s| s.last_exit = Some(exit.clone()));
                failed
            }
            Ok(None) => {
                set(&|s| s.last_exit = Some(format!("module `{}` is not deployed", record.module)));
                true
            }
            Err(error) => {
                set(&|s| s.last_exit = Some(error.to_string()));
                true
            }
        };
        drop(node);
        if *stopped.borrow() {
            break;
        }
        let again = match restart {
            Restart::Always => true,
            Restart::OnFailure => failed,
            Restart::Never => false,
        };
        if !again {
            set(&|s| {
                s.state = if failed {
                    State::Failed
                } else {
                    State::Stopped
                }
            });
            return;
        }
        set(&|s| {
            s.state = State::Restarting;
            s.restarts += 1;
        });
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stopped.changed() => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    set(&|s| s.state = State::Stopped);
}
