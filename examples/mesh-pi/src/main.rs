//! `mesh-pi`: Monte Carlo π on every rank of a mesh, combined with one
//! `allreduce` the host computes. Each rank draws SAMPLES points (first
//! argument, default 1,000,000) from its own seeded generator, so a run is
//! reproducible; every rank ends up with the same estimate, and rank 0
//! prints it and sends it to the parent.
//!
//! Run it: `weft mesh run mesh-pi.wasm --ranks 8`.

use weft_guest::mesh::{self, Op};

/// xorshift64*: small, fast, and the same on every platform.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn main() -> Result<(), mesh::Error> {
    let samples: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let (me, size) = (mesh::rank(), mesh::size());
    let mut rng =
        Rng(0x9E37_79B9_7F4A_7C15 ^ (u64::from(me) + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    let mut hits = 0u64;
    for _ in 0..samples {
        let (x, y) = (rng.next_f64(), rng.next_f64());
        if x * x + y * y <= 1.0 {
            hits += 1;
        }
    }
    let mut counts = [hits, samples];
    mesh::allreduce(&mut counts, Op::Sum)?;
    let pi = 4.0 * counts[0] as f64 / counts[1] as f64;
    if me == 0 {
        println!("pi = {pi:.6} from {} samples on {size} ranks", counts[1]);
        // No parent (a job started with none) is fine too.
        let _ = mesh::send(mesh::PARENT, 0, format!("pi {pi}").as_bytes());
    }
    Ok(())
}
