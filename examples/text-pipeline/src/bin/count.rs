//! `count`: step 2 of the text pipeline (tokenize → count → top-k).
//! Counts the lines of its input and outputs `word<TAB>count` lines,
//! sorted by word.

use std::collections::BTreeMap;

fn main() {
    let input = weft_guest::chain::input();
    let input = String::from_utf8_lossy(&input);
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for word in input.lines().filter(|l| !l.is_empty()) {
        *counts.entry(word).or_default() += 1;
    }
    let mut out = String::new();
    for (word, count) in counts {
        out.push_str(&format!("{word}\t{count}\n"));
    }
    weft_guest::chain::output(out.into_bytes());
}
