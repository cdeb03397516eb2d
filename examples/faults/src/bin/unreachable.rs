//! `unreachable`: executes the wasm `unreachable` instruction (what a Rust
//! `panic` with `panic = "abort"` compiles to). Shows the "unreachable"
//! reason and that the guest's stderr is kept with the failure.

fn main() {
    eprintln!("about to hit unreachable");
    if std::hint::black_box(true) {
        core::arch::wasm32::unreachable();
    }
}
