//! `weft service start|ls|stop`: long-running instances on a server.

use super::client::{Client, clock, encode};
use clap::Subcommand;
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Start a module as a supervised, long-running instance.
    Start {
        /// The module to run.
        module: String,
        /// An argument for the guest (repeatable).
        #[arg(long = "arg", value_name = "ARG")]
        args: Vec<String>,
        /// An environment variable for the guest (repeatable).
        #[arg(long = "env", value_name = "K=V")]
        env: Vec<String>,
        /// When to restart it: always, on-failure or never.
        #[arg(long, default_value = "always")]
        restart: String,
        /// An interface record to attach to it (repeatable).
        #[arg(long = "nic", value_name = "ID")]
        nics: Vec<String>,
    },
    /// List services.
    Ls,
    /// Stop a service (its instance ends at once) and forget it.
    Stop {
        /// The service's id.
        id: String,
    },
}

pub async fn main(client: &Client, command: ServiceCommand) -> anyhow::Result<ExitCode> {
    match command {
        ServiceCommand::Start {
            module,
            args,
            env,
            restart,
            nics,
        } => {
            let mut vars = serde_json::Map::new();
            for pair in &env {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--env {pair}: use K=V"))?;
                vars.insert(k.to_owned(), v.into());
            }
            let body = json!({ "module": module, "args": args, "env": vars, "restart": restart, "nics": nics });
            let status: Value = client
                .call(
                    client
                        .request(reqwest::Method::POST, "/v1/services")
                        .json(&body),
                )
                .await?
                .json()
                .await?;
            println!(
                "started {} ({module}, restart {restart})",
                status["id"].as_str().unwrap_or("?")
            );
        }
        ServiceCommand::Ls => {
            let body = client.json("/v1/services").await?;
            let services = body["services"].as_array().cloned().unwrap_or_default();
            if services.is_empty() {
                println!("no services");
            } else {
                println!(
                    "{:<22} {:<20} {:<11} {:>8}  {:<9} LAST EXIT",
                    "ID", "MODULE", "STATE", "RESTARTS", "STARTED"
                );
            }
            for s in services {
                println!(
                    "{:<22} {:<20} {:<11} {:>8}  {:<9} {}",
                    s["id"].as_str().unwrap_or(""),
                    s["module"].as_str().unwrap_or(""),
                    s["state"].as_str().unwrap_or(""),
                    s["restarts"].as_u64().unwrap_or(0),
                    s["started_ms"].as_u64().map(clock).unwrap_or_default(),
                    s["last_exit"].as_str().unwrap_or("-"),
                );
            }
        }
        ServiceCommand::Stop { id } => {
            let path = format!("/v1/services/{}", encode(&id));
            client
                .call(client.request(reqwest::Method::DELETE, &path))
                .await?;
            println!("stopped {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
