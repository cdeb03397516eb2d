//! Mesh jobs: N ranks (instances of one or more modules) wired into an
//! ephemeral in-memory mesh, with a parent whose lifetime bounds the job.
//!
//! - [`mailbox`]: bounded per-rank queues of `Bytes` messages, matched by
//!   source and tag; a full mailbox makes the sender wait.
//! - `messages`: a job's sends and receives between its members, the
//!   routes an instance keeps to its peers, and the traffic counters.
//! - [`pool`]: recycled buffers for large messages.
//! - [`placement`]: each rank on an OS thread of its own, and how a
//!   waiting rank polls (busy, yielding, or not at all) before it parks.
//! - [`collective`]: barrier, broadcast, reduce/allreduce, gather and
//!   scatter, computed natively by the host in rank order.
//! - [`job`]: starting the ranks, the parent (a controller module, an
//!   external client, the CLI, or none), and the teardown: when the parent
//!   ends or disconnects, or a rank fails under the `abort` policy, every
//!   rank is stopped (within one epoch tick, or at once when it waits in a
//!   host call), its mailbox freed, and the mesh's subnet removed.
//!   The driver (`drive`) runs the instances and applies these rules.
//! - [`status`]: rank states, counters and reports, as the API shows them.
//! - [`subnet`]: the mesh's ephemeral subnet, one NIC per rank.
//! - `join`: ranks joining a running job ([`Job::add_ranks`]), the member
//!   list and the membership events.
//! - `traffic`: per-sender message and byte counters, by destination.
//! - [`registry`]: a host's running meshes, recently ended ones, and their
//!   metrics.
//!
//! ```no_run
//! # async fn demo(runtime: weft::runtime::Runtime, module: weft::runtime::LoadedModule) {
//! use weft::mesh::job::{self, Parent, Spec};
//! let spec = Spec::new(vec![job::Group { name: "pi".into(), module, ranks: 8 }]);
//! let (job, parent) = job::start(&runtime, spec, Parent::External).unwrap();
//! let parent = parent.unwrap();
//! while let Ok(message) = parent.recv().await {
//!     println!("rank {} says {:?}", message.src, message.data);
//! }
//! println!("{:?}", job.wait().await.exit_code);
//! # }
//! ```

pub mod collective;
mod drive;
pub mod job;
mod join;
pub(crate) mod lane;
pub mod mailbox;
mod messages;
pub mod placement;
pub mod pool;
pub mod registry;
pub mod status;
pub mod subnet;
mod traffic;

pub use job::{Job, ParentLink};
pub use mailbox::{Mailbox, Message};
pub use registry::Meshes;

use std::fmt;
use std::sync::Arc;
use weft_abi::errno;

/// Why a mesh operation did not complete.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MeshError {
    /// A non-blocking call could not complete now.
    #[error("the call would block")]
    WouldBlock,
    /// The call's timeout passed.
    #[error("timed out")]
    TimedOut,
    /// The peer has ended (or the job has no parent).
    #[error("the peer has ended")]
    PeerGone,
    /// The message is over the job's cap.
    #[error("a message of {len} bytes is over this mesh's cap of {cap} bytes")]
    TooLarge { len: usize, cap: usize },
    /// The ranks' collective calls disagree.
    #[error("the ranks entered different collectives")]
    Mismatch,
    /// An argument is out of range.
    #[error("{0}")]
    Invalid(String),
    /// The job has no subnet.
    #[error("the mesh has no subnet")]
    NoNetwork,
    /// The job is ending: the caller stops.
    #[error("the mesh was stopped")]
    Cancelled,
    /// The job has ended (or is ending): no rank can join it.
    #[error("the mesh has ended")]
    Ended,
}

impl MeshError {
    /// The guest's error code (`Cancelled` stops the instance instead).
    pub fn errno(&self) -> errno::Errno {
        match self {
            MeshError::WouldBlock => errno::WOULD_BLOCK,
            MeshError::TimedOut => errno::TIMED_OUT,
            MeshError::PeerGone => errno::PEER_GONE,
            MeshError::TooLarge { .. } => errno::TOO_LARGE,
            MeshError::Mismatch => errno::MISMATCH,
            MeshError::Invalid(_) => errno::INVALID_ARGUMENT,
            MeshError::NoNetwork => errno::NO_NETWORK,
            MeshError::Cancelled | MeshError::Ended => errno::INVALID_STATE,
        }
    }
}

/// A globally unique mesh id, `mesh-<16 hex digits>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MeshId(Arc<str>);

impl MeshId {
    /// A fresh id (drawn like instance ids: random salt and a counter).
    pub fn new() -> MeshId {
        let instance = crate::runtime::InstanceId::new();
        let hex = instance.as_str().trim_start_matches("inst-");
        MeshId(format!("mesh-{hex}").into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for MeshId {
    fn default() -> Self {
        MeshId::new()
    }
}

impl fmt::Display for MeshId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An instance's place in a mesh, carried in its store: the job and its
/// rank ([`weft_abi::mesh::PARENT`] for a controller module).
#[derive(Clone, Debug)]
pub struct Member {
    pub(crate) job: Arc<job::Shared>,
    pub(crate) rank: i32,
    /// The instance's exported memory, once a `weft:mesh` call has looked
    /// it up (saves a lookup by name per message).
    pub(crate) memory: Option<wasmtime::Memory>,
    /// The ways its last send and its last receive from a named rank
    /// went, kept for the next.
    pub(crate) routes: Routes,
}

impl Member {
    pub(crate) fn new(job: Arc<job::Shared>, rank: i32) -> Member {
        Member {
            job,
            rank,
            memory: None,
            routes: Routes::default(),
        }
    }
}

/// A way from one sender to one mailbox, resolved once: the mailbox and
/// the sender's lane in it. With it, a message's path is a few loads, not
/// a walk from the job through its ranks, their mailboxes and lanes. It
/// stays valid for the job's life: mailboxes and lanes are never replaced
/// (a closed mailbox says so when a message comes).
#[derive(Debug)]
pub(crate) struct Route {
    dst: i32,
    mailbox: Arc<Mailbox>,
    lane: Arc<lane::Lane>,
}

impl Route {
    /// The sender.
    pub(crate) fn src(&self) -> i32 {
        self.lane.src()
    }

    /// The mailbox's owner.
    pub(crate) fn dst(&self) -> i32 {
        self.dst
    }

    /// Whether the owner's receive from the sender may find something now
    /// (a few loads: for a receive that spins).
    pub(crate) fn may_hold(&self) -> bool {
        self.mailbox.may_hold(&self.lane)
    }
}

/// An instance's kept [`Route`]s. A clone starts empty (routes are for
/// the instance's own message calls; a clone, for a call that waits, finds
/// its own again).
#[derive(Debug, Default)]
pub(crate) struct Routes {
    /// To the rank it last sent to.
    pub(crate) to: Option<Route>,
    /// From the rank it last received from by name.
    pub(crate) from: Option<Route>,
}

impl Clone for Routes {
    fn clone(&self) -> Routes {
        Routes::default()
    }
}
