//! `ticker`: the smallest long-running guest. It prints `tick N` every
//! interval (first argument, in milliseconds; default 200) until it is
//! stopped, and logs through the SDK when it starts. Shows services: their
//! output goes to the instance's log as it is written, and a sleeping guest
//! holds no host thread.
//!
//! Run it as a service: `weft service start ticker --arg 500`, then
//! `weft logs -f ticker`. Or once, for a while: `weft run --timeout 2s ticker.wasm`.

use std::time::Duration;

fn main() {
    let interval: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    weft_guest::log::info!("ticking every {interval} ms");
    for n in 1.. {
        println!("tick {n}");
        std::thread::sleep(Duration::from_millis(interval));
    }
}
