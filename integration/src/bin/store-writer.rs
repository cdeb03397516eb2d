//! `store-writer DATA_DIR SEED`: a test helper for the durability test. It
//! stores and deletes modules through the registry as fast as it can, and
//! says so on stdout around each operation:
//!
//! ```text
//! BEGIN PUT <name> <digest>     ACK PUT <name> <digest>
//! BEGIN DEL <name>              ACK DEL <name>
//! ```
//!
//! An `ACK` is printed only after the registry returned, i.e. after the
//! store's transaction committed. The test kills this process with SIGKILL at
//! random moments and checks that every acknowledged operation survived.

use std::io::Write;
use std::sync::Arc;
use weft::runtime::registry::Registry;
use weft::runtime::{Runtime, RuntimeConfig, digest};
use weft::store::Store;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let data_dir = std::path::PathBuf::from(args.next().expect("DATA_DIR"));
    let seed: u64 = args.next().expect("SEED").parse()?;

    let runtime = Runtime::new(RuntimeConfig {
        max_instances: 2,
        cache_dir: Some(data_dir.join("cache")),
        ..RuntimeConfig::default()
    })?;
    let store = Arc::new(Store::open(&data_dir)?);
    let registry = Registry::new(runtime, store);
    let mut out = std::io::stdout().lock();
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };

    for op in 0..10_000u64 {
        let name = format!("m{}", next() % 24);
        if next() % 5 == 0 {
            writeln!(out, "BEGIN DEL {name}")?;
            out.flush()?;
            registry.remove(&name)?;
            writeln!(out, "ACK DEL {name}")?;
        } else {
            let padding = "x".repeat((next() % 8192) as usize);
            let wat = format!(
                "(module (memory 1) (data (i32.const 0) \"seed-{seed}-op-{op}-{padding}\") (func (export \"_start\")))"
            );
            let digest = digest(wat.as_bytes());
            writeln!(out, "BEGIN PUT {name} {digest}")?;
            out.flush()?;
            registry.put(&name, wat.as_bytes())?;
            writeln!(out, "ACK PUT {name} {digest}")?;
        }
        out.flush()?;
    }
    Ok(())
}
