//! `weft serve`: the HTTP API and dashboard over a data directory.

use crate::api::{DEFAULT_LISTEN, ServeConfig, Server};
use crate::node::{Node, NodeConfig};
use crate::runtime::{Limits, limits};
use crate::units::{parse_duration, parse_size};
use clap::Args;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Flags shared by `weft serve` and `weft dev`.
#[derive(Debug, Args)]
pub struct ServerFlags {
    #[command(flatten)]
    data: super::DataDir,

    /// Address to listen on. Anything but loopback needs --token.
    #[arg(long, default_value = DEFAULT_LISTEN, value_name = "ADDR")]
    listen: SocketAddr,

    /// Bearer token every API call must carry.
    #[arg(long, env = "WEFT_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// Also accept requests whose Host header names this host (repeatable).
    #[arg(long = "allow-host", value_name = "NAME")]
    allow_hosts: Vec<String>,

    /// API connections served at once; more wait in the listen backlog.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    max_connections: usize,

    /// API connections one client address holds at once; past that, a new
    /// one is answered with 503 and closed.
    #[arg(long, default_value_t = 256, value_name = "N")]
    max_connections_per_client: usize,

    /// Instances that may run at once; more are answered with 503.
    #[arg(long, default_value_t = 256, value_name = "N")]
    max_running: usize,

    /// Largest module accepted.
    #[arg(long, default_value = "64MiB", value_parser = parse_size, value_name = "SIZE")]
    max_module_size: u64,

    /// Largest invocation input accepted.
    #[arg(long, default_value = "64MiB", value_parser = parse_size, value_name = "SIZE")]
    max_input: u64,

    /// Deadline of an invocation that asks for none.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    timeout: Duration,

    /// Longest deadline a request may ask for.
    #[arg(long, default_value = "5m", value_parser = parse_duration, value_name = "DURATION")]
    max_timeout: Duration,

    /// Linear memory limit of each instance.
    #[arg(long, default_value = "256MiB", value_parser = parse_size, value_name = "SIZE")]
    memory: u64,

    /// Where gateways' outbound NAT may connect on the host: a block or an
    /// address (repeatable; `127.0.0.1` lets guests reach the host's
    /// loopback through their gateway's address). None: NAT reaches nothing.
    #[arg(long = "egress-allow", value_name = "CIDR", value_parser = crate::network::gateway::parse_allow)]
    egress_allow: Vec<weft_netstack::Cidr>,

    /// How long a TCP connection through a gateway (a port forward's, or
    /// outbound NAT's) may carry nothing either way before it is closed.
    #[arg(long, default_value = "350s", value_parser = parse_duration, value_name = "DURATION")]
    tcp_idle: Duration,

    /// Warm instances kept ready per chain step (module, arguments,
    /// environment and limits); 0 keeps none.
    #[arg(long, default_value_t = 2, value_name = "N")]
    chain_warm: usize,

    /// Copy every chain hop's input, rather than moving the whole pages of
    /// a large one from the producer's memory into the consumer's (moving
    /// needs Linux 6.8's userfaultfd; without it, hops copy anyway).
    #[arg(long)]
    chain_copy: bool,
}

impl ServerFlags {
    /// Opens the node and binds the server these flags describe.
    pub async fn start(&self) -> anyhow::Result<(Arc<Node>, Server)> {
        let data_dir = self.data.path();
        anyhow::ensure!(
            self.memory <= limits::MAX_MEMORY,
            "--memory is at most 4GiB for 32-bit wasm"
        );
        let mut node = NodeConfig::new(&data_dir);
        node.runtime.max_module_size = self.max_module_size as usize;
        // Room for long-running services beside the invocations.
        node.runtime.max_instances = (self.max_running as u32 + 128).clamp(1, 10_000);
        node.max_running = self.max_running;
        node.max_timeout = self.max_timeout;
        node.egress_allow = self.egress_allow.clone();
        node.tcp_idle = self.tcp_idle;
        node.chains.warm = self.chain_warm;
        node.chains.move_pages = !self.chain_copy;
        node.limits = Limits {
            memory: self.memory,
            timeout: Some(self.timeout),
            ..Limits::default()
        };
        let node = Node::open(node)?;
        let restored = node.start()?;
        if restored > 0 {
            tracing::info!("restored {restored} services");
        }
        let config = ServeConfig {
            listen: self.listen,
            token: self.token.clone().filter(|t| !t.is_empty()),
            allow_hosts: self.allow_hosts.clone(),
            max_input: self.max_input as usize,
            request_timeout: self.max_timeout + Duration::from_secs(30),
            max_connections: self.max_connections.max(1),
            max_connections_per_client: self.max_connections_per_client.max(1),
            ..ServeConfig::default()
        };
        let server = Server::bind(node.clone(), config).await?;
        Ok((node, server))
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    server: ServerFlags,
}

pub async fn main(args: ServeArgs) -> anyhow::Result<()> {
    let (node, server) = args.server.start().await?;
    println!(
        "weft listening on http://{}/ (data in {})",
        server.local_addr(),
        node.config().data_dir.display()
    );
    server.serve(shutdown_signal()).await?;
    // No mesh outlives its host: stop them, so their subnets go too.
    let _ = tokio::time::timeout(Duration::from_secs(10), node.meshes().stop_all()).await;
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    eprintln!("weft: shutting down");
}
