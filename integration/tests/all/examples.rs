//! Every example guest has a test that runs it: this test fails when an
//! example is added without one.

use weft_integration::examples;

#[test]
fn every_example_is_used_by_a_test() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/all");
    let mut sources = String::new();
    read_sources(&dir, &mut sources);
    let untested: Vec<&str> = examples::ALL
        .iter()
        .map(|(constant, _)| *constant)
        .filter(|constant| !sources.contains(&format!("examples::{constant}")))
        .collect();
    assert!(untested.is_empty(), "examples without a test: {untested:?}");
    assert!(examples::ALL.len() >= 8, "{:?}", examples::ALL);
}

/// Appends every test source under `dir` (modules split into directories
/// too), except this file.
fn read_sources(dir: &std::path::Path, into: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            read_sources(&path, into);
        } else if path.file_name().is_some_and(|n| n != "examples.rs") {
            into.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
}
