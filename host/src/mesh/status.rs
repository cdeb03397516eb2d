//! How a mesh job and its ranks are reported: rank states, counters, why a
//! job ended, and the status the API serves.

use super::job::OnFailure;
use serde::Serialize;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where a rank is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum RankState {
    /// Not started yet.
    Starting,
    /// Running.
    Running,
    /// Returned from `_start` or called `proc_exit`.
    Exited {
        /// The exit code.
        exit_code: i32,
    },
    /// Trapped or hit a limit.
    Failed {
        /// The failure's code (`unreachable`, `deadline_exceeded`, …).
        code: String,
        /// The failure, in words.
        reason: String,
    },
    /// Stopped because the job ended.
    Stopped {
        /// Time from the stop to the instance's end.
        stop_latency_us: u64,
    },
}

/// Message and byte counters, written by their rank alone, on cache lines
/// of their own: a peer reading the rank's mailbox beside them would
/// otherwise pull the line away at every message.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Counters {
    pub(super) sent_messages: AtomicU64,
    pub(super) sent_bytes: AtomicU64,
    pub(super) received_messages: AtomicU64,
    pub(super) received_bytes: AtomicU64,
}

/// Counters as reported.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Traffic {
    /// Messages sent.
    pub sent_messages: u64,
    /// Bytes sent.
    pub sent_bytes: u64,
    /// Messages received.
    pub received_messages: u64,
    /// Bytes received.
    pub received_bytes: u64,
}

impl Counters {
    pub(super) fn snapshot(&self) -> Traffic {
        Traffic {
            sent_messages: self.sent_messages.load(Ordering::Relaxed),
            sent_bytes: self.sent_bytes.load(Ordering::Relaxed),
            received_messages: self.received_messages.load(Ordering::Relaxed),
            received_bytes: self.received_bytes.load(Ordering::Relaxed),
        }
    }
}

/// Why a job stopped before its ranks ended by themselves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum Ending {
    /// The external parent disconnected.
    ParentDisconnected,
    /// Stopped through the API (or by the host shutting down).
    Stopped,
    /// The controller module exited.
    ControllerExited { exit_code: i32 },
    /// The controller module failed.
    ControllerFailed { code: String, reason: String },
    /// A rank failed under the `abort` policy.
    RankFailed {
        rank: u32,
        code: String,
        reason: String,
    },
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ending::ParentDisconnected => f.write_str("the parent disconnected"),
            Ending::Stopped => f.write_str("the mesh was stopped"),
            Ending::ControllerExited { exit_code } => {
                write!(f, "the controller exited with {exit_code}")
            }
            Ending::ControllerFailed { reason, .. } => write!(f, "the controller failed: {reason}"),
            Ending::RankFailed { rank, reason, .. } => write!(f, "rank {rank} failed: {reason}"),
        }
    }
}

/// How a job ended.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `ok`, `failed` or `stopped`.
    pub status: &'static str,
    /// The exit code `weft mesh run` ends with: the controller's, else the
    /// first non-zero rank's; 134 for a failure (124 for a deadline), 130
    /// when stopped.
    pub exit_code: i32,
    /// Why it stopped early, if it did.
    pub ending: Option<Ending>,
    /// The same in words.
    pub reason: Option<String>,
    /// The slowest rank's time from the stop to its end.
    pub max_stop_latency_us: Option<u64>,
}

/// A job as the API reports it.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// The mesh id.
    pub id: String,
    /// `running` or `ended`.
    pub state: &'static str,
    /// `none`, `external` or `controller:NAME`.
    pub parent: String,
    /// What a failing rank does.
    pub on_failure: OnFailure,
    /// Number of ranks started so far, live or ended (ranks join while
    /// the job runs, with the next numbers).
    pub size: u32,
    /// Number of ranks it started with.
    pub initial_size: u32,
    /// Ranks live now.
    pub live: u32,
    /// The membership epoch: one more for every rank that joined or left.
    pub epoch: u64,
    /// When it started.
    pub created_ms: u64,
    /// The mesh subnet's id and CIDR (removed with the mesh).
    pub subnet: Option<SubnetInfo>,
    /// Every rank.
    pub ranks: Vec<RankStatus>,
    /// The parent's counters.
    pub parent_traffic: Traffic,
    /// Messages queued for the parent now.
    pub parent_queued: usize,
    /// `traffic[i][j]`: bytes rank `i` sent to rank `j`; the last row and
    /// column are the parent. Empty in listings and kept statuses of
    /// meshes past [`Status::TRAFFIC_KEPT`] ranks (see [`Status::brief`]).
    pub traffic: Vec<Vec<u64>>,
    /// How it ended, once it has.
    pub report: Option<Report>,
}

impl Status {
    /// Meshes of up to this many ranks keep their rank-by-rank matrix in
    /// listings and once ended. Past it the matrix grows with the square of
    /// the ranks (8 MB at 1,024), which a listing of every mesh or the
    /// statuses kept of ended ones would repeat; each rank's own counters
    /// stay.
    pub const TRAFFIC_KEPT: u32 = 64;

    /// This status as listed and kept: without the traffic matrix past
    /// [`Status::TRAFFIC_KEPT`] ranks.
    pub fn brief(mut self) -> Status {
        if self.size > Status::TRAFFIC_KEPT {
            self.traffic = Vec::new();
        }
        self
    }
}

/// The mesh subnet.
#[derive(Clone, Debug, Serialize)]
pub struct SubnetInfo {
    /// Its id.
    pub id: String,
    /// Its CIDR.
    pub cidr: String,
}

/// One rank as the API reports it.
#[derive(Clone, Debug, Serialize)]
pub struct RankStatus {
    /// Its rank.
    pub rank: u32,
    /// Its module.
    pub module: String,
    /// Its instance.
    pub instance: String,
    /// Where it is.
    #[serde(flatten)]
    pub state: RankState,
    /// When it was started (ms since the Unix epoch).
    pub started_ms: u64,
    /// Its address on the mesh subnet.
    pub addr: Option<String>,
    /// Its counters.
    #[serde(flatten)]
    pub traffic: Traffic,
    /// Messages waiting in its mailbox.
    pub queued_messages: usize,
    /// Bytes waiting in its mailbox.
    pub queued_bytes: usize,
    /// The most messages its mailbox held at once.
    pub mailbox_high_water: u64,
    /// The mailbox's bound, in messages.
    pub mailbox_bound: usize,
}
