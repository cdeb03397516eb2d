//! Mesh jobs: the examples through `weft mesh run` (in process and against
//! a server), collectives against references computed here, the parent-
//! bound lifetime (a killed CLI, a closed WebSocket, a trapping controller)
//! with nothing of the mesh left behind, mailbox bounds under a flood, and
//! TCP between ranks on the mesh subnet.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use weft_integration::http::Request;
use weft_integration::netkit::{deploy, eventually, post};
use weft_integration::{Finished, Served, Weft, examples};

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

#[test]
fn pi_on_8_ranks_with_allreduce() {
    let weft = Weft::new();
    let run = mesh_run(&weft, &[examples::MESH_PI, "--ranks", "8"]);
    let stdout = run.stdout_text();
    assert_eq!(run.code, Some(0), "{stdout}\n{}", run.stderr);
    let line = rank_lines(&stdout, 0)
        .into_iter()
        .find(|l| l.starts_with("pi = "))
        .unwrap_or_else(|| panic!("no estimate in {stdout}"));
    let pi: f64 = line["pi = ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((pi - std::f64::consts::PI).abs() < 0.005, "{line}");
    assert!(line.contains("8000000 samples on 8 ranks"), "{line}");
    // What rank 0 sent to its parent, the CLI, is printed too.
    assert!(stdout.contains("[rank 0 -> parent] pi 3.14"), "{stdout}");
}

/// The heat equation of `mesh-heat`, computed sequentially here.
fn heat_reference(cells: usize, steps: usize) -> Vec<u64> {
    let initial = |i: usize| {
        let bump = if i.is_multiple_of(7) { 1.0 } else { 0.0 };
        (i * (cells - i)) as f64 / (cells * cells) as f64 * 100.0 + bump
    };
    let mut u = vec![0.0f64; cells + 2];
    for i in 0..cells {
        u[i + 1] = initial(i);
    }
    let mut next = u.clone();
    for _ in 0..steps {
        for i in 1..=cells {
            next[i] = u[i] + 0.25 * (u[i - 1] - 2.0 * u[i] + u[i + 1]);
        }
        std::mem::swap(&mut u, &mut next);
    }
    u[1..=cells].iter().map(|v| v.to_bits()).collect()
}

#[test]
fn heat_on_1_2_4_and_8_ranks_matches_the_sequential_run_to_the_last_bit() {
    let weft = Weft::new();
    let (cells, steps) = (256, 400);
    let reference = heat_reference(cells, steps);
    for ranks in ["1", "2", "4", "8"] {
        let run = mesh_run(
            &weft,
            &[examples::MESH_HEAT, "--ranks", ranks, "256", "400"],
        );
        let stdout = run.stdout_text();
        assert_eq!(run.code, Some(0), "{ranks} ranks: {stdout}\n{}", run.stderr);
        let field: Vec<u64> = rank_lines(&stdout, 0)
            .iter()
            .filter_map(|line| line.strip_prefix("cell "))
            .map(|rest| u64::from_str_radix(rest.split(' ').nth(1).unwrap(), 16).unwrap())
            .collect();
        assert_eq!(field.len(), cells, "{ranks} ranks: {stdout}");
        assert_eq!(
            field, reference,
            "{ranks} ranks differ from the sequential run"
        );
    }
}

/// What every rank of `mesh-collectives` must print, computed here.
fn collectives_reference(size: u64, seed: u64) -> Vec<String> {
    fn fold<T: Copy>(parts: &[Vec<T>], f: impl Fn(T, T) -> T) -> Vec<T> {
        let mut acc = parts[0].clone();
        for part in &parts[1..] {
            for (a, b) in acc.iter_mut().zip(part) {
                *a = f(*a, *b);
            }
        }
        acc
    }
    fn join<T>(values: &[T], show: impl Fn(&T) -> String) -> String {
        values.iter().map(show).collect::<Vec<_>>().join(",")
    }
    let hex = |bytes: &[u8]| -> String { bytes.iter().map(|b| format!("{b:02x}")).collect() };
    let mut lines = Vec::new();
    let mut step = 0u64;
    let ranks: Vec<u64> = (0..size).collect();
    let per_type: Vec<(&str, [String; 3])> = vec![
        {
            let parts: Vec<Vec<f64>> = ranks
                .iter()
                .map(|r| {
                    (0..5u64)
                        .map(|j| ((r * 7 + j * 13 + seed) % 97) as f64 * 0.5 - 20.25)
                        .collect()
                })
                .collect();
            let show = |v: &f64| format!("{:016x}", v.to_bits());
            (
                "f64",
                [
                    join(&fold(&parts, |a, b| a + b), show),
                    join(&fold(&parts, f64::min), show),
                    join(&fold(&parts, f64::max), show),
                ],
            )
        },
        {
            let parts: Vec<Vec<i64>> = ranks
                .iter()
                .map(|r| {
                    (0..5u64)
                        .map(|j| ((r * 31 + j * 17 + seed) % 201) as i64 - 100)
                        .collect()
                })
                .collect();
            let show = |v: &i64| v.to_string();
            (
                "i64",
                [
                    join(&fold(&parts, i64::wrapping_add), show),
                    join(&fold(&parts, i64::min), show),
                    join(&fold(&parts, i64::max), show),
                ],
            )
        },
        {
            let parts: Vec<Vec<u64>> = ranks
                .iter()
                .map(|r| {
                    (0..5u64)
                        .map(|j| (r * 1_000_003 + j * 7 + seed).wrapping_mul(1 << 40))
                        .collect()
                })
                .collect();
            let show = |v: &u64| v.to_string();
            (
                "u64",
                [
                    join(&fold(&parts, u64::wrapping_add), show),
                    join(&fold(&parts, u64::min), show),
                    join(&fold(&parts, u64::max), show),
                ],
            )
        },
    ];
    for (name, results) in &per_type {
        for (op, result) in ["sum", "min", "max"].iter().zip(results) {
            for r in 0..size {
                lines.push(format!("R{r} allreduce-{name}-{op} {result}"));
            }
            let root = step % size;
            step += 1;
            lines.push(format!("R{root} reduce-{name}-{op} {result}"));
        }
    }
    let broadcast: Vec<u8> = (0..16u64).map(|i| (i * 11 + seed) as u8).collect();
    let gathered: Vec<u8> = (0..size)
        .flat_map(|r| [r as u8, r as u8 + 1, r as u8 + 2, seed as u8])
        .collect();
    let scattered: Vec<u8> = (0..size * 4).map(|i| (i * 3 + seed) as u8).collect();
    for r in 0..size {
        lines.push(format!("R{r} broadcast {}", hex(&broadcast)));
        let piece = &scattered[(r * 4) as usize..(r * 4 + 4) as usize];
        lines.push(format!("R{r} scatter {}", hex(piece)));
        lines.push(format!("R{r} barrier ok"));
    }
    lines.push(format!("R0 gather {}", hex(&gathered)));
    lines.sort();
    lines
}

#[test]
fn collectives_agree_with_a_reference_for_every_op_and_type_in_any_arrival_order() {
    let weft = Weft::new();
    for (size, seed) in [(5u64, 42u64), (3, 7), (1, 3)] {
        let ranks = size.to_string();
        let seed_arg = seed.to_string();
        let run = mesh_run(
            &weft,
            &[examples::MESH_COLLECTIVES, "--ranks", &ranks, &seed_arg],
        );
        let stdout = run.stdout_text();
        assert_eq!(run.code, Some(0), "{stdout}\n{}", run.stderr);
        let mut got: Vec<String> = (0..size as u32)
            .flat_map(|r| rank_lines(&stdout, r))
            .collect();
        got.sort();
        assert_eq!(
            got,
            collectives_reference(size, seed),
            "{size} ranks, seed {seed}"
        );
    }
}

#[test]
fn a_controller_farms_work_out_to_the_ranks() {
    let weft = Weft::new();
    let run = mesh_run(
        &weft,
        &[
            examples::MESH_CONTROLLER,
            "--ranks",
            "4",
            "--controller",
            examples::MESH_CONTROLLER,
            "count",
            "100000",
        ],
    );
    let stdout = run.stdout_text();
    assert_eq!(run.code, Some(0), "{stdout}\n{}", run.stderr);
    let primes = (2u64..100_000)
        .filter(|&n| (2..).take_while(|d| d * d <= n).all(|d| n % d != 0))
        .count();
    assert!(
        stdout.contains(&format!("[controller] primes below 100000: {primes} ")),
        "{stdout}"
    );
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
    std::thread::sleep(Duration::from_millis(800));
    let started = Instant::now();
    child.stdin.take().unwrap().write_all(b"* stop\n").unwrap();
    let status = wait_child(&mut child, Duration::from_secs(20));
    assert!(started.elapsed() < Duration::from_secs(10));
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
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
fn the_ping_pong_and_the_micro_benchmarks_report() {
    let weft = Weft::new();
    for (ranks, args, key) in [
        ("2", vec!["pingpong", "1024", "200"], "rtt_us="),
        ("2", vec!["bandwidth", "65536", "4", "8"], "mb_per_s="),
        ("4", vec!["barrier", "100"], "us="),
        ("4", vec!["allreduce", "8", "100"], "us="),
    ] {
        let mut full = vec![examples::MESH_RING, "--ranks", ranks];
        full.extend(args.iter().copied());
        let run = mesh_run(&weft, &full);
        let stdout = run.stdout_text();
        assert_eq!(run.code, Some(0), "{stdout}\n{}", run.stderr);
        let value: f64 = rank_lines(&stdout, 0)
            .iter()
            .find_map(|l| l.split(key).nth(1))
            .unwrap_or_else(|| panic!("no {key} in {stdout}"))
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(value > 0.0, "{stdout}");
    }
}

#[test]
fn a_flood_stays_within_the_mailbox_bound_and_an_oversized_message_is_refused() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    deploy(&server, "mesh-flood", examples::MESH_FLOOD);
    let started = Instant::now();
    let mesh = start(&server, json!({ "module": "mesh-flood", "ranks": 2 }));
    let id = mesh["id"].as_str().unwrap().to_owned();
    // While rank 0 floods, the host answers promptly and rank 1's mailbox
    // never holds more than its bound.
    let mut polls = 0;
    let status = loop {
        let asked = Instant::now();
        let health = server.get("/v1/health");
        assert_eq!(health.status, 200);
        let status = mesh_status(&server, &id);
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "the host took {:?} to answer",
            asked.elapsed()
        );
        let rank1 = &status["ranks"][1];
        let bound = rank1["mailbox_bound"].as_u64().unwrap();
        assert!(
            rank1["queued_messages"].as_u64().unwrap() <= bound,
            "{rank1:#}"
        );
        assert!(
            rank1["mailbox_high_water"].as_u64().unwrap() <= bound,
            "{rank1:#}"
        );
        polls += 1;
        if status["state"] == "ended" {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the flood did not end"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(polls >= 1);
    assert_eq!(status["report"]["status"], "ok", "{status:#}");
    assert_eq!(status["ranks"][1]["mailbox_high_water"], 1024, "{status:#}");
    assert_eq!(status["ranks"][0]["sent_messages"], 1024, "{status:#}");
    let rank0 = status["ranks"][0]["instance"].as_str().unwrap();
    let logs = server
        .get(&format!("/v1/logs?instance={rank0}&limit=100"))
        .json();
    let lines: Vec<&str> = logs["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    let summary = lines
        .iter()
        .find(|l| l.starts_with("accepted="))
        .unwrap_or_else(|| panic!("no summary in {lines:?}"));
    assert_eq!(
        *summary,
        "accepted=1024 refused=998976 blocked=weft mesh: timed out oversized=weft mesh: message too large"
    );
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

/// Checks what `mesh-tcp` on 4 ranks printed: each rank heard the one
/// before it, from that rank's address on the subnet.
fn assert_tcp_exchanges(run: &Finished) {
    let stdout = run.stdout_text();
    assert_eq!(run.code, Some(0), "{stdout}\n{}", run.stderr);
    let mut heard = BTreeMap::new();
    for rank in 0..4u32 {
        let lines = rank_lines(&stdout, rank);
        assert_eq!(lines.len(), 2, "rank {rank}: {stdout}");
        heard.insert(rank, lines);
    }
    for rank in 0..4u32 {
        let previous = (rank + 3) % 4;
        let from = format!("10.244.0.{}", previous + 2);
        assert!(
            heard[&rank].contains(&format!(
                "rank {rank} got \"hello from rank {previous}\" from {from}"
            )),
            "{heard:#?}"
        );
    }
}

#[test]
fn ranks_reach_each_other_over_tcp_on_the_mesh_subnet() {
    let weft = Weft::new();
    // In process: the subnet is on a throwaway network of the CLI.
    assert_tcp_exchanges(&mesh_run(&weft, &[examples::MESH_TCP, "--ranks", "4"]));
    let no_subnet = mesh_run(&weft, &["--no-subnet", examples::MESH_TCP, "--ranks", "2"]);
    assert_ne!(no_subnet.code, Some(0));
    assert!(
        no_subnet.stderr.contains("no network interface"),
        "{}",
        no_subnet.stderr
    );

    // On a server.
    let server = weft.serve(&[]);
    let url = server.url();
    assert_tcp_exchanges(&weft.run(
        [
            "--server",
            url.as_str(),
            "mesh",
            "run",
            "--timeout",
            "60s",
            examples::MESH_TCP,
            "--ranks",
            "4",
        ],
        b"",
    ));
    let meshes = server.get("/v1/meshes").json();
    assert_eq!(meshes["meshes"][0]["subnet"]["cidr"], "10.244.0.0/24");
    assert_eq!(server.get("/v1/subnets").json()["subnets"], json!([]));
    assert_eq!(server.get("/v1/nics").json()["nics"], json!([]));
}

#[test]
fn the_dashboard_shows_meshes_their_ranks_and_traffic() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    deploy(&server, "mesh-heat", examples::MESH_HEAT);
    let mesh = start(
        &server,
        json!({ "module": "mesh-heat", "ranks": 4, "args": ["64", "50"] }),
    );
    let id = mesh["id"].as_str().unwrap().to_owned();
    wait_ended(&server, &id, Duration::from_secs(30));
    let mut browser = weft_integration::browser::Browser::open(&format!("{}/", server.url()));
    browser.wait_for(
        &format!(
            "document.querySelectorAll('#meshes-body [data-mesh=\"{id}\"] tr[data-state=\"exited\"]').length === 4"
        ),
        Duration::from_secs(20),
    );
    // Halo exchange: rank 1 sent bytes to ranks 0 and 2, none to rank 3.
    let cells = browser.eval(&format!(
        "[...document.querySelectorAll('#meshes-body [data-mesh=\"{id}\"] table.mesh-traffic tbody tr')][1].textContent"
    ));
    let cells = cells.as_str().unwrap().to_owned();
    assert!(cells.starts_with('1'), "{cells}");
    assert!(cells.contains("·"), "{cells}");
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
fn a_job_runs_groups_of_ranks_of_several_modules() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    deploy(&server, "heat-a", examples::MESH_HEAT);
    deploy(&server, "heat-b", examples::MESH_HEAT);
    let mesh = start(
        &server,
        json!({
            "modules": [{ "module": "heat-a", "ranks": 2 }, { "module": "heat-b", "ranks": 2 }],
            "args": ["64", "20"], "subnet": false
        }),
    );
    let id = mesh["id"].as_str().unwrap();
    let status = wait_ended(&server, id, Duration::from_secs(30));
    assert_eq!(status["report"]["status"], "ok", "{status:#}");
    let modules: Vec<&str> = status["ranks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["module"].as_str().unwrap())
        .collect();
    assert_eq!(modules, ["heat-a", "heat-a", "heat-b", "heat-b"]);
    // Unknown modules and empty jobs are refused.
    let refused = server.send(
        Request::new("POST", "/v1/meshes")
            .header("Content-Type", "application/json")
            .body(br#"{"module": "nope", "ranks": 2}"#),
    );
    assert_eq!(refused.status, 404, "{}", refused.text());
    let refused = server.send(
        Request::new("POST", "/v1/meshes")
            .header("Content-Type", "application/json")
            .body(br#"{"module": "heat-a", "ranks": 0}"#),
    );
    assert_eq!(refused.status, 400, "{}", refused.text());
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

#[test]
fn the_cli_lists_shows_and_stops_meshes_on_a_server() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    deploy(&server, "mesh-ring", examples::MESH_RING);
    let mesh = start(
        &server,
        json!({ "module": "mesh-ring", "ranks": 2, "args": ["ring", "120"], "subnet": false }),
    );
    let id = mesh["id"].as_str().unwrap();
    let url = server.url();
    let cli = |args: &[&str]| {
        let mut full = vec!["--server", url.as_str(), "mesh"];
        full.extend_from_slice(args);
        let run = weft.run(&full, b"");
        assert_eq!(run.code, Some(0), "{args:?}: {}", run.stderr);
        run.stdout_text()
    };
    let listed = cli(&["ls"]);
    assert!(
        listed.contains(id) && listed.contains("running"),
        "{listed}"
    );
    assert_eq!(cli(&["rm", id]).trim(), format!("stopped {id}"));
    let shown: Value = serde_json::from_str(&cli(&["show", id])).unwrap();
    assert_eq!(shown["state"], "ended");
    assert_eq!(shown["report"]["ending"]["why"], "stopped");
    assert_eq!(shown["ranks"][0]["state"], "stopped");
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

#[test]
fn ranks_join_a_running_mesh_talk_to_the_others_and_leave() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    deploy(&server, "mesh-elastic", examples::MESH_ELASTIC);
    let mesh = start(
        &server,
        json!({ "module": "mesh-elastic", "ranks": 2, "args": ["base", "2"], "parent": "external" }),
    );
    let id = mesh["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (mesh["size"].as_u64(), mesh["epoch"].as_u64()),
        (Some(2), Some(0))
    );
    let (mut socket, _) =
        tungstenite::connect(format!("ws://{}/v1/meshes/{id}/parent", server.addr)).unwrap();
    if let tungstenite::stream::MaybeTlsStream::Plain(stream) = socket.get_mut() {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
    }
    let mut messages = Vec::new();
    let mut events = Vec::new();
    while !messages
        .iter()
        .any(|(src, text)| *src == 0 && text == "ready")
    {
        events.extend(next_frame(&mut socket, &mut messages));
    }

    // Bad requests are refused with clear errors, and change nothing.
    let zero = add_ranks(&server, &id, json!({ "count": 0 }));
    assert_eq!(
        zero.status,
        400,
        "{}: {:#}",
        zero.text(),
        mesh_status(&server, &id)
    );
    assert!(zero.text().contains("not 0"), "{}", zero.text());
    let many = add_ranks(&server, &id, json!({ "count": 1023 }));
    assert_eq!(many.status, 400, "{}", many.text());
    assert!(
        many.text().contains("at most 1024 ranks"),
        "{}",
        many.text()
    );
    let unknown = add_ranks(&server, &id, json!({ "count": 1, "module": "nope" }));
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    let nowhere = add_ranks(&server, "mesh-0000000000000000", json!({ "count": 1 }));
    assert_eq!(nowhere.status, 404, "{}", nowhere.text());
    assert_eq!(mesh_status(&server, &id)["size"], 2);

    // Two ranks join through the CLI, with the next numbers, a NIC each on
    // the mesh subnet, and their own arguments.
    let url = server.url();
    let added = weft.run(
        [
            "--server",
            url.as_str(),
            "mesh",
            "add",
            id.as_str(),
            "--ranks",
            "2",
            "joiner",
        ],
        b"",
    );
    assert_eq!(added.code, Some(0), "{}", added.stderr);
    assert_eq!(
        added.stdout_text().trim(),
        format!("added ranks 2 3 to {id}")
    );

    let mut report = None;
    while report.is_none() {
        match next_frame(&mut socket, &mut messages) {
            Some(event) if event["event"] == "ended" => report = Some(event["report"].clone()),
            Some(event) => events.push(event),
            None => {}
        }
    }
    let report = report.unwrap();
    assert_eq!(report["status"], "ok", "{report:#}");
    // The parent heard of both joins, and of every rank leaving.
    let joined: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "rank_joined")
        .map(|e| &e["rank"])
        .collect();
    assert_eq!(joined, [&json!(2), &json!(3)], "{events:#?}");
    let mut ended: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "rank_ended")
        .map(|e| e["rank"].as_u64().unwrap())
        .collect();
    ended.sort_unstable();
    assert_eq!(ended, [0, 1, 2, 3], "{events:#?}");
    // The joiners took part in the first sum (1+2+3+4), the second was
    // among the base ranks only (1+2), after both joiners had left.
    let summary = "joined=2,3 first=10 second=3 members=0,1 epoch=4 size=4";
    assert!(
        messages
            .iter()
            .any(|(src, text)| *src == 0 && text == summary),
        "{messages:?}"
    );

    let status = wait_ended(&server, &id, Duration::from_secs(10));
    assert_eq!(status["size"], 4, "{status:#}");
    assert_eq!(status["initial_size"], 2, "{status:#}");
    assert_eq!(status["live"], 0, "{status:#}");
    // Two joins and four departures.
    assert_eq!(status["epoch"], 6, "{status:#}");
    let ranks = status["ranks"].as_array().unwrap();
    for (rank, expected) in
        ranks
            .iter()
            .zip(["10.244.0.2", "10.244.0.3", "10.244.0.4", "10.244.0.5"])
    {
        assert_eq!(rank["state"], "exited", "{rank:#}");
        assert_eq!(rank["exit_code"], 0, "{rank:#}");
        assert_eq!(rank["addr"], expected, "{rank:#}");
    }
    assert_eq!(ranks[2]["module"], "mesh-elastic");
    // Rank 0: `ready`, two welcomes and the summary; each joiner one hello
    // and one welcome.
    assert_eq!(ranks[0]["sent_messages"], 4, "{status:#}");
    assert_eq!(ranks[0]["received_messages"], 2, "{status:#}");
    for joiner in &ranks[2..] {
        assert_eq!(joiner["sent_messages"], 1, "{joiner:#}");
        assert_eq!(joiner["sent_bytes"], "hello 2".len(), "{joiner:#}");
        assert_eq!(joiner["received_messages"], 1, "{joiner:#}");
        assert_eq!(joiner["received_bytes"], "welcome 2".len(), "{joiner:#}");
    }
    // Traffic between joiners and base ranks, the parent last.
    let traffic = &status["traffic"];
    assert_eq!(traffic.as_array().unwrap().len(), 5, "{traffic}");
    assert_eq!(traffic[2][0], 7, "{traffic}");
    assert_eq!(traffic[0][3], 9, "{traffic}");
    assert_eq!(traffic[0][4], 5 + summary.len(), "{traffic}");
    assert_eq!(traffic[1][2], 0, "{traffic}");
    // Gone without a trace, and no rank joins a mesh that has ended.
    assert_eq!(server.get("/v1/nics").json()["nics"], json!([]));
    assert_eq!(server.get("/v1/subnets").json()["subnets"], json!([]));
    let late = add_ranks(&server, &id, json!({ "count": 1 }));
    assert_eq!(late.status, 409, "{}", late.text());
    assert!(
        late.text().contains("the mesh has ended"),
        "{}",
        late.text()
    );
}
