//! Hostile guests on the virtual network, sending raw datagrams they built
//! themselves (the `packet-forger` example): forged source addresses,
//! malformed and oversized datagrams, a SYN flood. The router drops and
//! counts each per its rules; the host and the other instances carry on.

use serde_json::{Value, json};
use std::time::Duration;
use weft_integration::netkit::{Net, deploy, fetch, finish, listening, service};
use weft_integration::{Served, Weft, examples};

fn counters(server: &Served, nic: &str) -> Value {
    server.get(&format!("/v1/nics/{nic}")).json()["counters"].clone()
}

fn drops(counters: &Value, reason: &str) -> u64 {
    counters["drops"][reason].as_u64().unwrap_or(0)
}

/// Runs `packet-forger ARGS` on record `nic`, waits for it to end and
/// returns its output and the record's counters (read while the stopped
/// service still holds the record; it is deleted after).
fn forge(server: &Served, nic: &str, args: &[&str]) -> (Vec<String>, Value) {
    let id = service(server, "packet-forger", args, &[nic], "never");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while server.get(&format!("/v1/services/{id}")).json()["state"] == "running" {
        assert!(std::time::Instant::now() < deadline, "{id} still running");
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen = counters(server, nic);
    let (exit, lines) = finish(server, &id, Duration::from_secs(10));
    assert_eq!(exit, "exit 0", "{lines:?}");
    (lines, seen)
}

#[test]
fn a_forged_source_is_dropped_unless_the_check_is_off() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    deploy(&server, "udp-echo", examples::UDP_ECHO);
    deploy(&server, "packet-forger", examples::PACKET_FORGER);
    let net = Net::new(&server);
    let open = net.group(&server, json!([{ "protocol": "udp", "ports": "7" }]));
    let (echo_nic, echo_ip) = net.nic(&server, &[&open]);
    let echo = service(&server, "udp-echo", &[], &[&echo_nic], "always");
    listening(&server, &echo);
    let target = format!("{echo_ip}:7");

    let (checked, _) = net.nic(&server, &[]);
    let (lines, seen) = forge(&server, &checked, &["forge", "10.0.1.99", &target, "10"]);
    assert!(
        lines.iter().any(|l| l.contains("handed over 10")),
        "{lines:?}"
    );
    assert_eq!(drops(&seen, "SourceCheck"), 10, "{seen}");
    assert_eq!(
        counters(&server, &echo_nic)["rx_packets"].as_u64().unwrap(),
        0,
        "nothing forged may arrive"
    );

    // A record with the check off (as a NAT instance has) may send for
    // other addresses: the datagrams arrive, and the echo's answers to the
    // forged address go nowhere (no route), counted on the echo's port.
    let body = json!({ "subnet": net.subnet, "source_dest_check": false }).to_string();
    let unchecked = server
        .send(
            weft_integration::http::Request::new("POST", "/v1/nics")
                .header("Content-Type", "application/json")
                .body(body.as_bytes()),
        )
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, seen) = forge(&server, &unchecked, &["forge", "10.0.1.99", &target, "10"]);
    assert_eq!(drops(&seen, "SourceCheck"), 0, "{seen}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let echo = counters(&server, &echo_nic);
        if echo["rx_packets"].as_u64().unwrap() >= 10 && drops(&echo, "NoRoute") >= 10 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{echo}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn malformed_oversized_and_flooding_guests_are_counted_and_others_carry_on() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    deploy(&server, "http-server", examples::HTTP_SERVER);
    deploy(&server, "http-client", examples::HTTP_CLIENT);
    deploy(&server, "packet-forger", examples::PACKET_FORGER);
    let net = Net::new(&server);
    let web = net.group(&server, json!([{ "protocol": "tcp", "ports": "80" }]));
    let (target_nic, target_ip) = net.nic(&server, &[&web]);
    let (bystander_nic, bystander_ip) = net.nic(&server, &[&web]);
    let target = service(
        &server,
        "http-server",
        &["80", "T"],
        &[&target_nic],
        "always",
    );
    let bystander = service(
        &server,
        "http-server",
        &["80", "B"],
        &[&bystander_nic],
        "always",
    );
    listening(&server, &target);
    listening(&server, &bystander);
    let (attacker, _) = net.nic(&server, &[]);
    let (client, _) = net.nic(&server, &[]);

    let (_, seen) = forge(&server, &attacker, &["malformed", "100"]);
    assert_eq!(drops(&seen, "Malformed"), 100, "{seen}");
    let (_, seen) = forge(
        &server,
        &attacker,
        &["oversized", &format!("{target_ip}:80")],
    );
    assert_eq!(drops(&seen, "TooLarge"), 1, "{seen}");

    // 20,000 SYNs: each a new tracked flow, so past the tables' bound
    // (16,384 flows a port) they are dropped and counted.
    let (_, seen) = forge(
        &server,
        &attacker,
        &["synflood", &format!("{target_ip}:80"), "20000"],
    );
    assert!(drops(&seen, "ConntrackFull") >= 20_000 - 16_384, "{seen}");

    // The host and the other instances carry on.
    assert_eq!(server.get("/v1/health").status, 200);
    let (exit, page) = fetch(&server, &client, &format!("http://{bystander_ip}/"));
    assert_eq!(exit, "exit 0", "{page}");
    assert!(page.contains(&format!("served by {bystander}")), "{page}");
}
