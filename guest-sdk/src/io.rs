//! The invocation's input and output: stdin and stdout, read and written
//! whole.

use std::io::{Read, Write};

/// Reads the whole invocation input (the guest's stdin).
///
/// Returns an empty vector when there is no input. Panics only if the host
/// closes stdin with an I/O error, which weft never does.
pub fn input() -> Vec<u8> {
    let mut buf = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut buf)
        .expect("weft: reading the invocation input failed");
    buf
}

/// Reads the whole invocation input as UTF-8.
///
/// Returns `None` if the input is not valid UTF-8.
pub fn input_string() -> Option<String> {
    String::from_utf8(input()).ok()
}

/// Appends `bytes` to the invocation output (the guest's stdout) and flushes.
///
/// Panics if the host refuses the write, which happens when the instance goes
/// past its output limit; the host then reports the limit as the reason.
pub fn output(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .expect("weft: writing the invocation output failed");
}

/// [`output`] for text.
pub fn output_str(text: &str) {
    output(text.as_bytes());
}
