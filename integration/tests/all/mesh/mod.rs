//! Mesh jobs, one file per concern: what they compute (`results`), their
//! parent-bound lifetime (`lifetime`), mailbox bounds (`mailbox`), and
//! meshes on a server (`server`). Here: what they share, running jobs and
//! reading their state.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use weft_integration::http::Request;
use weft_integration::netkit::{deploy, eventually, post};
use weft_integration::{Finished, Served, Weft, examples};

mod lifetime;
mod mailbox;
mod results;
mod server;

/// `weft mesh run ARGS` in process, bounded by a deadline on the ranks.
fn mesh_run(weft: &Weft, args: &[&str]) -> Finished {
    let mut full = vec!["mesh", "run", "--timeout", "60s"];
    full.extend_from_slice(args);
    weft.run(&full, b"")
}

/// The lines rank `rank` wrote to stdout, without their prefix.
fn rank_lines(stdout: &str, rank: u32) -> Vec<String> {
    let prefix = format!("[rank {rank}] ");
    stdout
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
        .collect()
}

fn start(server: &Served, body: Value) -> Value {
    post(server, "/v1/meshes", body)
}

fn mesh_status(server: &Served, id: &str) -> Value {
    let response = server.get(&format!("/v1/meshes/{id}"));
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()
}

fn wait_ended(server: &Served, id: &str, within: Duration) -> Value {
    eventually(within, || {
        let status = mesh_status(server, id);
        (status["state"] == "ended").then_some(status)
    })
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Every rank stopped within 100 ms of the parent going, and the host
/// holds no instance, mailbox, NIC or subnet of the mesh any more.
fn assert_torn_down(server: &Served, status: &Value, why: &str) {
    let report = &status["report"];
    assert_eq!(report["ending"]["why"], why, "{status:#}");
    for rank in status["ranks"].as_array().unwrap() {
        assert_eq!(rank["state"], "stopped", "{rank:#}");
        let latency = rank["stop_latency_us"].as_u64().unwrap();
        assert!(
            latency < 100_000,
            "rank stopped after {latency} µs: {rank:#}"
        );
        assert_eq!(rank["queued_messages"], 0, "{rank:#}");
    }
    assert!(report["max_stop_latency_us"].as_u64().unwrap() < 100_000);
    assert!(status["subnet"].is_null() || status["state"] == "ended");
    let subnets = server.get("/v1/subnets").json();
    assert_eq!(subnets["subnets"], json!([]), "{subnets:#}");
    let nics = server.get("/v1/nics").json();
    assert_eq!(nics["nics"], json!([]), "{nics:#}");
    let metrics = server.get("/metrics").text();
    assert_eq!(metric(&metrics, "weft_meshes_running"), 0.0);
    assert_eq!(metric(&metrics, "weft_mesh_ranks_running"), 0.0);
    assert_eq!(metric(&metrics, "weft_mesh_queued_messages"), 0.0);
    // The job's instance slots are handed back just after its report.
    eventually(Duration::from_secs(2), || {
        let metrics = server.get("/metrics").text();
        (metric(&metrics, "weft_instances_running") == 0.0).then_some(())
    });
    let listed = server.get("/v1/meshes").json();
    let running: Vec<&Value> = listed["meshes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["state"] == "running")
        .collect();
    assert!(running.is_empty(), "{running:#?}");
}

/// Waits for `child` to exit, for up to `within`.
fn wait_child(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("the CLI did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads the next frame on a parent's WebSocket: a JSON event is
/// returned, a message is kept in `messages` (as text, with its source).
fn next_frame(
    socket: &mut tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    messages: &mut Vec<(u32, String)>,
) -> Option<Value> {
    match socket.read().unwrap() {
        tungstenite::Message::Text(text) => Some(serde_json::from_str(text.as_str()).unwrap()),
        tungstenite::Message::Binary(frame) => {
            let src = u32::from_le_bytes(frame[..4].try_into().unwrap());
            messages.push((src, String::from_utf8_lossy(&frame[8..]).into_owned()));
            None
        }
        _ => None,
    }
}

fn add_ranks(server: &Served, id: &str, body: Value) -> weft_integration::http::Response {
    server.send(
        Request::new("POST", &format!("/v1/meshes/{id}/ranks"))
            .header("Content-Type", "application/json")
            .body(body.to_string().as_bytes()),
    )
}
