//! Mesh messaging, OSU-style: ping-pong round trips from 0 B to 4 MiB and
//! 1 MiB streaming bandwidth between two ranks, and barrier and allreduce
//! time against the number of ranks (2, 4, 8, 16), all measured inside the
//! guests (`mesh-ring`'s benchmark modes). Beside them in the same run: a
//! ping-pong between two native threads over a channel (the in-process
//! floor), `memcpy` bandwidth (with both buffers in cache, and cycling
//! through as much memory as the messages in flight, as the mesh's copies
//! do), a native transport with the same two copies (two threads handing
//! buffers over a channel), the same ping-pong through weft's mailboxes
//! between two native threads placed as ranks are ("no wasm": the
//! transport without the sandbox's calls into the host, for messages
//! that travel in a lane's ring), and, when
//! `mpicc` and `mpirun` are on the PATH, Open MPI's shared-memory
//! transport running the same ping-pong in C. Round trips are the median
//! of nine rounds up to 1 KiB (three past it), weft, its mailboxes alone
//! and Open MPI in turn; "vs MPI" is the median of the rounds'
//! ratios. Bandwidth is the median of seven rounds, each beside its
//! baselines. Prints ratios; never passes or fails on absolute numbers.
//!
//! Run: `make bench` (or build `examples/` and `cargo bench -p weft-host --bench mesh`).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Instant;
use weft::mesh::job::{self, Group, Parent, Spec};
use weft::mesh::mailbox::{Bounds, Data, Delivered, Mailbox};
use weft::mesh::placement;
use weft::runtime::{LoadedModule, Runtime, RuntimeConfig};

const SIZES: [usize; 10] = [
    0,
    8,
    64,
    256,
    1 << 10,
    8 << 10,
    64 << 10,
    256 << 10,
    1 << 20,
    4 << 20,
];

/// Round trips per size: many for small messages, fewer for large ones.
fn iterations(size: usize) -> u64 {
    match size {
        0..=1024 => 20_000,
        1025..=65_536 => 5_000,
        65_537..=1_048_576 => 500,
        _ => 100,
    }
}

fn ring_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/target/wasm32-wasip1/release/mesh-ring.wasm")
}

/// Runs `mesh-ring ARGS` on `ranks` ranks and returns the number after
/// `key` in what rank 0 reports to the parent.
async fn measure(
    runtime: &Runtime,
    module: &LoadedModule,
    ranks: u32,
    args: &[String],
    key: &str,
) -> f64 {
    let mut spec = Spec::new(vec![Group {
        name: "mesh-ring".into(),
        module: module.clone(),
        ranks,
    }]);
    spec.args = args.to_vec();
    let (job, link) = job::start(runtime, spec, Parent::External).expect("starting the job");
    let link = link.expect("an external parent");
    let message = link.recv().await.expect("a report from rank 0");
    let report = job.wait().await;
    assert_eq!(report.status, "ok", "{report:?}");
    drop(link);
    let text = String::from_utf8_lossy(&message.data).into_owned();
    text.split(key)
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {text:?}"))
}

/// Round trip between two native threads over channels, moving a
/// `size`-byte buffer back and forth (no copy: the floor).
fn native_pingpong(size: usize, iters: u64) -> f64 {
    let (to_peer, from_main) = mpsc::sync_channel::<Vec<u8>>(1);
    let (to_main, from_peer) = mpsc::sync_channel::<Vec<u8>>(1);
    let peer = std::thread::spawn(move || {
        while let Ok(buf) = from_main.recv() {
            if to_main.send(buf).is_err() {
                break;
            }
        }
    });
    let mut buf = vec![7u8; size];
    for _ in 0..100 {
        to_peer.send(buf).unwrap();
        buf = from_peer.recv().unwrap();
    }
    let started = Instant::now();
    for _ in 0..iters {
        to_peer.send(buf).unwrap();
        buf = from_peer.recv().unwrap();
    }
    let rtt = started.elapsed().as_secs_f64() / iters as f64;
    drop(to_peer);
    peer.join().unwrap();
    rtt * 1e6
}

/// Round trip through weft's own mailboxes between two threads placed as
/// ranks are (pinned, each on a CPU of its own), with the calls the ABI's
/// `send_now` and `recv_now` make, and no WebAssembly: what the transport
/// costs without the sandbox's two calls into the host per message.
fn lanes_pingpong(runtime: &tokio::runtime::Runtime, size: usize, iters: u64) -> f64 {
    let boxes: [Arc<Mailbox>; 2] = std::array::from_fn(|_| {
        let mailbox = Mailbox::new(Bounds::default());
        mailbox.lighten();
        Arc::new(mailbox)
    });
    let side = |me: usize| {
        let boxes = boxes.clone();
        async move {
            let (mine, theirs) = (&boxes[me], &boxes[1 - me]);
            let message = vec![7u8; size];
            let mut buf = vec![0u8; size];
            let send = || {
                while theirs
                    .try_send(me as i32, 0, Data::Borrowed(&message))
                    .is_err()
                {
                    std::hint::spin_loop();
                }
            };
            let recv = |buf: &mut [u8]| {
                while !matches!(
                    mine.try_take_into(1 - me as i32, 0, buf),
                    Ok(Delivered::Copied { .. })
                ) {
                    std::hint::spin_loop();
                }
            };
            let mut started = Instant::now();
            for n in 0..iters + 100 {
                if n == 100 {
                    started = Instant::now();
                }
                if me == 0 {
                    send();
                    recv(&mut buf);
                } else {
                    recv(&mut buf);
                    send();
                }
            }
            started.elapsed().as_secs_f64() / iters as f64 * 1e6
        }
    };
    let handle = runtime.handle();
    let ends = [0, 1].map(|me| {
        placement::on_own_thread(format!("lanes-{me}"), handle.clone(), side(me)).expect("a thread")
    });
    let [first, second] = ends;
    runtime.block_on(async {
        let rtt = first.await;
        second.await;
        rtt
    })
}

/// `memcpy` bandwidth for 1 MiB copies, in MB/s: from one source into
/// `targets` destinations in turn. With one, both buffers stay in cache
/// (the most flattering figure); with the bandwidth test's window (16),
/// the destinations cycle through as much memory as the messages in
/// flight do, as the mesh's copy out of the sender does.
fn memcpy_bandwidth(targets: usize) -> f64 {
    let source = vec![1u8; 1 << 20];
    let mut targets: Vec<Vec<u8>> = (0..targets).map(|_| vec![0u8; 1 << 20]).collect();
    let rounds = 500;
    let started = Instant::now();
    for round in 0..rounds {
        let n = targets.len();
        let target = &mut targets[round % n];
        target.copy_from_slice(std::hint::black_box(&source));
        std::hint::black_box(target);
    }
    (rounds as f64 * (1 << 20) as f64) / started.elapsed().as_secs_f64() / 1e6
}

/// A plain native transport with the mesh's copies (once out of the
/// sender, once into the receiver): two threads, one copying a 1 MiB
/// source into a free buffer and handing it over a `std` channel, the
/// other copying it into its own 1 MiB destination and handing the buffer
/// back; `window` buffers in flight. MB/s of messages delivered. Not a hard
/// floor (its channel parks threads), but what the two copies cost here.
fn two_copies(window: usize) -> f64 {
    const MIB: usize = 1 << 20;
    let messages = 500;
    let (to_receiver, delivered) = mpsc::sync_channel::<Vec<u8>>(window);
    let (to_sender, free) = mpsc::sync_channel::<Vec<u8>>(window);
    for _ in 0..window {
        to_sender.send(vec![0u8; MIB]).unwrap();
    }
    let receiver = std::thread::spawn(move || {
        let mut target = vec![0u8; MIB];
        while let Ok(buf) = delivered.recv() {
            target.copy_from_slice(&buf);
            std::hint::black_box(&mut target);
            if to_sender.send(buf).is_err() {
                break;
            }
        }
    });
    let source = vec![1u8; MIB];
    let started = Instant::now();
    for _ in 0..messages {
        let mut buf = free.recv().unwrap();
        buf.copy_from_slice(std::hint::black_box(&source));
        to_receiver.send(buf).unwrap();
    }
    // Every message delivered: every buffer back.
    for _ in 0..window {
        free.recv().unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(to_receiver);
    receiver.join().unwrap();
    (messages * MIB) as f64 / seconds / 1e6
}

const MPI_PINGPONG: &str = r#"
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank; MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    long size = atol(argv[1]), iters = atol(argv[2]);
    char *buf = calloc(size > 0 ? size : 1, 1);
    for (long i = -100; i < iters; i++) {
        static double start;
        if (i == 0) start = MPI_Wtime();
        if (rank == 0) {
            MPI_Send(buf, size, MPI_BYTE, 1, 0, MPI_COMM_WORLD);
            MPI_Recv(buf, size, MPI_BYTE, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
            MPI_Recv(buf, size, MPI_BYTE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(buf, size, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
        }
        if (rank == 0 && i == iters - 1) printf("rtt_us=%.3f\n", (MPI_Wtime() - start) * 1e6 / iters);
    }
    MPI_Finalize();
    return 0;
}
"#;

/// Open MPI's ping-pong, built once; `None` when MPI is not installed.
struct Mpi {
    binary: PathBuf,
    dir: PathBuf,
}

impl Mpi {
    fn build() -> Option<Mpi> {
        let found = |tool: &str| {
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !found("mpicc") || !found("mpirun") {
            return None;
        }
        let dir = std::env::temp_dir().join(format!("weft-mesh-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let source = dir.join("pingpong.c");
        std::fs::write(&source, MPI_PINGPONG).ok()?;
        let binary = dir.join("pingpong");
        let built = Command::new("mpicc")
            .arg("-O2")
            .arg(&source)
            .arg("-o")
            .arg(&binary)
            .status()
            .ok()?;
        built.success().then_some(Mpi { binary, dir })
    }

    /// Round trip in µs, over the shared-memory transport.
    fn pingpong(&self, size: usize, iters: u64) -> Option<f64> {
        let output = Command::new("mpirun")
            .args(["--allow-run-as-root", "-np", "2"])
            .args(["--mca", "btl", "self,vader"])
            .arg(&self.binary)
            .arg(size.to_string())
            .arg(iters.to_string())
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&output.stdout);
        text.split("rtt_us=").nth(1)?.trim().parse().ok()
    }
}

impl Drop for Mpi {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Ping-pong rounds per size, weft and Open MPI taking turns: more for
/// small messages, whose round trip the machine's moments sway most (and
/// a round of them takes milliseconds).
/// Rounds of the bandwidth test, each beside its baselines.
const BANDWIDTH_ROUNDS: usize = 7;

fn rounds(size: usize) -> usize {
    if size <= 1024 { 9 } else { 3 }
}

/// The median of `values`; `None` when there are none.
fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

fn human(size: usize) -> String {
    match size {
        s if s >= 1 << 20 => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

fn main() {
    let path = ring_path();
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the examples first (`make bench` does)",
            path.display()
        )
    });
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: 40,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let module = runtime.load(&bytes).unwrap();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mpi = Mpi::build();
    let args =
        |words: &[&dyn ToString]| -> Vec<String> { words.iter().map(|w| w.to_string()).collect() };

    println!("mesh ping-pong round trip, 2 ranks (µs; lower is better)");
    println!(
        "{:>8} {:>12} {:>12} {:>12} {:>12} {:>10} {:>10} {:>12}",
        "size", "weft mesh", "no wasm", "threads", "Open MPI", "vs thr", "vs MPI", "no wasm/MPI"
    );
    for size in SIZES {
        let iters = iterations(size);
        // Rounds of weft then Open MPI in turn, the median of each: a
        // noisy neighbour on a shared machine then slows both sides of one
        // round, and one slow round moves neither median. The ratio is the
        // median of each round's, whose two sides ran a moment apart.
        let mut ours = Vec::new();
        let mut bare = Vec::new();
        let mut theirs = Vec::new();
        let mut ratios = Vec::new();
        let mut bare_ratios = Vec::new();
        for _ in 0..rounds(size) {
            let rtt = tokio.block_on(measure(
                &runtime,
                &module,
                2,
                &args(&[&"pingpong", &size, &iters]),
                "rtt_us=",
            ));
            // Messages that travel in a lane's ring: the path this
            // isolates (longer ones add an allocation the ABI avoids).
            let bare_rtt = (size <= 1024).then(|| lanes_pingpong(&tokio, size, iters));
            ours.push(rtt);
            bare.extend(bare_rtt);
            if let Some(mpi_rtt) = mpi.as_ref().and_then(|m| m.pingpong(size, iters)) {
                theirs.push(mpi_rtt);
                ratios.push(rtt / mpi_rtt);
                bare_ratios.extend(bare_rtt.map(|bare| bare / mpi_rtt));
            }
        }
        let ours = median(&mut ours).expect("a round");
        let bare = median(&mut bare).map_or("-".into(), |v| format!("{v:.2}"));
        let mpi_rtt = median(&mut theirs);
        let native = native_pingpong(size, iters);
        let ratio =
            |ratios: &mut Vec<f64>| median(ratios).map_or("-".into(), |v| format!("{v:.2}x"));
        println!(
            "{:>8} {:>12.2} {:>12} {:>12.2} {:>12} {:>9.2}x {:>10} {:>12}",
            human(size),
            ours,
            bare,
            native,
            mpi_rtt.map_or("-".into(), |v| format!("{v:.2}")),
            ours / native,
            ratio(&mut ratios),
            ratio(&mut bare_ratios),
        );
    }
    if mpi.is_none() {
        println!("(Open MPI: mpicc/mpirun not found; `make bench` installs Debian's openmpi-bin)");
    }

    // Rounds again, each of weft and its three baselines in turn; the
    // ratios are the medians of the rounds' own.
    let (mut ours, mut hot, mut cycling, mut native) = (vec![], vec![], vec![], vec![]);
    let (mut vs_hot, mut vs_cycling, mut vs_native) = (vec![], vec![], vec![]);
    for _ in 0..BANDWIDTH_ROUNDS {
        let bandwidth = tokio.block_on(measure(
            &runtime,
            &module,
            2,
            &args(&[&"bandwidth", &(1 << 20), &50, &16]),
            "mb_per_s=",
        ));
        let (one, sixteen, two) = (memcpy_bandwidth(1), memcpy_bandwidth(16), two_copies(16));
        vs_hot.push(bandwidth / one);
        vs_cycling.push(bandwidth / sixteen);
        vs_native.push(bandwidth / two);
        ours.push(bandwidth);
        hot.push(one);
        cycling.push(sixteen);
        native.push(two);
    }
    let median = |values: &mut Vec<f64>| median(values).expect("a round");
    println!();
    println!(
        "1 MiB streaming bandwidth, window of 16 messages, median of {BANDWIDTH_ROUNDS} rounds: weft mesh {:.0} MB/s",
        median(&mut ours)
    );
    println!(
        "  vs memcpy, both buffers in cache:             {:>6.0} MB/s  ratio {:.2}",
        median(&mut hot),
        median(&mut vs_hot)
    );
    println!(
        "  vs memcpy into 16 buffers in turn (as sent):  {:>6.0} MB/s  ratio {:.2}",
        median(&mut cycling),
        median(&mut vs_cycling)
    );
    println!(
        "  vs two threads, one copy out + one copy in:   {:>6.0} MB/s  ratio {:.2}",
        median(&mut native),
        median(&mut vs_native)
    );
    let (low, high) = (
        vs_hot.iter().copied().fold(f64::INFINITY, f64::min),
        vs_hot.iter().copied().fold(0.0, f64::max),
    );
    println!("  (ratio to memcpy in cache over the rounds: {low:.2} to {high:.2})");

    println!();
    println!("collectives vs ranks (µs per call, measured by rank 0)");
    println!("{:>6} {:>12} {:>16}", "ranks", "barrier", "allreduce 1 f64");
    for ranks in [2u32, 4, 8, 16] {
        let barrier = tokio.block_on(measure(
            &runtime,
            &module,
            ranks,
            &args(&[&"barrier", &2000]),
            " us=",
        ));
        let allreduce = tokio.block_on(measure(
            &runtime,
            &module,
            ranks,
            &args(&[&"allreduce", &1, &2000]),
            " us=",
        ));
        println!("{ranks:>6} {barrier:>12.2} {allreduce:>16.2}");
    }
}
