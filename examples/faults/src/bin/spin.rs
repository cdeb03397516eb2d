//! `spin`: loops forever without calling the host. Shows that a deadline
//! (`weft run --timeout 1s spin.wasm`) stops a guest that never yields, and
//! that the host stays healthy afterwards (exit 124, "deadline exceeded").

fn main() {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}
