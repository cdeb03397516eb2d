//! What happened on this host: running and recent instances, guest log lines,
//! and a live feed of events for the API, the CLI and the dashboard.
//!
//! Everything here is bounded: the recent list and the log keep the newest
//! entries and drop the oldest; a subscriber that falls behind the event feed
//! misses events (and is told so) rather than holding memory.

use crate::abi::log::LogLine as GuestLine;
use crate::store::ModuleRecord;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;

/// Recent instances kept.
pub const RECENT: usize = 1000;
/// Log lines kept.
pub const LOG_LINES: usize = 10_000;
/// Events a slow subscriber may lag behind before it misses some.
const FEED: usize = 4096;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    ms(SystemTime::now())
}

fn ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// An instance that is running now.
#[derive(Clone, Debug, Serialize)]
pub struct Running {
    /// Its id.
    pub instance: String,
    /// The module it runs.
    pub module: String,
    /// When it started.
    pub started_ms: u64,
}

/// How an instance ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// It exited (with any exit code).
    Ok,
    /// It failed: a trap or a limit.
    Failed,
}

/// A finished instance.
#[derive(Clone, Debug, Serialize)]
pub struct Finished {
    /// Its id.
    pub instance: String,
    /// The module it ran.
    pub module: String,
    /// When it started.
    pub started_ms: u64,
    /// How long it ran, in microseconds.
    pub duration_us: u64,
    /// Whether it exited or failed.
    pub status: Status,
    /// Its exit code, when it exited.
    pub exit_code: Option<i32>,
    /// The failure's stable code, when it failed.
    pub code: Option<&'static str>,
    /// The failure, in words, when it failed.
    pub reason: Option<String>,
    /// Bytes of input.
    pub input_bytes: u64,
    /// Bytes of output.
    pub output_bytes: u64,
}

/// Where a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// The guest's stdout (services only: an invocation's stdout is its
    /// output).
    Stdout,
    /// The guest's stderr.
    Stderr,
    /// The SDK's `weft:log`.
    Log,
}

/// One line of a guest's log.
#[derive(Clone, Debug, Serialize)]
pub struct LogLine {
    /// When it was written (for stderr: when the instance ended).
    pub time_ms: u64,
    /// The instance that wrote it.
    pub instance: String,
    /// Its module.
    pub module: String,
    /// stderr or `weft:log`.
    pub stream: Stream,
    /// Its level (`info` for stderr).
    pub level: &'static str,
    /// The text.
    pub message: String,
}

/// Something that happened, as sent on the event feed.
#[derive(Clone, Debug)]
pub enum Event {
    /// A module was uploaded or replaced.
    Deployed(ModuleRecord),
    /// A module was deleted.
    Deleted { name: String },
    /// An instance started.
    Started(Running),
    /// An instance finished or failed.
    Finished(Finished),
    /// A guest wrote a log line.
    Log(LogLine),
    /// `weft dev` rebuilt (or failed to rebuild) a project.
    Built {
        project: String,
        ok: bool,
        message: String,
    },
}

impl Event {
    /// The event's name on the feed.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Deployed(_) => "deployed",
            Event::Deleted { .. } => "deleted",
            Event::Started(_) => "started",
            Event::Finished(_) => "finished",
            Event::Log(_) => "log",
            Event::Built { .. } => "built",
        }
    }

    /// The event's data, as JSON.
    pub fn to_json(&self) -> String {
        let value = match self {
            Event::Deployed(record) => serde_json::to_value(record),
            Event::Deleted { name } => Ok(serde_json::json!({ "name": name })),
            Event::Started(running) => serde_json::to_value(running),
            Event::Finished(finished) => serde_json::to_value(finished),
            Event::Log(line) => serde_json::to_value(line),
            Event::Built {
                project,
                ok,
                message,
            } => Ok(serde_json::json!({ "project": project, "ok": ok, "message": message })),
        };
        value.map(|v| v.to_string()).unwrap_or_else(|_| "{}".into())
    }
}

/// The activity of one host.
#[derive(Debug)]
pub struct Activity {
    inner: Mutex<Inner>,
    feed: broadcast::Sender<Event>,
}

#[derive(Debug, Default)]
struct Inner {
    running: HashMap<String, Running>,
    recent: VecDeque<Finished>,
    logs: VecDeque<LogLine>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity::new()
    }
}

impl Activity {
    /// No activity yet.
    pub fn new() -> Self {
        Activity {
            inner: Mutex::new(Inner::default()),
            feed: broadcast::channel(FEED).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes to the event feed from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.feed.subscribe()
    }

    /// Publishes an event (nobody listening is fine).
    pub fn publish(&self, event: Event) {
        let _ = self.feed.send(event);
    }

    /// Records that an instance started.
    pub fn started(&self, running: Running) {
        self.lock()
            .running
            .insert(running.instance.clone(), running.clone());
        self.publish(Event::Started(running));
    }

    /// Records that an instance ended, with what it logged and wrote to
    /// stderr.
    pub fn finished(&self, finished: Finished, guest_lines: &[GuestLine], stderr: &[u8]) {
        let mut lines = Vec::new();
        for line in guest_lines {
            lines.push(LogLine {
                time_ms: ms(line.time),
                instance: finished.instance.clone(),
                module: finished.module.clone(),
                stream: Stream::Log,
                level: line.level.as_str(),
                message: line.message.clone(),
            });
        }
        let ended = now_ms();
        for text in String::from_utf8_lossy(stderr).lines() {
            lines.push(LogLine {
                time_ms: ended,
                instance: finished.instance.clone(),
                module: finished.module.clone(),
                stream: Stream::Stderr,
                level: "info",
                message: text.to_owned(),
            });
        }
        {
            let mut inner = self.lock();
            inner.running.remove(&finished.instance);
            if inner.recent.len() == RECENT {
                inner.recent.pop_back();
            }
            inner.recent.push_front(finished.clone());
            for line in &lines {
                if inner.logs.len() == LOG_LINES {
                    inner.logs.pop_front();
                }
                inner.logs.push_back(line.clone());
            }
        }
        for line in lines {
            self.publish(Event::Log(line));
        }
        self.publish(Event::Finished(finished));
    }

    /// Records one line a running instance wrote, and publishes it.
    pub fn log_line(&self, line: LogLine) {
        {
            let mut inner = self.lock();
            if inner.logs.len() == LOG_LINES {
                inner.logs.pop_front();
            }
            inner.logs.push_back(line.clone());
        }
        self.publish(Event::Log(line));
    }

    /// Running instances, oldest first.
    pub fn running(&self) -> Vec<Running> {
        let mut running: Vec<Running> = self.lock().running.values().cloned().collect();
        running.sort_by_key(|r| r.started_ms);
        running
    }

    /// Recent finished instances, newest first, at most `limit`.
    pub fn recent(&self, limit: usize) -> Vec<Finished> {
        self.lock().recent.iter().take(limit).cloned().collect()
    }

    /// The newest `limit` log lines, optionally of one module and one
    /// instance, oldest first.
    pub fn logs(&self, module: Option<&str>, instance: Option<&str>, limit: usize) -> Vec<LogLine> {
        let inner = self.lock();
        let mut lines: Vec<LogLine> = inner
            .logs
            .iter()
            .rev()
            .filter(|line| module.is_none_or(|m| line.module == m))
            .filter(|line| instance.is_none_or(|i| line.instance == i))
            .take(limit)
            .cloned()
            .collect();
        lines.reverse();
        lines
    }
}
