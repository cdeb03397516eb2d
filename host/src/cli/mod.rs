//! The `weft` command line: one file per subcommand group.

mod run;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code for a guest stopped by its deadline (as `timeout(1)` uses).
pub const EXIT_DEADLINE: u8 = 124;
/// Exit code when weft itself could not run the module (bad file, bad flag).
pub const EXIT_WEFT_ERROR: u8 = 125;
/// Exit code for any other guest failure: a trap or a limit (128 + SIGABRT,
/// as wasmtime's CLI uses).
pub const EXIT_TRAP: u8 = 134;

/// weft: a sandbox host for WebAssembly instances.
#[derive(Debug, Parser)]
#[command(name = "weft", version, about, long_about = None)]
pub struct Cli {
    /// Data directory (modules, compiled artifacts, state).
    #[arg(long, global = true, env = "WEFT_DATA", value_name = "DIR")]
    data: Option<PathBuf>,

    /// Log more: -v shows weft's own progress, -vv debug detail.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a module once, without a server: stdin, stdout and stderr are the
    /// guest's, and weft exits with the guest's exit code.
    Run(run::RunArgs),
}

impl Cli {
    fn data_dir(&self) -> PathBuf {
        self.data.clone().unwrap_or_else(crate::default_data_dir)
    }
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let data_dir = cli.data_dir();
    match cli.command {
        Command::Run(args) => run::main(args, &data_dir),
    }
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn,weft::guest=info",
        1 => "info",
        _ => "debug,cranelift=info,wasmtime=info",
    };
    let filter = EnvFilter::try_from_env("WEFT_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(verbose > 0)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .compact()
        .init();
}

/// Prints one error line, `weft: ...`, to stderr.
pub(crate) fn print_error(message: impl std::fmt::Display) {
    eprintln!("weft: {message}");
}
