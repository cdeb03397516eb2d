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
        pub fn send_raw(ptr: *const u8, len: usize) -> i32;
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
    pub unsafe fn send_raw(_: *const u8, _: usize) -> i32 {
        NO_NETWORK
    }
}

#[cfg(target_family = "wasm")]
pub mod mesh {
    #[link(wasm_import_module = "weft:mesh")]
    unsafe extern "C" {
        pub fn rank(out: *mut u32) -> i32;
        pub fn size(out: *mut u32) -> i32;
        pub fn send(dst: i32, tag: i32, ptr: *const u8, len: usize, timeout_ms: i64) -> i32;
        pub fn recv(
            src: i32,
            tag: i32,
            ptr: *mut u8,
            cap: usize,
            timeout_ms: i64,
            out: *mut [u32; 3],
        ) -> i32;
        pub fn send_now(dst: i32, tag: i32, ptr: *const u8, len: usize) -> i32;
        pub fn recv_now(
            src: i32,
            tag: i32,
            ptr: *mut u8,
            cap: usize,
            out: *mut [u32; 3],
            spin: i32,
        ) -> i32;
        pub fn barrier() -> i32;
        pub fn broadcast(root: i32, ptr: *mut u8, len: usize) -> i32;
        pub fn reduce(root: i32, op: i32, ty: i32, ptr: *mut u8, count: usize) -> i32;
        pub fn gather(root: i32, ptr: *const u8, len: usize, out: *mut u8, out_len: usize) -> i32;
        pub fn scatter(root: i32, ptr: *const u8, len: usize, out: *mut u8, out_len: usize) -> i32;
        pub fn addr(rank: i32, out: *mut u32) -> i32;
        pub fn members(ptr: *mut u32, cap: usize, out: *mut [u64; 2]) -> i32;
    }
}

/// Native stand-in: off-wasm there is no mesh.
#[cfg(not(target_family = "wasm"))]
#[allow(clippy::missing_safety_doc)]
pub mod mesh {
    use weft_abi::errno::NOT_IN_MESH;
    pub unsafe fn rank(_: *mut u32) -> i32 {
        NOT_IN_MESH
    }
    pub unsafe fn size(_: *mut u32) -> i32 {
        NOT_IN_MESH
    }
    pub unsafe fn send(_: i32, _: i32, _: *const u8, _: usize, _: i64) -> i32 {
        NOT_IN_MESH
    }
    pub unsafe fn recv(_: i32, _: i32, _: *mut u8, _: usize, _: i64, _: *mut [u32; 3]) -> i32 {
        NOT_IN_MESH
    }
    pub unsafe fn send_now(_: i32, _: i32, _: *const u8, _: usize) -> i32 {
        NOT_IN_MESH
    }
    pub unsafe fn recv_now(_: i32, _: i32, _: *mut u8, _: usize, _: *mut [u32; 3], _: i32) -> i32 {
        NOT_IN_MESH
    }
    pub unsafe fn barrier() -> i32 {
        NOT_IN_MESH
    }
    pub unsafe fn broadcast(_: i32, _: *mut u8, _: usize) -> i32 {
        NOT_IN_MESH
    }
    pub unsafe fn reduce(_: i32, _: i32, _: i32, _: *mut u8, _: usize) -> i32 {
        NOT_IN_MESH
    }
    pub unsafe fn gather(_: i32, _: *const u8, _: usize, _: *mut u8, _: usize) -> i32 {
        NOT_IN_MESH
    }
    pub unsafe fn scatter(_: i32, _: *const u8, _: usize, _: *mut u8, _: usize) -> i32 {
        NOT_IN_MESH
    }
    pub unsafe fn addr(_: i32, _: *mut u32) -> i32 {
        NOT_IN_MESH
    }
    pub unsafe fn members(_: *mut u32, _: usize, _: *mut [u64; 2]) -> i32 {
        NOT_IN_MESH
    }
}

#[cfg(target_family = "wasm")]
pub mod chain {
    #[link(wasm_import_module = "weft:chain")]
    unsafe extern "C" {
        pub fn input_len(out: *mut u32) -> i32;
        pub fn input(ptr: *mut u8, len: usize, out: *mut u32) -> i32;
        pub fn input_in_place(out_ptr: *mut u32, out_len: *mut u32) -> i32;
        pub fn output(ptr: *const u8, len: usize) -> i32;
        pub fn call(
            name: *const u8,
            name_len: usize,
            input: *const u8,
            input_len: usize,
            out_len: *mut u32,
        ) -> i32;
        pub fn result(ptr: *mut u8, len: usize) -> i32;
        pub fn depth(out: *mut u32) -> i32;
    }
}

/// Native stand-in: the input comes from stdin, the output goes to stdout,
/// and there is no module to call.
#[cfg(not(target_family = "wasm"))]
#[allow(clippy::missing_safety_doc)]
pub mod chain {
    use weft_abi::errno::UNAVAILABLE;
    pub unsafe fn input_len(_: *mut u32) -> i32 {
        UNAVAILABLE
    }
    pub unsafe fn input(_: *mut u8, _: usize, _: *mut u32) -> i32 {
        UNAVAILABLE
    }
    pub unsafe fn input_in_place(_: *mut u32, _: *mut u32) -> i32 {
        UNAVAILABLE
    }
    pub unsafe fn output(ptr: *const u8, len: usize) -> i32 {
        // SAFETY: the caller passes a live slice's pointer and length.
        crate::output(unsafe { std::slice::from_raw_parts(ptr, len) });
        0
    }
    pub unsafe fn call(_: *const u8, _: usize, _: *const u8, _: usize, _: *mut u32) -> i32 {
        UNAVAILABLE
    }
    pub unsafe fn result(_: *mut u8, _: usize) -> i32 {
        weft_abi::errno::INVALID_ARGUMENT
    }
    pub unsafe fn depth(out: *mut u32) -> i32 {
        // SAFETY: the caller passes a valid pointer to a u32.
        unsafe { *out = 0 };
        0
    }
}
