//! `weft mesh run|add|ls|show|rm`: mesh jobs.
//!
//! `weft mesh run FILE --ranks N [ARGS...]` runs the job in this process,
//! as `weft run` does, with the CLI as the parent: it prints what the ranks
//! write (`[rank N] …`) and what they send it (`[rank N -> parent] …`),
//! sends each line typed on its stdin (`RANK TEXT`, or `* TEXT` for every
//! rank) to the ranks, and exits with the job's status. Its mesh subnet
//! lives in a throwaway network of the process. Given `--server`
//! (or `$WEFT_SERVER`), it deploys the module, starts the job on that server
//! and stays the parent over a WebSocket; killing the CLI ends the job.

use super::client::{Client, encode};
use super::{EXIT_WEFT_ERROR, print_error};
use crate::mesh::job::{self, Group, OnFailure, Output, Parent, RankState, Spec, Who};
use crate::runtime::stdio::StreamKind;
use crate::runtime::{Limits, LoadedModule, Runtime, RuntimeConfig, limits};
use crate::units::{parse_duration, parse_size};
use anyhow::Context;
use bytes::Bytes;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use weft_abi::mesh::PARENT;

#[derive(Debug, Subcommand)]
pub enum MeshCommand {
    /// Run a mesh job with this CLI as its parent: in this process, or on
    /// the server given with --server.
    Run(RunArgs),
    /// Start more ranks in a running mesh on the server: they get the
    /// next rank numbers.
    Add {
        /// The mesh's id.
        id: String,
        /// How many ranks.
        #[arg(long, short = 'n')]
        ranks: u32,
        /// The deployed module they run (default: rank 0's).
        #[arg(long)]
        module: Option<String>,
        /// Their arguments (default: the job's).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// List the server's meshes.
    Ls,
    /// Show a mesh: its ranks, their state and counters.
    Show {
        /// The mesh's id.
        id: String,
    },
    /// Stop a mesh: every rank ends.
    Rm {
        /// The mesh's id.
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// How many ranks.
    #[arg(long, short = 'n', default_value_t = 2)]
    ranks: u32,

    /// A controller module to be the parent instead of this CLI.
    #[arg(long, value_name = "FILE")]
    controller: Option<PathBuf>,

    /// What a failing rank does: `abort` the job, or leave it to the
    /// `parent`.
    #[arg(long, default_value = "abort", value_name = "POLICY")]
    on_failure: String,

    /// Stop the ranks after this long (e.g. 30s); exits with 124.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,

    /// Largest linear memory each rank may grow to.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "256MiB")]
    memory: u64,

    /// Set an environment variable for every rank.
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,

    /// Run without the mesh subnet (ranks then have no sockets; it saves
    /// setting up a throwaway network in process).
    #[arg(long)]
    no_subnet: bool,

    #[command(flatten)]
    data: super::DataDir,

    /// The module every rank runs.
    file: PathBuf,

    /// Arguments passed to every rank.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

pub async fn main(client: &Client, command: MeshCommand) -> anyhow::Result<ExitCode> {
    match command {
        MeshCommand::Run(args) => {
            let on_server = server_given(&args.file);
            let result = if on_server {
                run_remote(client, args).await
            } else {
                run_local(args).await
            };
            result.or_else(|error| {
                print_error(format!("{error:#}"));
                Ok(ExitCode::from(EXIT_WEFT_ERROR))
            })
        }
        MeshCommand::Add {
            id,
            ranks,
            module,
            args,
        } => {
            let mut body = json!({ "count": ranks });
            if let Some(module) = module {
                body["module"] = json!(module);
            }
            if !args.is_empty() {
                body["args"] = json!(args);
            }
            let path = format!("/v1/meshes/{}/ranks", encode(&id));
            let added: Value = client
                .call(client.request(reqwest::Method::POST, &path).json(&body))
                .await?
                .json()
                .await?;
            let numbers: Vec<String> = added["ranks"]
                .as_array()
                .map(|ranks| ranks.iter().map(ToString::to_string).collect())
                .unwrap_or_default();
            println!("added ranks {} to {id}", numbers.join(" "));
            Ok(ExitCode::SUCCESS)
        }
        MeshCommand::Ls => {
            let meshes = client.json("/v1/meshes").await?;
            let list = meshes["meshes"].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("no meshes");
            }
            for mesh in list {
                println!(
                    "{}  {:<8} ranks {:<4} parent {:<12} {}",
                    mesh["id"].as_str().unwrap_or(""),
                    mesh["state"].as_str().unwrap_or(""),
                    mesh["size"],
                    mesh["parent"].as_str().unwrap_or(""),
                    mesh["report"]["reason"].as_str().unwrap_or("")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        MeshCommand::Show { id } => {
            let mesh = client.json(&format!("/v1/meshes/{}", encode(&id))).await?;
            println!("{}", serde_json::to_string_pretty(&mesh)?);
            Ok(ExitCode::SUCCESS)
        }
        MeshCommand::Rm { id } => {
            let path = format!("/v1/meshes/{}", encode(&id));
            client
                .call(client.request(reqwest::Method::DELETE, &path))
                .await?;
            println!("stopped {id}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Whether `--server` or `$WEFT_SERVER` was given (before the file: what
/// follows it is the guests').
fn server_given(file: &Path) -> bool {
    if std::env::var_os("WEFT_SERVER").is_some_and(|v| !v.is_empty()) {
        return true;
    }
    std::env::args_os()
        .skip(1)
        .take_while(|arg| Path::new(arg) != file)
        .any(|arg| {
            let arg = arg.to_string_lossy();
            arg == "--server" || arg.starts_with("--server=")
        })
}

fn parse_env(specs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    specs
        .iter()
        .map(|spec| match spec.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
            _ => anyhow::bail!("invalid --env `{spec}`: use K=V"),
        })
        .collect()
}

fn on_failure(text: &str) -> anyhow::Result<OnFailure> {
    OnFailure::parse(text)
        .with_context(|| format!("--on-failure `{text}` is not one of abort, parent"))
}

fn module_name(file: &Path) -> String {
    file.file_stem()
        .map(|s| s.to_string_lossy().to_lowercase().replace('_', "-"))
        .unwrap_or_else(|| "mesh".into())
}

/// Prints ranks' output, prefixed by rank.
#[derive(Debug)]
struct Printer;

fn who(from: &Who<'_>) -> String {
    if from.rank == PARENT {
        "controller".into()
    } else {
        format!("rank {}", from.rank)
    }
}

impl Output for Printer {
    fn line(&self, from: &Who<'_>, stream: StreamKind, text: &str) {
        let who = who(from);
        match stream {
            StreamKind::Stdout => {
                let _ = writeln!(std::io::stdout().lock(), "[{who}] {text}");
            }
            StreamKind::Stderr => {
                let _ = writeln!(std::io::stderr().lock(), "[{who}] {text}");
            }
        }
    }

    fn log(&self, from: &Who<'_>, level: weft_abi::log::Level, text: &str) {
        let _ = writeln!(
            std::io::stderr().lock(),
            "[{}] {}: {text}",
            who(from),
            level.as_str()
        );
    }

    fn ended(&self, from: &Who<'_>, state: &RankState) {
        if let RankState::Failed { reason, .. } = state {
            let _ = writeln!(std::io::stderr().lock(), "[{}] failed: {reason}", who(from));
        }
    }
}

pub(super) fn print_message(src: u32, tag: i32, data: &[u8]) {
    let text = match std::str::from_utf8(data) {
        Ok(text) => text.trim_end().to_owned(),
        Err(_) => format!("<{} bytes, tag {tag}>", data.len()),
    };
    let _ = writeln!(std::io::stdout().lock(), "[rank {src} -> parent] {text}");
}

/// One line typed to the parent: `RANK TEXT` or `* TEXT`.
pub(super) fn parse_command(line: &str, size: u32) -> Option<(Vec<u32>, Bytes)> {
    let (to, text) = line.trim_end().split_once(' ').unwrap_or((line.trim(), ""));
    let ranks = match to {
        "*" => (0..size).collect(),
        rank => vec![rank.parse().ok().filter(|r| *r < size)?],
    };
    Some((ranks, Bytes::copy_from_slice(text.as_bytes())))
}

/// Stdin lines, read on a plain thread that is never waited for (a read of
/// a terminal cannot be interrupted).
pub(super) fn stdin_lines() -> tokio::sync::mpsc::Receiver<String> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn load(runtime: &Runtime, file: &Path) -> anyhow::Result<LoadedModule> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    runtime
        .load(&bytes)
        .with_context(|| file.display().to_string())
}

async fn run_local(args: RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.memory <= limits::MAX_MEMORY,
        "--memory is at most 4GiB for 32-bit wasm"
    );
    let data_dir = args.data.path();
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: args.ranks.clamp(1, job::MAX_RANKS) + 2,
        cache_dir: Some(data_dir.join("cache")),
        ..RuntimeConfig::default()
    })?;
    let name = module_name(&args.file);
    let module = load(&runtime, &args.file)?;
    let parent = match &args.controller {
        Some(file) => Parent::Controller {
            name: module_name(file),
            module: load(&runtime, file)?,
        },
        None => Parent::External,
    };
    let mut spec = Spec::new(vec![Group {
        name,
        module,
        ranks: args.ranks,
    }]);
    spec.args = args.args;
    spec.env = parse_env(&args.env)?;
    spec.on_failure = on_failure(&args.on_failure)?;
    spec.limits = Limits {
        memory: args.memory,
        timeout: args.timeout,
        ..Limits::default()
    };
    spec.output = Some(Arc::new(Printer));
    // The subnet lives in a throwaway network of this process: its store
    // is a temporary directory, removed when the job is done.
    let scratch = if args.no_subnet {
        None
    } else {
        Some(Scratch::open()?)
    };
    spec.network = scratch.as_ref().map(|s| s.network.clone());
    let (job, link) = job::start(&runtime, spec, parent).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(link) = &link {
        let size = link.size();
        let mut commands = stdin_lines();
        let mut stdin_open = true;
        loop {
            tokio::select! {
                message = link.recv() => match message {
                    Ok(message) => print_message(message.src as u32, message.tag, &message.data),
                    Err(_) => break,
                },
                line = commands.recv(), if stdin_open => match line {
                    Some(line) => match parse_command(&line, size) {
                        Some((ranks, data)) => {
                            for rank in ranks {
                                if let Err(error) = link.send(rank, 0, data.clone()).await {
                                    print_error(format!("to rank {rank}: {error}"));
                                }
                            }
                        }
                        None => print_error(format!("type `RANK TEXT` or `* TEXT` (ranks 0 to {})", size - 1)),
                    },
                    None => stdin_open = false,
                },
            }
        }
    }
    let report = job.wait().await;
    // Let go of the job only now: dropping the link stops a running job.
    drop(link);
    drop(scratch);
    if report.status != "ok"
        && let Some(reason) = &report.reason
    {
        print_error(format!("mesh {}: {reason}", report.status));
    }
    Ok(ExitCode::from(report.exit_code as u8))
}

/// A network for one in-process job, on a store in a temporary directory.
#[derive(Debug)]
struct Scratch {
    network: Arc<crate::network::Network>,
    dir: PathBuf,
}

impl Scratch {
    fn open() -> anyhow::Result<Scratch> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "weft-mesh-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating {} for the mesh subnet", dir.display()))?;
        let network = crate::store::Store::open(&dir)
            .map_err(anyhow::Error::from)
            .and_then(|store| Ok(crate::network::Network::open(Arc::new(store))?))
            .map(Arc::new);
        match network {
            Ok(network) => {
                network.spawn_driver();
                Ok(Scratch { network, dir })
            }
            Err(error) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(error.context("opening the network for the mesh subnet"))
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn deploy(client: &Client, file: &Path) -> anyhow::Result<String> {
    let name = module_name(file);
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    client
        .call(
            client
                .request(
                    reqwest::Method::PUT,
                    &format!("/v1/modules/{}", encode(&name)),
                )
                .header(reqwest::header::CONTENT_TYPE, "application/wasm")
                .body(bytes),
        )
        .await
        .with_context(|| format!("deploying {}", file.display()))?;
    Ok(name)
}

async fn run_remote(client: &Client, args: RunArgs) -> anyhow::Result<ExitCode> {
    let module = deploy(client, &args.file).await?;
    let parent = match &args.controller {
        Some(file) => json!({ "controller": deploy(client, file).await? }),
        None => json!("external"),
    };
    on_failure(&args.on_failure)?;
    let env: serde_json::Map<String, Value> = parse_env(&args.env)?
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let mut body = json!({
        "module": module,
        "ranks": args.ranks,
        "args": args.args,
        "env": env,
        "parent": parent,
        "on_failure": args.on_failure,
    });
    if let Some(timeout) = args.timeout {
        body["timeout_ms"] = json!(timeout.as_millis() as u64);
    }
    let created: Value = client
        .call(
            client
                .request(reqwest::Method::POST, "/v1/meshes")
                .json(&body),
        )
        .await?
        .json()
        .await?;
    let id = created["id"]
        .as_str()
        .context("no mesh id in the answer")?
        .to_owned();
    tracing::info!(mesh = %id, "started");
    if args.controller.is_some() {
        // The controller is the parent: follow the job until it ends.
        loop {
            let status = client.json(&format!("/v1/meshes/{id}")).await?;
            if status["state"] == "ended" {
                return Ok(finish_remote(&status["report"]));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    super::mesh_parent::run(client, &id, args.ranks).await
}

/// Prints a finished job's reason and gives its exit code.
pub(super) fn finish_remote(report: &Value) -> ExitCode {
    if report["status"] != "ok"
        && let Some(reason) = report["reason"].as_str()
    {
        print_error(format!(
            "mesh {}: {reason}",
            report["status"].as_str().unwrap_or("ended")
        ));
    }
    ExitCode::from(report["exit_code"].as_i64().unwrap_or(1) as u8)
}
