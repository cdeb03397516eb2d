//! `mesh-ring`: a token passed around the ranks of a mesh until the parent
//! says stop, reporting laps per second; and the OSU-style
//! micro-benchmarks the host's mesh benchmark runs.
//!
//! - `ring [SECONDS]` (the default): rank 0 sends the token right; each
//!   rank passes it on. Rank 0 says so once the token has been round,
//!   counts laps and, between laps, looks for a message from the parent; on one (or after SECONDS, default 30) it
//!   sends a stop token around, then prints and sends `laps=N laps_per_s=X`
//!   to the parent.
//! - `pingpong SIZE ITERS`: ranks 0 and 1 bounce SIZE bytes ITERS times;
//!   rank 0 reports `rtt_us=…`.
//! - `bandwidth SIZE ITERS WINDOW`: rank 0 streams WINDOW messages of SIZE
//!   bytes to rank 1 and waits for an acknowledgement, ITERS times; reports
//!   `mb_per_s=…`.
//! - `selfloop SIZE ITERS`: rank 0 sends SIZE bytes to itself and takes
//!   them back ITERS times; reports `us=…` per send and receive.
//! - `barrier ITERS`, `allreduce COUNT ITERS`: every rank; rank 0 reports
//!   `us=…` per call.
//!
//! Run it: `weft mesh run mesh-ring.wasm --ranks 4`, then type `* stop`.

use std::time::{Duration, Instant};
use weft_guest::mesh::{self, Op, PARENT};

const TOKEN: u32 = 0;
const STOP: u32 = 1;

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn report(text: String) {
    println!("{text}");
    let _ = mesh::send(PARENT, 0, text.as_bytes());
}

fn main() -> Result<(), mesh::Error> {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "ring".into());
    match mode.as_str() {
        "ring" => ring(Duration::from_secs(arg(2, 30))),
        "pingpong" => pingpong(arg(2, 0) as usize, arg(3, 1000)),
        "bandwidth" => bandwidth(arg(2, 1 << 20) as usize, arg(3, 10), arg(4, 16)),
        "barrier" => barrier(arg(2, 1000)),
        "selfloop" => selfloop(arg(2, 0) as usize, arg(3, 1000)),
        "allreduce" => allreduce(arg(2, 1) as usize, arg(3, 1000)),
        other => {
            eprintln!("mesh-ring: unknown mode {other:?}");
            std::process::exit(2);
        }
    }
}

fn ring(limit: Duration) -> Result<(), mesh::Error> {
    let (me, size) = (mesh::rank(), mesh::size());
    let right = (me + 1) % size;
    let left = (me + size - 1) % size;
    if me != 0 {
        loop {
            let message = mesh::recv(left, mesh::ANY)?;
            mesh::send(right, message.tag, &message.data)?;
            if message.tag == STOP {
                return Ok(());
            }
        }
    }
    let started = Instant::now();
    let mut laps = 0u64;
    loop {
        mesh::send(right, TOKEN, &laps.to_le_bytes())?;
        mesh::recv(left, TOKEN)?;
        laps += 1;
        if laps == 1 {
            // The token has been round once: every rank is up.
            println!("ring of {size} ranks running; the parent stops it");
        }
        let stop_asked = match mesh::try_recv(PARENT, mesh::ANY) {
            Ok(_) => true,
            Err(e) if e.would_block() => false,
            // No parent: run to the time limit.
            Err(_) => false,
        };
        if stop_asked || started.elapsed() >= limit {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    mesh::send(right, STOP, &[])?;
    mesh::recv(left, STOP)?;
    report(format!(
        "laps={laps} laps_per_s={:.0} ranks={size}",
        laps as f64 / seconds
    ));
    Ok(())
}

fn pingpong(size: usize, iters: u64) -> Result<(), mesh::Error> {
    let me = mesh::rank();
    if me > 1 {
        return Ok(());
    }
    let message = vec![7u8; size];
    let mut buf = Vec::with_capacity(size);
    let peer = 1 - me;
    // One warm-up round trip, then the timed ones.
    let started = if me == 0 {
        mesh::send(peer, 0, &message)?;
        mesh::recv_into(peer, 0, &mut buf, None)?;
        let started = Instant::now();
        for _ in 0..iters {
            mesh::send(peer, 0, &message)?;
            mesh::recv_into(peer, 0, &mut buf, None)?;
        }
        started
    } else {
        for _ in 0..=iters {
            mesh::recv_into(peer, 0, &mut buf, None)?;
            mesh::send(peer, 0, &buf)?;
        }
        return Ok(());
    };
    let rtt = started.elapsed().as_secs_f64() / iters as f64;
    report(format!(
        "pingpong size={size} iters={iters} rtt_us={:.3}",
        rtt * 1e6
    ));
    Ok(())
}

/// Rank 0 sends SIZE bytes to itself and takes them back, ITERS times:
/// what a send and a receive cost without a peer.
fn selfloop(size: usize, iters: u64) -> Result<(), mesh::Error> {
    let me = mesh::rank();
    if me != 0 {
        return Ok(());
    }
    let message = vec![7u8; size];
    let mut buf = Vec::with_capacity(size);
    let started = Instant::now();
    for _ in 0..iters {
        mesh::send(me, 0, &message)?;
        mesh::recv_into(me, 0, &mut buf, None)?;
    }
    let each = started.elapsed().as_secs_f64() / iters as f64;
    report(format!(
        "selfloop size={size} iters={iters} us={:.3}",
        each * 1e6
    ));
    Ok(())
}

fn bandwidth(size: usize, iters: u64, window: u64) -> Result<(), mesh::Error> {
    let me = mesh::rank();
    if me > 1 {
        return Ok(());
    }
    let message = vec![1u8; size];
    let mut buf = Vec::with_capacity(size);
    if me == 1 {
        for _ in 0..=iters {
            for _ in 0..window {
                mesh::recv_into(0, 0, &mut buf, None)?;
            }
            mesh::send(0, 1, &[])?;
        }
        return Ok(());
    }
    let mut round = || -> Result<(), mesh::Error> {
        for _ in 0..window {
            mesh::send(1, 0, &message)?;
        }
        mesh::recv_into(1, 1, &mut buf, None)?;
        Ok(())
    };
    round()?;
    let started = Instant::now();
    for _ in 0..iters {
        round()?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let bytes = (size as u64 * window * iters) as f64;
    report(format!(
        "bandwidth size={size} mb_per_s={:.1}",
        bytes / seconds / 1e6
    ));
    Ok(())
}

fn barrier(iters: u64) -> Result<(), mesh::Error> {
    mesh::barrier()?;
    let started = Instant::now();
    for _ in 0..iters {
        mesh::barrier()?;
    }
    if mesh::rank() == 0 {
        let us = started.elapsed().as_secs_f64() * 1e6 / iters as f64;
        report(format!("barrier ranks={} us={us:.3}", mesh::size()));
    }
    Ok(())
}

fn allreduce(count: usize, iters: u64) -> Result<(), mesh::Error> {
    let mut values = vec![mesh::rank() as f64; count];
    mesh::allreduce(&mut values, Op::Sum)?;
    let started = Instant::now();
    for _ in 0..iters {
        mesh::allreduce(&mut values, Op::Max)?;
    }
    if mesh::rank() == 0 {
        let us = started.elapsed().as_secs_f64() * 1e6 / iters as f64;
        report(format!(
            "allreduce ranks={} count={count} us={us:.3}",
            mesh::size()
        ));
    }
    Ok(())
}
