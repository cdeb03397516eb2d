//! `weft run`: run one module once, in this process, with no server.

use super::{EXIT_DEADLINE, EXIT_TRAP, EXIT_WEFT_ERROR, print_error};
use crate::runtime::{
    Failure, Input, Invocation, Limits, Origin, Preopen, Runtime, RuntimeConfig, Stdio, limits,
};
use crate::units::{format_duration, parse_duration, parse_size};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Stop the guest after this long (e.g. 2s, 500ms); exits with 124.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,

    /// Largest linear memory the guest may grow to (e.g. 64MiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "4GiB")]
    memory: u64,

    /// Give the guest this much fuel (about one unit per wasm instruction).
    #[arg(long, value_name = "N")]
    fuel: Option<u64>,

    /// Set an environment variable for the guest; `--env K` passes the host's
    /// value of K.
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,

    /// Preopen a host directory for the guest, at the same path or at GUEST.
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    dirs: Vec<String>,

    #[command(flatten)]
    data: super::DataDir,

    /// Do not read or write the compiled-artifact cache.
    #[arg(long)]
    no_cache: bool,

    /// The module to run (binary `.wasm` or text `.wat`).
    file: PathBuf,

    /// Arguments passed to the guest.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

pub fn main(args: RunArgs) -> ExitCode {
    let data_dir = args.data.path();
    match run(args, &data_dir) {
        Ok(code) => code,
        Err(error) => {
            print_error(format!("{error:#}"));
            ExitCode::from(EXIT_WEFT_ERROR)
        }
    }
}

fn run(args: RunArgs, data_dir: &Path) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    anyhow::ensure!(
        args.memory <= limits::MAX_MEMORY,
        "--memory is at most 4GiB for 32-bit wasm"
    );
    let env = parse_env(&args.env)?;
    let preopens = args
        .dirs
        .iter()
        .map(|dir| parse_dir(dir))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let config = RuntimeConfig {
        max_instances: 4,
        max_memory: limits::MAX_MEMORY,
        metering: args.fuel.is_some(),
        cache_dir: (!args.no_cache).then(|| data_dir.join("cache")),
        ..RuntimeConfig::default()
    };
    let file = &args.file;
    let size = std::fs::metadata(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    anyhow::ensure!(
        size <= config.max_module_size as u64,
        "{}: module is {}, larger than the {} limit",
        file.display(),
        crate::units::format_size(size),
        crate::units::format_size(config.max_module_size as u64)
    );
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;

    let runtime = Runtime::new(config)?;
    let module = runtime
        .load(&bytes)
        .with_context(|| file.display().to_string())?;
    match module.origin() {
        Origin::Compiled(took) => {
            tracing::info!(
                digest = module.digest(),
                "compiled in {}",
                format_duration(took)
            )
        }
        Origin::Cached(took) => tracing::info!(
            digest = module.digest(),
            "loaded from the compiled-artifact cache in {}",
            format_duration(took)
        ),
    }

    let program = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "main.wasm".into());
    let invocation = Invocation {
        program,
        args: args.args,
        env,
        preopens,
        input: Input::Inherit,
        stdio: Stdio::Inherit,
        limits: Limits {
            memory: args.memory,
            timeout: args.timeout,
            fuel: args.fuel,
            ..Limits::default()
        },
        cancel: None,
        net: None,
    };

    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = tokio.block_on(runtime.invoke(&module, invocation));
    // Inherited stdin may have a reader thread blocked on it; do not wait.
    tokio.shutdown_background();
    match result {
        Ok(outcome) => {
            tracing::info!(
                instance = %outcome.instance,
                exit_code = outcome.exit_code,
                "finished in {}",
                format_duration(outcome.duration)
            );
            // Stdout went straight to ours; an output region declared
            // through `weft:chain` is all that can be left to print.
            if !outcome.output.is_empty() {
                use std::io::Write;
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(&outcome.output)?;
                stdout.flush()?;
            }
            Ok(ExitCode::from(outcome.exit_code as u8))
        }
        Err(failed) => {
            print_error(format!("{}: {}", file.display(), failed.failure));
            if let Some(backtrace) = &failed.backtrace {
                tracing::info!("guest backtrace:\n{backtrace}");
            }
            Ok(ExitCode::from(match failed.failure {
                Failure::Deadline { .. } => EXIT_DEADLINE,
                Failure::NoEntryPoint | Failure::Host { .. } => EXIT_WEFT_ERROR,
                _ => EXIT_TRAP,
            }))
        }
    }
}

fn parse_env(specs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    specs
        .iter()
        .map(|spec| match spec.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
            Some(_) => anyhow::bail!("invalid --env `{spec}`: the name is empty"),
            None => std::env::var(spec)
                .map(|value| (spec.clone(), value))
                .map_err(|_| anyhow::anyhow!("--env {spec}: the host has no variable `{spec}`")),
        })
        .collect()
}

fn parse_dir(spec: &str) -> anyhow::Result<Preopen> {
    let (host, guest) = match spec.split_once("::") {
        Some((host, guest)) => (host, guest),
        None => (spec, spec),
    };
    anyhow::ensure!(
        !host.is_empty() && !guest.is_empty(),
        "invalid --dir `{spec}`: use HOST or HOST::GUEST"
    );
    anyhow::ensure!(
        Path::new(host).is_dir(),
        "--dir {spec}: {host} is not a directory"
    );
    Ok(Preopen {
        host: host.into(),
        guest: guest.to_owned(),
    })
}
