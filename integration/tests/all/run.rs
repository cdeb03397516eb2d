//! `weft run`: stdin, stdout, args, env, exit codes and preopened
//! directories.

use weft_integration::{Weft, examples};

#[test]
fn hello_greets_its_input() {
    let weft = Weft::new();
    let run = weft.run(["run", examples::HELLO], b"world\n");
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_eq!(run.stdout_text(), "hello, world!\n");
}

#[test]
fn the_guest_exit_code_passes_through() {
    let weft = Weft::new();
    for code in [0, 3, 42] {
        let run = weft.run(["run", examples::HELLO, &code.to_string()], b"");
        assert_eq!(run.code, Some(code), "stderr: {}", run.stderr);
        assert_eq!(run.stdout_text(), "hello, stranger!\n");
    }
}

#[test]
fn a_directory_is_visible_only_when_given() {
    let weft = Weft::new();
    let (dir, _) = weft_integration::temp_file("notes.txt", b"from the host\n");
    let spec = format!("{}::/data", dir.path().display());

    let with = weft.run(
        ["run", "--dir", &spec, examples::FS_CAT, "/data/notes.txt"],
        b"",
    );
    assert_eq!(with.code, Some(0), "stderr: {}", with.stderr);
    assert_eq!(with.stdout_text(), "from the host\n");

    let without = weft.run(["run", examples::FS_CAT, "/data/notes.txt"], b"");
    assert_eq!(without.code, Some(1));
    assert!(without.stdout.is_empty());
    assert!(
        without.stderr.contains("/data/notes.txt"),
        "{}",
        without.stderr
    );
}

#[test]
fn env_and_args_reach_the_guest() {
    // A wasm-text guest that exits with argc * 10 + envc.
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "args_sizes_get" (func $args (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "environ_sizes_get" (func $envs (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (drop (call $args (i32.const 0) (i32.const 4)))
        (drop (call $envs (i32.const 8) (i32.const 12)))
        (call $exit (i32.add (i32.mul (i32.load (i32.const 0)) (i32.const 10)) (i32.load (i32.const 8))))))"#;
    let (_dir, path) = weft_integration::temp_file("counts.wat", wat.as_bytes());
    let weft = Weft::new();
    let path = path.to_str().unwrap();
    let run = weft.run(
        [
            "run", "--env", "A=1", "--env", "B=2", path, "x", "y", "--flag",
        ],
        b"",
    );
    assert_eq!(run.code, Some(4 * 10 + 2), "stderr: {}", run.stderr);
}

#[test]
fn bad_flags_are_refused_with_a_clear_message() {
    let weft = Weft::new();
    let run = weft.run(["run", "--timeout", "soon", examples::HELLO], b"");
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("invalid duration `soon`"),
        "{}",
        run.stderr
    );

    let run = weft.run(["run", "--memory", "8GiB", examples::HELLO], b"");
    assert_eq!(run.code, Some(125));
    assert!(run.stderr.contains("at most 4GiB"), "{}", run.stderr);

    let run = weft.run(["run", "/nonexistent/x.wasm"], b"");
    assert_eq!(run.code, Some(125));
    assert!(
        run.stderr.contains("cannot read /nonexistent/x.wasm"),
        "{}",
        run.stderr
    );
}
