//! `grow-memory`: allocates and touches memory until it is refused. Shows the
//! memory limit (`weft run --memory 32MiB grow-memory.wasm` fails with
//! "memory limit exceeded") while the host's own memory stays bounded.

fn main() {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // 1 MiB at a time, written so the pages are really used.
        hoard.push(vec![0xA5; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}
