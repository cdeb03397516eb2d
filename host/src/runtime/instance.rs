//! One invocation: a fresh instance from a pooled slot, run to completion
//! under its limits, its stdout kept as one `Bytes`.

use super::failure::{Failure, Interrupt};
use super::input::InputSource;
use super::limits::{self, Limiter, Limits};
use super::reaper::Owned;
use super::stdio::{LineSink, LineStream, OutputSink, StreamKind, WhenFull};
use super::{LoadedModule, Runtime};
use crate::abi::log::{GuestLog, LogLine};
use bytes::Bytes;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

/// A globally unique instance id, `inst-<16 hex digits>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InstanceId(Arc<str>);

impl InstanceId {
    /// A fresh id: a per-process random salt mixed with a counter, so ids do
    /// not repeat across restarts or hosts.
    pub fn new() -> InstanceId {
        static SALT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let salt = *SALT.get_or_init(|| {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos(),
            );
            h.finish()
        });
        // SplitMix64 of salt + counter: distinct for every counter value.
        let mut z = salt.wrapping_add(
            COUNTER
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        InstanceId(format!("inst-{z:016x}").into())
    }

    /// Parses `inst-<16 hex digits>`.
    pub fn parse(text: &str) -> Option<InstanceId> {
        let hex = text.strip_prefix("inst-")?;
        (hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| InstanceId(text.into()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for InstanceId {
    fn default() -> Self {
        InstanceId::new()
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the guest's stdin comes from.
#[derive(Clone, Debug)]
pub enum Input {
    /// These bytes, then end of file.
    Bytes(Bytes),
    /// The host process's own stdin (for `weft run`).
    Inherit,
}

/// Where the guest's stdout and stderr go.
#[derive(Clone, Debug)]
pub enum Stdio {
    /// Captured into the [`Outcome`], bounded by the [`Limits`].
    Capture,
    /// The host process's own stdout and stderr (for `weft run`).
    Inherit,
    /// Line by line, as written, to a sink (for long-running services).
    Lines(Arc<dyn LineSink>),
}

/// Stops a running instance from outside: the instance fails with
/// [`Failure::Killed`] within one epoch tick, or at once if it is waiting in
/// a host call.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<(AtomicBool, tokio::sync::Notify)>);

impl Cancel {
    /// A token that has not fired.
    pub fn new() -> Self {
        Cancel::default()
    }

    /// Fires: the instance stops at its next epoch check.
    pub fn cancel(&self) {
        self.0.0.store(true, Ordering::SeqCst);
        self.0.1.notify_waiters();
    }

    /// Whether it has fired.
    pub fn is_cancelled(&self) -> bool {
        self.0.0.load(Ordering::SeqCst)
    }

    /// Completes once it has fired.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.0.1.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// A host directory made visible to the guest.
#[derive(Clone, Debug)]
pub struct Preopen {
    /// The directory on the host.
    pub host: PathBuf,
    /// The path the guest sees it at.
    pub guest: String,
}

/// One run of a module.
#[derive(Clone, Debug)]
pub struct Invocation {
    /// The program name the guest sees as `argv[0]`.
    pub program: String,
    /// Arguments after `argv[0]`.
    pub args: Vec<String>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// Directories to preopen; none means the guest sees no filesystem.
    pub preopens: Vec<Preopen>,
    /// The guest's stdin.
    pub input: Input,
    /// The guest's stdout and stderr.
    pub stdio: Stdio,
    /// What the instance may use.
    pub limits: Limits,
    /// Fires to stop the instance early.
    pub cancel: Option<Cancel>,
    /// The instance's sockets on the virtual network, if it may have any.
    pub net: Option<crate::network::GuestNet>,
}

impl Invocation {
    /// An invocation of `program` on `input` with default limits, capturing
    /// its output.
    pub fn new(program: impl Into<String>, input: impl Into<Bytes>) -> Self {
        Invocation {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            preopens: Vec::new(),
            input: Input::Bytes(input.into()),
            stdio: Stdio::Capture,
            limits: Limits::default(),
            cancel: None,
            net: None,
        }
    }
}

/// A finished invocation: the guest returned from `_start` or called
/// `proc_exit`.
#[derive(Debug)]
pub struct Outcome {
    /// The instance that ran.
    pub instance: InstanceId,
    /// The guest's exit code (0 when `_start` returned).
    pub exit_code: i32,
    /// Everything written to stdout (empty when inherited).
    pub output: Bytes,
    /// What was written to stderr (empty when inherited), up to the limit.
    pub stderr: Bytes,
    /// Lines logged through `weft:log`.
    pub logs: Vec<LogLine>,
    /// Wall-clock time from instantiation to exit.
    pub duration: Duration,
    /// Fuel used, when metered.
    pub fuel_used: Option<u64>,
    /// Whether `output` is a region of the instance's own memory, held by
    /// `output` alone (see `chain::held`): it can be handed over to the
    /// next step (`Prepared::hand_over_input`).
    pub held: bool,
    /// Bytes of input that came as pages moved in from the previous step's
    /// memory rather than copied (`weft:chain`'s `input_in_place`).
    pub input_moved: u64,
}

/// A failed invocation: why, and what the guest left behind.
#[derive(Debug)]
pub struct Failed {
    /// The instance that failed.
    pub instance: InstanceId,
    /// The reason.
    pub failure: Failure,
    /// What was written to stderr, up to the limit.
    pub stderr: Bytes,
    /// Lines logged through `weft:log`.
    pub logs: Vec<LogLine>,
    /// The guest's wasm backtrace at the failure, when there is one.
    pub backtrace: Option<String>,
    /// Wall-clock time from instantiation to failure.
    pub duration: Duration,
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.failure.fmt(f)
    }
}

/// Per-instance host state, the `T` of `Store<T>`.
pub struct State {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) log: GuestLog,
    pub(crate) net: Option<crate::network::GuestNet>,
    /// Input, output region and calls of `weft:chain`.
    pub(crate) chain: crate::chain::GuestChain,
    /// The instance's place in a mesh job, when it has one.
    pub(crate) mesh: Option<crate::mesh::Member>,
    limiter: Limiter,
    deadline: Option<Instant>,
    cancel: Option<Cancel>,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("log", &self.log)
            .field("limiter", &self.limiter)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl State {
    /// A state with nothing attached, for introspecting the linker.
    pub(crate) fn empty() -> State {
        State {
            wasi: WasiCtxBuilder::new().build_p1(),
            log: GuestLog::new(InstanceId::new(), "".into()),
            net: None,
            chain: crate::chain::GuestChain::default(),
            mesh: None,
            limiter: Limiter::new(&Limits::default()),
            deadline: None,
            cancel: None,
        }
    }

    /// When the instance's deadline passes, if it has one.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The token that stops the instance from outside, if any.
    pub(crate) fn cancel(&self) -> Option<&Cancel> {
        self.cancel.as_ref()
    }
}

/// An instance created from a pooled slot and instantiated, whose `_start`
/// has not run yet: what a chain keeps warm for its next step.
/// [`Prepared::run`] runs it; dropping it frees the slot.
pub struct Prepared {
    parts: Parts,
    start: wasmtime::TypedFunc<(), ()>,
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepared")
            .field("instance", &self.parts.instance)
            .finish_non_exhaustive()
    }
}

/// What an instance's end is reported from.
struct Parts {
    store: Owned,
    instance: InstanceId,
    limits: Limits,
    stdout: Option<OutputSink>,
    stderr: Option<OutputSink>,
    lines: Vec<LineStream>,
    started: Instant,
    metering: bool,
}

impl Prepared {
    /// The instance's id.
    pub fn instance(&self) -> &InstanceId {
        &self.parts.instance
    }

    /// Replaces the instance's input (stdin and `weft:chain` input); for an
    /// instance prepared before its input existed.
    pub fn set_input(&mut self, input: Bytes) {
        self.parts.store.data_mut().chain.set_input(input);
    }

    /// Replaces the instance's input with the output of an instance that
    /// ended (`Outcome::held`), handed over: nothing else holds it, so
    /// `weft:chain`'s `input_in_place` may move its pages rather than copy
    /// them (see `runtime::pages`).
    pub(crate) fn hand_over_input(&mut self, input: Bytes) {
        self.parts.store.data_mut().chain.hand_over_input(input);
    }

    /// Grows the instance's memory by `bytes` (rounded up to whole pages)
    /// ahead of an input that the guest will have placed there
    /// (`weft:chain`'s `input_in_place`), so that placing it costs the copy
    /// alone; with `populate`, its pages are faulted in now too (not when
    /// the input's pages are expected to be moved in, which replaces
    /// them). Does nothing where the room would take more than half of the
    /// memory limit (the input may turn out smaller than the last, and the
    /// guest then needs its memory for itself), or the instance exports no
    /// memory.
    pub fn reserve_input(&mut self, bytes: usize, populate: bool) {
        let Some(memory) = self.parts.store.memory() else {
            return;
        };
        let store = &mut *self.parts.store;
        let pages = (bytes as u64).div_ceil(limits::WASM_PAGE);
        let size = memory.data_size(&*store) as u64;
        let limit = self.parts.limits.memory;
        if pages == 0
            || pages * limits::WASM_PAGE > limit / 2
            || size + pages * limits::WASM_PAGE > limit
        {
            return;
        }
        if let Ok(before) = memory.grow(&mut *store, pages) {
            let room = crate::chain::Room {
                start: (before * limits::WASM_PAGE) as usize,
                len: (pages * limits::WASM_PAGE) as usize,
            };
            if populate {
                fault_in(&mut memory.data_mut(&mut *store)[room.start..][..room.len]);
            }
            store.data_mut().chain.set_room(room);
        }
    }

    /// Reports each input the guest places in place to `placed` (what
    /// [`Prepared::reserve_input`] should set aside next).
    pub(crate) fn report_placed_to(&mut self, placed: Arc<crate::chain::Placed>) {
        self.parts.store.data_mut().chain.report_placed_to(placed);
    }

    /// Starts the instance's clock now: its deadline and reported duration
    /// count from here rather than from when it was prepared.
    pub fn start_clock(&mut self) {
        let now = Instant::now();
        self.parts.started = now;
        self.parts.store.data_mut().deadline = self.parts.limits.timeout.map(|t| now + t);
    }

    /// Lowers the instance's deadline to `deadline` (e.g. a chain's own).
    pub fn cap_deadline(&mut self, deadline: Instant) {
        let state = self.parts.store.data_mut();
        let capped = state.deadline.map_or(deadline, |d| d.min(deadline));
        state.deadline = Some(capped);
        // What a deadline failure reports as the time the instance had.
        self.parts.limits.timeout = Some(capped.saturating_duration_since(self.parts.started));
    }

    /// Sets how deep in `weft:chain` calls this instance runs.
    pub(crate) fn set_call_depth(&mut self, depth: u32) {
        self.parts.store.data_mut().chain.set_depth(depth);
    }

    /// Stops the instance when `cancel` fires.
    pub fn set_cancel(&mut self, cancel: Cancel) {
        self.parts.store.data_mut().cancel = Some(cancel);
    }

    /// Makes the instance a member of a mesh job: its `weft:mesh` calls act
    /// on `member`.
    pub(crate) fn set_mesh(&mut self, member: crate::mesh::Member) {
        self.parts.store.data_mut().mesh = Some(member);
    }

    /// Runs `_start` to completion.
    pub async fn run(self) -> Result<Outcome, Box<Failed>> {
        let Prepared { mut parts, start } = self;
        let deadline = parts.store.data().deadline;
        let call = start.call_async(&mut *parts.store, ());
        // The epoch callback enforces the deadline while wasm runs; this
        // backstop also covers a guest blocked in a host call (e.g. reading an
        // inherited stdin that never closes).
        let result = match deadline {
            Some(deadline) => {
                let backstop =
                    tokio::time::Instant::from_std(deadline + Duration::from_millis(250));
                match tokio::time::timeout_at(backstop, call).await {
                    Ok(result) => result,
                    Err(_) => Err(Interrupt::Deadline.into()),
                }
            }
            None => call.await,
        };
        parts.finish(result)
    }
}

/// The most of an input's room [`Prepared::reserve_input`] faults in ahead;
/// past it, the pages are faulted in as the input is copied. Bounds what a
/// warm instance holds resident while it waits.
const POPULATE_MAX: usize = 16 << 20;

/// Faults in (up to [`POPULATE_MAX`] of) `pages` for writing now, while the
/// instance waits in a warm pool, so that the copy into them later takes no
/// page faults: pages the slot did not keep resident are otherwise faulted
/// in, and zeroed by the kernel, one by one by the copy itself. Best
/// effort: kernels before 5.14 have no `MADV_POPULATE_WRITE`, and the copy
/// then takes the faults as before.
#[allow(unsafe_code)] // madvise on memory this function holds exclusively.
fn fault_in(pages: &mut [u8]) {
    let len = pages.len().min(POPULATE_MAX);
    // SAFETY: the range lies inside `pages`, a unique borrow of mapped,
    // read/write memory whose start is page-aligned (a wasm page's start in
    // a page-aligned linear memory); MADV_POPULATE_WRITE only maps its
    // pages in, leaving their contents (zero) and the mapping as they are.
    unsafe { libc::madvise(pages.as_mut_ptr().cast(), len, libc::MADV_POPULATE_WRITE) };
}

/// How long an instantiation waits for a slot when every slot is taken,
/// before it fails (longer while slots are on their way back from the
/// reaper: see `Reaper::wait_until`).
const SLOT_GRACE: Duration = Duration::from_millis(100);

impl Runtime {
    /// Runs `invocation` on a fresh instance of `module` to completion.
    ///
    /// Every way the guest can fail (a trap, a limit, a deadline) comes back
    /// as [`Failed`] with a [`Failure`] reason; the host is never affected.
    pub async fn invoke(
        &self,
        module: &LoadedModule,
        invocation: Invocation,
    ) -> Result<Outcome, Box<Failed>> {
        self.invoke_as(module, invocation, InstanceId::new()).await
    }

    /// [`Runtime::invoke`] under an instance id the caller chose (so it can
    /// announce the instance before it starts).
    pub async fn invoke_as(
        &self,
        module: &LoadedModule,
        invocation: Invocation,
        instance: InstanceId,
    ) -> Result<Outcome, Box<Failed>> {
        self.prepare(module, invocation, instance)
            .await?
            .run()
            .await
    }

    /// [`Runtime::invoke_as`] for a member of a mesh job (a rank or its
    /// controller).
    pub(crate) async fn invoke_member(
        &self,
        module: &LoadedModule,
        invocation: Invocation,
        instance: InstanceId,
        member: crate::mesh::Member,
    ) -> Result<Outcome, Box<Failed>> {
        let mut prepared = self.prepare(module, invocation, instance).await?;
        prepared.set_mesh(member);
        prepared.run().await
    }

    /// Creates and instantiates an instance of `module` for `invocation`
    /// without running it. Its deadline counts from now unless
    /// [`Prepared::start_clock`] moves it.
    pub async fn prepare(
        &self,
        module: &LoadedModule,
        invocation: Invocation,
        instance: InstanceId,
    ) -> Result<Prepared, Box<Failed>> {
        let started = Instant::now();
        let limits = invocation.limits.clone();
        let fail = |failure: Failure| {
            Box::new(Failed {
                instance: instance.clone(),
                failure,
                stderr: Bytes::new(),
                logs: Vec::new(),
                backtrace: None,
                duration: started.elapsed(),
            })
        };
        if limits.fuel.is_some() && !self.config().metering {
            return Err(fail(Failure::Host {
                message: "fuel limits need a runtime built with metering on".into(),
            }));
        }
        if limits.memory > self.config().max_memory {
            return Err(fail(Failure::Host {
                message: format!(
                    "memory limit {} is above this runtime's maximum {}",
                    crate::units::format_size(limits.memory),
                    crate::units::format_size(self.config().max_memory)
                ),
            }));
        }
        let Some(start) = module.start else {
            return Err(fail(Failure::NoEntryPoint));
        };

        let (wasi, input, stdout, stderr, lines) = match wasi_context(&invocation) {
            Ok(parts) => parts,
            Err(error) => {
                return Err(fail(Failure::Host {
                    message: format!("{error:#}"),
                }));
            }
        };
        let state = State {
            wasi,
            net: invocation.net.clone(),
            chain: crate::chain::GuestChain::new(input, limits.output, self.chain_calls()),
            mesh: None,
            log: match &invocation.stdio {
                Stdio::Lines(sink) => {
                    GuestLog::new(instance.clone(), invocation.program.as_str().into())
                        .streaming_to(sink.clone())
                }
                _ => GuestLog::new(instance.clone(), invocation.program.as_str().into()),
            },
            limiter: Limiter::new(&limits),
            deadline: limits.timeout.map(|t| started + t),
            cancel: invocation.cancel.clone(),
        };
        let mut store = Store::new(self.engine(), state);
        store.limiter(|state| &mut state.limiter);
        if self.config().metering {
            // Unmetered invocations on a metering runtime get all the fuel.
            if let Err(error) = store.set_fuel(limits.fuel.unwrap_or(u64::MAX)) {
                return Err(fail(Failure::Host {
                    message: format!("{error:#}"),
                }));
            }
        }
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            let state = ctx.data();
            if state.cancel.as_ref().is_some_and(Cancel::is_cancelled) {
                return Err(Interrupt::Killed.into());
            }
            match state.deadline {
                Some(deadline) if Instant::now() >= deadline => Err(Interrupt::Deadline.into()),
                // Yield to the executor every tick: fair time-slicing.
                _ => Ok(UpdateDeadline::Yield(1)),
            }
        });

        let instantiated = async {
            // Every slot is taken: one may come back soon (an ended
            // instance's is on its way back from the reaper; a chain step's
            // producer lets go once the running step has read its input).
            // Wait briefly for it rather than refuse at once.
            if self.slots_full() {
                self.reaper()
                    .wait_until(|| !self.slots_full(), SLOT_GRACE)
                    .await;
            }
            let instance = module.pre.instantiate_async(&mut store).await?;
            let func = instance
                .get_module_export(&mut store, &start)
                .and_then(|export| export.into_func())
                .ok_or_else(|| wasmtime::format_err!("`_start` is not a function"))?;
            let memory = instance.get_memory(&mut store, "memory");
            Ok::<_, wasmtime::Error>((func.typed::<(), ()>(&store)?, memory))
        }
        .await;
        let parts = Parts {
            store: Owned::new(store, self.reaper().clone()),
            instance,
            limits,
            stdout,
            stderr,
            lines,
            started,
            metering: self.config().metering,
        };
        match instantiated {
            Ok((start, memory)) => {
                let mut parts = parts;
                parts.store.set_memory(memory);
                Ok(Prepared { parts, start })
            }
            Err(error) => match parts.finish(Err(error)) {
                Err(failed) => Err(failed),
                // `finish` reports an error as a failure, or as an exit.
                Ok(outcome) => Err(Box::new(Failed {
                    instance: outcome.instance,
                    failure: Failure::Instantiate {
                        message: format!("exited with code {}", outcome.exit_code),
                    },
                    stderr: outcome.stderr,
                    logs: outcome.logs,
                    backtrace: None,
                    duration: outcome.duration,
                })),
            },
        }
    }
}

impl Parts {
    /// Reports how the instance ended, and frees its slot, unless its output
    /// is a region of its memory: then the output `Bytes` holds the slot
    /// until its last user lets go (see `chain::held`).
    fn finish(self, result: wasmtime::Result<()>) -> Result<Outcome, Box<Failed>> {
        let Parts {
            mut store,
            instance,
            limits,
            stdout,
            stderr,
            lines,
            started,
            metering,
        } = self;
        let fuel_used = match (metering, limits.fuel) {
            (true, Some(fuel)) => store.get_fuel().ok().map(|left| fuel - left),
            _ => None,
        };
        let denied = store.data().limiter.denied;
        let input_moved = store.data().chain.moved() as u64;
        let log = std::mem::replace(
            &mut store.data_mut().log,
            GuestLog::new(instance.clone(), "".into()),
        );
        let output_overflowed = stdout.as_ref().is_some_and(OutputSink::overflowed)
            || store.data().chain.output_overflowed();
        let exit = match result {
            Ok(()) => Ok(0),
            Err(error) => match error.downcast_ref::<I32Exit>() {
                Some(exit) if !output_overflowed => Ok(exit.0),
                _ => Err(error),
            },
        };
        // Dropping the store returns the instance's slot to the pool and
        // releases the last other handle on the output buffers; an output
        // region keeps the store alive inside the output instead.
        let region = match exit {
            Ok(_) => crate::chain::held::take_output(store),
            Err(_) => {
                drop(store);
                None
            }
        };
        for stream in lines {
            stream.flush_partial();
        }
        let duration = started.elapsed();
        let written = stdout.map(OutputSink::into_bytes).unwrap_or_default();
        let stderr = stderr.map(OutputSink::into_bytes).unwrap_or_default();
        let logs = log.into_lines();

        let exit_code = match exit {
            Ok(code) => code,
            Err(error) => {
                let failure = Failure::classify(&error, &limits, denied, output_overflowed);
                let backtrace = error
                    .downcast_ref::<wasmtime::WasmBacktrace>()
                    .map(|bt| bt.to_string())
                    .filter(|bt| !bt.is_empty());
                return Err(Box::new(Failed {
                    instance,
                    failure,
                    stderr,
                    logs,
                    backtrace,
                    duration,
                }));
            }
        };
        let held = region.is_some() && written.is_empty();
        let output = match region {
            None => written,
            Some(region) if written.is_empty() => region,
            // Both stdout and a region: the one case that copies.
            Some(region) => {
                let mut both = bytes::BytesMut::with_capacity(written.len() + region.len());
                both.extend_from_slice(&written);
                both.extend_from_slice(&region);
                both.freeze()
            }
        };
        Ok(Outcome {
            instance,
            exit_code,
            output,
            stderr,
            logs,
            duration,
            fuel_used,
            held,
            input_moved,
        })
    }
}

type WasiParts = (
    WasiP1Ctx,
    Option<InputSource>,
    Option<OutputSink>,
    Option<OutputSink>,
    Vec<LineStream>,
);

fn wasi_context(invocation: &Invocation) -> anyhow::Result<WasiParts> {
    let mut builder = WasiCtxBuilder::new();
    let mut argv = Vec::with_capacity(invocation.args.len() + 1);
    argv.push(invocation.program.as_str());
    argv.extend(invocation.args.iter().map(String::as_str));
    builder.args(&argv).envs(&invocation.env);
    let input = match &invocation.input {
        Input::Bytes(bytes) => {
            let source = InputSource::new(bytes.clone());
            builder.stdin(source.clone());
            Some(source)
        }
        Input::Inherit => {
            builder.inherit_stdin();
            None
        }
    };
    let (stdout, stderr, lines) = match &invocation.stdio {
        Stdio::Capture => {
            let stdout = OutputSink::new(invocation.limits.output, WhenFull::Refuse);
            let stderr = OutputSink::new(invocation.limits.stderr, WhenFull::Truncate);
            builder.stdout(stdout.clone()).stderr(stderr.clone());
            (Some(stdout), Some(stderr), Vec::new())
        }
        Stdio::Inherit => {
            builder.inherit_stdout().inherit_stderr();
            (None, None, Vec::new())
        }
        Stdio::Lines(sink) => {
            let out = LineStream::new(sink.clone(), StreamKind::Stdout);
            let err = LineStream::new(sink.clone(), StreamKind::Stderr);
            builder.stdout(out.clone()).stderr(err.clone());
            (None, None, vec![out, err])
        }
    };
    for dir in &invocation.preopens {
        builder
            .preopened_dir(&dir.host, &dir.guest, FsPerms::ReadWrite)
            .map_err(|e| anyhow::anyhow!("cannot preopen {}: {e:#}", dir.host.display()))?;
    }
    Ok((builder.build_p1(), input, stdout, stderr, lines))
}
