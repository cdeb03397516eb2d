//! Every example guest has a test that runs it: this test fails when an
//! example is added without one.

use weft_integration::examples;

#[test]
fn every_example_is_used_by_a_test() {
    let sources: String = [
        "run.rs",
        "limits.rs",
        "modules.rs",
        "durability.rs",
        "serve.rs",
        "dev.rs",
        "dashboard.rs",
    ]
    .iter()
    .map(|file| {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/all")
                .join(file),
        )
        .unwrap()
    })
    .collect();
    let untested: Vec<&str> = examples::ALL
        .iter()
        .map(|(constant, _)| *constant)
        .filter(|constant| !sources.contains(&format!("examples::{constant}")))
        .collect();
    assert!(untested.is_empty(), "examples without a test: {untested:?}");
    assert!(examples::ALL.len() >= 7, "{:?}", examples::ALL);
}
