//! Modules: bad input is refused with a clear message and leaves nothing
//! behind; good modules compile once and are served from the artifact cache
//! afterwards, across restarts.

use std::sync::Arc;
use std::time::Instant;
use weft::runtime::registry::{Registry, RegistryError};
use weft::runtime::{Invocation, LoadError, Origin, Runtime, RuntimeConfig};
use weft::store::Store;
use weft_integration::{Weft, examples, large_module_wat, temp_file};

fn bad_modules() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let hello = std::fs::read(examples::HELLO).unwrap();
    vec![
        (
            "notes.txt",
            b"just some text\n".to_vec(),
            "not a WebAssembly module: it does not start with the `\\0asm` magic number (found `just`)",
        ),
        ("empty.wasm", Vec::new(), "found an empty file"),
        (
            "truncated.wasm",
            hello[..hello.len() / 2].to_vec(),
            "invalid WebAssembly module",
        ),
        (
            "needs-env.wat",
            br#"(module (import "env" "host_magic" (func (param i32))) (func (export "_start")))"#
                .to_vec(),
            "`env::host_magic` (function) is not defined",
        ),
    ]
}

fn files_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn weft_run_refuses_bad_modules_by_name() {
    let weft = Weft::new();
    for (name, bytes, expected) in bad_modules() {
        let (_dir, path) = temp_file(name, &bytes);
        let run = weft.run(["run", path.to_str().unwrap()], b"");
        assert_eq!(run.code, Some(125), "{name}: {}", run.stderr);
        let line = run.stderr.trim_end();
        assert!(
            line.starts_with("weft: ") && line.contains(name) && line.contains(expected),
            "{name}: expected `{expected}` in {line:?}"
        );
        assert_eq!(line.lines().count(), 1, "one line: {line:?}");
    }
    // Nothing was compiled into the cache.
    assert_eq!(files_in(&weft.data_dir().join("cache")), 0);
}

#[test]
fn the_registry_refuses_bad_modules_and_stores_nothing() {
    let data = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(data.path().join("cache")),
        max_module_size: 1 << 20,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let registry = Registry::new(runtime, Arc::new(Store::open(data.path()).unwrap()));
    for (name, bytes, expected) in bad_modules() {
        let error = registry.put("bad", &bytes).unwrap_err();
        assert!(error.to_string().contains(expected), "{name}: {error}");
    }
    let error = registry.put("big", &vec![0u8; 2 << 20]).unwrap_err();
    assert!(
        matches!(error, RegistryError::Load(LoadError::TooLarge { .. })),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        "module is 2 MiB, larger than the 1 MiB limit"
    );
    let error = registry.put("Bad Name", b"").unwrap_err();
    assert!(matches!(error, RegistryError::InvalidName(_)), "{error}");

    assert!(registry.list().unwrap().is_empty());
    assert!(registry.get("bad").unwrap().is_none());
    assert_eq!(files_in(&data.path().join("cache")), 0);
}

#[test]
fn a_large_module_is_compiled_once_then_served_from_the_cache() {
    let weft = Weft::new();
    let (_dir, path) = temp_file("large.wat", large_module_wat(20_000).as_bytes());
    let path = path.to_str().unwrap();

    let first = weft.run(["run", "-v", path], b"");
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    assert!(first.stderr.contains("compiled in"), "{}", first.stderr);

    let second = weft.run(["run", "-v", path], b"");
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    assert!(
        second
            .stderr
            .contains("loaded from the compiled-artifact cache"),
        "{}",
        second.stderr
    );
    eprintln!(
        "large module (20,000 functions): first start {:?} (compiling), second start {:?} (cached)",
        first.elapsed, second.elapsed
    );
    assert!(
        second.elapsed < first.elapsed,
        "the cached start was not faster"
    );

    // A damaged artifact is detected by its checksum and recompiled, never run.
    for entry in std::fs::read_dir(weft.data_dir().join("cache")).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
    }
    let third = weft.run(["run", "-v", path], b"");
    assert_eq!(third.code, Some(0), "{}", third.stderr);
    assert!(
        third.stderr.contains("checksum does not match"),
        "{}",
        third.stderr
    );
    assert!(third.stderr.contains("compiled in"), "{}", third.stderr);
}

#[test]
fn a_restarted_registry_serves_modules_without_recompiling() {
    let data = tempfile::tempdir().unwrap();
    let config = || RuntimeConfig {
        cache_dir: Some(data.path().join("cache")),
        ..RuntimeConfig::default()
    };
    let hello = std::fs::read(examples::HELLO).unwrap();
    let large = large_module_wat(5_000);
    {
        let registry = Registry::new(
            Runtime::new(config()).unwrap(),
            Arc::new(Store::open(data.path()).unwrap()),
        );
        let entry = registry.put("hello", &hello).unwrap();
        assert!(matches!(entry.loaded.origin(), Origin::Compiled(_)));
        assert_eq!(entry.record.size, hello.len() as u64);
        assert!(entry.record.exports.contains(&"_start".to_owned()));
        registry.put("large", large.as_bytes()).unwrap();
    }

    let started = Instant::now();
    let registry = Registry::new(
        Runtime::new(config()).unwrap(),
        Arc::new(Store::open(data.path()).unwrap()),
    );
    let names: Vec<String> = registry
        .list()
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["hello", "large"]);
    let entry = registry.get("hello").unwrap().unwrap();
    assert!(
        matches!(entry.loaded.origin(), Origin::Cached(_)),
        "{:?}",
        entry.loaded.origin()
    );
    let large_entry = registry.get("large").unwrap().unwrap();
    assert!(matches!(large_entry.loaded.origin(), Origin::Cached(_)));
    eprintln!("restart to both modules loaded: {:?}", started.elapsed());

    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let outcome = tokio
        .block_on(
            registry
                .runtime()
                .invoke(&entry.loaded, Invocation::new("hello", "restart")),
        )
        .unwrap();
    assert_eq!(outcome.output, "hello, restart!\n");

    // Re-uploading replaces atomically; an Arc held by a running invocation
    // keeps the old version.
    let old = registry.get("hello").unwrap().unwrap();
    registry.put("hello", large.as_bytes()).unwrap();
    assert_ne!(
        registry.get("hello").unwrap().unwrap().record.digest,
        old.record.digest
    );
    assert_eq!(old.record.size, hello.len() as u64);
    assert!(registry.remove("hello").unwrap());
    assert!(registry.get("hello").unwrap().is_none());
}
