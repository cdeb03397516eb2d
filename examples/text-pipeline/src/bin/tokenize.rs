//! `tokenize`: step 1 of the text pipeline (tokenize → count → top-k).
//! Splits its input into words (runs of letters and digits, lower-cased)
//! and outputs them one per line.
//!
//! Run it as a chain:
//! `weft chain create words tokenize count top-k && weft chain invoke words -d @book.txt`.

fn main() {
    let text = weft_guest::chain::input();
    let text = String::from_utf8_lossy(&text);
    let mut out = String::with_capacity(text.len());
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        out.extend(word.chars().flat_map(char::to_lowercase));
        out.push('\n');
    }
    weft_guest::chain::output(out.into_bytes());
}
