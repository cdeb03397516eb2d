//! TCP between two instances through the virtual router, measured inside
//! the guests (the `echo-client` example against `tcp-echo`, so every byte
//! crosses the ABI, the endpoints and the router both ways), beside the
//! same client pattern between two host threads over kernel loopback, in
//! the same run.
//!
//! Run with `make bench` (or `cargo build --release -p weft-host && cargo
//! bench -p weft-integration --bench guest_net`).

use serde_json::json;
use std::time::Duration;
use weft_integration::baseline::{self, row};
use weft_integration::netkit::{Net, deploy, finish, listening, service};
use weft_integration::{Served, Weft, examples};

/// Bytes per bulk run (each way).
const BULK: usize = 256 << 20;
/// Transactions per request/response run.
const RR: usize = 20_000;

/// Runs `echo-client ARGS` on record `nic`; the microseconds it printed.
fn client(server: &Served, nic: &str, args: &[&str]) -> Duration {
    let id = service(server, "echo-client", args, &[nic], "never");
    let (exit, lines) = finish(server, &id, Duration::from_secs(300));
    assert_eq!(exit, "exit 0", "{lines:?}");
    let micros = lines
        .iter()
        .find_map(|l| l.strip_suffix(" us")?.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no timing in {lines:?}"));
    Duration::from_micros(micros)
}

fn main() {
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"guest_net".contains(&a))
    {
        return;
    }
    let weft = Weft::new();
    let server = weft.serve(&[]);
    deploy(&server, "tcp-echo", examples::TCP_ECHO);
    deploy(&server, "echo-client", examples::ECHO_CLIENT);
    let net = Net::new(&server);
    let group = net.group(&server, json!([{ "protocol": "tcp", "ports": "7" }]));
    let (echo_nic, echo_ip) = net.nic(&server, &[&group]);
    let echo = service(&server, "tcp-echo", &[], &[&echo_nic], "always");
    listening(&server, &echo);
    let (client_nic, _) = net.nic(&server, &[]);
    let target = format!("{echo_ip}:7");
    let kernel = baseline::echo_server();

    println!(
        "guest to guest: echo-client to tcp-echo through the router, {} MiB bulk, {RR} x 64 B request/response",
        BULK >> 20
    );
    // Warm up both paths.
    client(&server, &client_nic, &["rr", &target, "100"]);
    baseline::rr(kernel, 100);

    let weft = client(&server, &client_nic, &["bulk", &target, &BULK.to_string()]);
    let base = baseline::bulk(kernel, BULK);
    row(
        "bulk TCP, instance to instance",
        "Gbit/s",
        baseline::gbits(BULK, weft),
        baseline::gbits(BULK, base),
    );
    let weft = client(&server, &client_nic, &["rr", &target, &RR.to_string()]);
    let base = baseline::rr(kernel, RR);
    let per = |d: Duration| d.as_secs_f64() * 1e6 / RR as f64;
    row("64 B request/response", "us", per(weft), per(base));
    row(
        "64 B request/response rate",
        "tx/s",
        RR as f64 / weft.as_secs_f64(),
        RR as f64 / base.as_secs_f64(),
    );
    server.stop();
}
