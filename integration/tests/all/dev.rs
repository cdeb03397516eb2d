//! `weft dev`: a source edit is rebuilt and served within seconds, with no
//! restart; a broken edit keeps the last good version serving.

use std::path::Path;
use std::time::{Duration, Instant};
use weft_integration::http::Request;
use weft_integration::netkit::curl_until;
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
    let project = guest_project(root.path(), "greeter", "");
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

/// A guest Cargo project `name` under `root`, its own workspace, with
/// `more` appended to its manifest.
fn guest_project(root: &Path, name: &str, more: &str) -> std::path::PathBuf {
    let project = root.join(name);
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::write(
        project.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[workspace]\n{more}"
        ),
    )
    .unwrap();
    project
}

/// A guest project that declares itself a service serving port 80.
fn web_project(root: &Path, label: &str) -> std::path::PathBuf {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
    let project = guest_project(
        root,
        "web",
        &format!(
            "\n[dependencies]\nweft-guest = {{ path = {:?} }}\n\n\
             [package.metadata.weft.service]\nargs = [\"80\", \"{label}\"]\nports = [80]\n",
            sdk.canonicalize().unwrap()
        ),
    );
    let server = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/http-server/src/main.rs");
    std::fs::copy(server, project.join("src/main.rs")).unwrap();
    project
}

#[test]
fn a_guest_that_serves_a_port_runs_as_a_service_behind_a_loopback_url() {
    let root = tempfile::tempdir().unwrap();
    let project = web_project(root.path(), "first");
    let weft = Weft::new();
    let dev = weft.start(&[
        "dev",
        root.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let lines = dev.wait_for_line("web serves http://", Duration::from_secs(240));
    let line = lines.last().unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_owned();
    let page = curl_until(&url, "first", Duration::from_secs(10));
    assert!(page.contains("served by"), "{page}");
    // The forward is in the API (and so on the dashboard).
    let forwards = dev.get("/v1/forwards").json();
    assert_eq!(
        forwards["forwards"].as_array().unwrap().len(),
        1,
        "{forwards}"
    );

    // An edit is rebuilt and the service restarted behind the same URL.
    let main = std::fs::read_to_string(project.join("src/main.rs")).unwrap();
    assert!(main.contains("served by"));
    std::fs::write(
        project.join("src/main.rs"),
        main.replace("served by", "edited, served by"),
    )
    .unwrap();
    dev.wait_for_line("rebuilt web", Duration::from_secs(120));
    curl_until(&url, "edited, served by", Duration::from_secs(20));
    // So are new arguments.
    let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
    std::fs::write(
        project.join("Cargo.toml"),
        manifest.replace("first", "second"),
    )
    .unwrap();
    curl_until(&url, "second", Duration::from_secs(120));
}
