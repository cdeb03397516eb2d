//! `identity`: outputs its input unchanged. The input is copied once, from
//! wherever the host holds it (in a chain: the previous step's memory) into
//! this instance's memory; the output is handed back without a copy. A
//! chain of identity steps measures what a hop costs.
//!
//! Run it: `echo hi | weft run identity.wasm`, or as chain steps:
//! `weft chain create same identity identity identity`.

fn main() {
    let data = weft_guest::chain::input();
    weft_guest::chain::output(data);
}
