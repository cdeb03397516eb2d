//! `mesh-controller`: a controller module farming work out to the ranks of
//! a mesh and collecting the results. The same module plays both parts:
//! run as the job's controller (its rank is `PARENT`) it hands out ranges
//! of numbers, one per idle rank, and adds up the primes the ranks count in
//! them; run as a rank it counts primes in each range it is given until
//! told to stop.
//!
//! - `count LIMIT` (the default, LIMIT 200000): prints `primes below LIMIT: N`.
//! - `trap`: the controller gives odd ranks a task that spins forever,
//!   leaves even ranks waiting for work, and then panics (a trap): the job
//!   must stop every rank.
//!
//! Run it: `weft mesh run mesh-controller.wasm --ranks 4 --controller mesh-controller.wasm`.

use std::time::Duration;
use weft_guest::mesh::{self, PARENT};

const WORK: u32 = 1;
const RESULT: u32 = 2;
const STOP: u32 = 3;
const SPIN: u32 = 4;
const CHUNK: u64 = 10_000;

fn main() -> Result<(), mesh::Error> {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "count".into());
    if mesh::rank() == PARENT {
        match mode.as_str() {
            "trap" => trap(),
            _ => {
                let limit = std::env::args()
                    .nth(2)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(200_000);
                control(limit)
            }
        }
    } else {
        work()
    }
}

fn range_bytes(start: u64, end: u64) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&start.to_le_bytes());
    out[8..].copy_from_slice(&end.to_le_bytes());
    out
}

fn control(limit: u64) -> Result<(), mesh::Error> {
    let ranks = mesh::size();
    let mut next = 0u64;
    let mut outstanding = 0u32;
    let hand_out = |rank: u32, next: &mut u64| -> Result<bool, mesh::Error> {
        if *next >= limit {
            return Ok(false);
        }
        let end = (*next + CHUNK).min(limit);
        mesh::send(rank, WORK, &range_bytes(*next, end))?;
        *next = end;
        Ok(true)
    };
    for rank in 0..ranks {
        if hand_out(rank, &mut next)? {
            outstanding += 1;
        }
    }
    let mut primes = 0u64;
    let mut per_rank = vec![0u32; ranks as usize];
    while outstanding > 0 {
        let message = mesh::recv(mesh::ANY, RESULT)?;
        outstanding -= 1;
        primes += u64::from_le_bytes(message.data[..8].try_into().expect("8 bytes"));
        per_rank[message.src as usize] += 1;
        if hand_out(message.src, &mut next)? {
            outstanding += 1;
        }
    }
    for rank in 0..ranks {
        mesh::send(rank, STOP, &[])?;
    }
    println!("primes below {limit}: {primes} (tasks per rank: {per_rank:?})");
    Ok(())
}

fn trap() -> Result<(), mesh::Error> {
    for rank in (1..mesh::size()).step_by(2) {
        mesh::send(rank, SPIN, &[])?;
    }
    std::thread::sleep(Duration::from_millis(300));
    panic!("the controller gives up");
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

fn work() -> Result<(), mesh::Error> {
    loop {
        let message = mesh::recv(PARENT, mesh::ANY)?;
        match message.tag {
            WORK => {
                let start = u64::from_le_bytes(message.data[..8].try_into().expect("8 bytes"));
                let end = u64::from_le_bytes(message.data[8..16].try_into().expect("8 bytes"));
                let count = (start..end).filter(|&n| is_prime(n)).count() as u64;
                mesh::send(PARENT, RESULT, &count.to_le_bytes())?;
            }
            SPIN => {
                let mut x = 1u64;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            _ => return Ok(()),
        }
    }
}
