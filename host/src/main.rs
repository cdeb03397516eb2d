//! The `weft` binary: see `weft --help`.

fn main() -> std::process::ExitCode {
    weft::cli::main()
}
