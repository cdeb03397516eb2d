//! Warm invocation of `hello` with an empty input: weft's full path (WASI
//! context, captured pipes, limits, deadline, log) beside a raw
//! `InstancePre::instantiate` + call of the same module on the same engine,
//! in the same run. Prints medians, p99s, the ratio, and throughput with
//! every core busy. Never passes or fails on absolute numbers.
//!
//! Run: `make bench` (or build `examples/` and `cargo bench -p weft-host --bench invoke`).

use bytes::Bytes;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft::runtime::{Invocation, LoadedModule, Runtime, RuntimeConfig};

const ROUNDS: usize = 10;
const PER_ROUND: usize = 2_000;
const THROUGHPUT_FOR: Duration = Duration::from_secs(2);

fn hello_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/target/wasm32-wasip1/release/hello.wasm")
}

/// The baseline: the same module on the same engine, with nothing but a bare
/// WASI context in the store.
struct Raw {
    engine: wasmtime::Engine,
    pre: wasmtime::InstancePre<wasmtime_wasi::p1::WasiP1Ctx>,
}

impl Raw {
    fn new(runtime: &Runtime, module: &LoadedModule) -> Raw {
        let engine = runtime.engine().clone();
        let mut linker = wasmtime::Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |cx| cx).unwrap();
        // `hello` links the SDK's `weft:log` import; give the baseline a
        // do-nothing one so it instantiates.
        linker
            .func_wrap("weft:log", "write", |_: i32, _: i32, _: i32| 0i32)
            .unwrap();
        let pre = linker.instantiate_pre(module.module()).unwrap();
        Raw { engine, pre }
    }

    async fn call(&self) {
        let mut store = wasmtime::Store::new(
            &self.engine,
            wasmtime_wasi::WasiCtxBuilder::new().build_p1(),
        );
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = self.pre.instantiate_async(&mut store).await.unwrap();
        let start = instance
            .get_typed_func::<(), ()>(&mut store, "_start")
            .unwrap();
        start.call_async(&mut store, ()).await.unwrap();
    }
}

async fn ours(runtime: &Runtime, module: &LoadedModule) {
    let outcome = runtime
        .invoke(module, Invocation::new("hello", Bytes::new()))
        .await
        .unwrap();
    assert_eq!(outcome.exit_code, 0);
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let path = hello_path();
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the examples first (`make bench` does)",
            path.display()
        )
    });
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: 64,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let module = Arc::new(runtime.load(&bytes).unwrap());
    let raw = Arc::new(Raw::new(&runtime, &module));
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // Latency: alternate rounds so drift in the machine hits both alike.
    let (mut raw_times, mut our_times) = (Vec::new(), Vec::new());
    tokio.block_on(async {
        for _ in 0..200 {
            raw.call().await;
            ours(&runtime, &module).await;
        }
        for _ in 0..ROUNDS {
            for _ in 0..PER_ROUND {
                let t = Instant::now();
                raw.call().await;
                raw_times.push(t.elapsed());
            }
            for _ in 0..PER_ROUND {
                let t = Instant::now();
                ours(&runtime, &module).await;
                our_times.push(t.elapsed());
            }
        }
    });
    raw_times.sort();
    our_times.sort();
    let (raw_p50, our_p50) = (percentile(&raw_times, 0.5), percentile(&our_times, 0.5));
    let (raw_p99, our_p99) = (percentile(&raw_times, 0.99), percentile(&our_times, 0.99));

    // Throughput: one thread per core, each with its own executor.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let throughput = |use_raw: bool| -> f64 {
        let deadline = Instant::now() + THROUGHPUT_FOR;
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (runtime, module, raw) = (runtime.clone(), module.clone(), raw.clone());
                std::thread::spawn(move || {
                    let tokio = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    tokio.block_on(async {
                        let mut n = 0u64;
                        while Instant::now() < deadline {
                            for _ in 0..100 {
                                if use_raw {
                                    raw.call().await;
                                } else {
                                    ours(&runtime, &module).await;
                                }
                            }
                            n += 100;
                        }
                        n
                    })
                })
            })
            .collect();
        let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        total as f64 / THROUGHPUT_FOR.as_secs_f64()
    };
    let raw_rate = throughput(true);
    let our_rate = throughput(false);

    println!(
        "warm invocation of hello.wasm, empty input ({} samples each)",
        raw_times.len()
    );
    println!(
        "{:<34} {:>10} {:>10} {:>14}",
        "", "p50 µs", "p99 µs", "inv/s"
    );
    println!(
        "{:<34} {:>10.2} {:>10.2} {:>14.0}",
        "raw InstancePre::instantiate+call",
        micros(raw_p50),
        micros(raw_p99),
        raw_rate
    );
    println!(
        "{:<34} {:>10.2} {:>10.2} {:>14.0}",
        "weft invoke (WASI, pipes, limits)",
        micros(our_p50),
        micros(our_p99),
        our_rate
    );
    println!(
        "ratio weft/raw: p50 {:.2}x, p99 {:.2}x, throughput {:.2}x ({threads} threads)",
        micros(our_p50) / micros(raw_p50),
        micros(our_p99) / micros(raw_p99),
        our_rate / raw_rate
    );
}
