//! The wasmtime runtime: one engine, one linker, modules loaded once and
//! instantiated many times.
//!
//! - [`Runtime`] owns the engine (Cranelift, pooling allocator with
//!   copy-on-write memory images, async fibers, epoch interruption driven by a
//!   ticker thread) and the linker (WASI preview 1 plus the `weft:*` imports).
//! - [`Runtime::load`] validates and compiles a module, or takes it from the
//!   [`cache::ArtifactCache`], and pre-links it into a [`LoadedModule`].
//! - [`Runtime::invoke`] runs one [`Invocation`] of a loaded module under its
//!   [`Limits`] and reports an [`Outcome`] or a [`Failed`] with a [`Failure`]
//!   reason.
//! - [`registry::Registry`] keeps named modules durably in the store.

pub mod cache;
pub mod failure;
pub mod input;
mod instance;
pub mod limits;
mod module;
pub mod pages;
mod reaper;
pub mod registry;
pub mod stdio;

pub use failure::Failure;
pub use instance::{
    Cancel, Failed, Input, InstanceId, Invocation, Outcome, Preopen, Prepared, Stdio,
};
pub use limits::Limits;
pub use module::{LoadError, LoadedModule, Origin};

use crate::abi;
use cache::ArtifactCache;
pub(crate) use instance::State;
pub(crate) use reaper::Owned;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, Linker, PoolingAllocationConfig};

/// How the runtime is built. Fixed for the runtime's life.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Instances that can exist at once (slots in the pooling allocator).
    pub max_instances: u32,
    /// The largest linear memory any instance may be given, in bytes.
    pub max_memory: u64,
    /// Whether instances can be given fuel. Metering costs some speed, and
    /// changes the compiled code (so it is part of the engine fingerprint).
    pub metering: bool,
    /// How often the epoch advances: the granularity of deadlines and of
    /// time-slicing between instances.
    pub epoch_tick: Duration,
    /// Where compiled artifacts are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Largest module accepted, in bytes.
    pub max_module_size: usize,
    /// Linear memory kept resident per pooled slot after an instance ends,
    /// so the next instance in that slot does not fault its pages back in.
    pub keep_resident: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_instances: 1000,
            max_memory: limits::MAX_MEMORY,
            metering: false,
            epoch_tick: Duration::from_millis(5),
            cache_dir: None,
            max_module_size: 64 << 20,
            keep_resident: 2 << 20,
        }
    }
}

/// A handle to the runtime; cheap to clone and share between threads.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<State>,
    /// Every `(module, name)` the linker defines, to name missing imports.
    provided: HashSet<(String, String)>,
    fingerprint: String,
    cache: Option<ArtifactCache>,
    config: RuntimeConfig,
    /// Where `weft:chain` calls find modules by name; unset, they get
    /// `UNAVAILABLE` (as under `weft run`).
    chain_modules: std::sync::OnceLock<std::sync::Weak<dyn crate::chain::Modules>>,
    /// Where ended instances' stores are dropped.
    reaper: Arc<reaper::Reaper>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("fingerprint", &self.inner.fingerprint)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Builds the engine, the linker and the epoch ticker.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Runtime> {
        anyhow::ensure!(
            config.max_memory <= limits::MAX_MEMORY,
            "max memory is at most 4 GiB for 32-bit wasm"
        );
        let engine = Engine::new(&engine_config(&config))?;
        let fingerprint = fingerprint(&engine);

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |state: &mut State| &mut state.wasi)?;
        abi::register(&mut linker)?;
        let provided = {
            let mut store = wasmtime::Store::new(&engine, State::empty());
            linker
                .iter(&mut store)
                .map(|(module, name, _)| (module.to_owned(), name.to_owned()))
                .collect()
        };

        let cache = config
            .cache_dir
            .as_ref()
            .map(ArtifactCache::open)
            .transpose()?;

        spawn_epoch_ticker(&engine, config.epoch_tick);
        Ok(Runtime {
            inner: Arc::new(Inner {
                engine,
                linker,
                provided,
                fingerprint,
                cache,
                config,
                chain_modules: std::sync::OnceLock::new(),
                reaper: reaper::Reaper::spawn()?,
            }),
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Identifies the engine's code generation settings; compiled artifacts
    /// are only reused by an engine with the same fingerprint.
    pub fn fingerprint(&self) -> &str {
        &self.inner.fingerprint
    }

    /// The configuration the runtime was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Lets guests call modules by name (`weft:chain`'s `call`), found in
    /// `modules`. Set once; later calls are ignored.
    pub fn set_chain_modules(&self, modules: std::sync::Weak<dyn crate::chain::Modules>) {
        let _ = self.inner.chain_modules.set(modules);
    }

    /// What a guest's `weft:chain` call needs, when calls are possible.
    pub(crate) fn chain_calls(&self) -> Option<crate::chain::Calls> {
        let modules = self.inner.chain_modules.get()?.clone();
        Some(crate::chain::Calls::new(self.clone(), modules))
    }

    pub(crate) fn reaper(&self) -> &Arc<reaper::Reaper> {
        &self.inner.reaper
    }

    /// Whether every instance slot of the pool is taken.
    pub(crate) fn slots_full(&self) -> bool {
        self.engine()
            .pooling_allocator_metrics()
            .is_some_and(|pool| pool.core_instances() >= u64::from(self.config().max_instances))
    }

    pub(crate) fn linker(&self) -> &Linker<State> {
        &self.inner.linker
    }

    pub(crate) fn provides(&self, module: &str, name: &str) -> bool {
        self.inner
            .provided
            .contains(&(module.to_owned(), name.to_owned()))
    }

    pub(crate) fn cache(&self) -> Option<&ArtifactCache> {
        self.inner.cache.as_ref()
    }
}

fn engine_config(config: &RuntimeConfig) -> Config {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(config.max_instances)
        .total_memories(config.max_instances)
        .total_tables(config.max_instances)
        .total_stacks(config.max_instances)
        .max_memory_size(config.max_memory as usize)
        .table_elements(1_000_000)
        .linear_memory_keep_resident(config.keep_resident)
        .table_keep_resident(64 << 10)
        .pagemap_scan(wasmtime::Enabled::Auto);

    let mut wasm = Config::new();
    wasm.strategy(wasmtime::Strategy::Cranelift)
        .cranelift_opt_level(wasmtime::OptLevel::Speed)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .memory_init_cow(true)
        .epoch_interruption(true)
        .consume_fuel(config.metering)
        .parallel_compilation(true);
    wasm
}

/// A stable digest of everything that makes compiled code compatible:
/// wasmtime's own compatibility hash covers its version and every code
/// generation setting.
fn fingerprint(engine: &Engine) -> String {
    struct ShaHasher(Sha256);
    impl std::hash::Hasher for ShaHasher {
        fn finish(&self) -> u64 {
            unreachable!("only used through `write`")
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = ShaHasher(Sha256::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
    let digest = hasher.0.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Advances the engine's epoch every `tick` until the engine is dropped.
///
/// A plain thread rather than a tokio task: it must keep ticking when every
/// worker thread is busy running guests, which is exactly when it is needed.
fn spawn_epoch_ticker(engine: &Engine, tick: Duration) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("weft-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(tick);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => return,
                }
            }
        })
        .expect("spawning the epoch ticker thread");
}

/// The SHA-256 digest of a module's bytes, as `sha256:<hex>`.
pub fn digest(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

#[cfg(test)]
mod tests;
