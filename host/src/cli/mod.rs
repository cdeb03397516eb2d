//! The `weft` command line: one file per subcommand group.

mod chain;
mod client;
mod dev;
mod gateway;
mod mesh;
mod mesh_parent;
mod network;
mod run;
mod serve;
mod service;

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
    /// Log more: -v shows weft's own progress, -vv debug detail.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(flatten)]
    client: client::ClientFlags,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a module once, without a server: stdin, stdout and stderr are the
    /// guest's, and weft exits with the guest's exit code.
    Run(run::RunArgs),
    /// Serve the HTTP API and the dashboard.
    Serve(serve::ServeArgs),
    /// Serve, and rebuild and redeploy the guests in a directory as they
    /// change.
    Dev(dev::DevArgs),
    #[command(flatten)]
    Client(client::ClientCommand),
}

/// The data directory flag, for the commands that keep state.
#[derive(Debug, clap::Args)]
pub struct DataDir {
    /// Data directory (modules, compiled artifacts, state); default
    /// `$XDG_DATA_HOME/weft` or `~/.local/share/weft`.
    #[arg(long = "data", id = "data_dir", env = "WEFT_DATA", value_name = "DIR")]
    dir: Option<PathBuf>,
}

impl DataDir {
    /// The directory to use.
    pub fn path(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(crate::default_data_dir)
    }
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    match cli.command {
        Command::Run(args) => run::main(args),
        Command::Serve(args) => block_on(serve::main(args)),
        Command::Dev(args) => block_on(dev::main(args)),
        Command::Client(command) => match block_on_result(client::main(command, &cli.client)) {
            Ok(code) => code,
            Err(error) => {
                print_error(format!("{error:#}"));
                ExitCode::FAILURE
            }
        },
    }
}

fn tokio_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

fn block_on_result<T>(future: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio_runtime()?.block_on(future)
}

/// Runs a long-lived command; errors become one line and exit code 1.
fn block_on(future: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    match block_on_result(future) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            print_error(format!("{error:#}"));
            ExitCode::FAILURE
        }
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
