//! `mesh-collectives`: every collective the host computes, for every
//! operation and element type, with the ranks entering each one in a
//! different, seeded random order (each sleeps a little first). Every rank
//! prints what it got, one line per call, as `R<rank> <call> <result>`, so a
//! test can check each against a reference computed from the same inputs.
//!
//! Inputs, for rank `r`, element `j` and seed `s` (first argument):
//! `f64`: `((r*7 + j*13 + s) % 97) * 0.5 - 20.25`, `i64`:
//! `(r*31 + j*17 + s) % 201 - 100`, `u64`: `(r*1000003 + j*7 + s) * 2^40`
//! (wrapping). Run it: `weft mesh run mesh-collectives.wasm --ranks 5 42`.

use std::time::Duration;
use weft_guest::mesh::{self, Element, Op};

const COUNT: u64 = 5;

struct Jitter(u64);

impl Jitter {
    /// Sleeps 0–3 ms, differently on each rank and call.
    fn pause(&mut self) {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        std::thread::sleep(Duration::from_micros(self.0 % 3000));
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn show<T: Element + Show>(values: &[T]) -> String {
    values
        .iter()
        .map(|v| v.show())
        .collect::<Vec<_>>()
        .join(",")
}

trait Show {
    fn show(&self) -> String;
}
impl Show for f64 {
    fn show(&self) -> String {
        format!("{:016x}", self.to_bits())
    }
}
impl Show for i64 {
    fn show(&self) -> String {
        self.to_string()
    }
}
impl Show for u64 {
    fn show(&self) -> String {
        self.to_string()
    }
}

fn run<T: Element + Show>(
    name: &str,
    input: impl Fn(u64) -> T,
    jitter: &mut Jitter,
    step: &mut u32,
) -> Result<(), mesh::Error> {
    let (me, size) = (mesh::rank(), mesh::size());
    for (op, op_name) in [(Op::Sum, "sum"), (Op::Min, "min"), (Op::Max, "max")] {
        let mut values: Vec<T> = (0..COUNT).map(&input).collect();
        jitter.pause();
        mesh::allreduce(&mut values, op)?;
        println!("R{me} allreduce-{name}-{op_name} {}", show(&values));

        let root = *step % size;
        *step += 1;
        let mut values: Vec<T> = (0..COUNT).map(&input).collect();
        jitter.pause();
        mesh::reduce(root, &mut values, op)?;
        if me == root {
            println!("R{me} reduce-{name}-{op_name} {}", show(&values));
        }
    }
    Ok(())
}

fn main() -> Result<(), mesh::Error> {
    let seed: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let (me, size) = (mesh::rank(), mesh::size());
    let r = u64::from(me);
    let mut jitter = Jitter((seed + 1) * 0x9E37_79B9 + r * 0x85EB_CA6B + 1);
    let mut step = 0;
    run(
        "f64",
        |j| ((r * 7 + j * 13 + seed) % 97) as f64 * 0.5 - 20.25,
        &mut jitter,
        &mut step,
    )?;
    run(
        "i64",
        |j| ((r * 31 + j * 17 + seed) % 201) as i64 - 100,
        &mut jitter,
        &mut step,
    )?;
    run(
        "u64",
        |j| (r * 1_000_003 + j * 7 + seed).wrapping_mul(1 << 40),
        &mut jitter,
        &mut step,
    )?;

    let root = 1 % size;
    let mut buf: Vec<u8> = if me == root {
        (0..16).map(|i| (i * 11 + seed) as u8).collect()
    } else {
        vec![0; 16]
    };
    jitter.pause();
    mesh::broadcast(root, &mut buf)?;
    println!("R{me} broadcast {}", hex(&buf));

    let mine = [me as u8, me as u8 + 1, me as u8 + 2, seed as u8];
    jitter.pause();
    if let Some(all) = mesh::gather(0, &mine)? {
        println!("R{me} gather {}", hex(&all));
    }

    let root = size - 1;
    let data: Vec<u8> = if me == root {
        (0..size as u64 * 4).map(|i| (i * 3 + seed) as u8).collect()
    } else {
        Vec::new()
    };
    let mut piece = [0u8; 4];
    jitter.pause();
    mesh::scatter(root, &data, &mut piece)?;
    println!("R{me} scatter {}", hex(&piece));

    jitter.pause();
    mesh::barrier()?;
    println!("R{me} barrier ok");
    Ok(())
}
