//! Raw imports from the host, one block per `weft:*` namespace; mirrors
//! `host/src/abi/`. Everything here is `unsafe` to call: the safe wrappers are
//! in the sibling modules.

#![allow(unsafe_code)] // FFI declarations of host imports; wrapped safely in `log` and `net`.

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

#[cfg(target_family = "wasm")]
pub mod net {
    #[link(wasm_import_module = "weft:net")]
    unsafe extern "C" {
        pub fn tcp_listen(ip: i32, port: i32, out: *mut i32) -> i32;
        pub fn tcp_accept(
            listener: i32,
            timeout_ms: i64,
            out: *mut i32,
            addr: *mut [u32; 2],
        ) -> i32;
        pub fn tcp_connect(ip: i32, port: i32, timeout_ms: i64, out: *mut i32) -> i32;
        pub fn send(handle: i32, ptr: *const u8, len: usize, timeout_ms: i64, out: *mut u32)
        -> i32;
        pub fn recv(handle: i32, ptr: *mut u8, len: usize, timeout_ms: i64, out: *mut u32) -> i32;
        pub fn shutdown(handle: i32) -> i32;
        pub fn udp_bind(ip: i32, port: i32, out: *mut i32) -> i32;
        pub fn udp_send_to(
            handle: i32,
            ip: i32,
            port: i32,
            ptr: *const u8,
            len: usize,
            timeout_ms: i64,
        ) -> i32;
        pub fn udp_recv_from(
            handle: i32,
            ptr: *mut u8,
            len: usize,
            timeout_ms: i64,
            out: *mut u32,
            addr: *mut [u32; 2],
        ) -> i32;
        pub fn local_addr(handle: i32, out: *mut [u32; 2]) -> i32;
        pub fn peer_addr(handle: i32, out: *mut [u32; 2]) -> i32;
        pub fn close(handle: i32) -> i32;
        pub fn interfaces(out: *mut u32, max: usize, count: *mut u32) -> i32;
    }
}

/// Native stand-in: there is no weft network off-wasm.
#[cfg(not(target_family = "wasm"))]
#[allow(clippy::missing_safety_doc, clippy::too_many_arguments)]
pub mod net {
    use weft_abi::errno::NO_NETWORK;
    pub unsafe fn tcp_listen(_: i32, _: i32, _: *mut i32) -> i32 {
        NO_NETWORK
    }
    pub unsafe fn tcp_accept(_: i32, _: i64, _: *mut i32, _: *mut [u32; 2]) -> i32 {
        NO_NETWORK
    }
    pub unsafe fn tcp_connect(_: i32, _: i32, _: i64, _: *mut i32) -> i32 {
        NO_NETWORK
    }
    pub unsafe fn send(_: i32, _: *const u8, _: usize, _: i64, _: *mut u32) -> i32 {
        NO_NETWORK
    }
    pub unsafe fn recv(_: i32, _: *mut u8, _: usize, _: i64, _: *mut u32) -> i32 {
        NO_NETWORK
    }
    pub unsafe fn shutdown(_: i32) -> i32 {
        NO_NETWORK
    }
    pub unsafe fn udp_bind(_: i32, _: i32, _: *mut i32) -> i32 {
        NO_NETWORK
    }
    pub unsafe fn udp_send_to(_: i32, _: i32, _: i32, _: *const u8, _: usize, _: i64) -> i32 {
        NO_NETWORK
    }
    pub unsafe fn udp_recv_from(
        _: i32,
        _: *mut u8,
        _: usize,
        _: i64,
        _: *mut u32,
        _: *mut [u32; 2],
    ) -> i32 {
        NO_NETWORK
    }
    pub unsafe fn local_addr(_: i32, _: *mut [u32; 2]) -> i32 {
        NO_NETWORK
    }
    pub unsafe fn peer_addr(_: i32, _: *mut [u32; 2]) -> i32 {
        NO_NETWORK
    }
    pub unsafe fn close(_: i32) -> i32 {
        0
    }
    pub unsafe fn interfaces(_: *mut u32, _: usize, count: *mut u32) -> i32 {
        // SAFETY: the caller passes a valid pointer to a u32.
        unsafe { *count = 0 };
        0
    }
}
