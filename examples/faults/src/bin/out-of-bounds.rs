//! `out-of-bounds`: reads linear memory past its end. Shows the
//! "out-of-bounds memory access" reason.

fn main() {
    let pages = core::arch::wasm32::memory_size(0);
    let past_end = pages * 65536 + 16;
    // SAFETY: not safe at all, on purpose: the read is outside linear memory
    // and traps; that is what this guest is for.
    #[allow(unsafe_code)]
    let value = unsafe { core::ptr::read_volatile(past_end as *const u64) };
    println!("{value}");
}
