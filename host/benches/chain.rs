//! The cost of a chain hop through `identity` steps, for payloads from
//! 0 B to 16 MiB, beside, in the same run: a plain `memcpy` of the same
//! size (the floor of one copy), both between buffers in cache and into
//! memory that is not (as a copying hop's destination is), a single
//! invocation of the same module (what a hop may cost above it), and the
//! same hop done the way other hosts do it, over HTTP on loopback
//! (`POST /v1/modules/identity/invoke`, the payload out to the instance
//! and back). Prints µs per hop, ns per KiB (the slope over the 0 B hop),
//! the ratios, and the share of the hops' bytes that came as moved pages.
//! Never passes or fails on absolute numbers.
//!
//! It runs twice: as the node runs by default (a large hop moves its whole
//! pages where the kernel can, see `runtime::pages`), then with every hop
//! copied (`weft serve --chain-copy`), which shows the one copy a hop
//! makes without moving.
//!
//! A hop is measured as (T(chain of 6 steps) − T(chain of 1 step)) / 5, so
//! the request's own fixed costs cancel out.
//!
//! The slope is printed per payload (over the 0 B hop) and as the slope of
//! the line fitted through the payloads from 64 KiB up. `WEFT_BENCH_SIZES`
//! (bytes, comma-separated) and `WEFT_BENCH_COPY=never|only` narrow a run,
//! for profiling.
//!
//! Run: `make bench` (or build `examples/` and `cargo bench -p weft-host --bench chain`).

use bytes::Bytes;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use weft::api::{ServeConfig, Server};
use weft::chain::{Definition, StepDef};
use weft::node::{ChainRequest, InvokeRequest, Node, NodeConfig};

mod support {
    pub mod http;
}

const SIZES: [usize; 6] = [0, 64, 4 << 10, 64 << 10, 1 << 20, 16 << 20];
const LONG: usize = 6;
/// Bytes moved per measurement, so small payloads get many samples.
const BUDGET: usize = 256 << 20;

/// The payload sizes: [`SIZES`], or those listed in `WEFT_BENCH_SIZES`
/// (bytes, comma-separated; for profiling one size).
fn sizes() -> Vec<usize> {
    match std::env::var("WEFT_BENCH_SIZES") {
        Ok(list) => list
            .split(',')
            .map(|s| s.trim().parse().expect("WEFT_BENCH_SIZES: sizes in bytes"))
            .collect(),
        Err(_) => SIZES.to_vec(),
    }
}

fn samples(size: usize) -> usize {
    (BUDGET / size.max(1) / LONG).clamp(15, 3000)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn payload(size: usize) -> Bytes {
    Bytes::from((0..size).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>())
}

fn chain(node: &Node, steps: usize) -> Definition {
    let steps = vec![StepDef::module("identity"); steps];
    Definition::new("", steps, None, &node.chain_ceilings()).unwrap()
}

async fn time_chain(node: &Node, definition: &Definition, input: &Bytes) -> Duration {
    let started = Instant::now();
    let ran = node
        .invoke_chain(
            definition,
            ChainRequest {
                input: input.clone(),
                timeout: None,
            },
        )
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(ran.output.len(), input.len());
    took
}

async fn time_invoke(node: &Node, input: &Bytes) -> Duration {
    let started = Instant::now();
    let outcome = node
        .invoke(
            "identity",
            InvokeRequest {
                input: input.clone(),
                ..InvokeRequest::default()
            },
        )
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(outcome.output.len(), input.len());
    took
}

/// One keep-alive connection to the server.
struct Http {
    stream: TcpStream,
    addr: SocketAddr,
    buf: Vec<u8>,
}

impl Http {
    async fn connect(addr: SocketAddr) -> Http {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Http {
            stream,
            addr,
            buf: vec![0; 64 << 10],
        }
    }

    /// One hop over HTTP: the payload to an instance and its output back.
    async fn hop(&mut self, body: &[u8]) -> Duration {
        let started = Instant::now();
        let head = format!(
            "POST /v1/modules/identity/invoke HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        self.stream.write_all(head.as_bytes()).await.unwrap();
        self.stream.write_all(body).await.unwrap();
        support::http::read_response(&mut self.stream, &mut self.buf).await;
        started.elapsed()
    }
}

/// A plain copy of `size` bytes into a buffer already in memory.
fn time_memcpy(size: usize, rounds: usize) -> Duration {
    let src = payload(size);
    let mut dst = vec![0u8; size];
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
        times.push(started.elapsed());
    }
    median(times)
}

/// The same copy into destinations cycled through 64 MiB (faulted in
/// beforehand), so each lands in memory that is not in cache, as a hop's
/// does: its destination is another instance's memory, last written (when
/// it was zeroed) on another core.
fn time_memcpy_cold(size: usize, rounds: usize) -> Duration {
    let src = payload(size);
    let count = ((64 << 20) / size.max(1)).clamp(2, 4096);
    let mut dsts: Vec<Vec<u8>> = (0..count).map(|_| vec![1u8; size]).collect();
    let mut times = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let dst = &mut dsts[round % count];
        let started = Instant::now();
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(dst);
        times.push(started.elapsed());
    }
    median(times)
}

struct Row {
    size: usize,
    hop: f64,
    invoke: f64,
    memcpy: f64,
    cold: f64,
    http: f64,
    warm: f64,
    /// The share of the hops' input bytes that came as moved pages.
    moved: f64,
}

fn main() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/target/wasm32-wasip1/release/identity.wasm");
    let wasm = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the examples first (`make bench` does)",
            path.display()
        )
    });
    // The node's default, which moves a large hop's pages where the kernel
    // can, then every hop copied (`weft serve --chain-copy`): the one copy a
    // hop makes, against the copies beside it.
    if !weft::runtime::pages::available() {
        println!("this kernel cannot move pages (no userfaultfd with UFFDIO_MOVE): both runs copy");
    }
    // `WEFT_BENCH_COPY=only` (or `never`) runs one of the two (for profiling).
    let modes: &[bool] = match std::env::var("WEFT_BENCH_COPY").as_deref() {
        Ok("only") => &[false],
        Ok("never") => &[true],
        _ => &[true, false],
    };
    for &move_pages in modes {
        let rows = measure(&wasm, move_pages);
        report(&rows, move_pages);
        println!();
    }
}

fn measure(wasm: &[u8], move_pages: bool) -> Vec<Row> {
    let data = tempfile::tempdir().unwrap();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let mut config = NodeConfig::new(data.path());
        config.chains.move_pages = move_pages;
        let node = Node::open(config).unwrap();
        node.deploy("identity", wasm).unwrap();
        let config = ServeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..ServeConfig::default()
        };
        let server = Server::bind(node.clone(), config).await.unwrap();
        let addr = server.local_addr();
        tokio::spawn(server.serve(std::future::pending()));
        let mut http = Http::connect(addr).await;
        let (short, long) = (chain(&node, 1), chain(&node, LONG));
        let node = Arc::clone(&node);

        let mut rows = Vec::new();
        for size in sizes() {
            let input = payload(size);
            let rounds = samples(size);
            // Warm up: pools filled, pages faulted in, connection open.
            for _ in 0..rounds.min(50) {
                time_chain(&node, &long, &input).await;
                time_invoke(&node, &input).await;
                http.hop(&input).await;
            }
            let (mut one, mut many, mut single, mut over_http) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for _ in 0..rounds {
                one.push(time_chain(&node, &short, &input).await);
                many.push(time_chain(&node, &long, &input).await);
                single.push(time_invoke(&node, &input).await);
                over_http.push(http.hop(&input).await);
                // Let the background top-up refill the pools between runs,
                // as it would between requests.
                tokio::task::yield_now().await;
            }
            let recent = node.chains().recent(None, rounds.min(100));
            let steps: usize = recent.iter().map(|r| r.steps.len()).sum();
            let warm_steps = recent
                .iter()
                .flat_map(|r| &r.steps)
                .filter(|s| s.warm)
                .count();
            // Every step but the first takes its input from a hop.
            let hops = recent.iter().flat_map(|r| r.steps.iter().skip(1));
            let (moved, carried) =
                hops.fold((0, 0), |(m, c), s| (m + s.input_moved, c + s.input_bytes));
            let hop = (us(median(many)) - us(median(one))) / (LONG - 1) as f64;
            rows.push(Row {
                size,
                hop,
                invoke: us(median(single)),
                memcpy: us(time_memcpy(size, rounds.max(100))),
                cold: us(time_memcpy_cold(size, rounds.max(100))),
                http: us(median(over_http)),
                warm: warm_steps as f64 / steps.max(1) as f64,
                moved: moved as f64 / carried.max(1) as f64,
            });
        }
        rows
    })
}

fn report(rows: &[Row], move_pages: bool) {
    let kib = |size: usize| size as f64 / 1024.0;
    let base = &rows[0];
    // The slope's zero: the cheaper of the 0 B and 64 B hops, so one noisy
    // baseline does not tilt every row.
    let zero = rows
        .iter()
        .take(2)
        .map(|r| r.hop)
        .fold(f64::INFINITY, f64::min);
    println!(
        "chain hop through identity steps: (T({LONG} steps) - T(1 step)) / {}, medians; HTTP hop = POST /v1/modules/identity/invoke on loopback, keep-alive; {}",
        LONG - 1,
        if move_pages {
            "pages moved where they can be (the default)"
        } else {
            "every hop copied (--chain-copy)"
        }
    );
    println!(
        "{:>8} {:>10} {:>10} {:>10} {:>10} {:>12} {:>10} {:>10} {:>10} {:>10} {:>8} {:>10} {:>8}",
        "payload",
        "hop µs",
        "invoke µs",
        "memcpy µs",
        "cold cpy µs",
        "HTTP hop µs",
        "hop ns/KiB",
        "cpy ns/KiB",
        "slope/cpy",
        "slope/cold",
        "HTTP/hop",
        "warm steps",
        "moved"
    );
    for row in rows {
        let per_kib = |us: f64| us * 1e3 / kib(row.size);
        let (slope, copy_slope, cold_slope) = if row.size >= 1024 {
            (
                per_kib(row.hop - zero),
                per_kib(row.memcpy),
                per_kib(row.cold),
            )
        } else {
            (f64::NAN, f64::NAN, f64::NAN)
        };
        println!(
            "{:>8} {:>10.2} {:>10.2} {:>10.2} {:>11.2} {:>12.2} {:>10.1} {:>10.1} {:>10.2} {:>10.2} {:>8.1} {:>9.0}% {:>7.0}%",
            weft::units::format_size(row.size as u64),
            row.hop,
            row.invoke,
            row.memcpy,
            row.cold,
            row.http,
            slope,
            copy_slope,
            slope / copy_slope,
            slope / cold_slope,
            row.http / row.hop,
            row.warm * 100.0,
            row.moved * 100.0
        );
    }
    println!(
        "fixed cost: a 0 B hop is {:+.2} µs against a single invocation ({:.2} µs vs {:.2} µs)",
        base.hop - base.invoke,
        base.hop,
        base.invoke
    );
    // The slope proper: the per-byte cost of the line fitted (least
    // squares) through the payloads from 64 KiB up, where fixed costs no
    // longer hide it.
    let large: Vec<&Row> = rows.iter().filter(|r| r.size >= 64 << 10).collect();
    if large.len() >= 2 {
        let fit = |y: fn(&Row) -> f64| {
            let n = large.len() as f64;
            let mx = large.iter().map(|r| kib(r.size)).sum::<f64>() / n;
            let my = large.iter().map(|r| y(r)).sum::<f64>() / n;
            let cov: f64 = large.iter().map(|r| (kib(r.size) - mx) * (y(r) - my)).sum();
            let var: f64 = large.iter().map(|r| (kib(r.size) - mx).powi(2)).sum();
            cov / var * 1e3
        };
        let (hop, copy, cold) = (fit(|r| r.hop), fit(|r| r.memcpy), fit(|r| r.cold));
        println!(
            "slope fitted from 64 KiB up: hop {hop:.1} ns/KiB, memcpy {copy:.1} in cache, {cold:.1} into memory not in cache: {:.2}x and {:.2}x",
            hop / copy,
            hop / cold
        );
    }
    if let Some(mib) = rows.iter().find(|r| r.size == 1 << 20) {
        println!(
            "at 1 MiB: the in-process hop is {:.1}x faster than the HTTP hop; its slope is {:.2}x a memcpy's in cache, {:.2}x a memcpy's into memory not in cache",
            mib.http / mib.hop,
            (mib.hop - zero) / mib.memcpy,
            (mib.hop - zero) / mib.cold
        );
    }
}
