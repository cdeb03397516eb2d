//! `weft dev [DIR]`: a server, plus a watcher that rebuilds and redeploys the
//! guests in DIR whenever their sources change.

use super::serve::{ServerFlags, shutdown_signal};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Directory of guests: Cargo projects and/or .wasm files (default:
    /// ./examples).
    dir: Option<PathBuf>,

    /// Build guests with --release.
    #[arg(long)]
    release: bool,

    #[command(flatten)]
    server: ServerFlags,
}

pub async fn main(args: DevArgs) -> anyhow::Result<()> {
    let dir = match args.dir {
        Some(dir) => dir,
        None if Path::new("examples").is_dir() => PathBuf::from("examples"),
        None => anyhow::bail!(
            "no directory given and there is no ./examples here: pass the directory of guests to watch"
        ),
    };
    anyhow::ensure!(dir.is_dir(), "{} is not a directory", dir.display());
    let dir = dir.canonicalize()?;
    let (node, server) = args.server.start().await?;
    println!(
        "weft dev: dashboard at http://{}/ , watching {}",
        server.local_addr(),
        dir.display()
    );
    let watcher = tokio::spawn(crate::dev::watch(node, dir, args.release));
    server.serve(shutdown_signal()).await?;
    watcher.abort();
    Ok(())
}
