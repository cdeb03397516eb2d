//! A weft node: the module registry, the runtime, the activity log and the
//! metrics of one host, behind one handle the API, `weft dev` and tests use.
//!
//! The node owns the policy the API exposes: default limits for an
//! invocation, the ceiling a request may raise them to, and how many
//! instances may run at once (more are refused, not queued).

mod chains;
pub mod meshes;

pub use chains::{ChainRequest, ChainRunError};

use crate::activity::{Activity, Event, Finished, Running, Status, now_ms};
use crate::metrics::{Gauges, Metrics};
use crate::network::{Network, NetworkError};
use crate::runtime::registry::{Entry, Registry, RegistryError};
use crate::runtime::{Failed, Input, Invocation, Limits, Outcome, Runtime, RuntimeConfig, Stdio};
use crate::service::{self, Restart};
use crate::store::{ModuleRecord, ServiceRecord, Store};
use bytes::Bytes;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// How a node is set up.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The data directory (store and artifact cache).
    pub data_dir: PathBuf,
    /// The runtime's configuration; its cache directory is set from
    /// `data_dir`.
    pub runtime: RuntimeConfig,
    /// Instances that may run at once; more are refused.
    pub max_running: usize,
    /// Limits of an invocation that asks for nothing else.
    pub limits: Limits,
    /// The longest timeout a request may ask for.
    pub max_timeout: Duration,
    /// Where the gateways' outbound NAT may go on the host (none: nowhere).
    pub egress_allow: Vec<weft_netstack::Cidr>,
    /// How long a gateway's TCP connection may carry nothing either way.
    pub tcp_idle: Duration,
    /// Warm pools of chain steps.
    pub chains: crate::chain::ChainConfig,
}

impl NodeConfig {
    /// Defaults for a node keeping its state in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        NodeConfig {
            data_dir: data_dir.into(),
            runtime: RuntimeConfig::default(),
            max_running: 256,
            limits: Limits::default(),
            max_timeout: Duration::from_secs(300),
            egress_allow: Vec::new(),
            tcp_idle: crate::network::gateway::TCP_IDLE,
            chains: crate::chain::ChainConfig::default(),
        }
    }
}

/// What a caller asks of one invocation.
#[derive(Clone, Debug, Default)]
pub struct InvokeRequest {
    /// The input (the guest's stdin).
    pub input: Bytes,
    /// Arguments after `argv[0]`.
    pub args: Vec<String>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// A timeout other than the default, up to the node's maximum.
    pub timeout: Option<Duration>,
}

/// Why an invocation did not produce an outcome.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// No module has that name.
    #[error("no module named `{0}`")]
    NotFound(String),
    /// Too many instances are running.
    #[error("at capacity: {0} instances are running; try again shortly")]
    Busy(usize),
    /// The request asked for something not allowed.
    #[error("{0}")]
    BadRequest(String),
    /// The registry failed (store error, unloadable module).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The instance failed.
    #[error("{module}: {failed}")]
    Failed {
        /// The module that ran.
        module: String,
        /// How it failed.
        failed: Box<Failed>,
    },
}

/// What a caller asks of a new service.
#[derive(Clone, Debug)]
pub struct ServiceRequest {
    /// The module to run.
    pub module: String,
    /// Arguments after `argv[0]`.
    pub args: Vec<String>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// When to restart it.
    pub restart: Restart,
    /// Interface records to attach to it.
    pub nics: Vec<String>,
}

/// Why a service could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No module has that name.
    #[error("no module named `{0}`")]
    NoModule(String),
    /// No service has that id.
    #[error("no service `{0}`")]
    NotFound(String),
    /// The registry or store failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// An interface record could not be attached.
    #[error(transparent)]
    Network(#[from] NetworkError),
}

impl From<crate::store::StoreError> for ServiceError {
    fn from(error: crate::store::StoreError) -> Self {
        ServiceError::Registry(error.into())
    }
}

/// One host's state.
#[derive(Debug)]
pub struct Node {
    store: Arc<Store>,
    network: Arc<Network>,
    services: Mutex<HashMap<String, Arc<service::Handle>>>,
    registry: Registry,
    activity: Activity,
    metrics: Metrics,
    slots: Arc<Semaphore>,
    chains: crate::chain::Chains,
    meshes: Arc<crate::mesh::Meshes>,
    config: NodeConfig,
    started: Instant,
}

impl Node {
    /// Opens the store and builds the runtime.
    pub fn open(mut config: NodeConfig) -> anyhow::Result<Arc<Node>> {
        config.runtime.cache_dir = Some(config.data_dir.join("cache"));
        let store = Arc::new(Store::open(&config.data_dir)?);
        let runtime = Runtime::new(config.runtime.clone())?;
        let max_running = config
            .max_running
            .min(config.runtime.max_instances as usize);
        config.max_running = max_running;
        let network = Arc::new(Network::open(store.clone())?);
        network.set_egress_allow(config.egress_allow.clone());
        network.set_tcp_idle(config.tcp_idle);
        let node = Arc::new(Node {
            network,
            services: Mutex::new(HashMap::new()),
            registry: Registry::new(runtime, store.clone()),
            chains: crate::chain::Chains::new(store.clone(), config.chains.clone()),
            meshes: Arc::default(),
            store,
            activity: Activity::new(),
            metrics: Metrics::default(),
            slots: Arc::new(Semaphore::new(max_running)),
            config,
            started: Instant::now(),
        });
        // Guests' `chain::call` finds modules through the node.
        let modules: std::sync::Weak<dyn crate::chain::Modules> = Arc::downgrade(&node) as _;
        node.registry.runtime().set_chain_modules(modules);
        Ok(node)
    }

    /// The configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The module registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// What happened.
    pub fn activity(&self) -> &Activity {
        &self.activity
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Time since the node started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Instances running now.
    pub fn running(&self) -> usize {
        self.config.max_running - self.slots.available_permits()
    }

    /// The metrics as Prometheus text.
    pub fn render_metrics(&self) -> String {
        let mut text = self.metrics.render(&Gauges {
            running: self.running(),
            modules: self.registry.list().map(|m| m.len()).unwrap_or(0),
            uptime: self.uptime(),
        });
        text.push_str(&self.meshes.render_metrics());
        text
    }

    /// Validates, compiles and durably stores a module, then announces it.
    pub fn deploy(&self, name: &str, bytes: &[u8]) -> Result<Arc<Entry>, RegistryError> {
        let entry = self.registry.put(name, bytes)?;
        self.chains.forget_module(name);
        self.activity.publish(Event::Deployed(entry.record.clone()));
        Ok(entry)
    }

    /// Deletes a module; returns whether it existed.
    pub fn delete(&self, name: &str) -> Result<bool, RegistryError> {
        let existed = self.registry.remove(name)?;
        self.chains.forget_module(name);
        if existed {
            self.activity.publish(Event::Deleted {
                name: name.to_owned(),
            });
        }
        Ok(existed)
    }

    /// Every stored module.
    pub fn modules(&self) -> Result<Vec<ModuleRecord>, RegistryError> {
        self.registry.list()
    }

    /// Runs module `name` once on `request`, recording it in the activity
    /// log and the metrics.
    pub async fn invoke(&self, name: &str, request: InvokeRequest) -> Result<Outcome, InvokeError> {
        let timeout = match request.timeout {
            Some(t) if t > self.config.max_timeout => {
                return Err(InvokeError::BadRequest(format!(
                    "timeout {} is above this server's maximum of {}",
                    crate::units::format_duration(t),
                    crate::units::format_duration(self.config.max_timeout)
                )));
            }
            Some(t) => Some(t),
            None => self.config.limits.timeout,
        };
        let entry = self
            .registry
            .get(name)?
            .ok_or_else(|| InvokeError::NotFound(name.to_owned()))?;
        let Ok(_slot) = self.slots.clone().try_acquire_owned() else {
            self.metrics.busy();
            return Err(InvokeError::Busy(self.config.max_running));
        };

        let input_bytes = request.input.len() as u64;
        let invocation = Invocation {
            program: name.to_owned(),
            args: request.args,
            env: request.env,
            preopens: Vec::new(),
            input: Input::Bytes(request.input),
            stdio: Stdio::Capture,
            limits: Limits {
                timeout,
                ..self.config.limits.clone()
            },
            cancel: None,
            net: None,
        };
        let started_ms = now_ms();
        // Choose the id up front so the start can be announced under it.
        let instance = crate::runtime::InstanceId::new();
        self.activity.started(Running {
            instance: instance.to_string(),
            module: name.to_owned(),
            started_ms,
        });
        let result = self
            .registry
            .runtime()
            .invoke_as(&entry.loaded, invocation, instance.clone())
            .await;

        let (finished, lines, stderr) = match &result {
            Ok(outcome) => (
                Finished {
                    instance: instance.to_string(),
                    module: name.to_owned(),
                    started_ms,
                    duration_us: outcome.duration.as_micros() as u64,
                    status: Status::Ok,
                    exit_code: Some(outcome.exit_code),
                    code: None,
                    reason: None,
                    input_bytes,
                    output_bytes: outcome.output.len() as u64,
                },
                &outcome.logs,
                &outcome.stderr,
            ),
            Err(failed) => (
                Finished {
                    instance: instance.to_string(),
                    module: name.to_owned(),
                    started_ms,
                    duration_us: failed.duration.as_micros() as u64,
                    status: Status::Failed,
                    exit_code: None,
                    code: Some(failed.failure.code()),
                    reason: Some(failed.failure.to_string()),
                    input_bytes,
                    output_bytes: 0,
                },
                &failed.logs,
                &failed.stderr,
            ),
        };
        self.metrics.invocation(
            name,
            finished.code.unwrap_or("ok"),
            Duration::from_micros(finished.duration_us),
        );
        self.activity.finished(finished, lines, stderr);
        result.map_err(|failed| InvokeError::Failed {
            module: name.to_owned(),
            failed,
        })
    }

    /// Starts a service: stored first, so it survives a restart, then
    /// supervised. Needs a tokio runtime.
    pub fn start_service(
        self: &Arc<Self>,
        request: ServiceRequest,
    ) -> Result<service::Status, ServiceError> {
        if self.registry.record(&request.module)?.is_none() {
            return Err(ServiceError::NoModule(request.module));
        }
        for nic in &request.nics {
            let (record, _) = self.network.nic(nic)?;
            if let Some(attachment) = record.attachment() {
                return Err(NetworkError::Conflict(format!(
                    "{nic} is attached to {}",
                    attachment.instance
                ))
                .into());
            }
        }
        let record = ServiceRecord {
            id: crate::runtime::InstanceId::new().to_string(),
            module: request.module,
            args: request.args,
            env: request.env,
            restart: request.restart.as_str().to_owned(),
            created_ms: now_ms(),
        };
        self.store.put_service(&record)?;
        let id = record.id.clone();
        let status = self.supervise(record, request.restart);
        for nic in &request.nics {
            self.network.attach(nic, &id)?;
        }
        Ok(status)
    }

    /// The host's virtual network.
    pub fn network(&self) -> &Arc<Network> {
        &self.network
    }

    /// Starts the node's background work (the network's timers) and the
    /// stored services; returns how many services were restored. Needs a
    /// tokio runtime.
    pub fn start(self: &Arc<Self>) -> Result<usize, ServiceError> {
        let stale = crate::mesh::subnet::remove_leftovers(&self.network);
        if stale > 0 {
            tracing::info!("removed {stale} mesh subnets left by an earlier run");
        }
        self.network.spawn_driver();
        self.network.start_gateways();
        self.restore_services()
    }

    /// Attaches a record to a service (by its instance id).
    pub fn attach_nic(
        &self,
        nic: &str,
        instance: &str,
    ) -> Result<weft_netstack::Record, ServiceError> {
        if self.service(instance).is_none() {
            return Err(ServiceError::NotFound(instance.to_owned()));
        }
        Ok(self.network.attach(nic, instance)?)
    }

    fn supervise(self: &Arc<Self>, record: ServiceRecord, restart: Restart) -> service::Status {
        let id = record.id.clone();
        let handle = service::spawn(self, record, restart);
        let status = handle.status();
        self.services_map().insert(id, handle);
        status
    }

    fn services_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<service::Handle>>> {
        self.services.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts every stored service again (after a host restart); returns
    /// how many. Needs a tokio runtime.
    pub fn restore_services(self: &Arc<Self>) -> Result<usize, ServiceError> {
        let records = self.store.services()?;
        let count = records.len();
        for record in records {
            let restart = Restart::parse(&record.restart).unwrap_or(Restart::Always);
            tracing::info!(id = %record.id, module = %record.module, "restoring service");
            self.supervise(record, restart);
        }
        Ok(count)
    }

    /// Stops and forgets a service.
    pub async fn stop_service(&self, id: &str) -> Result<(), ServiceError> {
        let handle = self.services_map().remove(id);
        let Some(handle) = handle else {
            return Err(ServiceError::NotFound(id.to_owned()));
        };
        self.store.delete_service(id)?;
        handle.stop().await;
        self.network.detach_instance(id)?;
        Ok(())
    }

    /// Every service, oldest first.
    pub fn services(&self) -> Vec<service::Status> {
        let mut all: Vec<service::Status> =
            self.services_map().values().map(|h| h.status()).collect();
        all.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then(a.id.cmp(&b.id)));
        all
    }

    /// One service.
    pub fn service(&self, id: &str) -> Option<service::Status> {
        self.services_map().get(id).map(|h| h.status())
    }
}
