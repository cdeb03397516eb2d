//! `weft subnet …`, `weft sg …` and `weft nic …`: the virtual network on a
//! server.

use super::client::{Client, encode};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum SubnetCommand {
    /// Create a subnet (its gateway is the first address).
    Create {
        /// The block, e.g. 10.0.1.0/24.
        cidr: String,
        /// A name.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List subnets.
    Ls,
    /// Delete a subnet that holds no interfaces.
    Rm { id: String },
}

/// A rule on the command line: `PROTO[:PORTS][@PEER]`, e.g. `tcp:80`,
/// `tcp:8000-8099@10.0.0.0/8`, `udp:53@sg-…`, `icmp`, `all`.
fn rule(text: &str) -> anyhow::Result<Value> {
    let (head, peer) = match text.split_once('@') {
        Some((head, peer)) => (head, Some(peer)),
        None => (text, None),
    };
    let (protocol, ports) = match head.split_once(':') {
        Some((protocol, ports)) => (protocol, Some(ports)),
        None => (head, None),
    };
    anyhow::ensure!(
        !protocol.is_empty(),
        "rule `{text}`: use PROTO[:PORTS][@PEER]"
    );
    let mut value = json!({ "protocol": protocol });
    if let Some(ports) = ports {
        value["ports"] = ports.into();
    }
    match peer {
        Some(group) if group.starts_with("sg-") => value["group"] = group.into(),
        Some(cidr) => value["cidr"] = cidr.into(),
        None => {}
    }
    Ok(value)
}

#[derive(Debug, Args)]
pub struct RuleArgs {
    /// The group.
    id: String,
    /// An ingress rule, PROTO[:PORTS][@PEER].
    #[arg(long, conflicts_with = "egress", required_unless_present = "egress")]
    ingress: Option<String>,
    /// An egress rule, PROTO[:PORTS][@PEER].
    #[arg(long)]
    egress: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RuleCommand {
    /// Add a rule.
    Add(RuleArgs),
    /// Remove a rule.
    Rm(RuleArgs),
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a security group: no ingress and all egress unless given.
    Create {
        /// Its name.
        name: String,
        /// An ingress rule, PROTO[:PORTS][@PEER] (repeatable).
        #[arg(long)]
        ingress: Vec<String>,
        /// An egress rule (repeatable); without any, all egress is allowed.
        #[arg(long)]
        egress: Vec<String>,
    },
    /// List security groups.
    Ls,
    /// Show a group's rules.
    Show { id: String },
    /// Add or remove rules.
    #[command(subcommand)]
    Rule(RuleCommand),
    /// Delete a group no interface uses.
    Rm { id: String },
}

#[derive(Debug, Subcommand)]
pub enum NicCommand {
    /// Create an interface record (detached).
    Create {
        /// Its subnet.
        #[arg(long)]
        subnet: String,
        /// A security group (repeatable).
        #[arg(long = "sg")]
        groups: Vec<String>,
        /// Its primary address (allocated when absent).
        #[arg(long)]
        ip: Option<String>,
        /// Turn the source/destination check off (a NAT instance needs it).
        #[arg(long)]
        no_source_dest_check: bool,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
    },
    /// List interface records.
    Ls,
    /// Show one, with its attachment and counters.
    Show { id: String },
    /// Attach it to an instance (a service's id).
    Attach { id: String, instance: String },
    /// Detach it.
    Detach { id: String },
    /// Replace its security groups.
    Groups {
        id: String,
        /// A security group (repeatable).
        #[arg(long = "sg", required = true)]
        groups: Vec<String>,
    },
    /// Delete a detached record.
    Rm { id: String },
}

pub(super) async fn send(
    client: &Client,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let mut request = client.request(method, path);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = client.call(request).await?;
    Ok(response.json().await.unwrap_or(Value::Null))
}

pub(super) fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

pub async fn subnet(client: &Client, command: SubnetCommand) -> anyhow::Result<ExitCode> {
    use reqwest::Method;
    match command {
        SubnetCommand::Create { cidr, name } => {
            let subnet = send(
                client,
                Method::POST,
                "/v1/subnets",
                Some(json!({ "cidr": cidr, "name": name })),
            )
            .await?;
            println!(
                "{} {} gateway {}",
                subnet["id"].as_str().unwrap_or(""),
                subnet["cidr"].as_str().unwrap_or(""),
                subnet["gateway"].as_str().unwrap_or("")
            );
        }
        SubnetCommand::Ls => {
            let body = client.json("/v1/subnets").await?;
            println!("{:<20} {:<18} {:<15} NAME", "ID", "CIDR", "GATEWAY");
            for s in body["subnets"].as_array().into_iter().flatten() {
                println!(
                    "{:<20} {:<18} {:<15} {}",
                    s["id"].as_str().unwrap_or(""),
                    s["cidr"].as_str().unwrap_or(""),
                    s["gateway"].as_str().unwrap_or(""),
                    s["name"].as_str().unwrap_or("")
                );
            }
        }
        SubnetCommand::Rm { id } => {
            send(
                client,
                Method::DELETE,
                &format!("/v1/subnets/{}", encode(&id)),
                None,
            )
            .await?;
            println!("deleted {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn rules_text(rules: &Value) -> String {
    let list: Vec<String> = rules
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let mut text = r["protocol"].as_str().unwrap_or("").to_owned();
            if let Some(ports) = r["ports"].as_str() {
                text.push(':');
                text.push_str(ports);
            }
            if let Some(peer) = r["cidr"].as_str().or(r["group"].as_str()) {
                text.push('@');
                text.push_str(peer);
            }
            text
        })
        .collect();
    if list.is_empty() {
        "-".into()
    } else {
        list.join(", ")
    }
}

pub async fn group(client: &Client, command: GroupCommand) -> anyhow::Result<ExitCode> {
    use reqwest::Method;
    match command {
        GroupCommand::Create {
            name,
            ingress,
            egress,
        } => {
            let ingress = ingress
                .iter()
                .map(|r| rule(r))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut body = json!({ "name": name, "ingress": ingress });
            if !egress.is_empty() {
                body["egress"] = egress
                    .iter()
                    .map(|r| rule(r))
                    .collect::<anyhow::Result<Vec<_>>>()?
                    .into();
            }
            let group = send(client, Method::POST, "/v1/security-groups", Some(body)).await?;
            println!("{}", group["id"].as_str().unwrap_or(""));
        }
        GroupCommand::Ls => {
            let body = client.json("/v1/security-groups").await?;
            println!("{:<16} {:<16} {:<32} EGRESS", "ID", "NAME", "INGRESS");
            for g in body["security_groups"].as_array().into_iter().flatten() {
                println!(
                    "{:<16} {:<16} {:<32} {}",
                    g["id"].as_str().unwrap_or(""),
                    g["name"].as_str().unwrap_or(""),
                    rules_text(&g["ingress"]),
                    rules_text(&g["egress"])
                );
            }
        }
        GroupCommand::Show { id } => print_json(
            &client
                .json(&format!("/v1/security-groups/{}", encode(&id)))
                .await?,
        ),
        GroupCommand::Rule(command) => {
            let (args, path) = match command {
                RuleCommand::Add(args) => (args, "rules"),
                RuleCommand::Rm(args) => (args, "rules/delete"),
            };
            let (direction, text) = match (&args.ingress, &args.egress) {
                (Some(text), _) => ("ingress", text),
                (None, Some(text)) => ("egress", text),
                (None, None) => anyhow::bail!("give --ingress RULE or --egress RULE"),
            };
            let mut body = rule(text)?;
            body["direction"] = direction.into();
            let group = send(
                client,
                Method::POST,
                &format!("/v1/security-groups/{}/{path}", encode(&args.id)),
                Some(body),
            )
            .await?;
            println!(
                "{}: ingress {}; egress {}",
                args.id,
                rules_text(&group["ingress"]),
                rules_text(&group["egress"])
            );
        }
        GroupCommand::Rm { id } => {
            send(
                client,
                Method::DELETE,
                &format!("/v1/security-groups/{}", encode(&id)),
                None,
            )
            .await?;
            println!("deleted {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn nic(client: &Client, command: NicCommand) -> anyhow::Result<ExitCode> {
    use reqwest::Method;
    match command {
        NicCommand::Create {
            subnet,
            groups,
            ip,
            no_source_dest_check,
            description,
        } => {
            let mut body = json!({ "subnet": subnet, "security_groups": groups, "source_dest_check": !no_source_dest_check });
            if let Some(ip) = ip {
                body["ip"] = ip.into();
            }
            if let Some(description) = description {
                body["description"] = description.into();
            }
            let nic = send(client, Method::POST, "/v1/nics", Some(body)).await?;
            println!(
                "{} ip {} mac {}",
                nic["id"].as_str().unwrap_or(""),
                nic["ip"].as_str().unwrap_or(""),
                nic["mac"].as_str().unwrap_or("")
            );
        }
        NicCommand::Ls => {
            let body = client.json("/v1/nics").await?;
            println!(
                "{:<18} {:<15} {:<20} {:<10} ATTACHED TO",
                "ID", "IP", "SUBNET", "STATUS"
            );
            for n in body["nics"].as_array().into_iter().flatten() {
                println!(
                    "{:<18} {:<15} {:<20} {:<10} {}",
                    n["id"].as_str().unwrap_or(""),
                    n["ip"].as_str().unwrap_or(""),
                    n["subnet"].as_str().unwrap_or(""),
                    n["status"].as_str().unwrap_or(""),
                    n["attachment"]["instance"].as_str().unwrap_or("-")
                );
            }
        }
        NicCommand::Show { id } => {
            print_json(&client.json(&format!("/v1/nics/{}", encode(&id))).await?)
        }
        NicCommand::Attach { id, instance } => {
            send(
                client,
                Method::POST,
                &format!("/v1/nics/{}/attach", encode(&id)),
                Some(json!({ "instance": instance })),
            )
            .await?;
            println!("attached {id} to {instance}");
        }
        NicCommand::Detach { id } => {
            send(
                client,
                Method::POST,
                &format!("/v1/nics/{}/detach", encode(&id)),
                Some(json!({})),
            )
            .await?;
            println!("detached {id}");
        }
        NicCommand::Groups { id, groups } => {
            let body = json!({ "security_groups": groups });
            let path = format!("/v1/nics/{}/security-groups", encode(&id));
            send(client, Method::PUT, &path, Some(body)).await?;
            println!("{id}: groups {}", groups.join(", "));
        }
        NicCommand::Rm { id } => {
            send(
                client,
                Method::DELETE,
                &format!("/v1/nics/{}", encode(&id)),
                None,
            )
            .await?;
            println!("deleted {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_from_the_command_line() {
        assert_eq!(
            rule("tcp:80").unwrap(),
            json!({ "protocol": "tcp", "ports": "80" })
        );
        assert_eq!(
            rule("tcp:8000-8099@10.0.0.0/8").unwrap(),
            json!({ "protocol": "tcp", "ports": "8000-8099", "cidr": "10.0.0.0/8" })
        );
        assert_eq!(
            rule("udp@sg-0123456789ab").unwrap(),
            json!({ "protocol": "udp", "group": "sg-0123456789ab" })
        );
        assert_eq!(rule("all").unwrap(), json!({ "protocol": "all" }));
        assert!(rule(":80").is_err());
    }
}
