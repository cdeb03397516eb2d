//! `hello`: the smallest useful weft guest. It reads a name from its input
//! (stdin), logs through the SDK, and writes a greeting as its output
//! (stdout). An optional first argument is an exit code to end with, so tests
//! can check that exit codes pass through.
//!
//! Run it: `echo world | weft run hello.wasm` prints `hello, world!`;
//! `weft run hello.wasm 3 < /dev/null` exits with 3.

fn main() {
    let input = weft_guest::input_string().unwrap_or_default();
    let name = match input.trim() {
        "" => "stranger",
        name => name,
    };
    weft_guest::log::debug!("greeting {name}");
    weft_guest::output_str(&format!("hello, {name}!\n"));

    if let Some(code) = std::env::args().nth(1) {
        let code: i32 = code.parse().unwrap_or_else(|_| {
            eprintln!("hello: exit code must be an integer, got {code:?}");
            2
        });
        std::process::exit(code);
    }
}
