//! The compiled-artifact cache: a content-addressed directory of compiled
//! modules, keyed by (module digest, engine fingerprint).
//!
//! Each entry is one file written to a temporary name, fsynced and renamed
//! into place, so a reader sees a whole artifact or none, even across a
//! `kill -9`. The file starts with a magic number and the SHA-256 of the
//! payload; a file whose checksum does not match is ignored and rewritten,
//! never handed to wasmtime. Being plain files, the cache is shared by a
//! running server and any number of `weft run` processes without a lock.

#![allow(unsafe_code)] // `Module::deserialize` trusts its input; see `load`.

use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::{Engine, Module};

const MAGIC: &[u8; 8] = b"WEFTART1";
const HEADER: usize = MAGIC.len() + 32;

/// A directory of compiled artifacts.
#[derive(Clone, Debug)]
pub struct ArtifactCache {
    dir: PathBuf,
}

impl ArtifactCache {
    /// A cache in `dir`, created if missing.
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(ArtifactCache { dir })
    }

    /// The directory holding the artifacts.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, digest: &str, fingerprint: &str) -> PathBuf {
        let digest = digest.trim_start_matches("sha256:");
        self.dir.join(format!("{digest}-{fingerprint}.cwasm"))
    }

    /// Loads the artifact for `digest` compiled by an engine with
    /// `fingerprint`, if a whole, intact one is there.
    pub fn load(&self, engine: &Engine, digest: &str, fingerprint: &str) -> Option<Module> {
        let path = self.path(digest, fingerprint);
        let bytes = fs::read(&path).ok()?;
        if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
            tracing::warn!(path = %path.display(), "ignoring a malformed compiled artifact");
            return None;
        }
        let payload = &bytes[HEADER..];
        if Sha256::digest(payload).as_slice() != &bytes[MAGIC.len()..HEADER] {
            tracing::warn!(path = %path.display(), "ignoring a compiled artifact whose checksum does not match");
            return None;
        }
        // SAFETY: `Module::deserialize` requires bytes produced by
        // `Module::serialize` of a compatible engine. These bytes were written
        // by `store` below into weft's own data directory, from
        // `Module::serialize`, and the checksum just verified shows they are
        // unchanged since; the file name carries the engine fingerprint, and
        // wasmtime itself re-checks the version and compatibility header.
        match unsafe { Module::deserialize(engine, payload) } {
            Ok(module) => Some(module),
            Err(error) => {
                tracing::warn!(path = %path.display(), "ignoring an incompatible compiled artifact: {error}");
                None
            }
        }
    }

    /// Stores a compiled artifact atomically.
    pub fn store(&self, digest: &str, fingerprint: &str, module: &Module) -> anyhow::Result<()> {
        let serialized = module.serialize()?;
        let path = self.path(digest, fingerprint);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(MAGIC)?;
            file.write_all(&Sha256::digest(&serialized))?;
            file.write_all(&serialized)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)?;
            // Make the rename itself durable.
            fs::File::open(&self.dir)?.sync_all()
        };
        write().inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })?;
        Ok(())
    }
}
