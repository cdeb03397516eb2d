//! `weft gateway …` and `weft forward …`: joining the virtual network to
//! the host.

use super::client::{Client, encode};
use super::network::{print_json, send};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Create a subnet's gateway: outbound NAT to the host (subject to the
    /// server's --egress-allow), and optionally a TUN device that routes the
    /// subnet into the host kernel (needs CAP_NET_ADMIN).
    Create {
        /// The subnet.
        #[arg(long)]
        subnet: String,
        /// No outbound NAT: instances reach nothing outside the subnet.
        #[arg(long)]
        no_nat: bool,
        /// Make a TUN device of this name (e.g. weft0) holding the gateway
        /// address, so host programs reach instances by their IPs.
        #[arg(long, value_name = "NAME")]
        tun: Option<String>,
    },
    /// List gateways.
    Ls,
    /// Show one, with its counters.
    Show { id: String },
    /// Delete a gateway no forward uses.
    Rm { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ForwardCommand {
    /// Forward a host address to an instance address, e.g.
    /// `weft forward add 127.0.0.1:8080 10.0.1.5:80`.
    Add {
        /// Host address and port to listen on (port 0: any free one).
        listen: String,
        /// Instance address and port.
        to: String,
        /// Forward UDP instead of TCP.
        #[arg(long)]
        udp: bool,
    },
    /// List forwards.
    Ls,
    /// Show one, with its counters.
    Show { id: String },
    /// Remove a forward.
    Rm { id: String },
}

fn count(value: &Value, key: &str) -> u64 {
    value[key].as_u64().unwrap_or(0)
}

pub async fn gateway(client: &Client, command: GatewayCommand) -> anyhow::Result<ExitCode> {
    match command {
        GatewayCommand::Create {
            subnet,
            no_nat,
            tun,
        } => {
            let mut body = json!({ "subnet": subnet, "nat": !no_nat });
            if let Some(tun) = tun {
                body["tun"] = tun.into();
            }
            let g = send(client, Method::POST, "/v1/gateways", Some(body)).await?;
            println!(
                "{} {} on {}{}",
                g["id"].as_str().unwrap_or(""),
                g["ip"].as_str().unwrap_or(""),
                g["cidr"].as_str().unwrap_or(""),
                g["tun"]
                    .as_str()
                    .map(|t| format!(", TUN device {t}"))
                    .unwrap_or_default()
            );
        }
        GatewayCommand::Ls => {
            let body = client.json("/v1/gateways").await?;
            println!(
                "{:<16} {:<20} {:<15} {:<4} {:<8} {:>8} {:>8} STATUS",
                "ID", "SUBNET", "IP", "NAT", "TUN", "NAT-CONN", "REFUSED"
            );
            for g in body["gateways"].as_array().into_iter().flatten() {
                let c = &g["counters"];
                println!(
                    "{:<16} {:<20} {:<15} {:<4} {:<8} {:>8} {:>8} {}",
                    g["id"].as_str().unwrap_or(""),
                    g["subnet"].as_str().unwrap_or(""),
                    g["ip"].as_str().unwrap_or(""),
                    if g["nat"].as_bool().unwrap_or(false) {
                        "on"
                    } else {
                        "off"
                    },
                    g["tun"].as_str().unwrap_or("-"),
                    count(c, "nat_tcp") + count(c, "nat_udp"),
                    count(c, "nat_denied") + count(c, "nat_limited"),
                    g["status"].as_str().unwrap_or("")
                );
            }
            let allow: Vec<&str> = body["egress_allow"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if allow.is_empty() {
                println!("egress allow-list: empty (NAT reaches nothing; see --egress-allow)");
            } else {
                println!("egress allow-list: {}", allow.join(", "));
            }
        }
        GatewayCommand::Show { id } => {
            print_json(
                &client
                    .json(&format!("/v1/gateways/{}", encode(&id)))
                    .await?,
            );
        }
        GatewayCommand::Rm { id } => {
            let path = format!("/v1/gateways/{}", encode(&id));
            send(client, Method::DELETE, &path, None).await?;
            println!("deleted {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn forward(client: &Client, command: ForwardCommand) -> anyhow::Result<ExitCode> {
    match command {
        ForwardCommand::Add { listen, to, udp } => {
            let body =
                json!({ "listen": listen, "to": to, "proto": if udp { "udp" } else { "tcp" } });
            let f = send(client, Method::POST, "/v1/forwards", Some(body)).await?;
            println!(
                "{} {} {} -> {}",
                f["id"].as_str().unwrap_or(""),
                f["proto"].as_str().unwrap_or(""),
                f["listen"].as_str().unwrap_or(""),
                f["to"].as_str().unwrap_or("")
            );
        }
        ForwardCommand::Ls => {
            let body = client.json("/v1/forwards").await?;
            println!(
                "{:<17} {:<5} {:<22} {:<22} {:>6} {:>6} {:>7} {:>5} STATUS",
                "ID", "PROTO", "LISTEN", "TO", "CONNS", "ACTIVE", "REFUSED", "IDLE"
            );
            for f in body["forwards"].as_array().into_iter().flatten() {
                let c = &f["counters"];
                println!(
                    "{:<17} {:<5} {:<22} {:<22} {:>6} {:>6} {:>7} {:>5} {}",
                    f["id"].as_str().unwrap_or(""),
                    f["proto"].as_str().unwrap_or(""),
                    f["listen"].as_str().unwrap_or(""),
                    f["to"].as_str().unwrap_or(""),
                    count(c, "connections"),
                    count(c, "active"),
                    count(c, "refused"),
                    count(c, "idle"),
                    f["status"].as_str().unwrap_or("")
                );
            }
        }
        ForwardCommand::Show { id } => {
            print_json(
                &client
                    .json(&format!("/v1/forwards/{}", encode(&id)))
                    .await?,
            );
        }
        ForwardCommand::Rm { id } => {
            let path = format!("/v1/forwards/{}", encode(&id));
            send(client, Method::DELETE, &path, None).await?;
            println!("removed {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
