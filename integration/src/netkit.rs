//! What the network tests and benchmarks share: calling the API, deploying
//! examples, making subnets, groups and records, running services and
//! reading their logs.

use crate::Served;
use crate::http::Request;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// POSTs JSON; panics unless it succeeds; returns the answer.
pub fn post(server: &Served, path: &str, body: Value) -> Value {
    let text = body.to_string();
    let response = server.send(
        Request::new("POST", path)
            .header("Content-Type", "application/json")
            .body(text.as_bytes()),
    );
    assert!(
        response.status == 200 || response.status == 201,
        "POST {path}: {} {}",
        response.status,
        response.text()
    );
    response.json()
}

/// Polls `f` every few milliseconds until it returns `Some`, for up to
/// `within`.
pub fn eventually<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Uploads the module at `path` as `name`.
pub fn deploy(server: &Served, name: &str, path: &str) {
    let wasm = std::fs::read(path).unwrap();
    let put = server.send(Request::new("PUT", &format!("/v1/modules/{name}")).body(&wasm));
    assert!(put.status == 201 || put.status == 200, "{}", put.text());
}

/// A subnet (10.0.1.0/24) to make groups and records in.
#[derive(Debug)]
pub struct Net {
    pub subnet: String,
}

impl Net {
    /// Makes the subnet.
    pub fn new(server: &Served) -> Net {
        let subnet = post(server, "/v1/subnets", json!({ "cidr": "10.0.1.0/24" }));
        Net {
            subnet: subnet["id"].as_str().unwrap().to_owned(),
        }
    }

    /// A security group with these ingress rules; returns its id.
    pub fn group(&self, server: &Served, ingress: Value) -> String {
        post(
            server,
            "/v1/security-groups",
            json!({ "name": "g", "ingress": ingress }),
        )["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A record; returns (id, ip).
    pub fn nic(&self, server: &Served, groups: &[&str]) -> (String, String) {
        let nic = post(
            server,
            "/v1/nics",
            json!({ "subnet": self.subnet, "security_groups": groups }),
        );
        (
            nic["id"].as_str().unwrap().to_owned(),
            nic["ip"].as_str().unwrap().to_owned(),
        )
    }
}

/// Starts a service; returns its id.
pub fn service(
    server: &Served,
    module: &str,
    args: &[&str],
    nics: &[&str],
    restart: &str,
) -> String {
    post(
        server,
        "/v1/services",
        json!({ "module": module, "args": args, "nics": nics, "restart": restart }),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits for a `restart: never` service to end, then deletes it (freeing its
/// records); returns its last exit and its output lines.
pub fn finish(server: &Served, id: &str, within: Duration) -> (String, Vec<String>) {
    let deadline = Instant::now() + within;
    loop {
        let status = server.get(&format!("/v1/services/{id}")).json();
        let state = status["state"].as_str().unwrap_or("").to_owned();
        if state == "stopped" || state == "failed" {
            let lines = server
                .get(&format!("/v1/logs?instance={id}&limit=1000"))
                .json()["lines"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|l| l["stream"] == "stdout" || l["stream"] == "stderr")
                .map(|l| l["message"].as_str().unwrap().to_owned())
                .collect();
            let deleted = server.send(Request::new("DELETE", &format!("/v1/services/{id}")));
            assert_eq!(deleted.status, 204);
            return (status["last_exit"].as_str().unwrap_or("").to_owned(), lines);
        }
        assert!(
            Instant::now() < deadline,
            "{id} still {state} after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until a server's log says it listens.
pub fn listening(server: &Served, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = server.get(&format!("/v1/logs?instance={id}")).json();
        if lines["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["message"].as_str().unwrap_or("").contains("listening"))
        {
            return;
        }
        assert!(Instant::now() < deadline, "{id} never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the `http-client` example (deployed as `http-client`) once on
/// record `nic` against `url`; returns its last exit and everything it
/// wrote.
pub fn fetch(server: &Served, nic: &str, url: &str) -> (String, String) {
    let id = service(server, "http-client", &[url], &[nic], "never");
    let (exit, lines) = finish(server, &id, Duration::from_secs(30));
    (exit, lines.join("\n"))
}

/// `curl -s --fail` of `url` (the real program): the body on success.
pub fn curl(url: &str) -> Option<String> {
    let out = std::process::Command::new("curl")
        .args(["-s", "--fail", "--max-time", "5", url])
        .output()
        .expect("running curl (is it installed? `make test-setup` installs it)");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits until `curl url` gives a body containing `needle`; returns it.
pub fn curl_until(url: &str, needle: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        match curl(url) {
            Some(body) if body.contains(needle) => return body,
            other => assert!(
                Instant::now() < deadline,
                "{url} never served `{needle}`: last {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A TCP connection to `to` from `source`, an address of the loopback
/// block (`127.0.0.2` and so on): another client, as far as the server
/// can tell, without leaving the host.
pub fn connect_from(source: [u8; 4], to: std::net::SocketAddr) -> std::io::Result<TcpStream> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind((source, 0).into())?;
        socket.connect(to).await?.into_std()
    })?;
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// Sends `request` (a whole HTTP/1.0 request) on `stream` and reads the
/// answer to its end.
pub fn exchange(mut stream: TcpStream, request: &str) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}
