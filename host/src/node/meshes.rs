//! The node's policy around mesh jobs: admission (a job takes one of the
//! node's running slots per instance for its whole life), limits within the
//! node's ceilings, the mesh subnet on the node's network, and where the
//! ranks' output goes (the activity log, and an external parent's
//! WebSocket).

use super::Node;
use crate::activity::{LogLine, Stream, now_ms};
use crate::mesh::job::{self, Group, OnFailure, Output, Parent, RankState, Spec, Status, Who};
use crate::mesh::registry::{Forward, ParentEvent};
use crate::mesh::{MeshError, Meshes};
use crate::runtime::Limits;
use crate::runtime::registry::RegistryError;
use crate::runtime::stdio::StreamKind;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How long an external parent has to connect before the job is stopped.
pub const PARENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Who the parent of a requested job is.
#[derive(Clone, Debug)]
pub enum ParentRequest {
    /// No parent: the job ends when its ranks do.
    None,
    /// A client connecting over the WebSocket.
    External,
    /// A deployed module run as the controller.
    Controller(String),
}

/// What a caller asks of a mesh job.
#[derive(Clone, Debug)]
pub struct MeshRequest {
    /// `(module, ranks)` groups, in rank order.
    pub groups: Vec<(String, u32)>,
    /// Arguments for every rank.
    pub args: Vec<String>,
    /// Environment variables for every rank.
    pub env: Vec<(String, String)>,
    /// The parent.
    pub parent: ParentRequest,
    /// What a failing rank does.
    pub on_failure: OnFailure,
    /// Each instance's deadline, instead of the node's default.
    pub timeout: Option<Duration>,
    /// Whether the mesh gets a subnet.
    pub subnet: bool,
}

/// Why a job was not started.
#[derive(Debug, thiserror::Error)]
pub enum MeshStartError {
    /// No module has that name.
    #[error("no module named `{0}`")]
    NoModule(String),
    /// Not enough running slots.
    #[error("at capacity: the mesh needs {needed} instances and {free} slots are free")]
    Busy { needed: usize, free: usize },
    /// The request asked for something not allowed.
    #[error("{0}")]
    BadRequest(String),
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The mesh could not be built (its subnet, its size), or the ranks
    /// not added ([`MeshError::Ended`]: the job has ended).
    #[error(transparent)]
    Mesh(#[from] MeshError),
    /// No running or recently ended mesh has that id.
    #[error("no mesh `{0}`")]
    NoMesh(String),
}

/// What a caller asks to add to a running mesh job.
#[derive(Clone, Debug)]
pub struct JoinRequest {
    /// The module the new ranks run; `None`: rank 0's.
    pub module: Option<String>,
    /// How many ranks.
    pub count: u32,
    /// Their arguments; `None`: the job's.
    pub args: Option<Vec<String>>,
}

/// Sends ranks' output to the activity log and to a connected parent.
#[derive(Debug)]
struct NodeOutput {
    node: Weak<Node>,
    forward: Arc<Forward>,
}

impl NodeOutput {
    fn log_line(&self, from: &Who<'_>, stream: Stream, level: &'static str, text: &str) {
        if let Some(node) = self.node.upgrade() {
            node.activity().log_line(LogLine {
                time_ms: now_ms(),
                instance: from.instance.to_owned(),
                module: from.module.to_owned(),
                stream,
                level,
                message: text.to_owned(),
            });
        }
    }
}

impl Output for NodeOutput {
    fn line(&self, from: &Who<'_>, stream: StreamKind, text: &str) {
        let (kind, name) = match stream {
            StreamKind::Stdout => (Stream::Stdout, "stdout"),
            StreamKind::Stderr => (Stream::Stderr, "stderr"),
        };
        self.log_line(from, kind, "info", text);
        self.forward.send(ParentEvent::Line {
            rank: from.rank,
            stream: name,
            text: text.to_owned(),
        });
    }

    fn log(&self, from: &Who<'_>, level: weft_abi::log::Level, text: &str) {
        self.log_line(from, Stream::Log, level.as_str(), text);
    }

    fn ended(&self, from: &Who<'_>, state: &RankState) {
        self.forward.send(ParentEvent::RankEnded {
            rank: from.rank,
            state: state.clone(),
        });
    }

    fn joined(&self, from: &Who<'_>) {
        self.forward.send(ParentEvent::RankJoined {
            rank: from.rank,
            module: from.module.to_owned(),
            instance: from.instance.to_owned(),
        });
    }
}

impl Node {
    /// The node's meshes.
    pub fn meshes(&self) -> &Arc<Meshes> {
        &self.meshes
    }

    /// Starts a mesh job. Needs a tokio runtime.
    pub fn start_mesh(self: &Arc<Self>, request: MeshRequest) -> Result<Status, MeshStartError> {
        let timeout = match request.timeout {
            Some(t) if t > self.config.max_timeout => {
                return Err(MeshStartError::BadRequest(format!(
                    "timeout {} is above this server's maximum of {}",
                    crate::units::format_duration(t),
                    crate::units::format_duration(self.config.max_timeout)
                )));
            }
            Some(t) => Some(t),
            None => self.config.limits.timeout,
        };
        let mut groups = Vec::with_capacity(request.groups.len());
        for (name, ranks) in &request.groups {
            let entry = self
                .registry
                .get(name)?
                .ok_or_else(|| MeshStartError::NoModule(name.clone()))?;
            groups.push(Group {
                name: name.clone(),
                module: entry.loaded.clone(),
                ranks: *ranks,
            });
        }
        let parent = match &request.parent {
            ParentRequest::None => Parent::None,
            ParentRequest::External => Parent::External,
            ParentRequest::Controller(name) => {
                let entry = self
                    .registry
                    .get(name)?
                    .ok_or_else(|| MeshStartError::NoModule(name.clone()))?;
                Parent::Controller {
                    name: name.clone(),
                    module: entry.loaded.clone(),
                }
            }
        };
        // Summed wide: groups of up to u32::MAX ranks each cannot wrap it.
        let size: u64 = groups.iter().map(|g| u64::from(g.ranks)).sum();
        if size == 0 || size > u64::from(job::MAX_RANKS) {
            return Err(MeshStartError::BadRequest(format!(
                "a mesh has 1 to {} ranks, not {size}",
                job::MAX_RANKS
            )));
        }
        let needed = size as usize + usize::from(matches!(parent, Parent::Controller { .. }));
        let Ok(slots) = self.slots.clone().try_acquire_many_owned(needed as u32) else {
            self.metrics.busy();
            return Err(MeshStartError::Busy {
                needed,
                free: self.slots.available_permits(),
            });
        };

        let forward = Arc::new(Forward::default());
        let mut spec = Spec::new(groups);
        spec.args = request.args;
        spec.env = request.env;
        spec.on_failure = request.on_failure;
        spec.limits = Limits {
            timeout,
            ..self.config.limits.clone()
        };
        spec.network = request.subnet.then(|| self.network.clone());
        spec.output = Some(Arc::new(NodeOutput {
            node: Arc::downgrade(self),
            forward: forward.clone(),
        }));
        let (job, link) = job::start(self.registry.runtime(), spec, parent)?;
        let status = job.status();
        self.meshes.add(job.clone());
        if let Some(link) = link {
            self.meshes
                .hold_parent(job.id().as_str(), link, forward, PARENT_CONNECT_TIMEOUT);
        }
        tokio::spawn(async move {
            job.wait().await;
            drop(slots);
        });
        Ok(status)
    }

    /// Starts more ranks in running mesh `id`; returns their numbers and
    /// the job's status. They hold a running slot each for the rest of the
    /// job's life, as the first ranks do. Needs a tokio runtime.
    pub fn add_mesh_ranks(
        self: &Arc<Self>,
        id: &str,
        request: JoinRequest,
    ) -> Result<(Vec<u32>, Status), MeshStartError> {
        let Some(job) = self.meshes.get(id) else {
            return Err(match self.meshes.status(id) {
                Some(_) => MeshStartError::Mesh(MeshError::Ended),
                None => MeshStartError::NoMesh(id.to_owned()),
            });
        };
        if job.ended().is_some() {
            return Err(MeshStartError::Mesh(MeshError::Ended));
        }
        if request.count == 0 {
            return Err(MeshStartError::BadRequest(
                "add at least one rank, not 0".into(),
            ));
        }
        let size = job.size();
        if request.count > job::MAX_RANKS - size {
            return Err(MeshStartError::BadRequest(format!(
                "a mesh has at most {} ranks: this one has had {size}, {} more are too many",
                job::MAX_RANKS,
                request.count
            )));
        }
        let (name, module) = match request.module {
            Some(name) => {
                let entry = self
                    .registry
                    .get(&name)?
                    .ok_or_else(|| MeshStartError::NoModule(name.clone()))?;
                (name, entry.loaded.clone())
            }
            None => job.first_module(),
        };
        let Ok(slots) = self.slots.clone().try_acquire_many_owned(request.count) else {
            self.metrics.busy();
            return Err(MeshStartError::Busy {
                needed: request.count as usize,
                free: self.slots.available_permits(),
            });
        };
        let group = Group {
            name,
            module,
            ranks: request.count,
        };
        let ranks = job.add_ranks(group, request.args)?;
        let status = job.status();
        tokio::spawn(async move {
            job.wait().await;
            drop(slots);
        });
        Ok((ranks, status))
    }
}
