//! `weft chain create|ls|show|rm|invoke`: chains on a server.

use super::client::{
    Client, clock, encode, error_message, print_guest_stderr, read_input, write_output,
};
use super::{EXIT_DEADLINE, EXIT_TRAP};
use crate::units::{format_duration, format_size, parse_duration};
use clap::Subcommand;
use serde_json::{Value, json};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum ChainCommand {
    /// Define (or replace) a chain of deployed modules, run in order.
    Create {
        /// The chain's name.
        name: String,
        /// The steps' modules, in order; `MODULE:ARG,ARG` passes arguments.
        #[arg(required = true, value_name = "MODULE")]
        steps: Vec<String>,
        /// The whole chain's deadline.
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
    },
    /// List chains.
    Ls,
    /// Show a chain and the per-step timings of its recent runs.
    Show {
        /// The chain's name.
        name: String,
    },
    /// Delete a chain.
    Rm {
        /// The chain's name.
        name: String,
    },
    /// Run a chain: its output to stdout, a failing step named on stderr.
    Invoke {
        /// The chain's name.
        name: String,
        /// Input: `@FILE`, `-` for stdin, or literal text. Without it, stdin
        /// is read when it is not a terminal.
        #[arg(long, short = 'd')]
        data: Option<String>,
        /// The whole chain's deadline for this run.
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
        /// Print each step's timing and sizes to stderr.
        #[arg(long)]
        timings: bool,
    },
}

pub async fn main(client: &Client, command: ChainCommand) -> anyhow::Result<ExitCode> {
    match command {
        ChainCommand::Create {
            name,
            steps,
            timeout,
        } => create(client, &name, &steps, timeout).await,
        ChainCommand::Ls => ls(client).await,
        ChainCommand::Show { name } => show(client, &name).await,
        ChainCommand::Rm { name } => {
            let path = format!("/v1/chains/{}", encode(&name));
            client
                .call(client.request(reqwest::Method::DELETE, &path))
                .await?;
            println!("deleted chain {name}");
            Ok(ExitCode::SUCCESS)
        }
        ChainCommand::Invoke {
            name,
            data,
            timeout,
            timings,
        } => invoke(client, &name, data, timeout, timings).await,
    }
}

/// `MODULE` or `MODULE:ARG,ARG` as a step.
fn step(text: &str) -> Value {
    match text.split_once(':') {
        Some((module, args)) => {
            let args: Vec<&str> = args.split(',').filter(|a| !a.is_empty()).collect();
            json!({ "module": module, "args": args })
        }
        None => json!(text),
    }
}

async fn create(
    client: &Client,
    name: &str,
    steps: &[String],
    timeout: Option<Duration>,
) -> anyhow::Result<ExitCode> {
    let mut body = json!({ "steps": steps.iter().map(|s| step(s)).collect::<Vec<_>>() });
    if let Some(timeout) = timeout {
        body["timeout"] = format!("{}ms", timeout.as_millis()).into();
    }
    let path = format!("/v1/chains/{}", encode(name));
    let response = client
        .call(client.request(reqwest::Method::PUT, &path).json(&body))
        .await?;
    let verb = if response.status() == reqwest::StatusCode::CREATED {
        "created"
    } else {
        "replaced"
    };
    let modules: Vec<&str> = steps
        .iter()
        .map(|s| s.split(':').next().unwrap_or(s))
        .collect();
    println!("{verb} chain {name}: {}", modules.join(" → "));
    Ok(ExitCode::SUCCESS)
}

fn step_names(chain: &Value) -> String {
    let names: Vec<String> = chain["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let args: Vec<&str> = s["args"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let module = s["module"].as_str().unwrap_or("?");
            if args.is_empty() {
                module.to_owned()
            } else {
                format!("{module}:{}", args.join(","))
            }
        })
        .collect();
    names.join(" → ")
}

async fn ls(client: &Client) -> anyhow::Result<ExitCode> {
    let body = client.json("/v1/chains").await?;
    let chains = body["chains"].as_array().cloned().unwrap_or_default();
    if chains.is_empty() {
        println!("no chains");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<24} {:>5}  STEPS", "NAME", "STEPS");
    for chain in chains {
        println!(
            "{:<24} {:>5}  {}",
            chain["name"].as_str().unwrap_or(""),
            chain["steps"].as_array().map_or(0, Vec::len),
            step_names(&chain)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_steps(steps: &Value, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "  {:>4} {:<20} {:>10} {:>10} {:>10} {:>10}  {:<5} STATUS",
        "STEP", "MODULE", "TIME", "IN", "MOVED", "OUT", "WARM"
    )?;
    for s in steps.as_array().into_iter().flatten() {
        writeln!(
            out,
            "  {:>4} {:<20} {:>10} {:>10} {:>10} {:>10}  {:<5} {}",
            s["index"].as_u64().unwrap_or(0),
            s["module"].as_str().unwrap_or(""),
            format_duration(Duration::from_micros(
                s["duration_us"].as_u64().unwrap_or(0)
            )),
            format_size(s["input_bytes"].as_u64().unwrap_or(0)),
            match s["input_moved"].as_u64().unwrap_or(0) {
                0 => "-".to_owned(),
                moved => format_size(moved),
            },
            format_size(s["output_bytes"].as_u64().unwrap_or(0)),
            if s["warm"] == true { "yes" } else { "no" },
            s["status"].as_str().unwrap_or("")
        )?;
    }
    Ok(())
}

async fn show(client: &Client, name: &str) -> anyhow::Result<ExitCode> {
    let chain = client.json(&format!("/v1/chains/{}", encode(name))).await?;
    println!("chain {name}: {}", step_names(&chain));
    if let Some(ms) = chain["timeout_ms"].as_u64() {
        println!("deadline {}", format_duration(Duration::from_millis(ms)));
    }
    let runs = chain["recent"].as_array().cloned().unwrap_or_default();
    if runs.is_empty() {
        println!("no runs yet");
    }
    let mut stdout = std::io::stdout().lock();
    for run in runs {
        let status = match run["failed_step"].as_u64() {
            Some(step) => format!(
                "failed at step {step}: {}",
                run["reason"].as_str().unwrap_or("")
            ),
            None => "ok".to_owned(),
        };
        writeln!(
            stdout,
            "run at {} took {}: {status}",
            clock(run["started_ms"].as_u64().unwrap_or(0)),
            format_duration(Duration::from_micros(
                run["duration_us"].as_u64().unwrap_or(0)
            ))
        )?;
        print_steps(&run["steps"], &mut stdout)?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn invoke(
    client: &Client,
    name: &str,
    data: Option<String>,
    timeout: Option<Duration>,
    timings: bool,
) -> anyhow::Result<ExitCode> {
    let input = read_input(data)?;
    let mut path = format!("/v1/chains/{}/invoke", encode(name));
    if let Some(timeout) = timeout {
        path.push_str(&format!("?timeout={}ms", timeout.as_millis()));
    }
    let response = client
        .send(client.request(reqwest::Method::POST, &path).body(input))
        .await?;
    let status = response.status();
    if status.is_success() {
        let steps: Value = response
            .headers()
            .get("x-weft-steps")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| serde_json::from_str(v).ok())
            .unwrap_or(Value::Null);
        write_output(&response.bytes().await?)?;
        if timings {
            print_steps(&steps, &mut std::io::stderr().lock())?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let error = &body["error"];
    let message = error_message(error, status);
    if status == reqwest::StatusCode::UNPROCESSABLE_ENTITY {
        print_guest_stderr(error);
        if timings {
            print_steps(&error["steps"], &mut std::io::stderr().lock())?;
        }
        super::print_error(format!("chain {name}: {message}"));
        let code = match (error["code"].as_str(), error["exit_code"].as_i64()) {
            (_, Some(code)) => code as u8,
            (Some("deadline_exceeded"), _) => EXIT_DEADLINE,
            _ => EXIT_TRAP,
        };
        return Ok(ExitCode::from(code));
    }
    anyhow::bail!("chain {name}: {message}")
}
