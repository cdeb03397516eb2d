//! `chain-call`: calls another deployed module with `chain::call`, in the
//! same host, and outputs its result.
//!
//! `chain-call MODULE` calls MODULE with its whole input. Without an
//! argument (as when it is itself called, since calls pass no arguments)
//! the module to call is the input's first line, and the whole input is
//! passed on: a module deployed as `nest` and given `nest\n...` calls
//! itself until the host refuses the call at its depth limit.
//!
//! Run it: `weft deploy chain-call.wasm && weft invoke chain-call --arg hello -d world`.

fn main() {
    let input = weft_guest::chain::input();
    let target = match std::env::args().nth(1) {
        Some(module) => module,
        None => {
            let first = input.split(|&b| b == b'\n').next().unwrap_or_default();
            String::from_utf8_lossy(first).trim().to_owned()
        }
    };
    let depth = weft_guest::chain::depth();
    weft_guest::log::debug!("depth {depth}: calling {target}");
    match weft_guest::chain::call(&target, &input) {
        Ok(output) => weft_guest::chain::output(output),
        Err(error) => {
            eprintln!("chain-call at depth {depth}: {error}");
            std::process::exit(1);
        }
    }
}
