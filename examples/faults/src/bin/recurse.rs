//! `recurse`: recurses without end. Shows that exhausting the wasm stack is a
//! clean "stack overflow" failure of the instance, not a crash of the host.

#[inline(never)]
#[allow(unconditional_recursion)] // endless on purpose: this guest exists to overflow.
fn descend(depth: u64, trail: &mut [u64; 16]) -> u64 {
    trail[(depth % 16) as usize] = depth;
    let below = descend(std::hint::black_box(depth + 1), trail);
    below.wrapping_add(trail[(depth % 7) as usize])
}

fn main() {
    let mut trail = [0u64; 16];
    println!("{}", descend(0, &mut trail));
}
