//! The CLI as a client of a running server: `deploy`, `invoke`, `ls`, `rm`,
//! `logs`, `ps`.

use super::{EXIT_DEADLINE, EXIT_TRAP};
use crate::units::{format_duration, format_size, parse_duration};
use anyhow::Context;
use clap::{Args, Subcommand};
use futures_util::StreamExt;
use serde_json::Value;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Where the server is.
#[derive(Debug, Args)]
pub struct ClientFlags {
    /// The server's URL.
    #[arg(
        long,
        global = true,
        env = "WEFT_SERVER",
        default_value = "http://127.0.0.1:7878"
    )]
    server: String,

    /// Bearer token for a server started with --token.
    #[arg(long, global = true, env = "WEFT_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Upload a module (validated and compiled by the server).
    Deploy {
        /// The module file (.wasm or .wat).
        file: PathBuf,
        /// Name to deploy it under (default: the file name without extension).
        #[arg(long)]
        name: Option<String>,
    },
    /// Run a deployed module once: output to stdout, exit code passed through.
    Invoke {
        /// The module's name.
        name: String,
        /// Input: `@FILE`, `-` for stdin, or literal text. Without it, stdin
        /// is read when it is not a terminal.
        #[arg(long, short = 'd')]
        data: Option<String>,
        /// An argument for the guest (repeatable).
        #[arg(long = "arg", value_name = "ARG")]
        args: Vec<String>,
        /// An environment variable for the guest (repeatable).
        #[arg(long = "env", value_name = "K=V")]
        env: Vec<String>,
        /// Deadline for this invocation.
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
    },
    /// List deployed modules.
    Ls,
    /// Delete a module.
    Rm {
        /// The module's name.
        name: String,
    },
    /// Show guest logs (stderr and SDK log lines).
    Logs {
        /// Keep printing new lines as they come.
        #[arg(short, long)]
        follow: bool,
        /// Only this module's lines.
        name: Option<String>,
        /// How many recent lines to show first.
        #[arg(long, default_value_t = 100)]
        lines: usize,
    },
    /// Chains: modules run one after the other in the server, each step's
    /// output the next one's input.
    #[command(subcommand)]
    Chain(super::chain::ChainCommand),
    /// Long-running, supervised instances.
    #[command(subcommand)]
    Service(super::service::ServiceCommand),
    /// Subnets of the virtual network.
    #[command(subcommand)]
    Subnet(super::network::SubnetCommand),
    /// Security groups and their rules.
    #[command(subcommand)]
    Sg(super::network::GroupCommand),
    /// Interface records: create, attach, detach.
    #[command(subcommand)]
    Nic(super::network::NicCommand),
    /// Gateways: a subnet's way to the host (NAT, TUN device).
    #[command(subcommand)]
    Gateway(super::gateway::GatewayCommand),
    /// Port forwards from host addresses to instance addresses.
    #[command(subcommand)]
    Forward(super::gateway::ForwardCommand),
    /// Mesh jobs: run one with this CLI as the parent, list, show, stop.
    #[command(subcommand)]
    Mesh(super::mesh::MeshCommand),
    /// Show running and recent instances.
    Ps {
        /// How many recent instances to show.
        #[arg(long, default_value_t = 20)]
        recent: usize,
    },
}

pub(super) struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    fn new(flags: &ClientFlags) -> anyhow::Result<Client> {
        Ok(Client {
            base: flags.server.trim_end_matches('/').to_owned(),
            token: flags.token.clone().filter(|t| !t.is_empty()),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()?,
        })
    }

    /// The server's base URL.
    pub(super) fn base(&self) -> &str {
        &self.base
    }

    /// The bearer token, if any.
    pub(super) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub(super) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub(super) async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        request.send().await.map_err(|error| {
            if error.is_connect() {
                anyhow::anyhow!(
                    "cannot reach a weft server at {} (start one with `weft serve`, or pass --server)",
                    self.base
                )
            } else {
                anyhow::anyhow!("request to {} failed: {error}", self.base)
            }
        })
    }

    /// Sends and turns a non-2xx answer into its error message.
    pub(super) async fn call(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        let response = self.send(request).await?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let message = body["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("the server answered {status}"));
        Err(anyhow::anyhow!(message))
    }

    pub(super) async fn json(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self
            .call(self.request(reqwest::Method::GET, path))
            .await?
            .json()
            .await?)
    }
}

pub async fn main(command: ClientCommand, flags: &ClientFlags) -> anyhow::Result<ExitCode> {
    let client = Client::new(flags)?;
    match command {
        ClientCommand::Deploy { file, name } => deploy(&client, file, name).await,
        ClientCommand::Invoke {
            name,
            data,
            args,
            env,
            timeout,
        } => invoke(&client, &name, data, args, env, timeout).await,
        ClientCommand::Ls => ls(&client).await,
        ClientCommand::Rm { name } => {
            let path = format!("/v1/modules/{}", encode(&name));
            client
                .call(client.request(reqwest::Method::DELETE, &path))
                .await?;
            println!("deleted {name}");
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Logs {
            follow,
            name,
            lines,
        } => logs(&client, follow, name, lines).await,
        ClientCommand::Ps { recent } => ps(&client, recent).await,
        ClientCommand::Mesh(command) => super::mesh::main(&client, command).await,
        ClientCommand::Chain(command) => super::chain::main(&client, command).await,
        ClientCommand::Service(command) => super::service::main(&client, command).await,
        ClientCommand::Subnet(command) => super::network::subnet(&client, command).await,
        ClientCommand::Sg(command) => super::network::group(&client, command).await,
        ClientCommand::Nic(command) => super::network::nic(&client, command).await,
        ClientCommand::Gateway(command) => super::gateway::gateway(&client, command).await,
        ClientCommand::Forward(command) => super::gateway::forward(&client, command).await,
    }
}

pub(super) fn encode(segment: &str) -> String {
    form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

async fn deploy(client: &Client, file: PathBuf, name: Option<String>) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let name = match name {
        Some(name) => name,
        None => file
            .file_stem()
            .map(|s| s.to_string_lossy().to_lowercase().replace('_', "-"))
            .context("the file has no name: pass --name")?,
    };
    let total = bytes.len();
    let started = Instant::now();
    let show_progress = std::io::stderr().is_terminal() && total > (4 << 20);
    let chunks: Vec<bytes::Bytes> = bytes::Bytes::from(bytes)
        .chunks(256 << 10)
        .map(bytes::Bytes::copy_from_slice)
        .collect();
    let mut sent = 0usize;
    let stream = futures_util::stream::iter(chunks).map(move |chunk| {
        sent += chunk.len();
        if show_progress {
            eprint!(
                "\ruploading {name_pct}%",
                name_pct = sent * 100 / total.max(1)
            );
            if sent == total {
                eprintln!();
            }
        }
        Ok::<_, std::io::Error>(chunk)
    });
    let request = client
        .request(
            reqwest::Method::PUT,
            &format!("/v1/modules/{}", encode(&name)),
        )
        .header(reqwest::header::CONTENT_TYPE, "application/wasm")
        .header(reqwest::header::CONTENT_LENGTH, total)
        .body(reqwest::Body::wrap_stream(stream));
    let module: Value = client
        .call(request)
        .await
        .with_context(|| format!("deploying {}", file.display()))?
        .json()
        .await?;
    let digest = module["digest"].as_str().unwrap_or("");
    println!(
        "deployed {name} ({}, {}) in {}",
        &digest[..digest.len().min(19)],
        format_size(total as u64),
        format_duration(started.elapsed())
    );
    Ok(ExitCode::SUCCESS)
}

/// An invocation's input from `--data`: `-` or nothing (when stdin is not
/// a terminal) for stdin, `@FILE` for a file, else the text itself.
pub(super) fn read_input(data: Option<String>) -> anyhow::Result<Vec<u8>> {
    let read_stdin = || -> anyhow::Result<Vec<u8>> {
        let mut input = Vec::new();
        std::io::stdin().read_to_end(&mut input)?;
        Ok(input)
    };
    match data.as_deref() {
        Some("-") => read_stdin(),
        Some(text) if text.starts_with('@') => {
            std::fs::read(&text[1..]).with_context(|| format!("cannot read {}", &text[1..]))
        }
        Some(text) => Ok(text.as_bytes().to_vec()),
        None if !std::io::stdin().is_terminal() => read_stdin(),
        None => Ok(Vec::new()),
    }
}

async fn invoke(
    client: &Client,
    name: &str,
    data: Option<String>,
    args: Vec<String>,
    env: Vec<String>,
    timeout: Option<Duration>,
) -> anyhow::Result<ExitCode> {
    let input = read_input(data)?;
    let mut query = form_urlencoded::Serializer::new(String::new());
    for arg in &args {
        query.append_pair("args", arg);
    }
    for pair in &env {
        anyhow::ensure!(pair.contains('='), "--env {pair}: use K=V");
        query.append_pair("env", pair);
    }
    if let Some(timeout) = timeout {
        query.append_pair("timeout", &format!("{}ms", timeout.as_millis()));
    }
    let path = format!("/v1/modules/{}/invoke?{}", encode(name), query.finish());
    let response = client
        .send(client.request(reqwest::Method::POST, &path).body(input))
        .await?;
    let status = response.status();
    if status.is_success() {
        let exit_code: i32 = response
            .headers()
            .get("x-weft-exit-code")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        write_output(&response.bytes().await?)?;
        return Ok(ExitCode::from(exit_code as u8));
    }
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let error = &body["error"];
    let message = error_message(error, status);
    if status == reqwest::StatusCode::UNPROCESSABLE_ENTITY {
        print_guest_stderr(error);
        super::print_error(format!("{name}: {message}"));
        let code = if error["code"] == "deadline_exceeded" {
            EXIT_DEADLINE
        } else {
            EXIT_TRAP
        };
        return Ok(ExitCode::from(code));
    }
    anyhow::bail!("{name}: {message}")
}

/// Writes an invocation's output to stdout, as it is.
pub(super) fn write_output(output: &[u8]) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(output)?;
    stdout.flush()
}

/// An error answer's message (`{"error": {"message"}}`), or its status.
pub(super) fn error_message(error: &Value, status: reqwest::StatusCode) -> String {
    error["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("the server answered {status}"))
}

/// Prints a failed guest's stderr (a 422's `stderr`), ending in a newline.
pub(super) fn print_guest_stderr(error: &Value) {
    if let Some(stderr) = error["stderr"].as_str().filter(|s| !s.is_empty()) {
        eprint!("{stderr}");
        if !stderr.ends_with('\n') {
            eprintln!();
        }
    }
}

/// `HH:MM:SS` (UTC) of a Unix time in milliseconds.
pub(super) fn clock(ms: u64) -> String {
    let secs = ms / 1000 % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

fn short(id: &str) -> &str {
    &id[..id.len().min(13)]
}

async fn ls(client: &Client) -> anyhow::Result<ExitCode> {
    let body = client.json("/v1/modules").await?;
    let modules = body["modules"].as_array().cloned().unwrap_or_default();
    if modules.is_empty() {
        println!("no modules deployed");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:>10}  {:<19}  DEPLOYED (UTC)",
        "NAME", "SIZE", "DIGEST"
    );
    for module in modules {
        let digest = module["digest"].as_str().unwrap_or("");
        println!(
            "{:<24} {:>10}  {:<19}  {}",
            module["name"].as_str().unwrap_or(""),
            format_size(module["size"].as_u64().unwrap_or(0)),
            &digest[..digest.len().min(19)],
            clock(module["created_ms"].as_u64().unwrap_or(0))
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_log_line(line: &Value) {
    println!(
        "{} {} {} {:<5} {}",
        clock(line["time_ms"].as_u64().unwrap_or(0)),
        line["module"].as_str().unwrap_or(""),
        short(line["instance"].as_str().unwrap_or("")),
        if line["stream"] == "stderr" {
            "err"
        } else {
            line["level"].as_str().unwrap_or("")
        },
        line["message"].as_str().unwrap_or("")
    );
}

async fn logs(
    client: &Client,
    follow: bool,
    name: Option<String>,
    lines: usize,
) -> anyhow::Result<ExitCode> {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("limit", &lines.to_string());
    if let Some(name) = &name {
        query.append_pair("module", name);
    }
    if !follow {
        let body = client.json(&format!("/v1/logs?{}", query.finish())).await?;
        for line in body["lines"].as_array().into_iter().flatten() {
            print_log_line(line);
        }
        return Ok(ExitCode::SUCCESS);
    }
    query.append_pair("follow", "true");
    let response = client
        .call(client.request(
            reqwest::Method::GET,
            &format!("/v1/logs?{}", query.finish()),
        ))
        .await?;
    let mut stream = response.bytes_stream();
    let mut buffer = Vec::new();
    while let Some(chunk) = stream.next().await {
        buffer.extend_from_slice(&chunk?);
        // SSE events end with a blank line.
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buffer.drain(..end + 2).collect();
            for line in String::from_utf8_lossy(&event).lines() {
                if let Some(data) = line.strip_prefix("data:")
                    && let Ok(value) = serde_json::from_str::<Value>(data.trim())
                    && value.get("message").is_some()
                {
                    print_log_line(&value);
                }
            }
            std::io::stdout().flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn ps(client: &Client, recent: usize) -> anyhow::Result<ExitCode> {
    let body = client
        .json(&format!("/v1/instances?limit={recent}"))
        .await?;
    println!(
        "{:<22} {:<20} {:<9} {:>10}  STATUS",
        "INSTANCE", "MODULE", "STARTED", "DURATION"
    );
    for running in body["running"].as_array().into_iter().flatten() {
        println!(
            "{:<22} {:<20} {:<9} {:>10}  running",
            running["instance"].as_str().unwrap_or(""),
            running["module"].as_str().unwrap_or(""),
            clock(running["started_ms"].as_u64().unwrap_or(0)),
            "-"
        );
    }
    for done in body["recent"].as_array().into_iter().flatten() {
        let status = if done["status"] == "ok" {
            format!("exit {}", done["exit_code"].as_i64().unwrap_or(0))
        } else {
            done["code"].as_str().unwrap_or("failed").to_owned()
        };
        println!(
            "{:<22} {:<20} {:<9} {:>10}  {status}",
            done["instance"].as_str().unwrap_or(""),
            done["module"].as_str().unwrap_or(""),
            clock(done["started_ms"].as_u64().unwrap_or(0)),
            format_duration(Duration::from_micros(
                done["duration_us"].as_u64().unwrap_or(0)
            ))
        );
    }
    Ok(ExitCode::SUCCESS)
}
