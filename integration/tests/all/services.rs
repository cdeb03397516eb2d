//! Services: long-running instances, their logs, restart policies, stopping,
//! and coming back after a host restart.

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use weft_integration::http::Request;
use weft_integration::netkit::{deploy, eventually, post};
use weft_integration::{Served, Weft, examples};

fn start(server: &Served, body: Value) -> Value {
    post(server, "/v1/services", body)
}

fn log_messages(server: &Served, id: &str) -> Vec<String> {
    server
        .get(&format!("/v1/logs?instance={id}&limit=1000"))
        .json()["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_service_runs_logs_as_it_goes_and_stops_on_request() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    deploy(&server, "ticker", examples::TICKER);
    let service = start(
        &server,
        json!({ "module": "ticker", "args": ["50"], "restart": "never" }),
    );
    let id = service["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("inst-"));
    assert_eq!(service["state"], "running");

    // Lines arrive while it runs, not when it ends.
    eventually(Duration::from_secs(10), || {
        let lines = log_messages(&server, &id);
        lines.iter().any(|l| l == "tick 3").then_some(())
    });
    let lines = log_messages(&server, &id);
    assert_eq!(lines[0], "ticking every 50 ms", "{lines:?}");
    let running = server.get("/v1/instances").json();
    assert!(
        running["running"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["instance"] == id.as_str())
    );

    let listed = server.get("/v1/services").json();
    assert_eq!(listed["services"][0]["id"], id.as_str());

    let stopped_at = Instant::now();
    assert_eq!(
        server
            .send(Request::new("DELETE", &format!("/v1/services/{id}")))
            .status,
        204
    );
    assert!(
        stopped_at.elapsed() < Duration::from_secs(2),
        "stopping took {:?}",
        stopped_at.elapsed()
    );
    assert_eq!(server.get(&format!("/v1/services/{id}")).status, 404);
    let recent = server.get("/v1/instances").json();
    let run = recent["recent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["instance"] == id.as_str())
        .cloned()
        .expect("the stopped run is in the recent list");
    assert_eq!(run["code"], "killed");
    assert!(recent["running"].as_array().unwrap().is_empty());
}

#[test]
fn restart_policies() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    deploy(&server, "hello", examples::HELLO);
    // `hello 1` exits with 1 at once: a failing service.
    let failing = start(
        &server,
        json!({ "module": "hello", "args": ["1"], "restart": "on-failure" }),
    );
    let failing_id = failing["id"].as_str().unwrap().to_owned();
    let never = start(
        &server,
        json!({ "module": "hello", "args": ["1"], "restart": "never" }),
    );
    let never_id = never["id"].as_str().unwrap().to_owned();
    let clean = start(
        &server,
        json!({ "module": "hello", "restart": "on-failure" }),
    );
    let clean_id = clean["id"].as_str().unwrap().to_owned();

    let status = |id: &str| server.get(&format!("/v1/services/{id}")).json();
    eventually(Duration::from_secs(10), || {
        (status(&failing_id)["restarts"].as_u64()? >= 3).then_some(())
    });
    let failing = status(&failing_id);
    assert_eq!(failing["last_exit"], "exit 1");
    eventually(Duration::from_secs(5), || {
        (status(&never_id)["state"] == "failed").then_some(())
    });
    assert_eq!(status(&never_id)["restarts"], 0);
    eventually(Duration::from_secs(5), || {
        (status(&clean_id)["state"] == "stopped").then_some(())
    });
    assert_eq!(status(&clean_id)["last_exit"], "exit 0");

    let bad = server.send(
        Request::new("POST", "/v1/services")
            .header("Content-Type", "application/json")
            .body(br#"{"module": "hello", "restart": "sometimes"}"#),
    );
    assert_eq!(bad.status, 400);
    let missing = server.send(
        Request::new("POST", "/v1/services")
            .header("Content-Type", "application/json")
            .body(br#"{"module": "nope"}"#),
    );
    assert_eq!(missing.status, 404);
}

#[test]
fn services_come_back_after_a_host_restart() {
    let weft = Weft::new();
    let id = {
        let server = weft.serve(&[]);
        deploy(&server, "ticker", examples::TICKER);
        let service = start(&server, json!({ "module": "ticker", "args": ["50"] }));
        let id = service["id"].as_str().unwrap().to_owned();
        eventually(Duration::from_secs(10), || {
            log_messages(&server, &id)
                .iter()
                .any(|l| l == "tick 2")
                .then_some(())
        });
        assert!(server.stop().success());
        id
    };
    let server = weft.serve(&[]);
    let service = server.get(&format!("/v1/services/{id}")).json();
    assert_eq!(service["module"], "ticker");
    eventually(Duration::from_secs(10), || {
        log_messages(&server, &id)
            .iter()
            .any(|l| l == "tick 2")
            .then_some(())
    });
    assert_eq!(
        server.get(&format!("/v1/services/{id}")).json()["state"],
        "running"
    );

    // The CLI sees and stops it.
    let url = server.url();
    let ls = weft.run(["--server", url.as_str(), "service", "ls"], b"");
    assert!(ls.stdout_text().contains(&id), "{}", ls.stdout_text());
    let stop = weft.run(["--server", url.as_str(), "service", "stop", &id], b"");
    assert_eq!(stop.code, Some(0), "{}", stop.stderr);
    let started = weft.run(
        [
            "--server",
            url.as_str(),
            "service",
            "start",
            "ticker",
            "--arg",
            "1000",
            "--restart",
            "never",
        ],
        b"",
    );
    assert!(
        started.stdout_text().starts_with("started inst-"),
        "{}",
        started.stdout_text()
    );
}
