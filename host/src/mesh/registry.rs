//! A host's meshes: the running jobs, a short list of ended ones (their
//! status only: no instance, mailbox or network is kept), and the mesh
//! metrics.

use super::job::{Ending, Job, ParentLink, RankState, Status};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Ended meshes remembered for the API.
const RECENT: usize = 64;

/// What an external parent hears besides messages.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ParentEvent {
    /// A line a rank (or the controller, `-2`) wrote.
    Line {
        rank: i32,
        stream: &'static str,
        text: String,
    },
    /// A rank ended.
    RankEnded { rank: i32, state: RankState },
    /// A rank joined the running job.
    RankJoined {
        rank: i32,
        module: String,
        instance: String,
    },
}

/// Events kept for a parent that has not connected yet, and queued for
/// one that reads slowly; past that they are dropped (and counted).
pub const PARENT_EVENTS: usize = 4096;

/// Where a job's [`ParentEvent`]s go: kept until its parent connects, then
/// passed on.
#[derive(Debug, Default)]
pub struct Forward {
    to: Mutex<(
        Vec<ParentEvent>,
        Option<tokio::sync::mpsc::Sender<ParentEvent>>,
    )>,
    dropped: AtomicU64,
}

impl Forward {
    /// Passes `event` on (or keeps it), without waiting.
    pub fn send(&self, event: ParentEvent) {
        let mut to = self.to.lock().unwrap_or_else(|p| p.into_inner());
        let (early, sender) = &mut *to;
        let kept = match sender {
            Some(sender) => sender.try_send(event).is_ok(),
            None if early.len() < PARENT_EVENTS => {
                early.push(event);
                true
            }
            None => false,
        };
        if !kept {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Starts passing events to the returned receiver, those kept so far
    /// first.
    pub fn connect(&self) -> tokio::sync::mpsc::Receiver<ParentEvent> {
        let (tx, rx) = tokio::sync::mpsc::channel(PARENT_EVENTS);
        let mut to = self.to.lock().unwrap_or_else(|p| p.into_inner());
        for event in to.0.drain(..) {
            let _ = tx.try_send(event);
        }
        to.1 = Some(tx);
        rx
    }

    /// Events dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The meshes of one host.
#[derive(Debug, Default)]
pub struct Meshes {
    running: Mutex<BTreeMap<String, Arc<Job>>>,
    /// External parents' links, until their parent connects.
    parents: Mutex<HashMap<String, (ParentLink, Arc<Forward>)>>,
    recent: Mutex<VecDeque<Status>>,
    started: AtomicU64,
    /// Ended jobs by status (`ok`, `failed`, `stopped`).
    ended: Mutex<BTreeMap<&'static str, u64>>,
    /// Messages and bytes of ended jobs.
    messages: AtomicU64,
    bytes: AtomicU64,
}

impl Meshes {
    /// Keeps `job` until it ends (needs a tokio runtime).
    pub fn add(self: &Arc<Self>, job: Arc<Job>) {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.id().to_string(), job.clone());
        let meshes = Arc::downgrade(self);
        tokio::spawn(async move {
            let report = job.wait().await;
            if let Some(meshes) = meshes.upgrade() {
                let (messages, bytes) = job.totals();
                meshes.messages.fetch_add(messages, Ordering::Relaxed);
                meshes.bytes.fetch_add(bytes, Ordering::Relaxed);
                *meshes
                    .ended
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(report.status)
                    .or_default() += 1;
                let status = job.status().brief();
                let mut recent = meshes.recent.lock().unwrap_or_else(|p| p.into_inner());
                recent.push_front(status);
                recent.truncate(RECENT);
                drop(recent);
                meshes
                    .parents
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(job.id().as_str());
                meshes
                    .running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(job.id().as_str());
            }
        });
    }

    /// Keeps an external parent's link until the parent connects
    /// ([`Meshes::take_parent`]); after `timeout` without it, the link is
    /// dropped, which stops the job.
    pub fn hold_parent(
        self: &Arc<Self>,
        id: &str,
        link: ParentLink,
        forward: Arc<Forward>,
        timeout: std::time::Duration,
    ) {
        self.parents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned(), (link, forward));
        let (meshes, id) = (Arc::downgrade(self), id.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(meshes) = meshes.upgrade() {
                let unclaimed = meshes
                    .parents
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                if unclaimed.is_some() {
                    tracing::info!(mesh = %id, "no parent connected in time");
                }
            }
        });
    }

    /// Whether job `id` waits for its external parent to connect.
    pub fn parent_waiting(&self, id: &str) -> bool {
        self.parents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(id)
    }

    /// The link of a job whose external parent has not connected yet.
    pub fn take_parent(&self, id: &str) -> Option<(ParentLink, Arc<Forward>)> {
        self.parents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
    }

    /// Every running job, at this moment.
    fn running_jobs(&self) -> Vec<Arc<Job>> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// A running job.
    pub fn get(&self, id: &str) -> Option<Arc<Job>> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// A job's status, running or recently ended.
    pub fn status(&self, id: &str) -> Option<Status> {
        if let Some(job) = self.get(id) {
            return Some(job.status());
        }
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|s| s.id == id)
            .cloned()
    }

    /// Every running job, then the recently ended ones, newest first; each
    /// [`Status::brief`].
    pub fn list(&self) -> Vec<Status> {
        let running = self.running_jobs();
        let mut all: Vec<Status> = running.iter().map(|job| job.status().brief()).collect();
        all.sort_by_key(|status| std::cmp::Reverse(status.created_ms));
        let listed = all.len();
        // A job that just ended can be in both lists for a moment.
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        for status in recent.iter() {
            if !all[..listed].iter().any(|s| s.id == status.id) {
                all.push(status.clone());
            }
        }
        all
    }

    /// Stops a running job; returns it, to wait on.
    pub fn stop(&self, id: &str) -> Option<Arc<Job>> {
        let job = self.get(id)?;
        job.stop(Ending::Stopped);
        Some(job)
    }

    /// Stops every running job and waits for them (host shutdown).
    pub async fn stop_all(&self) {
        let jobs = self.running_jobs();
        for job in &jobs {
            job.stop(Ending::Stopped);
        }
        for job in jobs {
            job.wait().await;
        }
    }

    /// The mesh metrics, in the Prometheus text format.
    pub fn render_metrics(&self) -> String {
        let running = self.running_jobs();
        let (mut messages, mut bytes) = (
            self.messages.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        );
        let (mut ranks, mut queued) = (0, 0);
        for job in &running {
            let (m, b) = job.totals();
            messages += m;
            bytes += b;
            ranks += job.running_ranks();
            queued += job.queued();
        }
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        };
        metric(
            "weft_meshes_running",
            "gauge",
            "Mesh jobs running now.",
            running.iter().filter(|job| job.ended().is_none()).count() as u64,
        );
        metric(
            "weft_mesh_ranks_running",
            "gauge",
            "Mesh ranks running now.",
            ranks as u64,
        );
        metric(
            "weft_mesh_queued_messages",
            "gauge",
            "Messages waiting in mesh mailboxes now.",
            queued as u64,
        );
        metric(
            "weft_meshes_started_total",
            "counter",
            "Mesh jobs started.",
            self.started.load(Ordering::Relaxed),
        );
        metric(
            "weft_mesh_messages_total",
            "counter",
            "Messages sent between mesh ranks and parents.",
            messages,
        );
        metric(
            "weft_mesh_bytes_total",
            "counter",
            "Bytes sent between mesh ranks and parents.",
            bytes,
        );
        let _ = writeln!(
            out,
            "# HELP weft_meshes_ended_total Mesh jobs ended, by status (ok, failed, stopped)."
        );
        let _ = writeln!(out, "# TYPE weft_meshes_ended_total counter");
        for (status, count) in self.ended.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(
                out,
                "weft_meshes_ended_total{{status=\"{status}\"}} {count}"
            );
        }
        out
    }
}
