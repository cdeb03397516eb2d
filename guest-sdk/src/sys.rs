//! Raw imports from the host, one block per `weft:*` namespace; mirrors
//! `host/src/abi/`. Everything here is `unsafe` to call: the safe wrappers are
//! in the sibling modules.

#![allow(unsafe_code)] // FFI declarations of host imports; wrapped safely in `log`.

#[cfg(target_family = "wasm")]
pub mod log {
    #[link(wasm_import_module = "weft:log")]
    unsafe extern "C" {
        /// See `weft_abi::log::WRITE`.
        pub fn write(level: i32, ptr: *const u8, len: usize) -> i32;
    }
}

/// Native stand-in so the SDK builds and runs off-wasm: log lines go to
/// stderr.
#[cfg(not(target_family = "wasm"))]
pub mod log {
    /// # Safety
    /// `ptr..ptr+len` must be a valid byte slice.
    pub unsafe fn write(level: i32, ptr: *const u8, len: usize) -> i32 {
        // SAFETY: the caller passes a live slice's pointer and length.
        let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
        let level = weft_abi::log::Level::from_i32(level)
            .map(|l| l.as_str())
            .unwrap_or("?");
        eprintln!("[{level}] {}", String::from_utf8_lossy(bytes));
        weft_abi::errno::OK
    }
}
