//! Runtime tests on small wasm-text guests: the ABI contracts, limits and
//! failure reasons, without the example build.

use super::*;
use crate::runtime::failure::Failure;
use std::time::Duration;
use weft_abi::log::Level;

fn runtime(metering: bool) -> Runtime {
    Runtime::new(RuntimeConfig {
        max_instances: 8,
        metering,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

fn invoke(runtime: &Runtime, wat: &str, invocation: Invocation) -> Result<Outcome, Box<Failed>> {
    let module = runtime.load(wat.as_bytes()).unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(runtime.invoke(&module, invocation))
}

/// A guest that logs `message` at `level` and exits with what `write`
/// returned.
fn logger(level: i32, ptr: u32, len: u32) -> String {
    format!(
        r#"(module
          (import "weft:log" "write" (func $write (param i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (data (i32.const 16) "from the guest")
          (func (export "_start")
            (call $exit (call $write (i32.const {level}) (i32.const {ptr}) (i32.const {len})))))"#
    )
}

#[test]
fn log_lines_are_kept_with_their_level() {
    let outcome = invoke(
        &runtime(false),
        &logger(3, 16, 14),
        Invocation::new("t", ""),
    )
    .unwrap();
    assert_eq!(outcome.exit_code, weft_abi::errno::OK);
    assert_eq!(outcome.logs.len(), 1);
    assert_eq!(outcome.logs[0].level, Level::Info);
    assert_eq!(outcome.logs[0].message, "from the guest");
}

#[test]
fn an_unknown_log_level_is_an_error_code_not_a_trap() {
    let outcome = invoke(
        &runtime(false),
        &logger(9, 16, 14),
        Invocation::new("t", ""),
    )
    .unwrap();
    assert_eq!(outcome.exit_code, weft_abi::errno::INVALID_ARGUMENT);
    assert!(outcome.logs.is_empty());
}

#[test]
fn a_log_pointer_outside_memory_traps() {
    let failed = invoke(
        &runtime(false),
        &logger(3, 65530, 100),
        Invocation::new("t", ""),
    )
    .unwrap_err();
    assert_eq!(failed.failure.code(), "host_error");
    assert!(
        failed.failure.to_string().contains("outside guest memory"),
        "{}",
        failed.failure
    );
}

const ECHO: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  ;; iovec at 0: buf 1024, len 60000; nread at 8; ciovec at 16
  (func (export "_start")
    (local $n i32)
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 60000))
    (loop $more
      (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
      (local.set $n (i32.load (i32.const 8)))
      (if (i32.gt_u (local.get $n) (i32.const 0))
        (then
          (i32.store (i32.const 16) (i32.const 1024))
          (i32.store (i32.const 20) (local.get $n))
          (if (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24))
            (then unreachable))
          (br $more))))))"#;

#[test]
fn input_comes_back_as_output() {
    let input = vec![7u8; 200_000];
    let outcome = invoke(
        &runtime(false),
        ECHO,
        Invocation::new("echo", input.clone()),
    )
    .unwrap();
    assert_eq!(outcome.output, input);
}

#[test]
fn output_past_the_limit_is_a_reported_failure() {
    let mut invocation = Invocation::new("echo", vec![1u8; 10_000]);
    invocation.limits.output = 4096;
    let failed = invoke(&runtime(false), ECHO, invocation).unwrap_err();
    assert_eq!(failed.failure, Failure::OutputLimit { limit: 4096 });
}

#[test]
fn a_table_grown_past_its_limit_is_reported() {
    let wat = r#"(module
      (table $t 1 funcref)
      (func (export "_start")
        (if (i32.eq (table.grow $t (ref.null func) (i32.const 5000)) (i32.const -1))
          (then unreachable))))"#;
    let mut invocation = Invocation::new("t", "");
    invocation.limits.table_elements = 1000;
    let failed = invoke(&runtime(false), wat, invocation).unwrap_err();
    assert_eq!(
        failed.failure,
        Failure::TableLimit {
            limit: 1000,
            requested: 5001
        }
    );
}

#[test]
fn a_guest_that_copes_with_refused_memory_keeps_running() {
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (call $exit (i32.eq (memory.grow (i32.const 100)) (i32.const -1)))))"#;
    let mut invocation = Invocation::new("t", "");
    invocation.limits.memory = 2 * limits::WASM_PAGE;
    let outcome = invoke(&runtime(false), wat, invocation).unwrap();
    assert_eq!(outcome.exit_code, 1, "memory.grow returned -1");
}

#[test]
fn fuel_is_counted_and_runs_out() {
    let wat = r#"(module (func (export "_start") (loop $l (br $l))))"#;
    let mut invocation = Invocation::new("t", "");
    invocation.limits.fuel = Some(10_000);
    let failed = invoke(&runtime(true), wat, invocation).unwrap_err();
    assert_eq!(failed.failure, Failure::OutOfFuel { fuel: 10_000 });

    let mut invocation = Invocation::new("t", "");
    invocation.limits.fuel = Some(10_000);
    let outcome = invoke(
        &runtime(true),
        "(module (func (export \"_start\")))",
        invocation,
    )
    .unwrap();
    assert!(outcome.fuel_used.is_some_and(|used| used < 100));
}

#[test]
fn fuel_on_an_unmetered_runtime_is_refused() {
    let mut invocation = Invocation::new("t", "");
    invocation.limits.fuel = Some(10);
    let failed = invoke(
        &runtime(false),
        "(module (func (export \"_start\")))",
        invocation,
    )
    .unwrap_err();
    assert!(failed.failure.to_string().contains("metering"));
}

#[test]
fn a_module_without_start_is_named_as_such() {
    let failed = invoke(
        &runtime(false),
        "(module (func (export \"main\")))",
        Invocation::new("lib", ""),
    )
    .unwrap_err();
    assert_eq!(failed.failure, Failure::NoEntryPoint);
}

#[test]
fn a_deadline_stops_a_loop() {
    let mut invocation = Invocation::new("t", "");
    invocation.limits.timeout = Some(Duration::from_millis(100));
    let failed = invoke(
        &runtime(false),
        r#"(module (func (export "_start") (loop $l (br $l))))"#,
        invocation,
    )
    .unwrap_err();
    assert_eq!(failed.failure.code(), "deadline_exceeded");
    assert!(failed.duration >= Duration::from_millis(100));
    assert!(
        failed.duration < Duration::from_secs(2),
        "{:?}",
        failed.duration
    );
}

#[test]
fn a_signature_mismatch_is_a_link_error() {
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "proc_exit" (func (param i64)))
      (func (export "_start")))"#;
    let error = runtime(false).load(wat.as_bytes()).unwrap_err();
    assert!(matches!(error, LoadError::Link(_)), "{error}");
}

#[test]
fn instance_ids_are_distinct() {
    let ids: std::collections::HashSet<_> = (0..10_000).map(|_| InstanceId::new()).collect();
    assert_eq!(ids.len(), 10_000);
}
