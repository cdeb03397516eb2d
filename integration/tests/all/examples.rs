//! Every example guest has a test that runs it: this test fails when an
//! example is added without one.

use weft_integration::examples;

#[test]
fn every_example_is_used_by_a_test() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/all");
    let sources: String = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.file_name().is_some_and(|n| n != "examples.rs"))
        .map(|path| std::fs::read_to_string(path).unwrap())
        .collect();
    let untested: Vec<&str> = examples::ALL
        .iter()
        .map(|(constant, _)| *constant)
        .filter(|constant| !sources.contains(&format!("examples::{constant}")))
        .collect();
    assert!(untested.is_empty(), "examples without a test: {untested:?}");
    assert!(examples::ALL.len() >= 8, "{:?}", examples::ALL);
}
