//! HTTP invoke throughput and latency of `hello` on loopback, beside a
//! handler on the same server, behind the same guards, that does no wasm
//! (the HTTP ceiling), in the same run. A small keep-alive load generator
//! runs in-process; prints req/s, p50/p99 and the ratio.
//!
//! Run: `make bench` (or build `examples/` and `cargo bench -p weft-host --bench http`).

use axum::routing::post;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use weft::api::{ServeConfig, Server, router_with};
use weft::node::{Node, NodeConfig};

mod support {
    pub mod http;
}

const CONNECTIONS: usize = 32;
const WARMUP: Duration = Duration::from_millis(500);
const MEASURE: Duration = Duration::from_secs(3);

/// One keep-alive connection sending `request` until `until`; returns
/// latencies of responses after `measure_from`.
async fn client(
    addr: SocketAddr,
    request: Vec<u8>,
    measure_from: Instant,
    until: Instant,
) -> Vec<Duration> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut latencies = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while Instant::now() < until {
        let sent = Instant::now();
        stream.write_all(&request).await.unwrap();
        support::http::read_response(&mut stream, &mut buf).await;
        if sent >= measure_from {
            latencies.push(sent.elapsed());
        }
    }
    latencies
}

async fn load(addr: SocketAddr, path: &str, body: &[u8]) -> (f64, Duration, Duration) {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut request = request.into_bytes();
    request.extend_from_slice(body);
    let start = Instant::now();
    let measure_from = start + WARMUP;
    let until = measure_from + MEASURE;
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| tokio::spawn(client(addr, request.clone(), measure_from, until)))
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort();
    let rate = all.len() as f64 / MEASURE.as_secs_f64();
    (rate, all[all.len() / 2], all[all.len() * 99 / 100])
}

fn main() {
    let hello = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/target/wasm32-wasip1/release/hello.wasm");
    let bytes = std::fs::read(&hello).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the examples first (`make bench` does)",
            hello.display()
        )
    });
    let data = tempfile::tempdir().unwrap();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let node = Node::open(NodeConfig::new(data.path())).unwrap();
        node.deploy("hello", &bytes).unwrap();
        let config = ServeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..ServeConfig::default()
        };
        let ceiling = axum::Router::new().route("/bench/noop", post(|| async { "hello, !\n" }));
        let router = router_with(node.clone(), &config, ceiling);
        let server = Server::bind_router(router, config).await.unwrap();
        let addr = server.local_addr();
        tokio::spawn(server.serve(std::future::pending()));

        let (noop_rate, noop_p50, noop_p99) = load(addr, "/bench/noop", b"").await;
        let (wasm_rate, wasm_p50, wasm_p99) = load(addr, "/v1/modules/hello/invoke", b"").await;
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!("HTTP on loopback, {CONNECTIONS} keep-alive connections, {MEASURE:?} each, client in-process");
        println!("{:<40} {:>10} {:>10} {:>10}", "", "req/s", "p50 µs", "p99 µs");
        println!("{:<40} {:>10.0} {:>10.0} {:>10.0}", "ceiling: axum handler, no wasm", noop_rate, us(noop_p50), us(noop_p99));
        println!("{:<40} {:>10.0} {:>10.0} {:>10.0}", "POST /v1/modules/hello/invoke", wasm_rate, us(wasm_p50), us(wasm_p99));
        println!(
            "ratio invoke/ceiling: throughput {:.2}x, p99 {:.2}x",
            wasm_rate / noop_rate,
            us(wasm_p99) / us(noop_p99)
        );
    });
}
