//! `weft dev`'s services: a guest whose `Cargo.toml` says
//!
//! ```toml
//! [package.metadata.weft.service]
//! args = ["80", "dev"]   # its arguments
//! ports = [80]           # TCP ports it serves
//! ```
//!
//! runs as a service on the dev subnet (`weft-dev`, 10.77.0.0/24 unless
//! that is taken), with a record of its own, a security group opening its
//! ports, and a port forward from loopback per port, whose URL is printed.
//! A new build restarts it with the same record, so the URL keeps working.
//! Everything is found again by name after a restart of `weft dev`.

use crate::network::{ForwardRequest, NicRequest, Proto};
use crate::node::{Node, ServiceRequest};
use crate::service::Restart;
use serde_json::Value;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::sync::Arc;
use weft_netstack::secgroup::{Peer, Protocol, Rule};

/// The dev subnet's name.
pub const SUBNET: &str = "weft-dev";
/// Blocks tried for the dev subnet, in order.
const BLOCKS: [&str; 4] = [
    "10.77.0.0/24",
    "10.78.0.0/24",
    "10.79.0.0/24",
    "172.31.77.0/24",
];

/// How a guest asks to run as a service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Its arguments.
    pub args: Vec<String>,
    /// The TCP ports it serves.
    pub ports: Vec<u16>,
}

/// The service specs of the binaries of the Cargo project in `dir`, by
/// module name, from `cargo metadata`.
pub async fn specs(dir: &Path) -> HashMap<String, ServiceSpec> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = tokio::process::Command::new(cargo)
        .current_dir(dir)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .await;
    let Ok(output) = output else {
        return HashMap::new();
    };
    let Ok(metadata) = serde_json::from_slice::<Value>(&output.stdout) else {
        return HashMap::new();
    };
    parse_specs(&metadata)
}

fn parse_specs(metadata: &Value) -> HashMap<String, ServiceSpec> {
    let mut specs = HashMap::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let service = &package["metadata"]["weft"]["service"];
        if !service.is_object() {
            continue;
        }
        let spec = ServiceSpec {
            args: service["args"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect(),
            ports: service["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.as_u64().and_then(|p| u16::try_from(p).ok()))
                .filter(|&p| p != 0)
                .collect(),
        };
        for target in package["targets"].as_array().into_iter().flatten() {
            let is_bin = target["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"));
            if is_bin && let Some(name) = target["name"].as_str() {
                specs.insert(super::module_name(name), spec.clone());
            }
        }
    }
    specs
}

/// Makes sure module `name` runs as a service per `spec`, restarting it if
/// `redeployed` or if its arguments changed; prints its URLs when it
/// (re)starts. Errors are printed, not fatal.
pub async fn ensure(node: &Arc<Node>, name: &str, spec: &ServiceSpec, redeployed: bool) {
    match run(node, name, spec, redeployed).await {
        Ok(urls) => {
            for (url, to) in urls {
                println!("{name} serves {url} ({to})");
            }
        }
        Err(error) => println!("{name}: not started as a service: {error}"),
    }
}

async fn run(
    node: &Arc<Node>,
    name: &str,
    spec: &ServiceSpec,
    redeployed: bool,
) -> anyhow::Result<Vec<(String, SocketAddrV4)>> {
    let network = node.network().clone();
    let subnet = match network.subnets().into_iter().find(|s| s.name() == SUBNET) {
        Some(subnet) => subnet,
        None => BLOCKS
            .iter()
            .find_map(|block| network.create_subnet(block, SUBNET).ok())
            .ok_or_else(|| anyhow::anyhow!("no free block for the dev subnet"))?,
    };
    let subnet_id = subnet.id().to_string();
    if !network
        .gateways()
        .iter()
        .any(|g| g.gateway.subnet == subnet_id)
    {
        network.create_gateway(&subnet_id, true, None)?;
    }
    let group_name = format!("dev-{name}");
    let group = match network
        .groups()
        .into_iter()
        .find(|g| g.name() == group_name)
    {
        Some(group) => group.id(),
        None => {
            let rules = spec
                .ports
                .iter()
                .map(|p| Rule::new(Protocol::Tcp, p.to_string().parse().ok(), Peer::Any))
                .collect::<Result<Vec<_>, _>>()?;
            network.create_group(&group_name, rules, None)?.id()
        }
    };
    let description = format!("weft dev: {name}");
    let record = match network
        .nics()
        .into_iter()
        .find(|(r, _)| r.description() == description)
    {
        Some((record, _)) => record,
        None => network.create_nic(NicRequest {
            subnet: subnet_id,
            security_groups: vec![group.to_string()],
            ip: None,
            source_dest_check: None,
            description: Some(description),
        })?,
    };
    let holder = record.attachment().map(|a| a.instance.clone());
    let running = holder.as_deref().and_then(|id| node.service(id));
    match running {
        Some(status) if !redeployed && status.module == name && status.args == spec.args => {}
        _ => {
            if let Some(id) = &holder {
                let _ = node.stop_service(id).await;
            }
            node.start_service(ServiceRequest {
                module: name.to_owned(),
                args: spec.args.clone(),
                env: Vec::new(),
                restart: Restart::Always,
                nics: vec![record.id().to_string()],
            })?;
        }
    }
    let ip = record.primary_ip();
    let mut urls = Vec::new();
    for &port in &spec.ports {
        let to = SocketAddrV4::new(ip, port);
        let existing = network.forwards().into_iter().find(|f| f.forward.to == to);
        let listen = match existing {
            Some(forward) => forward.forward.listen,
            None => {
                let preferred = SocketAddr::from((Ipv4Addr::LOCALHOST, preferred_port(port)));
                let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
                let add = |listen| {
                    network.add_forward(ForwardRequest {
                        listen,
                        to,
                        proto: Proto::Tcp,
                    })
                };
                add(preferred).or_else(|_| add(any))?.forward.listen
            }
        };
        urls.push((format!("http://{listen}/"), to));
    }
    Ok(urls)
}

/// The loopback port a guest port is forwarded from when it is free: 80 →
/// 8080, 443 → 8443, others as they are if unprivileged, else 8000 + port.
fn preferred_port(port: u16) -> u16 {
    match port {
        80 => 8080,
        443 => 8443,
        p if p >= 1024 => p,
        p => 8000 + p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_come_from_package_metadata() {
        let metadata = serde_json::json!({
            "packages": [
                {
                    "metadata": { "weft": { "service": { "args": ["80", "dev"], "ports": [80, 0, 70000] } } },
                    "targets": [
                        { "kind": ["bin"], "name": "web_server" },
                        { "kind": ["lib"], "name": "helpers" }
                    ]
                },
                { "metadata": null, "targets": [ { "kind": ["bin"], "name": "hello" } ] }
            ]
        });
        let specs = parse_specs(&metadata);
        assert_eq!(specs.len(), 1);
        assert_eq!(
            specs["web-server"],
            ServiceSpec {
                args: vec!["80".into(), "dev".into()],
                ports: vec![80],
            }
        );
    }

    #[test]
    fn preferred_ports() {
        assert_eq!(preferred_port(80), 8080);
        assert_eq!(preferred_port(22), 8022);
        assert_eq!(preferred_port(3000), 3000);
    }
}
