//! `top-k`: step 3 of the text pipeline (tokenize → count → top-k).
//! Reads `word<TAB>count` lines and outputs the K most frequent (K is the
//! first argument, default 10), most frequent first, ties by word.

fn main() {
    let k: usize = match std::env::args().nth(1) {
        None => 10,
        Some(arg) => arg.parse().unwrap_or_else(|_| {
            eprintln!("top-k: K must be a number, got {arg:?}");
            std::process::exit(2)
        }),
    };
    let input = weft_guest::chain::input();
    let input = String::from_utf8_lossy(&input);
    let mut counts: Vec<(&str, u64)> = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let parsed = line
            .split_once('\t')
            .and_then(|(word, count)| Some((word, count.parse().ok()?)));
        match parsed {
            Some(entry) => counts.push(entry),
            None => {
                eprintln!(
                    "top-k: line {}: expected `word<TAB>count`, got {line:?}",
                    n + 1
                );
                std::process::exit(1);
            }
        }
    }
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut out = String::new();
    for (word, count) in counts.into_iter().take(k) {
        out.push_str(&format!("{word}\t{count}\n"));
    }
    weft_guest::chain::output(out.into_bytes());
}
