//! A running mesh job: its ranks, its parent, and its teardown.
//!
//! [`start`] builds the shared state (mailboxes, collectives, counters),
//! creates the mesh subnet when given a network, and spawns a driver task
//! that runs every rank (and a controller module, when that is the parent)
//! as an instance on the runtime. The job ends when:
//!
//! - the parent ends: a controller module exits or fails, an external
//!   parent's [`ParentLink`] is dropped (its WebSocket closed, the CLI
//!   gone), or the job is stopped ([`Job::stop`]);
//! - a rank fails (a trap, a limit, a non-zero exit is *not* a failure)
//!   under [`OnFailure::Abort`]; under [`OnFailure::Parent`] the parent is
//!   told and decides;
//! - every rank has ended.
//!
//! Ranks join while the job runs ([`Job::add_ranks`], in `join`): they get
//! the next rank numbers, a mailbox, a NIC on the mesh subnet, and take
//! part in collectives from the next round that opens; [`size`](Shared)
//! counts every rank started so far, the member list the live ones.
//!
//! Stopping fires one [`Cancel`] shared by every instance of the job: a
//! rank running wasm stops at its next epoch tick, one waiting in a host
//! call (a receive, a collective, a socket) at once. Each rank's mailbox is
//! freed as it ends; the subnet goes once all have.

pub use super::status::{Ending, RankState, RankStatus, Report, Status, SubnetInfo, Traffic};

use super::collective::{Call, Collectives, Done};
use super::mailbox::{Bounds, Mailbox, Message, Received};
use super::status::Counters;
use super::subnet::MeshNet;
use super::traffic::Row;
use super::{MeshError, MeshId};
use crate::network::{Network, Wait};
use crate::runtime::stdio::StreamKind;
use crate::runtime::{Cancel, InstanceId, Limits, LoadedModule, Runtime};
use bytes::Bytes;
use serde::Serialize;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use tokio::sync::watch;
use weft_abi::log::Level;
use weft_abi::mesh::{ANY, PARENT};

/// The most ranks one job may have.
pub const MAX_RANKS: u32 = 1024;

/// Ranks running one module.
#[derive(Clone, Debug)]
pub struct Group {
    /// The module's name (`argv[0]` of its ranks).
    pub name: String,
    /// The module.
    pub module: LoadedModule,
    /// How many ranks run it.
    pub ranks: u32,
}

/// The job's parent.
#[derive(Clone, Debug)]
pub enum Parent {
    /// None: the job ends when every rank has ended.
    None,
    /// A client holding the [`ParentLink`] that [`start`] returns (the CLI,
    /// or a WebSocket). Dropping the link stops the job.
    External,
    /// A controller module, run as an instance beside the ranks; the job
    /// ends when it does.
    Controller {
        /// The module's name.
        name: String,
        /// The module.
        module: LoadedModule,
    },
}

impl Parent {
    /// `none`, `external` or `controller:NAME`.
    pub fn describe(&self) -> String {
        match self {
            Parent::None => "none".into(),
            Parent::External => "external".into(),
            Parent::Controller { name, .. } => format!("controller:{name}"),
        }
    }
}

/// What a failing rank does to the job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Stop every rank; the job fails with a report naming the rank.
    #[default]
    Abort,
    /// Keep going: the parent hears of it (messages to the rank and
    /// collectives then give `PEER_GONE`) and decides.
    Parent,
}

impl OnFailure {
    /// Parses `abort` or `parent`.
    pub fn parse(text: &str) -> Option<OnFailure> {
        match text {
            "abort" => Some(OnFailure::Abort),
            "parent" => Some(OnFailure::Parent),
            _ => None,
        }
    }
}

/// Which instance of a job something came from.
#[derive(Clone, Copy, Debug)]
pub struct Who<'a> {
    /// Its rank; [`PARENT`] for a controller module.
    pub rank: i32,
    /// Its instance id.
    pub instance: &'a str,
    /// Its module's name.
    pub module: &'a str,
}

/// Where the job's output goes: ranks' stdout and stderr lines, log lines,
/// and ranks ending.
pub trait Output: Send + Sync + fmt::Debug {
    /// A line written to stdout or stderr.
    fn line(&self, from: &Who<'_>, stream: StreamKind, text: &str);
    /// A line logged through `weft:log`.
    fn log(&self, from: &Who<'_>, level: Level, text: &str) {
        let _ = (from, level, text);
    }
    /// A rank (or the controller) ended.
    fn ended(&self, from: &Who<'_>, state: &RankState) {
        let _ = (from, state);
    }
    /// A rank joined the running job (and is starting).
    fn joined(&self, from: &Who<'_>) {
        let _ = from;
    }
}

/// What to run and how.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The ranks, group by group: the first group's ranks come first.
    pub groups: Vec<Group>,
    /// Arguments after `argv[0]`, for every rank.
    pub args: Vec<String>,
    /// Environment variables, for every rank (`WEFT_MESH` and `WEFT_RANK`
    /// are added).
    pub env: Vec<(String, String)>,
    /// What a failing rank does to the job.
    pub on_failure: OnFailure,
    /// Each instance's limits.
    pub limits: Limits,
    /// Each mailbox's bounds.
    pub bounds: Bounds,
    /// The largest message, in bytes.
    pub max_message: usize,
    /// The host network, for the mesh subnet; `None` gives no subnet.
    pub network: Option<Arc<Network>>,
    /// Where output goes; `None` drops it.
    pub output: Option<Arc<dyn Output>>,
}

impl Spec {
    /// `groups` with defaults: no arguments, abort on failure, default
    /// limits without a deadline, default bounds, no network.
    pub fn new(groups: Vec<Group>) -> Spec {
        Spec {
            groups,
            args: Vec::new(),
            env: Vec::new(),
            on_failure: OnFailure::Abort,
            limits: Limits {
                timeout: None,
                ..Limits::default()
            },
            bounds: Bounds::default(),
            max_message: weft_abi::mesh::MAX_MESSAGE,
            network: None,
            output: None,
        }
    }
}

/// One rank: who runs it, where it is, its mailbox and counters.
#[derive(Debug)]
pub(crate) struct RankSlot {
    pub(super) module: String,
    pub(super) instance: InstanceId,
    state: Mutex<RankState>,
    /// Whether `state` is past `Running`: read without the lock by every
    /// receive that finds nothing from this rank (a spinning receive looks
    /// many times a microsecond, and the lock's line is its mailbox's
    /// neighbour).
    ended: AtomicBool,
    pub(super) counters: Counters,
    pub(super) mailbox: Arc<Mailbox>,
    /// Its address on the mesh subnet.
    pub(super) addr: Option<Ipv4Addr>,
    /// Messages and bytes it sent, by destination.
    pub(super) sent: Row,
    /// When it was started (ms since the epoch).
    pub(super) started_ms: u64,
}

impl RankSlot {
    pub(super) fn new(
        module: String,
        instance: InstanceId,
        bounds: Bounds,
        addr: Option<Ipv4Addr>,
    ) -> RankSlot {
        RankSlot {
            module,
            instance,
            state: Mutex::new(RankState::Starting),
            ended: AtomicBool::new(false),
            counters: Counters::default(),
            mailbox: Arc::new(Mailbox::new(bounds)),
            addr,
            sent: Row::default(),
            started_ms: crate::activity::now_ms(),
        }
    }

    pub(super) fn state(&self) -> RankState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn set_state(&self, state: RankState) {
        let mut current = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let ended = !matches!(state, RankState::Starting | RankState::Running);
        *current = state;
        self.ended.store(ended, Ordering::Release);
    }

    /// Whether it has exited or failed.
    pub(super) fn ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }
}

/// Shared by the job's instances, its driver and its parent link.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) id: MeshId,
    pub(super) max_message: usize,
    pub(super) bounds: Bounds,
    /// Every rank started so far, by number: slot `r` is set before
    /// `count` passes `r`, and never changes after.
    pub(super) ranks: Box<[OnceLock<RankSlot>]>,
    /// How many ranks have been started (the rank numbers `0..count`).
    pub(super) count: AtomicU32,
    /// How many the job started with.
    pub(super) initial: u32,
    /// The parent's inbox.
    pub(super) parent_box: Arc<Mailbox>,
    pub(super) has_parent: bool,
    pub(super) parent_counters: Counters,
    pub(super) parent_sent: Row,
    /// Held by a [`ParentLink`] while it sends.
    pub(super) parent_sends: tokio::sync::Mutex<()>,
    pub(super) collectives: Collectives,
    pub(super) cancel: Cancel,
    /// The mesh subnet (taken by the teardown).
    pub(super) net: Mutex<Option<MeshNet>>,
    /// Where joining ranks are handed to the driver; `None` once the job
    /// has ended (or is ending).
    pub(super) joins: Mutex<Option<tokio::sync::mpsc::UnboundedSender<super::join::Launch>>>,
    pub(super) stopping: Mutex<Option<(Instant, Ending)>>,
    pub(super) pool: super::pool::Pool,
}

impl Shared {
    /// The number of ranks started so far (live or ended).
    pub(crate) fn size(&self) -> u32 {
        self.count.load(Ordering::Acquire)
    }

    /// Rank `rank`, if it has been started.
    pub(super) fn rank(&self, rank: usize) -> Option<&RankSlot> {
        if rank < self.size() as usize {
            self.ranks[rank].get()
        } else {
            None
        }
    }

    /// Every rank started so far, in order.
    pub(super) fn all_ranks(&self) -> impl Iterator<Item = &RankSlot> {
        self.ranks[..self.size() as usize]
            .iter()
            .filter_map(OnceLock::get)
    }

    fn slot(&self, rank: i32) -> &RankSlot {
        self.rank(rank as usize).expect("checked by check_peer")
    }

    pub(super) fn counters(&self, rank: i32) -> &Counters {
        if rank == PARENT {
            &self.parent_counters
        } else {
            &self.slot(rank).counters
        }
    }

    pub(super) fn sent_row(&self, rank: i32) -> &Row {
        if rank == PARENT {
            &self.parent_sent
        } else {
            &self.slot(rank).sent
        }
    }

    pub(super) fn mailbox(&self, rank: i32) -> &Mailbox {
        self.mailbox_arc(rank)
    }

    pub(super) fn mailbox_arc(&self, rank: i32) -> &Arc<Mailbox> {
        if rank == PARENT {
            &self.parent_box
        } else {
            &self.slot(rank).mailbox
        }
    }

    pub(super) fn check_peer(&self, rank: i32, any: bool) -> Result<(), MeshError> {
        let size = self.size();
        match rank {
            PARENT if !self.has_parent => Err(MeshError::PeerGone),
            PARENT => Ok(()),
            ANY if any => Ok(()),
            r if r >= 0 && (r as u32) < size => Ok(()),
            r => Err(MeshError::Invalid(format!(
                "no rank {r} in a mesh of {size}"
            ))),
        }
    }

    /// Rank `rank`'s next collective.
    pub(crate) async fn collective(&self, rank: i32, call: Call) -> Result<Done, MeshError> {
        if rank < 0 {
            return Err(MeshError::Invalid(
                "the parent takes no part in collectives".into(),
            ));
        }
        let size = self.size();
        let check_root = |root: u32| {
            if root < size {
                Ok(())
            } else {
                Err(MeshError::Invalid(format!(
                    "no rank {root} in a mesh of {size}"
                )))
            }
        };
        match &call {
            Call::Barrier => {}
            Call::Broadcast { root, .. }
            | Call::Gather { root, .. }
            | Call::Scatter { root, .. } => check_root(*root)?,
            Call::Reduce { root, .. } => {
                if let Some(root) = root {
                    check_root(*root)?
                }
            }
        }
        self.collectives
            .enter(rank as u32, call, &self.cancel)
            .await
    }

    /// Whether rank `rank` has ended.
    pub(super) fn ended(&self, rank: usize) -> bool {
        self.rank(rank).is_none_or(RankSlot::ended)
    }

    /// A rank ended: receivers waiting for it look again.
    pub(super) fn wake_receivers(&self) {
        for slot in self.all_ranks() {
            slot.mailbox.wake();
        }
        self.parent_box.wake();
    }

    /// `rank`'s address on the mesh subnet.
    pub(crate) fn addr(&self, rank: i32) -> Result<Ipv4Addr, MeshError> {
        self.check_peer(rank, false)?;
        if rank == PARENT {
            return Err(MeshError::Invalid("the parent has no mesh address".into()));
        }
        self.slot(rank).addr.ok_or(MeshError::NoNetwork)
    }

    /// The job's pool of message buffers.
    pub(crate) fn pool(&self) -> &super::pool::Pool {
        &self.pool
    }

    /// The largest message.
    pub(crate) fn max_message(&self) -> usize {
        self.max_message
    }

    /// Starts stopping the job (the first reason given wins).
    pub(super) fn stop(&self, ending: Ending) {
        {
            let mut stopping = self.stopping.lock().unwrap_or_else(|p| p.into_inner());
            if stopping.is_some() {
                return;
            }
            tracing::info!(mesh = %self.id, "stopping: {ending}");
            *stopping = Some((Instant::now(), ending));
        }
        self.cancel.cancel();
    }

    pub(super) fn stopping(&self) -> Option<(Instant, Ending)> {
        self.stopping
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A running (or ended) job.
#[derive(Debug)]
pub struct Job {
    pub(super) shared: Arc<Shared>,
    parent: String,
    on_failure: OnFailure,
    created_ms: u64,
    subnet: OnceLock<Option<(String, String)>>,
    report: watch::Receiver<Option<Arc<Report>>>,
    /// The first group's module: what joining ranks run by default.
    first: (String, LoadedModule),
}

impl Job {
    /// The module rank 0 runs (its name and the module), which ranks
    /// added without naming one run.
    pub fn first_module(&self) -> (String, LoadedModule) {
        self.first.clone()
    }

    /// Its id.
    pub fn id(&self) -> &MeshId {
        &self.shared.id
    }

    /// Number of ranks started so far (live or ended).
    pub fn size(&self) -> u32 {
        self.shared.size()
    }

    /// Stops every rank (the job ends with `ending`, unless it already
    /// ends for another reason).
    pub fn stop(&self, ending: Ending) {
        self.shared.stop(ending);
    }

    /// Whether it has ended.
    pub fn ended(&self) -> Option<Arc<Report>> {
        self.report.borrow().clone()
    }

    /// Waits for the job to end: every instance gone, the subnet removed.
    pub async fn wait(&self) -> Arc<Report> {
        wait_report(self.report.clone()).await
    }

    /// Messages waiting in every mailbox now.
    pub fn queued(&self) -> usize {
        self.shared
            .all_ranks()
            .map(|r| &r.mailbox)
            .chain([&self.shared.parent_box])
            .map(|m| m.depth().0)
            .sum()
    }

    /// Ranks running now.
    pub fn running_ranks(&self) -> usize {
        self.shared.all_ranks().filter(|r| !r.ended()).count()
    }

    /// Its status.
    pub fn status(&self) -> Status {
        let shared = &self.shared;
        let ranks: Vec<&RankSlot> = shared.all_ranks().collect();
        let rows = ranks.iter().map(|r| &r.sent).chain([&shared.parent_sent]);
        let columns: Vec<i32> = (0..ranks.len() as i32).chain([PARENT]).collect();
        let report = self.ended().map(|r| (*r).clone());
        let states: Vec<RankState> = ranks.iter().map(|slot| slot.state()).collect();
        Status {
            id: shared.id.to_string(),
            state: if report.is_some() { "ended" } else { "running" },
            parent: self.parent.clone(),
            on_failure: self.on_failure,
            size: ranks.len() as u32,
            initial_size: shared.initial,
            live: states
                .iter()
                .filter(|s| matches!(s, RankState::Starting | RankState::Running))
                .count() as u32,
            epoch: shared.collectives.members().1,
            created_ms: self.created_ms,
            subnet: self
                .subnet
                .get()
                .cloned()
                .flatten()
                .map(|(id, cidr)| SubnetInfo { id, cidr }),
            ranks: ranks
                .iter()
                .zip(states)
                .enumerate()
                .map(|(rank, (slot, state))| {
                    let mailbox = &slot.mailbox;
                    let (queued_messages, queued_bytes) = mailbox.depth();
                    RankStatus {
                        rank: rank as u32,
                        module: slot.module.clone(),
                        instance: slot.instance.to_string(),
                        state,
                        started_ms: slot.started_ms,
                        addr: slot.addr.map(|ip| ip.to_string()),
                        traffic: slot.counters.snapshot(),
                        queued_messages,
                        queued_bytes,
                        mailbox_high_water: mailbox.high_water(),
                        mailbox_bound: mailbox.bounds().messages,
                    }
                })
                .collect(),
            parent_traffic: shared.parent_counters.snapshot(),
            parent_queued: shared.parent_box.depth().0,
            traffic: rows
                .map(|row| columns.iter().map(|&to| row.bytes(to)).collect())
                .collect(),
            report,
        }
    }

    /// Total messages and bytes sent in the job so far.
    pub fn totals(&self) -> (u64, u64) {
        let shared = &self.shared;
        shared
            .all_ranks()
            .map(|r| &r.sent)
            .chain([&shared.parent_sent])
            .map(Row::totals)
            .fold((0, 0), |(m, b), (dm, db)| (m + dm, b + db))
    }
}

/// The parent's end of a job with an external parent: it sends and
/// receives like a rank, as [`PARENT`]. Dropping it stops the job.
#[derive(Debug)]
pub struct ParentLink {
    shared: Arc<Shared>,
    never: Cancel,
    report: watch::Receiver<Option<Arc<Report>>>,
}

impl ParentLink {
    /// Sends `data` to rank `dst`, waiting while its mailbox is full.
    /// Sends from clones of one link take turns: a mailbox's lanes have
    /// one writer each.
    pub async fn send(&self, dst: u32, tag: i32, data: Bytes) -> Result<(), MeshError> {
        let dst = i32::try_from(dst).map_err(|_| MeshError::Invalid(format!("no rank {dst}")))?;
        let _turn = self.shared.parent_sends.lock().await;
        self.shared
            .send(PARENT, dst, tag, data.into(), Wait::Forever)
            .await
    }

    /// The next message for the parent, from any rank. After the job has
    /// ended and the queued messages are read: [`MeshError::PeerGone`].
    pub async fn recv(&self) -> Result<Message, MeshError> {
        // Not the job's cancel: the parent drains what was sent before the
        // end.
        match self
            .shared
            .parent_box
            .take(ANY, ANY, usize::MAX, Wait::Forever, &self.never, || false)
            .await?
        {
            Received::Message(message) => {
                let counters = &self.shared.parent_counters;
                counters.received_messages.fetch_add(1, Ordering::Relaxed);
                counters
                    .received_bytes
                    .fetch_add(message.data.len() as u64, Ordering::Relaxed);
                Ok(message.into())
            }
            Received::TooLong { .. } => unreachable!("no message is longer than usize::MAX"),
        }
    }

    /// Number of ranks started so far.
    pub fn size(&self) -> u32 {
        self.shared.size()
    }

    /// Waits for the job to end.
    pub async fn report(&self) -> Arc<Report> {
        wait_report(self.report.clone()).await
    }
}

impl Drop for ParentLink {
    fn drop(&mut self) {
        self.shared.stop(Ending::ParentDisconnected);
    }
}

/// Starts a job: builds the mesh (and its subnet, with a network) and
/// spawns its instances on the current tokio runtime.
pub fn start(
    runtime: &Runtime,
    spec: Spec,
    parent: Parent,
) -> Result<(Arc<Job>, Option<ParentLink>), MeshError> {
    // Summed wide: groups of up to u32::MAX ranks each cannot wrap it.
    let size: u64 = spec.groups.iter().map(|g| u64::from(g.ranks)).sum();
    if size == 0 || size > u64::from(MAX_RANKS) {
        return Err(MeshError::Invalid(format!(
            "a mesh has 1 to {MAX_RANKS} ranks, not {size}"
        )));
    }
    let size = size as u32;
    let id = MeshId::new();
    let net = match &spec.network {
        Some(network) => Some(
            MeshNet::create(network.clone(), &id, size)
                .map_err(|e| MeshError::Invalid(format!("the mesh subnet: {e}")))?,
        ),
        None => None,
    };
    let ranks: Box<[OnceLock<RankSlot>]> = (0..MAX_RANKS).map(|_| OnceLock::new()).collect();
    let (joins_tx, joins_rx) = tokio::sync::mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        id: id.clone(),
        max_message: spec.max_message,
        bounds: spec.bounds,
        ranks,
        count: AtomicU32::new(0),
        initial: size,
        parent_box: Arc::new(Mailbox::new(spec.bounds)),
        has_parent: !matches!(parent, Parent::None),
        parent_counters: Counters::default(),
        parent_sent: Row::default(),
        parent_sends: tokio::sync::Mutex::new(()),
        collectives: Collectives::new(size as usize),
        cancel: Cancel::new(),
        net: Mutex::new(net),
        joins: Mutex::new(Some(joins_tx)),
        stopping: Mutex::new(None),
        pool: Default::default(),
    });
    let mut launches = Vec::new();
    for group in &spec.groups {
        let added = shared
            .place(&group.name, group.ranks, false)
            .inspect_err(|_| shared.remove_net())?;
        launches.extend(added.into_iter().map(|rank| super::join::Launch {
            rank,
            name: group.name.clone(),
            module: group.module.clone(),
            args: None,
        }));
    }
    let subnet = shared
        .net
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|n| (n.subnet_id(), n.cidr()));
    let (report_tx, report_rx) = watch::channel(None);
    let job = Arc::new(Job {
        shared: shared.clone(),
        parent: parent.describe(),
        on_failure: spec.on_failure,
        created_ms: crate::activity::now_ms(),
        subnet: OnceLock::new(),
        report: report_rx,
        first: (spec.groups[0].name.clone(), spec.groups[0].module.clone()),
    });
    let _ = job.subnet.set(subnet);
    let link = matches!(parent, Parent::External).then(|| ParentLink {
        shared: shared.clone(),
        never: Cancel::new(),
        report: job.report.clone(),
    });
    tokio::spawn(super::drive::drive(
        shared,
        runtime.clone(),
        spec,
        parent,
        launches,
        joins_rx,
        report_tx,
    ));
    Ok((job, link))
}

/// Waits until `report` holds the job's report.
async fn wait_report(mut report: watch::Receiver<Option<Arc<Report>>>) -> Arc<Report> {
    loop {
        if let Some(done) = report.borrow_and_update().clone() {
            return done;
        }
        if report.changed().await.is_err() {
            // The driver is gone without a report: it panicked.
            return Arc::new(Report {
                status: "failed",
                exit_code: 134,
                ending: None,
                reason: Some("the mesh driver failed".into()),
                max_stop_latency_us: None,
            });
        }
    }
}
