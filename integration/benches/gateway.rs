//! The gateway's data paths beside kernel loopback, in one run: bulk TCP
//! throughput and connections per second from a host client to an
//! instance (the `tcp-echo` example), through a port forward and through
//! the TUN bridge, and the same client against a kernel echo server on
//! loopback.
//!
//! Run with `make bench` (or `cargo build --release -p weft-host && cargo
//! bench -p weft-integration --bench gateway`). The TUN half needs root
//! (a network namespace and a TUN device); without it, it is skipped.
//! Every figure is printed beside its baseline; nothing passes or fails on
//! absolute times.

use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};
use weft_integration::baseline::{self, row};
use weft_integration::netkit::{Net, deploy, post, service};
use weft_integration::{Served, Weft, examples, in_netns};

/// Bytes each bulk run sends (and gets echoed back).
const BULK: usize = 256 << 20;
/// How long each connection-rate run lasts.
const RATE_FOR: Duration = Duration::from_secs(3);

/// One byte there and back on a fresh connection.
fn echo_once(addr: SocketAddr) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.write_all(b"x")?;
    let mut byte = [0u8];
    stream.read_exact(&mut byte)
}

/// Waits until `addr` echoes.
fn ready(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(error) = echo_once(addr) {
        assert!(Instant::now() < deadline, "{addr} never echoed: {error}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Connections per second: connect, one byte there and back, close.
fn rate(addr: SocketAddr) -> f64 {
    let started = Instant::now();
    let mut done = 0u64;
    while started.elapsed() < RATE_FOR {
        echo_once(addr).unwrap();
        done += 1;
    }
    done as f64 / started.elapsed().as_secs_f64()
}

/// A server with `tcp-echo` on a record and a gateway (with a TUN device
/// if `tun`); returns the instance's address.
fn echo_instance(server: &Served, tun: bool) -> String {
    deploy(server, "tcp-echo", examples::TCP_ECHO);
    let net = Net::new(server);
    let group = net.group(server, json!([{ "protocol": "tcp", "ports": "7" }]));
    let (nic, ip) = net.nic(server, &[&group]);
    service(server, "tcp-echo", &[], &[&nic], "always");
    let mut gateway = json!({ "subnet": net.subnet });
    if tun {
        gateway["tun"] = "weft0".into();
    }
    post(server, "/v1/gateways", gateway);
    ip
}

/// Bulk throughput and connection rate through `through`, each beside a
/// kernel echo on loopback, measured now.
fn measure(path: &str, through: SocketAddr) {
    let kernel = baseline::echo_server();
    ready(through);
    let weft = baseline::gbits(BULK, baseline::bulk(through, BULK));
    let base = baseline::gbits(BULK, baseline::bulk(kernel, BULK));
    row(&format!("bulk TCP, {path}"), "Gbit/s", weft, base);
    let (weft, base) = (rate(through), rate(kernel));
    row(&format!("connections, {path}"), "conn/s", weft, base);
}

fn forward_half() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    let ip = echo_instance(&server, false);
    let forward = post(
        &server,
        "/v1/forwards",
        json!({ "listen": "127.0.0.1:0", "to": format!("{ip}:7") }),
    );
    let through: SocketAddr = forward["listen"].as_str().unwrap().parse().unwrap();
    measure("port forward", through);
    server.stop();
}

fn tun_half() {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !is_root {
        println!("TUN bridge: skipped (needs root for a network namespace and a TUN device)");
        return;
    }
    let name = format!("weft-bench-{}", std::process::id());
    let ip_cmd = |args: &[&str]| Command::new("ip").args(args).status().unwrap().success();
    assert!(ip_cmd(&["netns", "add", &name]));
    assert!(ip_cmd(&[
        "netns", "exec", &name, "ip", "link", "set", "lo", "up"
    ]));
    in_netns(&name, || {
        let weft = Weft::new();
        let server = weft.serve(&[]);
        let ip = echo_instance(&server, true);
        measure("TUN bridge", format!("{ip}:7").parse().unwrap());
        server.stop();
    });
    ip_cmd(&["netns", "del", &name]);
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that is not ours means skip.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"gateway".contains(&a))
    {
        return;
    }
    println!(
        "gateway: host client to a tcp-echo instance, {} MiB each way per bulk run, {}s per rate run",
        BULK >> 20,
        RATE_FOR.as_secs()
    );
    forward_half();
    tun_half();
}
