//! `fs-cat`: prints the files named in its arguments, like `cat`. Shows that
//! a guest sees only the host directories it is given: with
//! `weft run --dir ./data::/data fs-cat.wasm /data/notes.txt` it prints the
//! file; without `--dir` every open fails and it exits with 1.

use std::io::Write;

fn main() {
    let mut failed = false;
    for path in std::env::args().skip(1) {
        match std::fs::read(&path) {
            Ok(bytes) => std::io::stdout().write_all(&bytes).unwrap(),
            Err(error) => {
                eprintln!("fs-cat: {path}: {error}");
                failed = true;
            }
        }
    }
    std::process::exit(i32::from(failed));
}
