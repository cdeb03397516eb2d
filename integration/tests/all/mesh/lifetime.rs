//! A mesh's lifetime is its parent's: a ring until the CLI says stop; a
//! killed CLI, a closed WebSocket, a trapping controller stopping every
//! rank within 100 ms with nothing left behind; a trapping rank under each
//! failure policy; a host that died with a mesh running.

use super::*;
use std::io::{BufRead, BufReader};

#[test]
fn a_ring_runs_until_the_cli_parent_says_stop() {
    let weft = Weft::new();
    let mut child = weft
        .command([
            "mesh",
            "run",
            "--timeout",
            "60s",
            examples::MESH_RING,
            "--ranks",
            "4",
            "ring",
            "60",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Stop it once the token has been round (the CLI compiles the module
    // first, which takes a while on a busy machine), and a little after.
    let (lines, stdout_lines) = std::sync::mpsc::channel();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let reader = std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut stdout = String::new();
    while !stdout.contains("[rank 0] ring of 4 ranks running") {
        let line = stdout_lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("no ring running ({e}): {stdout}"));
        stdout += &line;
        stdout.push('\n');
    }
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    child.stdin.take().unwrap().write_all(b"* stop\n").unwrap();
    let status = wait_child(&mut child, Duration::from_secs(20));
    assert!(started.elapsed() < Duration::from_secs(10));
    reader.join().unwrap();
    stdout.extend(stdout_lines.try_iter().map(|line| line + "\n"));
    assert!(status.success(), "{status:?}: {stdout}");
    let line = rank_lines(&stdout, 0)
        .into_iter()
        .find(|l| l.starts_with("laps="))
        .unwrap_or_else(|| panic!("no report in {stdout}"));
    let laps: u64 = line["laps=".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(laps > 10, "{line}");
    assert!(stdout.contains("[rank 0 -> parent] laps="), "{stdout}");
}

#[test]
fn killing_the_cli_parent_stops_every_rank_within_100ms() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    let mut cli = weft
        .command([
            "--server",
            &server.url(),
            "mesh",
            "run",
            examples::MESH_RING,
            "--ranks",
            "4",
            "ring",
            "120",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Running, with the token going round.
    let id = eventually(Duration::from_secs(30), || {
        let meshes = server.get("/v1/meshes").json();
        let mesh = meshes["meshes"].as_array()?.first()?.clone();
        let moving = mesh["ranks"][1]["received_messages"].as_u64()? > 100;
        (mesh["state"] == "running" && moving).then(|| mesh["id"].as_str().unwrap().to_owned())
    });
    assert!(mesh_status(&server, &id)["subnet"]["cidr"].is_string());
    cli.kill().unwrap();
    let killed = Instant::now();
    cli.wait().unwrap();
    let status = wait_ended(&server, &id, Duration::from_secs(10));
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "{:?}",
        killed.elapsed()
    );
    assert_torn_down(&server, &status, "parent_disconnected");
}

#[test]
fn closing_the_parent_websocket_stops_every_rank_within_100ms() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    deploy(&server, "mesh-ring", examples::MESH_RING);
    let mesh = start(
        &server,
        json!({ "module": "mesh-ring", "ranks": 3, "args": ["ring", "120"], "parent": "external" }),
    );
    let id = mesh["id"].as_str().unwrap().to_owned();
    let (mut socket, _) =
        tungstenite::connect(format!("ws://{}/v1/meshes/{id}/parent", server.addr)).unwrap();
    // A second parent is refused.
    let again = server.get(&format!("/v1/meshes/{id}/parent"));
    assert_eq!(again.status, 409, "{}", again.text());
    // Talk to the ranks like a rank: a message to rank 1 arrives in its
    // mailbox (it only reads its left neighbour, so it stays there).
    let mut frame = 1u32.to_le_bytes().to_vec();
    frame.extend_from_slice(&5i32.to_le_bytes());
    frame.extend_from_slice(b"hello");
    socket
        .send(tungstenite::Message::Binary(frame.into()))
        .unwrap();
    // A large one, in one frame, too.
    let mut frame = 1u32.to_le_bytes().to_vec();
    frame.extend_from_slice(&6i32.to_le_bytes());
    frame.resize(8 + (4 << 20), 7);
    socket
        .send(tungstenite::Message::Binary(frame.into()))
        .unwrap();
    eventually(Duration::from_secs(10), || {
        let status = mesh_status(&server, &id);
        (status["ranks"][1]["queued_messages"] == 2
            && status["parent_traffic"]["sent_bytes"] == 5 + (4 << 20))
            .then_some(())
    });
    drop(socket);
    let closed = Instant::now();
    let status = wait_ended(&server, &id, Duration::from_secs(10));
    assert!(closed.elapsed() < Duration::from_secs(5));
    assert_torn_down(&server, &status, "parent_disconnected");
}

#[test]
fn a_trapping_controller_stops_every_rank_within_100ms() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    deploy(&server, "mesh-controller", examples::MESH_CONTROLLER);
    let mesh = start(
        &server,
        json!({
            "module": "mesh-controller", "ranks": 4, "args": ["trap"],
            "parent": { "controller": "mesh-controller" }
        }),
    );
    let id = mesh["id"].as_str().unwrap();
    let status = wait_ended(&server, id, Duration::from_secs(20));
    let report = &status["report"];
    assert_eq!(report["status"], "failed", "{status:#}");
    assert_eq!(report["ending"]["code"], "unreachable", "{status:#}");
    assert!(
        report["reason"]
            .as_str()
            .unwrap()
            .starts_with("the controller failed"),
        "{report:#}"
    );
    assert_torn_down(&server, &status, "controller_failed");
}

#[test]
fn a_trapping_rank_takes_the_job_down_with_a_report_naming_it() {
    let weft = Weft::new();
    // Rank 0 of `mesh-flood` builds a message over 16 MiB, past an 8 MiB
    // memory limit: it fails, and rank 1, waiting at a barrier, is stopped.
    let run = mesh_run(
        &weft,
        &[
            "--memory",
            "8MiB",
            examples::MESH_FLOOD,
            "--ranks",
            "2",
            "10",
        ],
    );
    assert_eq!(run.code, Some(134), "{}\n{}", run.stdout_text(), run.stderr);
    assert!(
        run.stderr
            .contains("mesh failed: rank 0 failed: memory limit exceeded"),
        "{}",
        run.stderr
    );
}

#[test]
fn under_the_parent_policy_a_failed_rank_leaves_the_others_running() {
    let weft = Weft::new();
    let server = weft.serve(&["--memory", "8MiB"]);
    deploy(&server, "mesh-flood", examples::MESH_FLOOD);
    // Rank 0 runs out of memory building its oversized message; rank 1,
    // waiting at the barrier, is not stopped: the barrier fails with
    // PEER_GONE and rank 1 exits on its own, with an error.
    let mut settings =
        json!({ "module": "mesh-flood", "ranks": 2, "args": ["10"], "on_failure": "parent" });
    settings["subnet"] = json!(false);
    let mesh = start(&server, settings);
    let id = mesh["id"].as_str().unwrap();
    assert!(mesh["subnet"].is_null(), "{mesh:#}");
    let status = wait_ended(&server, id, Duration::from_secs(30));
    let ranks = &status["ranks"];
    assert_eq!(ranks[0]["state"], "failed", "{status:#}");
    assert_eq!(ranks[0]["code"], "memory_limit", "{status:#}");
    assert_eq!(ranks[1]["state"], "exited", "{status:#}");
    assert_eq!(ranks[1]["exit_code"], 1, "{status:#}");
    let report = &status["report"];
    assert!(report["ending"].is_null(), "{report:#}");
    assert_eq!(report["exit_code"], 134, "{report:#}");
    assert!(
        report["reason"]
            .as_str()
            .unwrap()
            .starts_with("rank 0 failed: memory limit exceeded"),
        "{report:#}"
    );
}

#[test]
fn a_host_that_died_with_a_mesh_running_removes_its_subnet_when_it_starts_again() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    deploy(&server, "mesh-ring", examples::MESH_RING);
    let mesh = start(
        &server,
        json!({ "module": "mesh-ring", "ranks": 3, "args": ["ring", "120"] }),
    );
    assert!(mesh["subnet"]["cidr"].is_string(), "{mesh:#}");
    assert_eq!(
        server.get("/v1/nics").json()["nics"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // Killed (SIGKILL, on drop): no teardown ran; the subnet is in the store.
    drop(server);
    let server = weft.serve(&[]);
    assert_eq!(server.get("/v1/subnets").json()["subnets"], json!([]));
    assert_eq!(server.get("/v1/nics").json()["nics"], json!([]));
    let groups = server.get("/v1/security-groups").json();
    let names: Vec<&str> = groups["security_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with("mesh-")), "{groups:#}");
}
