//! Guest sockets over the virtual network: services talking TCP and UDP by
//! IP through the router, security groups deciding what passes, and a
//! record moving between services with its traffic following it.

use serde_json::json;
use std::time::{Duration, Instant};
use weft_integration::netkit::{Net, deploy, fetch, finish, listening, post, service};
use weft_integration::{Weft, examples};

#[test]
fn two_services_talk_tcp_and_udp_and_large_transfers_arrive_intact() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    for (name, path) in [
        ("tcp-echo", examples::TCP_ECHO),
        ("udp-echo", examples::UDP_ECHO),
        ("echo-client", examples::ECHO_CLIENT),
    ] {
        deploy(&server, name, path);
    }
    let net = Net::new(&server);
    let echo = net.group(
        &server,
        json!([{ "protocol": "tcp", "ports": "7" }, { "protocol": "udp", "ports": "7" }]),
    );
    let (tcp_nic, tcp_ip) = net.nic(&server, &[&echo]);
    let (udp_nic, udp_ip) = net.nic(&server, &[&echo]);
    let (client_nic, _) = net.nic(&server, &[]);

    let tcp_server = service(&server, "tcp-echo", &[], &[&tcp_nic], "always");
    let udp_server = service(&server, "udp-echo", &[], &[&udp_nic], "always");
    listening(&server, &tcp_server);
    listening(&server, &udp_server);

    let started = Instant::now();
    let size = (64 << 20).to_string();
    let client = service(
        &server,
        "echo-client",
        &["tcp", &format!("{tcp_ip}:7"), &size],
        &[&client_nic],
        "never",
    );
    let (exit, lines) = finish(&server, &client, Duration::from_secs(120));
    eprintln!(
        "64 MiB echoed over TCP between two instances in {:?}",
        started.elapsed()
    );
    assert_eq!(exit, "exit 0", "{lines:?}");
    assert!(lines.contains(&format!("ok tcp {size} bytes")), "{lines:?}");

    // The client's record is free again once it ended; reuse it for UDP.
    let client = service(
        &server,
        "echo-client",
        &["udp", &format!("{udp_ip}:7"), "65536"],
        &[&client_nic],
        "never",
    );
    let (exit, lines) = finish(&server, &client, Duration::from_secs(60));
    assert_eq!(exit, "exit 0", "{lines:?}");
    assert!(
        lines.contains(&"ok udp 65536 bytes".to_owned()),
        "{lines:?}"
    );

    let counters = server.get(&format!("/v1/nics/{tcp_nic}")).json()["counters"].clone();
    assert!(
        counters["rx_bytes"].as_u64().unwrap() > 64 << 20,
        "{counters}"
    );
}

#[test]
fn security_groups_decide_what_passes() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    deploy(&server, "tcp-echo", examples::TCP_ECHO);
    deploy(&server, "echo-client", examples::ECHO_CLIENT);
    let net = Net::new(&server);
    let closed = net.group(&server, json!([]));
    let (server_nic, server_ip) = net.nic(&server, &[&closed]);
    let (client_nic, _) = net.nic(&server, &[]);
    let echo = service(&server, "tcp-echo", &[], &[&server_nic], "always");
    listening(&server, &echo);
    let target = format!("{server_ip}:7");

    // No ingress rule: the connection attempt goes unanswered.
    let client = service(
        &server,
        "echo-client",
        &["tcp", &target, "1024"],
        &[&client_nic],
        "never",
    );
    let (exit, lines) = finish(&server, &client, Duration::from_secs(30));
    assert_eq!(exit, "exit 1", "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("connect")), "{lines:?}");
    let drops = &server.get(&format!("/v1/nics/{server_nic}")).json()["counters"]["drops"];
    assert!(drops["IngressDenied"].as_u64().unwrap_or(0) > 0, "{drops}");

    // Allow the port: it passes; replies need no rule on the client.
    post(
        &server,
        &format!("/v1/security-groups/{closed}/rules"),
        json!({ "direction": "ingress", "protocol": "tcp", "ports": "7" }),
    );
    let client = service(
        &server,
        "echo-client",
        &["tcp", &target, "1024"],
        &[&client_nic],
        "never",
    );
    let (exit, lines) = finish(&server, &client, Duration::from_secs(30));
    assert_eq!(exit, "exit 0", "{lines:?}");

    // A peer-group rule: only members of `clients` may connect.
    let clients = net.group(&server, json!([]));
    post(
        &server,
        &format!("/v1/security-groups/{closed}/rules/delete"),
        json!({ "direction": "ingress", "protocol": "tcp", "ports": "7" }),
    );
    post(
        &server,
        &format!("/v1/security-groups/{closed}/rules"),
        json!({ "direction": "ingress", "protocol": "tcp", "group": clients }),
    );
    let (member_nic, _) = net.nic(&server, &[&clients]);
    let client = service(
        &server,
        "echo-client",
        &["tcp", &target, "1024"],
        &[&member_nic],
        "never",
    );
    assert_eq!(
        finish(&server, &client, Duration::from_secs(30)).0,
        "exit 0"
    );
    let client = service(
        &server,
        "echo-client",
        &["tcp", &target, "1024"],
        &[&client_nic],
        "never",
    );
    assert_eq!(
        finish(&server, &client, Duration::from_secs(30)).0,
        "exit 1"
    );
}

#[test]
fn a_record_moves_and_its_traffic_follows() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    deploy(&server, "http-server", examples::HTTP_SERVER);
    deploy(&server, "http-client", examples::HTTP_CLIENT);
    let net = Net::new(&server);
    let web = net.group(&server, json!([{ "protocol": "tcp", "ports": "80" }]));
    let (vip, vip_ip) = net.nic(&server, &[&web]);
    let (client_nic, _) = net.nic(&server, &[]);
    let a = service(&server, "http-server", &["80", "A"], &[&vip], "always");
    // B listens before it holds any record: a standby.
    let b = service(&server, "http-server", &["80", "B"], &[], "always");
    listening(&server, &a);
    listening(&server, &b);

    let url = format!("http://{vip_ip}/");
    let fetch = || fetch(&server, &client_nic, &url);
    let (exit, page) = fetch();
    assert_eq!(exit, "exit 0", "{page}");
    assert!(page.contains(&format!("served by {a}")), "{page}");

    post(&server, &format!("/v1/nics/{vip}/detach"), json!({}));
    let started = Instant::now();
    let (exit, output) = fetch();
    assert_eq!(
        exit, "exit 1",
        "a detached address must not answer: {output}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the failed fetch took {:?}",
        started.elapsed()
    );

    post(
        &server,
        &format!("/v1/nics/{vip}/attach"),
        json!({ "instance": b }),
    );
    let (exit, page) = fetch();
    assert_eq!(exit, "exit 0", "{page}");
    assert!(page.contains(&format!("served by {b}")), "{page}");
}

#[test]
fn a_socket_hog_is_refused_and_others_keep_working_across_a_restart() {
    let weft = Weft::new();
    let (echo_nic, echo_ip, client_nic) = {
        let server = weft.serve(&[]);
        deploy(&server, "tcp-echo", examples::TCP_ECHO);
        deploy(&server, "echo-client", examples::ECHO_CLIENT);
        deploy(&server, "socket-hog", examples::SOCKET_HOG);
        let net = Net::new(&server);
        let open = net.group(&server, json!([{ "protocol": "tcp", "ports": "7" }]));
        let (echo_nic, echo_ip) = net.nic(&server, &[&open]);
        let (client_nic, _) = net.nic(&server, &[]);
        let (hog_nic, _) = net.nic(&server, &[]);
        let echo = service(&server, "tcp-echo", &[], &[&echo_nic], "always");
        listening(&server, &echo);

        let hog = service(&server, "socket-hog", &[], &[&hog_nic], "never");
        let (exit, lines) = finish(&server, &hog, Duration::from_secs(60));
        assert_eq!(exit, "exit 0", "{lines:?}");
        assert_eq!(
            lines,
            ["opened 1024 sockets; stopped: weft: limit reached"],
            "{lines:?}"
        );

        let client = service(
            &server,
            "echo-client",
            &["tcp", &format!("{echo_ip}:7"), "100000"],
            &[&client_nic],
            "never",
        );
        assert_eq!(
            finish(&server, &client, Duration::from_secs(30)).0,
            "exit 0"
        );
        assert!(server.stop().success());
        (echo_nic, echo_ip, client_nic)
    };

    // After a restart the echo service is back on its record and serves.
    let server = weft.serve(&[]);
    let shown = server.get(&format!("/v1/nics/{echo_nic}")).json();
    let holder = shown["attachment"]["instance"].as_str().unwrap().to_owned();
    listening(&server, &holder);
    let client = service(
        &server,
        "echo-client",
        &["tcp", &format!("{echo_ip}:7"), "100000"],
        &[&client_nic],
        "never",
    );
    let (exit, lines) = finish(&server, &client, Duration::from_secs(30));
    assert_eq!(exit, "exit 0", "{lines:?}");
}
