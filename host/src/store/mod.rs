//! Persistent state in one embedded redb database (`weft.redb` in the data
//! directory).
//!
//! Every write is one transaction committed with `Durability::Immediate`: when
//! a method returns `Ok`, the data is on disk and survives a `kill -9` or a
//! power cut. redb's copy-on-write B-trees and checksums mean the file always
//! opens to the last committed state.
//!
//! This module knows nothing above it (no wasmtime, no API): it stores typed
//! records and blobs.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Module records by name, as JSON.
const MODULES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("modules");
/// Module bytes by digest (`sha256:<hex>`), shared by every name that uses
/// them.
const BLOBS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("blobs");
/// Services by id, as JSON.
const SERVICES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("services");
/// Subnets by id, as JSON.
const SUBNETS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("subnets");
/// Security groups by id, as JSON.
const GROUPS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("security_groups");
/// Interface records by id, as JSON.
const NICS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("nics");
/// Gateways by id, as JSON.
const GATEWAYS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("gateways");
/// Port forwards by id, as JSON.
const FORWARDS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("forwards");
/// Chain definitions by name, as JSON.
const CHAINS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("chains");

/// The kinds of JSON object the store keeps by id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `weft_netstack::Subnet`.
    Subnet,
    /// `weft_netstack::SecurityGroup`.
    Group,
    /// `weft_netstack::Record`.
    Nic,
    /// [`ServiceRecord`].
    Service,
    /// `crate::network::Gateway`.
    Gateway,
    /// `crate::network::Forward`.
    Forward,
    /// `crate::chain::Definition`, by chain name.
    Chain,
}

impl Kind {
    fn table(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        match self {
            Kind::Subnet => SUBNETS,
            Kind::Group => GROUPS,
            Kind::Nic => NICS,
            Kind::Service => SERVICES,
            Kind::Gateway => GATEWAYS,
            Kind::Forward => FORWARDS,
            Kind::Chain => CHAINS,
        }
    }
}

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened (locked by another process, not a
    /// redb file, …).
    #[error("cannot open the store at {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    /// A read or write failed.
    #[error("store: {0}")]
    Db(#[from] redb::Error),
    /// A record did not decode; the file was written by an incompatible
    /// version.
    #[error("store: corrupt record `{key}`: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn db_error<E: Into<redb::Error>>(error: E) -> StoreError {
    StoreError::Db(error.into())
}

/// A stored module: its metadata. The bytes are in the blob table under
/// `digest`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleRecord {
    /// The module's name, unique in the store.
    pub name: String,
    /// `sha256:<hex>` of its bytes.
    pub digest: String,
    /// Size of its bytes.
    pub size: u64,
    /// When this version was stored, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Its imports, as `module::name`.
    pub imports: Vec<String>,
    /// Its exports.
    pub exports: Vec<String>,
}

/// The database.
#[derive(Debug)]
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) the store in `data_dir`.
    ///
    /// Fails if another process has it open: one server owns a data
    /// directory.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Dir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join("weft.redb");
        let db = Database::create(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        let store = Store { db, path };
        // Create the tables so readers never see them missing.
        let txn = store.db.begin_write().map_err(db_error)?;
        txn.open_table(MODULES).map_err(db_error)?;
        txn.open_table(BLOBS).map_err(db_error)?;
        for kind in [
            Kind::Subnet,
            Kind::Group,
            Kind::Nic,
            Kind::Service,
            Kind::Gateway,
            Kind::Forward,
            Kind::Chain,
        ] {
            txn.open_table(kind.table()).map_err(db_error)?;
        }
        txn.commit().map_err(db_error)?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores `record` and its `bytes` in one durable transaction, replacing
    /// any module of the same name. Blobs no longer referenced are removed.
    pub fn put_module(&self, record: &ModuleRecord, bytes: &[u8]) -> Result<(), StoreError> {
        let json = serde_json::to_vec(record).expect("module records always serialize");
        let txn = self.db.begin_write().map_err(db_error)?;
        {
            let mut modules = txn.open_table(MODULES).map_err(db_error)?;
            let mut blobs = txn.open_table(BLOBS).map_err(db_error)?;
            if blobs
                .get(record.digest.as_str())
                .map_err(db_error)?
                .is_none()
            {
                blobs
                    .insert(record.digest.as_str(), bytes)
                    .map_err(db_error)?;
            }
            let previous = modules
                .insert(record.name.as_str(), json.as_slice())
                .map_err(db_error)?
                .map(|old| decode::<ModuleRecord>(&record.name, old.value()))
                .transpose()?;
            if let Some(previous) = previous
                && previous.digest != record.digest
            {
                drop_blob_if_unused(&modules, &mut blobs, &previous.digest)?;
            }
        }
        txn.commit().map_err(db_error)?;
        Ok(())
    }

    /// The record of module `name`.
    pub fn module(&self, name: &str) -> Result<Option<ModuleRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let modules = txn.open_table(MODULES).map_err(db_error)?;
        modules
            .get(name)
            .map_err(db_error)?
            .map(|value| decode(name, value.value()))
            .transpose()
    }

    /// Every module record, by name.
    pub fn modules(&self) -> Result<Vec<ModuleRecord>, StoreError> {
        self.all(MODULES)
    }

    /// Every JSON record of `table`, in key order.
    fn all<T: for<'de> Deserialize<'de>>(
        &self,
        table: TableDefinition<'_, &str, &[u8]>,
    ) -> Result<Vec<T>, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(table).map_err(db_error)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(db_error)? {
            let (key, value) = entry.map_err(db_error)?;
            out.push(decode(key.value(), value.value())?);
        }
        Ok(out)
    }

    /// The bytes stored under `digest`.
    pub fn blob(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let blobs = txn.open_table(BLOBS).map_err(db_error)?;
        Ok(blobs
            .get(digest)
            .map_err(db_error)?
            .map(|v| v.value().to_vec()))
    }

    /// Removes module `name`; returns whether it existed.
    pub fn delete_module(&self, name: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(db_error)?;
        let existed = {
            let mut modules = txn.open_table(MODULES).map_err(db_error)?;
            let mut blobs = txn.open_table(BLOBS).map_err(db_error)?;
            let removed = modules
                .remove(name)
                .map_err(db_error)?
                .map(|old| decode::<ModuleRecord>(name, old.value()))
                .transpose()?;
            if let Some(removed) = &removed {
                drop_blob_if_unused(&modules, &mut blobs, &removed.digest)?;
            }
            removed.is_some()
        };
        txn.commit().map_err(db_error)?;
        Ok(existed)
    }
}

/// A service: what to run and how to supervise it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// The service's instance id, stable across restarts.
    pub id: String,
    /// The module it runs.
    pub module: String,
    /// Arguments after `argv[0]`.
    pub args: Vec<String>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// `always`, `on-failure` or `never`.
    pub restart: String,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_ms: u64,
}

impl Store {
    /// Stores a service durably.
    pub fn put_service(&self, record: &ServiceRecord) -> Result<(), StoreError> {
        self.put(Kind::Service, &record.id, record)
    }

    /// Every stored service.
    pub fn services(&self) -> Result<Vec<ServiceRecord>, StoreError> {
        self.all_of(Kind::Service)
    }

    /// Stores an object durably, replacing one with the same id.
    pub fn put<T: Serialize>(&self, kind: Kind, id: &str, value: &T) -> Result<(), StoreError> {
        let json = serde_json::to_vec(value).expect("stored objects always serialize");
        let txn = self.db.begin_write().map_err(db_error)?;
        txn.open_table(kind.table())
            .map_err(db_error)?
            .insert(id, json.as_slice())
            .map_err(db_error)?;
        txn.commit().map_err(db_error)?;
        Ok(())
    }

    /// The stored object of `kind` with this id.
    pub fn get<T: for<'de> Deserialize<'de>>(
        &self,
        kind: Kind,
        id: &str,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(kind.table()).map_err(db_error)?;
        table
            .get(id)
            .map_err(db_error)?
            .map(|value| decode(id, value.value()))
            .transpose()
    }

    /// Every stored object of `kind`, in id order.
    pub fn all_of<T: for<'de> Deserialize<'de>>(&self, kind: Kind) -> Result<Vec<T>, StoreError> {
        self.all(kind.table())
    }

    /// Removes an object; returns whether it existed.
    pub fn remove(&self, kind: Kind, id: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(db_error)?;
        let existed = txn
            .open_table(kind.table())
            .map_err(db_error)?
            .remove(id)
            .map_err(db_error)?
            .is_some();
        txn.commit().map_err(db_error)?;
        Ok(existed)
    }

    /// Removes a service; returns whether it existed.
    pub fn delete_service(&self, id: &str) -> Result<bool, StoreError> {
        self.remove(Kind::Service, id)
    }
}

fn decode<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        key: key.to_owned(),
        source,
    })
}

fn drop_blob_if_unused(
    modules: &redb::Table<'_, &str, &[u8]>,
    blobs: &mut redb::Table<'_, &str, &[u8]>,
    digest: &str,
) -> Result<(), StoreError> {
    for entry in modules.iter().map_err(db_error)? {
        let (key, value) = entry.map_err(db_error)?;
        let record: ModuleRecord = decode(key.value(), value.value())?;
        if record.digest == digest {
            return Ok(());
        }
    }
    blobs.remove(digest).map_err(db_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, digest: &str) -> ModuleRecord {
        ModuleRecord {
            name: name.into(),
            digest: digest.into(),
            size: 3,
            created_ms: 1,
            imports: vec![],
            exports: vec!["_start".into()],
        }
    }

    #[test]
    fn modules_round_trip_and_blobs_are_shared_then_freed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put_module(&record("a", "sha256:1"), b"one").unwrap();
        store.put_module(&record("b", "sha256:1"), b"one").unwrap();
        assert_eq!(store.modules().unwrap().len(), 2);
        assert!(store.delete_module("a").unwrap());
        assert_eq!(
            store.blob("sha256:1").unwrap().as_deref(),
            Some(&b"one"[..])
        );
        // Replacing b's bytes frees the old blob.
        store.put_module(&record("b", "sha256:2"), b"two").unwrap();
        assert_eq!(store.blob("sha256:1").unwrap(), None);
        assert!(!store.delete_module("a").unwrap());
        drop(store);

        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.module("b").unwrap(), Some(record("b", "sha256:2")));
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        let error = Store::open(dir.path()).unwrap_err();
        assert!(matches!(error, StoreError::Open { .. }), "{error}");
    }
}
