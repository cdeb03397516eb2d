//! `weft dev`: a source edit is rebuilt and served within seconds, with no
//! restart; a broken edit keeps the last good version serving.

use std::path::Path;
use std::time::{Duration, Instant};
use weft_integration::http::Request;
use weft_integration::{Weft, examples};

fn write_guest(dir: &Path, body: &str) {
    std::fs::write(
        dir.join("src/main.rs"),
        format!("fn main() {{\n    {body}\n}}\n"),
    )
    .unwrap();
}

#[test]
fn edits_are_rebuilt_and_served_and_broken_ones_are_not() {
    let root = tempfile::tempdir().unwrap();
    let project = root.path().join("greeter");
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::write(
        project.join("Cargo.toml"),
        "[package]\nname = \"greeter\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[workspace]\n",
    )
    .unwrap();
    write_guest(&project, r#"print!("v1");"#);
    std::fs::copy(examples::HELLO, root.path().join("hello.wasm")).unwrap();

    let weft = Weft::new();
    let dev = weft.start(&[
        "dev",
        root.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let lines = dev.wait_for_line("built greeter", Duration::from_secs(180));
    eprintln!("{lines:#?}");
    let invoke = |dev: &weft_integration::Served| {
        dev.send(Request::new("POST", "/v1/modules/greeter/invoke"))
            .text()
    };
    assert_eq!(invoke(&dev), "v1");
    // The loose .wasm beside it is served too.
    if !lines.iter().any(|l| l.contains("deployed hello")) {
        dev.wait_for_line("deployed hello", Duration::from_secs(30));
    }
    let hello = dev.send(Request::new("POST", "/v1/modules/hello/invoke").body(b"dev"));
    assert_eq!(hello.text(), "hello, dev!\n");

    let edited = Instant::now();
    write_guest(&project, r#"print!("v2");"#);
    let line = dev.wait_for_line("rebuilt greeter", Duration::from_secs(60));
    assert_eq!(invoke(&dev), "v2");
    eprintln!(
        "edit to new behaviour served: {:?} ({line:?})",
        edited.elapsed()
    );

    write_guest(&project, r#"let broken: u32 = "not a number";"#);
    let failure = dev.wait_for_line("failed", Duration::from_secs(60));
    let mut report = failure.join("\n");
    // The compiler's message follows the failure line.
    while let Ok(line) = dev.stdout.recv_timeout(Duration::from_millis(500)) {
        report.push('\n');
        report.push_str(&line);
    }
    assert!(report.contains("mismatched types"), "{report}");
    assert!(
        report.contains("the last good version keeps serving"),
        "{report}"
    );
    assert_eq!(invoke(&dev), "v2");

    write_guest(&project, r#"print!("v3");"#);
    dev.wait_for_line("rebuilt greeter", Duration::from_secs(60));
    assert_eq!(invoke(&dev), "v3");
}
