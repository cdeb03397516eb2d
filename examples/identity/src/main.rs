//! `identity`: outputs its input unchanged. The input is copied once, from
//! wherever the host holds it (in a chain: the previous step's memory) into
//! pages of this instance's memory set aside for it (a warm chain step has
//! them before its input exists); the output is handed back from there
//! without a copy. A chain of identity steps measures what a hop costs.
//!
//! Run it: `echo hi | weft run identity.wasm`, or as chain steps:
//! `weft chain create same identity identity identity`.

fn main() {
    let data = weft_guest::chain::input_in_place();
    weft_guest::chain::output_slice(data);
}
