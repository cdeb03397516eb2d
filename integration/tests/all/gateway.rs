//! The gateway: port forwards reached with the real `curl`, following a
//! record as it moves; outbound NAT to a server on the host's loopback,
//! under egress rules and the host's allow-list; both coming back after a
//! restart; a flood of connections held to a stated limit; and a TUN
//! device inside a network namespace the test makes, reached with `ping`
//! and `curl` by instance address.

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};
use weft_integration::http::Request;
use weft_integration::netkit::{
    Net, connect_from, curl, curl_until, deploy, eventually, fetch, finish, listening, post,
    service,
};
use weft_integration::{Served, Weft, examples, in_netns};

fn delete(server: &Served, path: &str) -> u16 {
    server.send(Request::new("DELETE", path)).status
}

fn put_groups(server: &Served, nic: &str, groups: &[&str]) {
    let body = json!({ "security_groups": groups }).to_string();
    let response = server.send(
        Request::new("PUT", &format!("/v1/nics/{nic}/security-groups"))
            .header("Content-Type", "application/json")
            .body(body.as_bytes()),
    );
    assert_eq!(response.status, 200, "{}", response.text());
}

/// POSTs, expecting a refusal; returns (status, body).
fn refused(server: &Served, path: &str, body: Value) -> (u16, Value) {
    let text = body.to_string();
    let response = server.send(
        Request::new("POST", path)
            .header("Content-Type", "application/json")
            .body(text.as_bytes()),
    );
    assert!(response.status >= 400, "{path}: {}", response.text());
    (response.status, response.json())
}

fn gateway(server: &Served, subnet: &str, tun: Option<&str>) -> Value {
    let mut body = json!({ "subnet": subnet });
    if let Some(tun) = tun {
        body["tun"] = tun.into();
    }
    let gateway = post(server, "/v1/gateways", body);
    assert!(gateway["id"].as_str().unwrap().starts_with("gw-"));
    gateway
}

#[test]
fn a_forward_follows_the_record_and_comes_back_after_a_restart() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    deploy(&server, "http-server", examples::HTTP_SERVER);
    let net = Net::new(&server);
    let web = net.group(&server, json!([{ "protocol": "tcp", "ports": "80" }]));
    let (vip, vip_ip) = net.nic(&server, &[&web]);
    let a = service(&server, "http-server", &["80", "A"], &[&vip], "always");
    let b = service(&server, "http-server", &["80", "B"], &[], "always");
    listening(&server, &a);
    listening(&server, &b);

    // A forward needs a gateway for its target's subnet.
    let to = format!("{vip_ip}:80");
    let (status, error) = refused(
        &server,
        "/v1/forwards",
        json!({ "listen": "127.0.0.1:0", "to": to }),
    );
    assert_eq!(status, 409, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no gateway")
    );
    let gw = gateway(&server, &net.subnet, None);
    assert_eq!(gw["ip"], "10.0.1.1");
    let (status, _) = refused(&server, "/v1/gateways", json!({ "subnet": net.subnet }));
    assert_eq!(status, 409, "one gateway per subnet");
    // Its record is managed with it.
    let (status, _) = refused(
        &server,
        &format!("/v1/nics/{}/detach", gw["nic"].as_str().unwrap()),
        json!({}),
    );
    assert_eq!(status, 409);

    let forward = post(
        &server,
        "/v1/forwards",
        json!({ "listen": "127.0.0.1:0", "to": to }),
    );
    let url = format!("http://{}/", forward["listen"].as_str().unwrap());
    curl_until(&url, &format!("served by {a}"), Duration::from_secs(10));

    // The record moves to B; the same forward reaches B.
    post(&server, &format!("/v1/nics/{vip}/detach"), json!({}));
    post(
        &server,
        &format!("/v1/nics/{vip}/attach"),
        json!({ "instance": b }),
    );
    curl_until(&url, &format!("served by {b}"), Duration::from_secs(10));

    // Ingress rules apply to forwarded traffic.
    let closed = net.group(&server, json!([]));
    put_groups(&server, &vip, &[&closed]);
    assert_eq!(
        curl(&url),
        None,
        "a group without port 80 must stop the forward"
    );
    put_groups(&server, &vip, &[&web]);
    curl_until(&url, &format!("served by {b}"), Duration::from_secs(10));

    let counters = server
        .get(&format!("/v1/forwards/{}", forward["id"].as_str().unwrap()))
        .json()["counters"]
        .clone();
    assert!(counters["connections"].as_u64().unwrap() >= 3, "{counters}");
    assert!(counters["bytes_out"].as_u64().unwrap() > 0, "{counters}");

    // A restart brings the gateway and the forward back, on the same port.
    server.stop();
    let server = weft.serve(&[]);
    curl_until(&url, &format!("served by {b}"), Duration::from_secs(20));
    let gateways = server.get("/v1/gateways").json();
    assert_eq!(gateways["gateways"][0]["id"], gw["id"], "{gateways}");
    assert_eq!(gateways["gateways"][0]["status"], "up", "{gateways}");

    // A gateway carrying forwards cannot go; without them it can.
    let gw_path = format!("/v1/gateways/{}", gw["id"].as_str().unwrap());
    assert_eq!(delete(&server, &gw_path), 409);
    let fwd_path = format!("/v1/forwards/{}", forward["id"].as_str().unwrap());
    assert_eq!(delete(&server, &fwd_path), 204);
    assert_eq!(curl(&url), None, "a removed forward stops listening");
    assert_eq!(delete(&server, &gw_path), 204);
}

#[test]
fn the_cli_manages_gateways_and_forwards() {
    let weft = Weft::new();
    let server = weft.serve(&[
        "--egress-allow",
        "127.0.0.1",
        "--egress-allow",
        "192.0.2.0/24",
    ]);
    let url = server.url();
    let cli = |args: &[&str]| {
        let mut full = vec!["--server", url.as_str()];
        full.extend_from_slice(args);
        let run = weft.run(full, b"");
        (run.code, run.stdout_text(), run.stderr)
    };
    let ok = |args: &[&str]| {
        let (code, stdout, stderr) = cli(args);
        assert_eq!(code, Some(0), "weft {args:?}: {stderr}");
        stdout
    };
    let subnet = ok(&["subnet", "create", "10.9.0.0/24"]);
    let subnet = subnet.split_whitespace().next().unwrap().to_owned();
    let created = ok(&["gateway", "create", "--subnet", &subnet]);
    assert!(
        created.starts_with("gw-") && created.contains("10.9.0.1 on 10.9.0.0/24"),
        "{created}"
    );
    let gateway = created.split_whitespace().next().unwrap().to_owned();
    let listing = ok(&["gateway", "ls"]);
    assert!(
        listing.contains(&gateway) && listing.contains(" on "),
        "{listing}"
    );
    assert!(
        listing.contains("egress allow-list: 127.0.0.1/32, 192.0.2.0/24"),
        "{listing}"
    );

    let added = ok(&["forward", "add", "127.0.0.1:0", "10.9.0.5:80"]);
    assert!(
        added.starts_with("fwd-") && added.contains("-> 10.9.0.5:80"),
        "{added}"
    );
    let forward = added.split_whitespace().next().unwrap().to_owned();
    assert!(ok(&["forward", "ls"]).contains(&forward));
    assert!(ok(&["forward", "show", &forward]).contains("\"connections\": 0"));
    // Bad input is a clear error.
    let (code, _, stderr) = cli(&["forward", "add", "nowhere", "10.9.0.5:80"]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("not a host address and port"), "{stderr}");
    let (code, _, stderr) = cli(&[
        "gateway", "create", "--subnet", &subnet, "--tun", "bad name",
    ]);
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("not a network device name") || stderr.contains("has a gateway"),
        "{stderr}"
    );

    ok(&["forward", "rm", &forward]);
    ok(&["gateway", "rm", &gateway]);
    assert!(!ok(&["gateway", "ls"]).contains(&gateway));
}

/// A one-page HTTP server on the host's loopback, for `count` requests.
fn host_server(page: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    port
}

#[test]
fn nat_reaches_the_host_only_as_egress_rules_and_the_allow_list_say() {
    let port = host_server("hello from the host");
    let weft = Weft::new();
    let server = weft.serve(&["--egress-allow", "127.0.0.1"]);
    deploy(&server, "http-client", examples::HTTP_CLIENT);
    let net = Net::new(&server);
    let gw = gateway(&server, &net.subnet, None);
    // Egress only to the gateway's address.
    let rule = json!({ "protocol": "tcp", "cidr": "10.0.1.1/32" });
    let group = post(
        &server,
        "/v1/security-groups",
        json!({ "name": "to-gateway", "ingress": [], "egress": [rule] }),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (client, _) = net.nic(&server, &[&group]);

    // The gateway's address stands for the host's loopback.
    let url = format!("http://10.0.1.1:{port}/");
    let (exit, output) = fetch(&server, &client, &url);
    assert_eq!(exit, "exit 0", "{output}");
    assert!(output.contains("hello from the host"), "{output}");

    // Without the egress rule the connection never leaves the subnet.
    let mut rule_body = rule.clone();
    rule_body["direction"] = "egress".into();
    post(
        &server,
        &format!("/v1/security-groups/{group}/rules/delete"),
        rule_body.clone(),
    );
    let (exit, output) = fetch(&server, &client, &url);
    assert_eq!(exit, "exit 1", "{output}");
    assert!(output.contains("connect"), "{output}");
    post(
        &server,
        &format!("/v1/security-groups/{group}/rules"),
        rule_body,
    );

    // Without the host's allow-list, the gateway refuses and counts it.
    server.stop();
    let server = weft.serve(&[]);
    let (exit, output) = fetch(&server, &client, &url);
    assert_eq!(exit, "exit 1", "{output}");
    assert!(output.contains("refused"), "{output}");
    let gateway = server
        .get(&format!("/v1/gateways/{}", gw["id"].as_str().unwrap()))
        .json();
    assert!(
        gateway["counters"]["nat_denied"].as_u64().unwrap() >= 1,
        "{gateway}"
    );
}

/// `http-server` as a service on a subnet with a gateway, and a TCP forward
/// from the host's loopback to it, serving: (the forward, its address, its
/// URL).
fn web_behind_a_forward(server: &Served) -> (Value, String, String) {
    deploy(server, "http-server", examples::HTTP_SERVER);
    let net = Net::new(server);
    let web = net.group(server, json!([{ "protocol": "tcp", "ports": "80" }]));
    let (nic, ip) = net.nic(server, &[&web]);
    let id = service(server, "http-server", &["80", "A"], &[&nic], "always");
    listening(server, &id);
    gateway(server, &net.subnet, None);
    let forward = post(
        server,
        "/v1/forwards",
        json!({ "listen": "127.0.0.1:0", "to": format!("{ip}:80") }),
    );
    let listen = forward["listen"].as_str().unwrap().to_owned();
    let url = format!("http://{listen}/");
    curl_until(&url, "served by", Duration::from_secs(10));
    (forward, listen, url)
}

#[test]
fn a_flood_of_connections_to_a_forward_is_held_to_its_limit() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    let (forward, listen, url) = web_behind_a_forward(&server);

    // 400 connections held open, 100 from each of four clients (within
    // each one's share): past the stated limit (256 at once) they are
    // closed at once.
    let to = listen.parse().unwrap();
    let flood: Vec<TcpStream> = (0..400u32)
        .filter_map(|n| connect_from([127, 0, 0, 1 + (n % 4) as u8], to).ok())
        .collect();
    assert_eq!(flood.len(), 400);
    let deadline = Instant::now() + Duration::from_secs(10);
    let path = format!("/v1/forwards/{}", forward["id"].as_str().unwrap());
    loop {
        let counters = server.get(&path).json()["counters"].clone();
        if counters["refused"].as_u64().unwrap() >= 400 - 256 {
            assert!(counters["active"].as_u64().unwrap() <= 256, "{counters}");
            assert_eq!(counters["limited"], 0, "{counters}");
            break;
        }
        assert!(Instant::now() < deadline, "{counters}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The host stays responsive meanwhile.
    assert_eq!(server.get("/v1/health").status, 200);
    drop(flood);
    // And once the flood is gone, the forward serves again.
    curl_until(&url, "served by", Duration::from_secs(30));
}

#[test]
fn one_client_cannot_take_a_whole_forward() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    let (forward, listen, url) = web_behind_a_forward(&server);
    let to = listen.parse().unwrap();

    // One client holds 200 connections open: half the forward (128) is
    // its share, and the rest are closed at once.
    let hog: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect(&listen).ok())
        .collect();
    assert_eq!(hog.len(), 200);
    let path = format!("/v1/forwards/{}", forward["id"].as_str().unwrap());
    let counters = eventually(Duration::from_secs(10), || {
        let counters = server.get(&path).json()["counters"].clone();
        (counters["limited"] == 72).then_some(counters)
    });
    assert_eq!(counters["refused"], 72, "{counters}");
    assert!(counters["active"].as_u64().unwrap() <= 128, "{counters}");
    // Another client is carried meanwhile: not closed at once, as a
    // refused one is, and not counted refused. (`http-server` serves one
    // connection at a time, so it would answer only once the held ones
    // time out.)
    let mut other = connect_from([127, 0, 0, 2], to).unwrap();
    other
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let read = other.read(&mut [0u8; 16]);
    assert!(
        matches!(&read, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "{read:?}"
    );
    let counters = server.get(&path).json()["counters"].clone();
    assert_eq!(counters["refused"], 72, "{counters}");
    // And the first, once it lets go.
    drop(other);
    drop(hog);
    curl_until(&url, "served by", Duration::from_secs(30));
}

#[test]
fn a_connection_that_goes_quiet_through_a_forward_is_closed() {
    let weft = Weft::new();
    let server = weft.serve(&["--tcp-idle", "1s"]);
    let (forward, listen, url) = web_behind_a_forward(&server);

    // Connected, then nothing: closed by weft after the idle limit.
    let mut quiet = TcpStream::connect(&listen).unwrap();
    quiet
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let read = quiet.read(&mut buf);
    let waited = started.elapsed();
    assert!(
        matches!(&read, Ok(0))
            || matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{read:?} after {waited:?}"
    );
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "closed after {waited:?}"
    );
    let path = format!("/v1/forwards/{}", forward["id"].as_str().unwrap());
    let counters = server.get(&path).json()["counters"].clone();
    assert_eq!(counters["idle"], 1, "{counters}");
    assert_eq!(counters["active"], 0, "{counters}");
    // Connections that carry something are served as before.
    curl_until(&url, "served by", Duration::from_secs(10));
}

/// A UDP echo server on the host's loopback, for as long as the test runs;
/// its port.
fn host_udp_echo() -> u16 {
    let host_echo = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = host_echo.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = host_echo.recv_from(&mut buf) {
            let _ = host_echo.send_to(&buf[..n], from);
        }
    });
    port
}

/// `udp-echo` as a service on a subnet with a gateway, and a UDP forward
/// from the host's loopback to it: (the subnet, the forward).
fn udp_echo_behind_a_forward(server: &Served) -> (Net, Value) {
    deploy(server, "udp-echo", examples::UDP_ECHO);
    let net = Net::new(server);
    let open = net.group(server, json!([{ "protocol": "udp", "ports": "7" }]));
    let (nic, ip) = net.nic(server, &[&open]);
    let echo = service(server, "udp-echo", &[], &[&nic], "always");
    listening(server, &echo);
    gateway(server, &net.subnet, None);
    let forward = post(
        server,
        "/v1/forwards",
        json!({ "listen": "127.0.0.1:0", "to": format!("{ip}:7"), "proto": "udp" }),
    );
    (net, forward)
}

/// A UDP socket on `source` (a loopback address), connected to `forward`.
fn udp_client(source: [u8; 4], forward: &Value) -> std::net::UdpSocket {
    let client = std::net::UdpSocket::bind(std::net::SocketAddr::from((source, 0))).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    client.connect(forward["listen"].as_str().unwrap()).unwrap();
    client
}

#[test]
fn one_client_cannot_take_every_udp_place_of_a_forward() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    let (_net, forward) = udp_echo_behind_a_forward(&server);
    // One client address sends from 140 ports: 128 (half the forward)
    // are carried, the rest refused.
    let ports: Vec<_> = (0..140)
        .map(|_| udp_client([127, 0, 0, 1], &forward))
        .collect();
    for port in &ports {
        port.send(b"hello").unwrap();
    }
    let path = format!("/v1/forwards/{}", forward["id"].as_str().unwrap());
    let counters = eventually(Duration::from_secs(10), || {
        let counters = server.get(&path).json()["counters"].clone();
        (counters["limited"] == 12).then_some(counters)
    });
    assert_eq!(counters["refused"], 12, "{counters}");
    assert_eq!(counters["active"], 128, "{counters}");
    // Another client is carried meanwhile.
    let other = udp_client([127, 0, 0, 2], &forward);
    other.send(b"from another").unwrap();
    let mut buf = [0u8; 64];
    let got = other.recv(&mut buf).expect("the echo through the forward");
    assert_eq!(&buf[..got], b"from another");
}

#[test]
fn udp_crosses_a_forward_in_and_nat_out() {
    // A UDP echo on the host's loopback, for the NAT half.
    let host_port = host_udp_echo();
    let weft = Weft::new();
    let server = weft.serve(&["--egress-allow", "127.0.0.0/8"]);
    deploy(&server, "echo-client", examples::ECHO_CLIENT);
    let (net, forward) = udp_echo_behind_a_forward(&server);

    // In: a host UDP client through a forward.
    let client = udp_client([127, 0, 0, 1], &forward);
    for n in 0..20 {
        let message = format!("datagram {n}");
        client.send(message.as_bytes()).unwrap();
        let mut buf = [0u8; 64];
        let got = client.recv(&mut buf).expect("the echo through the forward");
        assert_eq!(&buf[..got], message.as_bytes());
    }

    // Out: a guest's datagrams to the gateway's address reach the host's
    // loopback and the answers come back from that address.
    echo_out_through_nat(&server, &net, host_port, 8192);
}

/// `echo-client` on a new record of `net` sends `bytes` over UDP to the
/// host's echo at `host_port`, by the gateway's address, and gets them
/// back.
fn echo_out_through_nat(server: &Served, net: &Net, host_port: u16, bytes: usize) {
    let (client_nic, _) = net.nic(server, &[]);
    let id = service(
        server,
        "echo-client",
        &["udp", &format!("10.0.1.1:{host_port}"), &bytes.to_string()],
        &[&client_nic],
        "never",
    );
    let (exit, lines) = finish(server, &id, Duration::from_secs(30));
    assert_eq!(exit, "exit 0", "{lines:?}");
    let expected = format!("ok udp {bytes} bytes");
    assert!(lines.iter().any(|l| l.contains(&expected)), "{lines:?}");
}

#[test]
fn one_guest_cannot_take_every_nat_flow_of_its_gateway() {
    // A UDP echo on the host's loopback, for the guest that comes after.
    let host_port = host_udp_echo();
    let weft = Weft::new();
    let server = weft.serve(&["--egress-allow", "127.0.0.0/8"]);
    deploy(&server, "socket-hog", examples::SOCKET_HOG);
    deploy(&server, "echo-client", examples::ECHO_CLIENT);
    let net = Net::new(&server);
    let gw = gateway(&server, &net.subnet, None);
    let path = format!("/v1/gateways/{}", gw["id"].as_str().unwrap());

    // 400 destinations from one guest (ports of the host's loopback, by
    // the gateway's address): 256 are carried, the rest refused.
    let (hog_nic, _) = net.nic(&server, &[]);
    let hog = service(
        &server,
        "socket-hog",
        &["ports", "10.0.1.1", "40000", "400"],
        &[&hog_nic],
        "never",
    );
    let (exit, lines) = finish(&server, &hog, Duration::from_secs(30));
    assert_eq!(exit, "exit 0", "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("sent 400")), "{lines:?}");
    let counters = eventually(Duration::from_secs(10), || {
        let counters = server.get(&path).json()["counters"].clone();
        (counters["nat_udp"] == 256 && counters["nat_limited"] == 144).then_some(counters)
    });
    assert_eq!(counters["nat_failed"], 0, "{counters}");

    // The others on the subnet still get out meanwhile.
    echo_out_through_nat(&server, &net, host_port, 1024);
}

/// Whether this process may make network namespaces and TUN devices.
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A network namespace, deleted when dropped.
struct Namespace(String);

impl Namespace {
    fn new() -> Namespace {
        let name = format!("weft-test-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(std::process::Stdio::null())
            .status();
        let made = Command::new("ip").args(["netns", "add", &name]).status();
        assert!(made.is_ok_and(|s| s.success()), "ip netns add {name}");
        let ns = Namespace(name);
        assert!(ns.exec(&["ip", "link", "set", "lo", "up"]).status.success());
        ns
    }

    /// Runs a command inside the namespace.
    fn exec(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .output()
            .expect("ip netns exec")
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn a_tun_gateway_in_a_namespace_is_reached_by_ping_and_curl() {
    if !is_root() {
        eprintln!("skipped: network namespaces and TUN devices need root");
        return;
    }
    let ns = Namespace::new();
    // weft runs inside the namespace; the test talks to it from there too.
    in_netns(&ns.0, || tun_gateway(&ns));
}

fn tun_gateway(ns: &Namespace) {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    deploy(&server, "http-server", examples::HTTP_SERVER);
    let net = Net::new(&server);
    let web = net.group(
        &server,
        json!([{ "protocol": "tcp", "ports": "80" }, { "protocol": "icmp" }]),
    );
    let (nic, ip) = net.nic(&server, &[&web]);
    let id = service(&server, "http-server", &["80", "A"], &[&nic], "always");
    listening(&server, &id);
    let gw = gateway(&server, &net.subnet, Some("weft0"));
    assert_eq!(gw["status"], "up", "{gw}");

    let ping = ns.exec(&["ping", "-c", "3", "-W", "2", &ip]);
    assert!(
        ping.status.success(),
        "ping {ip}: {}{}",
        String::from_utf8_lossy(&ping.stdout),
        String::from_utf8_lossy(&ping.stderr)
    );
    let url = format!("http://{ip}/");
    let page = ns.exec(&["curl", "-s", "--fail", "--max-time", "5", &url]);
    assert!(page.status.success(), "curl {url}");
    assert!(String::from_utf8_lossy(&page.stdout).contains(&format!("served by {id}")));

    // A group without port 80: curl from the host fails, ping still works.
    let icmp_only = net.group(&server, json!([{ "protocol": "icmp" }]));
    put_groups(&server, &nic, &[&icmp_only]);
    let denied = ns.exec(&["curl", "-s", "--fail", "--max-time", "3", &url]);
    assert!(!denied.status.success(), "port 80 is not allowed any more");
    assert!(
        ns.exec(&["ping", "-c", "1", "-W", "2", &ip])
            .status
            .success()
    );

    let gateway = server
        .get(&format!("/v1/gateways/{}", gw["id"].as_str().unwrap()))
        .json();
    assert!(
        gateway["counters"]["tun_in"].as_u64().unwrap() > 0,
        "{gateway}"
    );
    assert!(
        gateway["counters"]["tun_out"].as_u64().unwrap() > 0,
        "{gateway}"
    );

    // After a restart the device is made again and routes as before.
    server.stop();
    let server = weft.serve(&[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ns
        .exec(&["ping", "-c", "1", "-W", "1", &ip])
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "no answer after the restart");
    }
    let gateways = server.get("/v1/gateways").json();
    assert_eq!(gateways["gateways"][0]["status"], "up", "{gateways}");
    server.stop();
}

#[test]
fn a_tun_device_without_cap_net_admin_is_a_clear_error() {
    if !is_root() {
        eprintln!("skipped: dropping to another user needs root");
        return;
    }
    let weft = Weft::new();
    // An unprivileged user, without CAP_NET_ADMIN, owning its data.
    let chown = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(weft.data_dir())
        .status()
        .unwrap();
    assert!(chown.success());
    let server = weft.serve_as_nobody(&[]);
    let net = Net::new(&server);
    let (status, error) = refused(
        &server,
        "/v1/gateways",
        json!({ "subnet": net.subnet, "tun": "weft9" }),
    );
    assert_eq!(status, 400, "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("CAP_NET_ADMIN"), "{message}");
    // Nothing was kept.
    assert_eq!(server.get("/v1/gateways").json()["gateways"], json!([]));
}
