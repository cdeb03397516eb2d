//! `mesh-heat`: the 1-D heat equation, split across the ranks of a mesh
//! with halo exchange. CELLS cells (first argument, default 1024, a
//! multiple of the number of ranks) are divided evenly; every step each
//! rank sends its edge cells to its neighbours and takes theirs, then
//! applies the explicit scheme `u' = u + r (u[i-1] - 2 u[i] + u[i+1])` with
//! the ends held at 0. After STEPS steps (second argument, default 2000)
//! rank 0 gathers the field and prints every cell's bits: the same
//! operations in the same order as a sequential run, so the result is
//! identical to the last bit on any number of ranks.
//!
//! Run it: `weft mesh run mesh-heat.wasm --ranks 4 1024 2000`.

use weft_guest::mesh;

const R: f64 = 0.25;
const TO_LEFT: u32 = 1;
const TO_RIGHT: u32 = 2;

/// The starting temperature of global cell `i` of `n`: plain arithmetic,
/// no libm, so every platform computes the same bits.
fn initial(i: usize, n: usize) -> f64 {
    let bump = if i.is_multiple_of(7) { 1.0 } else { 0.0 };
    (i * (n - i)) as f64 / (n * n) as f64 * 100.0 + bump
}

fn edge(value: f64) -> [u8; 8] {
    value.to_le_bytes()
}

fn main() -> Result<(), mesh::Error> {
    let mut args = std::env::args().skip(1);
    let cells: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1024);
    let steps: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(2000);
    let (me, size) = (mesh::rank() as usize, mesh::size() as usize);
    if !cells.is_multiple_of(size) {
        eprintln!("mesh-heat: {cells} cells do not split evenly over {size} ranks");
        std::process::exit(2);
    }
    let local = cells / size;
    let first = me * local;
    // u[0] and u[local + 1] are the halo cells.
    let mut u = vec![0.0f64; local + 2];
    for (k, cell) in u[1..=local].iter_mut().enumerate() {
        *cell = initial(first + k, cells);
    }
    let mut next = u.clone();
    let left = (me > 0).then(|| (me - 1) as u32);
    let right = (me + 1 < size).then(|| (me + 1) as u32);
    let mut buf = Vec::with_capacity(8);
    for _ in 0..steps {
        if let Some(left) = left {
            mesh::send(left, TO_LEFT, &edge(u[1]))?;
        }
        if let Some(right) = right {
            mesh::send(right, TO_RIGHT, &edge(u[local]))?;
        }
        u[0] = match left {
            Some(left) => {
                mesh::recv_into(left, TO_RIGHT, &mut buf, None)?;
                f64::from_le_bytes(buf[..8].try_into().expect("8 bytes"))
            }
            None => 0.0,
        };
        u[local + 1] = match right {
            Some(right) => {
                mesh::recv_into(right, TO_LEFT, &mut buf, None)?;
                f64::from_le_bytes(buf[..8].try_into().expect("8 bytes"))
            }
            None => 0.0,
        };
        for i in 1..=local {
            next[i] = u[i] + R * (u[i - 1] - 2.0 * u[i] + u[i + 1]);
        }
        std::mem::swap(&mut u, &mut next);
    }
    let mine: Vec<u8> = u[1..=local].iter().flat_map(|v| v.to_le_bytes()).collect();
    if let Some(field) = mesh::gather(0, &mine)? {
        let mut sum = 0.0;
        for (i, bytes) in field.chunks_exact(8).enumerate() {
            let value = f64::from_le_bytes(bytes.try_into().expect("8 bytes"));
            sum += value;
            println!("cell {i} {:016x}", value.to_bits());
        }
        println!("heat {cells} cells, {steps} steps, {size} ranks, total {sum:.9}");
    }
    Ok(())
}
