//! Loading a module: check it, compile it (or take it from the artifact
//! cache), check its imports against what weft provides, and pre-link it.

use super::{Runtime, State, digest};
use crate::units::format_size;
use std::time::{Duration, Instant};
use wasmtime::{ExternType, InstancePre, Module, ModuleExport};

/// Why a module was refused. Nothing is stored for a refused module.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Larger than the configured cap.
    #[error("module is {}, larger than the {} limit", format_size(*.size as u64), format_size(*.limit as u64))]
    TooLarge { size: usize, limit: usize },
    /// Does not start with the wasm magic number (and is not wasm text).
    #[error(
        "not a WebAssembly module: it does not start with the `\\0asm` magic number (found {found})"
    )]
    NotWasm { found: String },
    /// Starts like wasm but does not parse or validate.
    #[error("invalid WebAssembly module: {0}")]
    Invalid(String),
    /// Imports functions (or other items) weft does not provide.
    #[error("{}", missing_message(.0))]
    MissingImports(Vec<MissingImport>),
    /// Imports exist but do not link (for example a signature mismatch).
    #[error("module does not link: {0}")]
    Link(String),
}

/// One import the linker cannot satisfy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingImport {
    /// The import's module name, e.g. `env`.
    pub module: String,
    /// The imported item's name.
    pub name: String,
    /// `function`, `memory`, `table`, `global` or `tag`.
    pub kind: &'static str,
}

fn missing_message(missing: &[MissingImport]) -> String {
    let list: Vec<String> = missing
        .iter()
        .map(|m| format!("`{}::{}` ({})", m.module, m.name, m.kind))
        .collect();
    let (noun, verb) = if missing.len() == 1 {
        ("import", "is")
    } else {
        ("imports", "are")
    };
    format!(
        "module needs {noun} that weft does not provide: {} {verb} not defined",
        list.join(", ")
    )
}

/// Where a loaded module's machine code came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Compiled now; took this long.
    Compiled(Duration),
    /// Read from the artifact cache; took this long.
    Cached(Duration),
}

/// A compiled, pre-linked module, ready to instantiate many times. Cheap
/// to clone: the compiled code is shared.
#[derive(Clone)]
pub struct LoadedModule {
    pub(crate) digest: String,
    pub(crate) size: usize,
    pub(crate) module: Module,
    pub(crate) pre: InstancePre<State>,
    pub(crate) start: Option<ModuleExport>,
    pub(crate) origin: Origin,
}

impl std::fmt::Debug for LoadedModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModule")
            .field("digest", &self.digest)
            .field("size", &self.size)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl LoadedModule {
    /// `sha256:<hex>` of the module's bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The module's size in bytes, as uploaded.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether this load compiled or hit the cache, and how long it took.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// The wasmtime module.
    pub fn module(&self) -> &Module {
        &self.module
    }

    /// Imports as `module::name`.
    pub fn imports(&self) -> Vec<String> {
        self.module
            .imports()
            .map(|i| format!("{}::{}", i.module(), i.name()))
            .collect()
    }

    /// Export names.
    pub fn exports(&self) -> Vec<String> {
        self.module.exports().map(|e| e.name().to_owned()).collect()
    }
}

const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// Whether `bytes` look like wasm text (`(module ...)`), after whitespace and
/// comments.
fn looks_like_wat(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(&bytes[..bytes.len().min(4096)]) else {
        return false;
    };
    let mut rest = text.trim_start();
    while let Some(line_comment) = rest.strip_prefix(";;") {
        rest = line_comment
            .split_once('\n')
            .map_or("", |(_, after)| after)
            .trim_start();
    }
    rest.starts_with('(')
}

fn describe_prefix(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "an empty file".to_owned();
    }
    let head = &bytes[..bytes.len().min(4)];
    let escaped: String = head
        .iter()
        .flat_map(|b| b.escape_ascii())
        .map(char::from)
        .collect();
    format!("`{escaped}`")
}

fn kind(ty: &ExternType) -> &'static str {
    match ty {
        ExternType::Func(_) => "function",
        ExternType::Memory(_) => "memory",
        ExternType::Table(_) => "table",
        ExternType::Global(_) => "global",
        ExternType::Tag(_) => "tag",
    }
}

impl Runtime {
    /// Checks, compiles (or loads from the cache) and pre-links a module.
    ///
    /// Accepts binary wasm and wasm text. Never panics on untrusted bytes:
    /// every problem is a [`LoadError`]. On success the compiled artifact is
    /// in the cache (if the runtime has one), so the next load of the same
    /// bytes skips compilation.
    pub fn load(&self, bytes: &[u8]) -> Result<LoadedModule, LoadError> {
        let limit = self.config().max_module_size;
        if bytes.len() > limit {
            return Err(LoadError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        if !bytes.starts_with(WASM_MAGIC) && !looks_like_wat(bytes) {
            return Err(LoadError::NotWasm {
                found: describe_prefix(bytes),
            });
        }

        let digest = digest(bytes);
        let started = Instant::now();
        let cached = self
            .cache()
            .and_then(|cache| cache.load(self.engine(), &digest, self.fingerprint()));
        let (module, origin) = match cached {
            Some(module) => (module, Origin::Cached(started.elapsed())),
            None => {
                let module = Module::new(self.engine(), bytes)
                    .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
                (module, Origin::Compiled(started.elapsed()))
            }
        };

        let missing: Vec<MissingImport> = module
            .imports()
            .filter(|import| !self.provides(import.module(), import.name()))
            .map(|import| MissingImport {
                module: import.module().to_owned(),
                name: import.name().to_owned(),
                kind: kind(&import.ty()),
            })
            .collect();
        if !missing.is_empty() {
            return Err(LoadError::MissingImports(missing));
        }
        let pre = self
            .linker()
            .instantiate_pre(&module)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;

        if let (Origin::Compiled(_), Some(cache)) = (origin, self.cache())
            && let Err(error) = cache.store(&digest, self.fingerprint(), &module)
        {
            // The module still works; the next start just compiles again.
            tracing::warn!(%digest, "could not cache the compiled module: {error:#}");
        }

        Ok(LoadedModule {
            start: module.get_export_index("_start"),
            digest,
            size: bytes.len(),
            module,
            pre,
            origin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_wat_after_comments() {
        assert!(looks_like_wat(b"  ;; a comment\n(module)"));
        assert!(looks_like_wat(b"(module (func))"));
        assert!(!looks_like_wat(b"hello world"));
        assert!(!looks_like_wat(&[0xff, 0xfe, 0x00]));
    }

    #[test]
    fn describes_what_was_found() {
        assert_eq!(describe_prefix(b""), "an empty file");
        assert_eq!(describe_prefix(b"hello"), "`hell`");
        assert_eq!(describe_prefix(&[0x7f, b'E', b'L', b'F']), "`\\x7fELF`");
    }
}
