//! `weft dev`'s watcher: find the guests in a directory (guest Cargo projects
//! and loose `.wasm` files), build them for `wasm32-wasip1`, deploy what
//! changed, and do it again whenever a source file changes.
//!
//! A failed build changes nothing on the server: the last good version keeps
//! serving, and the compiler's message is printed and published. Guests
//! that declare themselves services run as such, reachable from loopback
//! ([`services`]).

pub mod services;

use crate::activity::Event;
use crate::node::Node;
use crate::units::{format_duration, format_size};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How often the directory is scanned for changes.
const POLL: Duration = Duration::from_millis(300);

/// A buildable or deployable thing in the watched directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A Cargo project (or workspace) of guests.
    Cargo(PathBuf),
    /// A ready `.wasm` (or `.wat`) file.
    Wasm(PathBuf),
}

impl Source {
    fn root(&self) -> &Path {
        match self {
            Source::Cargo(dir) => dir,
            Source::Wasm(file) => file,
        }
    }

    fn label(&self) -> String {
        self.root()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.root().display().to_string())
    }
}

/// Finds the guests under `dir`: `dir` itself if it is a Cargo project or
/// workspace, else each immediate subdirectory that is one; plus `.wasm` and
/// `.wat` files directly in `dir`.
pub fn discover(dir: &Path) -> Vec<Source> {
    let mut sources = Vec::new();
    let root_is_project = dir.join("Cargo.toml").is_file();
    if root_is_project {
        sources.push(Source::Cargo(dir.to_owned()));
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if !root_is_project && path.join("Cargo.toml").is_file() {
                sources.push(Source::Cargo(path));
            }
        } else if path
            .extension()
            .is_some_and(|ext| ext == "wasm" || ext == "wat")
        {
            sources.push(Source::Wasm(path));
        }
    }
    sources
}

/// A module name from a file or target name: lower case, `_` as `-`, other
/// characters outside `[a-z0-9._-]` dropped.
pub fn module_name(raw: &str) -> String {
    raw.to_lowercase()
        .replace('_', "-")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-.".contains(*c))
        .collect()
}

/// Modification times and sizes of every file under `root`, except build
/// output and hidden directories.
fn snapshot(root: &Path, into: &mut BTreeMap<PathBuf, (SystemTime, u64)>) {
    let Ok(meta) = std::fs::metadata(root) else {
        return;
    };
    if meta.is_file() {
        into.insert(
            root.to_owned(),
            (
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                meta.len(),
            ),
        );
        return;
    }
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == "target" || name.starts_with('.') {
            continue;
        }
        snapshot(&entry.path(), into);
    }
}

type Snapshot = BTreeMap<PathBuf, (SystemTime, u64)>;

fn source_snapshot(source: &Source) -> Snapshot {
    let mut snap = BTreeMap::new();
    snapshot(source.root(), &mut snap);
    snap
}

/// What building a source produced: module names and their files.
type Artifacts = Vec<(String, PathBuf)>;

/// Builds a Cargo source with `cargo build --target wasm32-wasip1` and
/// returns its `.wasm` artifacts, or the compiler's rendered messages.
async fn cargo_build(dir: &Path, release: bool) -> Result<Artifacts, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = tokio::process::Command::new(cargo);
    command
        .current_dir(dir)
        .args([
            "build",
            "--target",
            "wasm32-wasip1",
            "--message-format=json-render-diagnostics",
        ])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if release {
        command.arg("--release");
    }
    let output = command
        .output()
        .await
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        // Keep the diagnostics, drop cargo's progress lines.
        let message: Vec<&str> = stderr
            .lines()
            .filter(|l| {
                let t = l.trim_start();
                !(t.starts_with("Compiling")
                    || t.starts_with("Blocking")
                    || t.starts_with("Building"))
            })
            .collect();
        return Err(message.join("\n"));
    }
    let mut artifacts = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        if let Some(executable) = message["executable"].as_str()
            && executable.ends_with(".wasm")
        {
            let name = module_name(message["target"]["name"].as_str().unwrap_or("module"));
            artifacts.push((name, PathBuf::from(executable)));
        }
    }
    Ok(artifacts)
}

/// Watches `dir` and keeps `node` serving its guests; runs until dropped.
pub async fn watch(node: Arc<Node>, dir: PathBuf, release: bool) {
    let mut known: BTreeMap<PathBuf, Snapshot> = BTreeMap::new();
    loop {
        for source in discover(&dir) {
            let snap = source_snapshot(&source);
            if known.get(source.root()) == Some(&snap) {
                continue;
            }
            let first = !known.contains_key(source.root());
            known.insert(source.root().to_owned(), snap);
            refresh(&node, &source, release, first).await;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Builds one source and deploys every artifact whose bytes changed.
async fn refresh(node: &Arc<Node>, source: &Source, release: bool, first: bool) {
    let started = Instant::now();
    let artifacts = match source {
        Source::Wasm(path) => {
            let stem = path.file_stem().unwrap_or_default().to_string_lossy();
            Ok(vec![(module_name(&stem), path.clone())])
        }
        Source::Cargo(dir) => cargo_build(dir, release).await,
    };
    let built_in = started.elapsed();
    let artifacts = match artifacts {
        Ok(artifacts) => artifacts,
        Err(message) => {
            println!(
                "build of {} failed after {}; the last good version keeps serving:\n{message}",
                source.label(),
                format_duration(built_in)
            );
            node.activity().publish(Event::Built {
                project: source.label(),
                ok: false,
                message,
            });
            return;
        }
    };
    let verb = if first { "built" } else { "rebuilt" };
    let specs = match source {
        Source::Cargo(dir) => services::specs(dir).await,
        Source::Wasm(_) => Default::default(),
    };
    for (name, path) in artifacts {
        let spec = specs.get(&name);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) => {
                println!("cannot read {}: {error}", path.display());
                continue;
            }
        };
        let digest = crate::runtime::digest(&bytes);
        let current = node.registry().record(&name).ok().flatten();
        if current.is_some_and(|record| record.digest == digest) {
            if let Some(spec) = spec {
                services::ensure(node, &name, spec, false).await;
            }
            continue;
        }
        let size = bytes.len();
        let deploying = node.clone();
        let deploy_name = name.clone();
        let result =
            tokio::task::spawn_blocking(move || deploying.deploy(&deploy_name, &bytes)).await;
        let line = match result {
            Ok(Ok(_)) if matches!(source, Source::Cargo(_)) => format!(
                "{verb} {name} in {}, deployed ({})",
                format_duration(built_in),
                format_size(size as u64)
            ),
            Ok(Ok(_)) => format!("deployed {name} ({})", format_size(size as u64)),
            Ok(Err(error)) => format!("{name}: not deployed: {error}"),
            Err(error) => format!("{name}: not deployed: {error}"),
        };
        println!("{line}");
        let deployed = !line.contains("not deployed");
        node.activity().publish(Event::Built {
            project: name.clone(),
            ok: deployed,
            message: line,
        });
        if deployed && let Some(spec) = spec {
            services::ensure(node, &name, spec, true).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_from_targets() {
        assert_eq!(module_name("hello"), "hello");
        assert_eq!(module_name("Grow_Memory"), "grow-memory");
        assert_eq!(module_name("a b!c"), "abc");
    }

    #[test]
    fn discovers_projects_and_loose_modules() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("one")).unwrap();
        std::fs::write(dir.path().join("one/Cargo.toml"), "").unwrap();
        std::fs::create_dir(dir.path().join("notes")).unwrap();
        std::fs::write(dir.path().join("ready.wasm"), b"\0asm").unwrap();
        let sources = discover(dir.path());
        assert_eq!(
            sources,
            [
                Source::Cargo(dir.path().join("one")),
                Source::Wasm(dir.path().join("ready.wasm"))
            ]
        );

        // A workspace at the root is built as one.
        std::fs::write(dir.path().join("Cargo.toml"), "").unwrap();
        let sources = discover(dir.path());
        assert_eq!(
            sources,
            [
                Source::Cargo(dir.path().to_owned()),
                Source::Wasm(dir.path().join("ready.wasm"))
            ]
        );
    }
}
