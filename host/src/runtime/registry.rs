//! Named modules: uploaded, validated, compiled once, stored durably, and
//! served to invocations.
//!
//! Uploading checks and compiles the module before anything is written, so a
//! refused module leaves no trace; the write is acknowledged only once the
//! store's transaction is committed. Replacing a module swaps one `Arc`: an
//! invocation already running keeps the version it started with.

use super::{LoadError, LoadedModule, Origin, Runtime};
use crate::store::{ModuleRecord, Store, StoreError};
use crate::units::format_duration;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The name is not a valid module name.
    #[error(
        "invalid module name `{0}`: use 1 to 64 characters of a-z, 0-9, `-`, `_` and `.`, starting with a letter or digit"
    )]
    InvalidName(String),
    /// The module was refused.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored module no longer loads (its blob is missing, or this weft
    /// cannot load it).
    #[error("stored module `{name}` cannot be loaded: {reason}")]
    Unloadable { name: String, reason: String },
}

/// Checks a module name: `[a-z0-9][a-z0-9._-]{0,63}`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

/// A module as the registry serves it: its record and its loaded form.
#[derive(Debug)]
pub struct Entry {
    /// What the store holds about it.
    pub record: ModuleRecord,
    /// Ready to instantiate.
    pub loaded: LoadedModule,
}

/// The module registry.
#[derive(Debug)]
pub struct Registry {
    runtime: Runtime,
    store: Arc<Store>,
    loaded: RwLock<HashMap<String, Arc<Entry>>>,
    /// Serializes writers so the map always agrees with the store's last
    /// commit for a name.
    writing: Mutex<()>,
}

impl Registry {
    /// A registry over `store`, loading modules with `runtime`. Modules are
    /// loaded on first use (from the artifact cache when it has them).
    pub fn new(runtime: Runtime, store: Arc<Store>) -> Self {
        Registry {
            runtime,
            store,
            loaded: RwLock::new(HashMap::new()),
            writing: Mutex::new(()),
        }
    }

    /// The runtime modules are loaded with.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Validates, compiles and durably stores `bytes` as module `name`,
    /// replacing any module of that name. Returns once the write is
    /// committed.
    pub fn put(&self, name: &str, bytes: &[u8]) -> Result<Arc<Entry>, RegistryError> {
        if !valid_name(name) {
            return Err(RegistryError::InvalidName(name.to_owned()));
        }
        let loaded = self.runtime.load(bytes)?;
        let record = ModuleRecord {
            name: name.to_owned(),
            digest: loaded.digest().to_owned(),
            size: bytes.len() as u64,
            created_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64,
            imports: loaded.imports(),
            exports: loaded.exports(),
        };
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        self.store.put_module(&record, bytes)?;
        let entry = Arc::new(Entry { record, loaded });
        self.write_map().insert(name.to_owned(), entry.clone());
        Ok(entry)
    }

    /// Module `name`, loaded. `Ok(None)` if there is no such module.
    pub fn get(&self, name: &str) -> Result<Option<Arc<Entry>>, RegistryError> {
        if let Some(entry) = self.read_map().get(name) {
            return Ok(Some(entry.clone()));
        }
        let Some(record) = self.store.module(name)? else {
            return Ok(None);
        };
        let unloadable = |reason: String| RegistryError::Unloadable {
            name: name.to_owned(),
            reason,
        };
        let bytes = self
            .store
            .blob(&record.digest)?
            .ok_or_else(|| unloadable("its bytes are missing from the store".into()))?;
        let loaded = self
            .runtime
            .load(&bytes)
            .map_err(|e| unloadable(e.to_string()))?;
        match loaded.origin() {
            Origin::Cached(took) => tracing::info!(
                "loaded `{name}` from the compiled-artifact cache in {}",
                format_duration(took)
            ),
            Origin::Compiled(took) => tracing::info!(
                "compiled `{name}` in {} (it was not in the artifact cache)",
                format_duration(took)
            ),
        }
        let entry = Arc::new(Entry { record, loaded });
        // Another thread may have loaded or replaced it meanwhile: keep theirs.
        Ok(Some(
            self.write_map()
                .entry(name.to_owned())
                .or_insert(entry)
                .clone(),
        ))
    }

    /// The stored record of module `name`, without loading it.
    pub fn record(&self, name: &str) -> Result<Option<ModuleRecord>, RegistryError> {
        if let Some(entry) = self.read_map().get(name) {
            return Ok(Some(entry.record.clone()));
        }
        Ok(self.store.module(name)?)
    }

    /// Every stored module's record, by name.
    pub fn list(&self) -> Result<Vec<ModuleRecord>, RegistryError> {
        Ok(self.store.modules()?)
    }

    /// Removes module `name`; returns whether it existed. Running invocations
    /// finish on the version they hold.
    pub fn remove(&self, name: &str) -> Result<bool, RegistryError> {
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let existed = self.store.delete_module(name)?;
        self.write_map().remove(name);
        Ok(existed)
    }

    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Entry>>> {
        self.loaded.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_map(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Entry>>> {
        self.loaded.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("hello"));
        assert!(valid_name("mesh-pi.v2"));
        assert!(!valid_name(""));
        assert!(!valid_name("-x"));
        assert!(!valid_name("Hello"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(&"a".repeat(65)));
    }
}
