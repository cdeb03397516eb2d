//! Chain tests on a wasm-text identity guest: where a step's output lives
//! (in its own instance's slot, until the last handle goes), that a hop
//! frees the producer's slot, and the executor's reports and failures.

use super::exec;
use super::plan::{Plan, Step};
use super::warm::WarmPools;
use crate::runtime::registry::Entry;
use crate::runtime::{Invocation, Limits, Runtime, RuntimeConfig};
use crate::store::ModuleRecord;
use bytes::Bytes;
use std::sync::Arc;

/// Reads its whole input through `weft:chain` into fresh memory and
/// declares that memory its output: one copy in, none out.
const IDENTITY: &str = r#"(module
  (import "weft:chain" "input_len" (func $input_len (param i32) (result i32)))
  (import "weft:chain" "input" (func $input (param i32 i32 i32) (result i32)))
  (import "weft:chain" "output" (func $output (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $len i32)
    (drop (call $input_len (i32.const 0)))
    (local.set $len (i32.load (i32.const 0)))
    (drop (memory.grow (i32.shr_u (i32.add (local.get $len) (i32.const 65551)) (i32.const 16))))
    (drop (call $input (i32.const 16) (local.get $len) (i32.const 4)))
    (drop (call $output (i32.const 16) (i32.load (i32.const 4))))))"#;

/// Traps at once.
const CRASH: &str = r#"(module (memory (export "memory") 1) (func (export "_start") unreachable))"#;

fn runtime(max_instances: u32) -> Runtime {
    Runtime::new(RuntimeConfig {
        max_instances,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// Runs `plan` on `input` to the end, without a way to stop it.
fn run_chain(
    runtime: &Runtime,
    pools: &WarmPools,
    plan: &Plan,
    input: Bytes,
    move_pages: bool,
) -> Result<super::Ran, Box<super::StepFailed>> {
    block_on(exec::run(runtime, pools, plan, input, None, move_pages))
}

fn step(runtime: &Runtime, name: &str, wat: &str) -> Step {
    let loaded = runtime.load(wat.as_bytes()).unwrap();
    let record = ModuleRecord {
        name: name.into(),
        digest: loaded.digest().into(),
        size: wat.len() as u64,
        created_ms: 0,
        imports: loaded.imports(),
        exports: loaded.exports(),
    };
    Step {
        module: name.into(),
        entry: Arc::new(Entry { record, loaded }),
        args: Vec::new(),
        env: Vec::new(),
        limits: Limits::default(),
    }
}

#[test]
fn an_output_region_is_the_instances_own_memory_until_its_last_handle_goes() {
    let runtime = runtime(2);
    let module = runtime.load(IDENTITY.as_bytes()).unwrap();
    let run = |input: &'static [u8]| {
        block_on(runtime.invoke(&module, Invocation::new("identity", input)))
    };
    let first = run(b"one").unwrap().output;
    let second = run(b"two").unwrap().output;
    assert_eq!((&first[..], &second[..]), (&b"one"[..], &b"two"[..]));
    // Both slots are held by the two outputs: no third instance fits.
    let refused = run(b"three").unwrap_err();
    assert!(
        refused.failure.to_string().contains("instance"),
        "{}",
        refused.failure
    );
    // Dropping an output frees its slot; a clone keeps it.
    let kept = second.clone();
    drop(second);
    drop(first);
    assert_eq!(&run(b"four").unwrap().output[..], b"four");
    assert_eq!(&kept[..], b"two");
}

#[test]
fn a_hop_frees_the_producers_slot_once_the_consumer_has_read_its_input() {
    // Two slots: the running step and the next one's. A chain longer than
    // that only fits if every producer lets go as soon as it is read.
    let runtime = runtime(2);
    let identity = step(&runtime, "identity", IDENTITY);
    let plan = Plan {
        name: "same".into(),
        steps: vec![identity; 6],
        timeout: None,
    };
    let pools = WarmPools::new(0, 0);
    let input = Bytes::from((0..(1 << 20)).map(|i| (i % 253) as u8).collect::<Vec<u8>>());
    let ran = run_chain(&runtime, &pools, &plan, input.clone(), true).unwrap();
    assert_eq!(ran.output, input);
    assert_eq!(ran.steps.len(), 6);
    for (index, report) in ran.steps.iter().enumerate() {
        assert_eq!(report.index, index);
        assert_eq!(report.input_bytes, 1 << 20);
        assert_eq!(report.output_bytes, 1 << 20);
        assert!(!report.warm);
    }
    let instances: std::collections::HashSet<&str> =
        ran.steps.iter().map(|s| s.instance.as_str()).collect();
    assert_eq!(instances.len(), 6);
}

#[test]
fn a_failing_step_stops_the_chain_and_its_prepared_successor_is_kept_warm() {
    let runtime = runtime(8);
    let identity = step(&runtime, "identity", IDENTITY);
    let crash = step(&runtime, "crash", CRASH);
    let plan = Plan {
        name: String::new(),
        steps: vec![identity.clone(), crash, identity.clone()],
        timeout: None,
    };
    let pools = WarmPools::new(2, 8);
    let failed = run_chain(&runtime, &pools, &plan, Bytes::from("x"), true).unwrap_err();
    assert_eq!((failed.index, failed.module.as_str()), (1, "crash"));
    assert_eq!(failed.code, "unreachable");
    assert_eq!(failed.steps.len(), 2);
    assert_eq!(failed.steps[1].status, "unreachable");
    // Step 2 was prepared while step 1 ran; unused, it went to the pool.
    assert_eq!(pools.len(), 1);
    let (_, warm) = block_on(pools.prepare(&runtime, &identity)).unwrap();
    assert!(warm);
    assert!(pools.is_empty());
}

fn run_wat(wat: &str, input: &'static [u8], limits: Limits) -> crate::runtime::Outcome {
    let runtime = runtime(4);
    let module = runtime.load(wat.as_bytes()).unwrap();
    let mut invocation = Invocation::new("guest", input);
    invocation.limits = limits;
    block_on(runtime.invoke(&module, invocation)).unwrap()
}

#[test]
fn stdout_comes_before_the_region_and_stdin_shares_the_inputs_cursor() {
    // Reads 2 bytes through stdin (fd_read), then the rest through
    // `weft:chain`; writes "<" to stdout, then declares the rest as output.
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
      (import "weft:chain" "input_len" (func $input_len (param i32) (result i32)))
      (import "weft:chain" "input" (func $input (param i32 i32 i32) (result i32)))
      (import "weft:chain" "output" (func $output (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 200) "<")
      (func (export "_start")
        ;; iovec at 100: 2 bytes at 300
        (i32.store (i32.const 100) (i32.const 300))
        (i32.store (i32.const 104) (i32.const 2))
        (drop (call $fd_read (i32.const 0) (i32.const 100) (i32.const 1) (i32.const 108)))
        ;; "<" to stdout
        (i32.store (i32.const 100) (i32.const 200))
        (i32.store (i32.const 104) (i32.const 1))
        (drop (call $fd_write (i32.const 1) (i32.const 100) (i32.const 1) (i32.const 108)))
        (drop (call $input_len (i32.const 0)))
        (drop (call $input (i32.const 400) (i32.load (i32.const 0)) (i32.const 4)))
        (drop (call $output (i32.const 400) (i32.load (i32.const 4))))))"#;
    let outcome = run_wat(wat, b"abcdef", Limits::default());
    assert_eq!(&outcome.output[..], b"<cdef");
}

#[test]
fn a_region_past_the_output_limit_is_refused_and_reported_as_the_limit() {
    // Declares 100 bytes with a 10-byte limit; traps if refused.
    let wat = r#"(module
      (import "weft:chain" "output" (func $output (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (if (call $output (i32.const 0) (i32.const 100)) (then unreachable))))"#;
    let runtime = runtime(2);
    let module = runtime.load(wat.as_bytes()).unwrap();
    let mut invocation = Invocation::new("guest", "");
    invocation.limits.output = 10;
    let failed = block_on(runtime.invoke(&module, invocation)).unwrap_err();
    assert_eq!(failed.failure.code(), "output_limit");
}

#[test]
fn calls_without_a_registry_and_results_without_a_call_are_errors_not_traps() {
    // Exits with call's errno + 32 * result's errno (exit codes stay below 126).
    let wat = r#"(module
      (import "weft:chain" "call" (func $call (param i32 i32 i32 i32 i32) (result i32)))
      (import "weft:chain" "result" (func $result (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "other")
      (func (export "_start")
        (call $exit (i32.add
          (call $call (i32.const 0) (i32.const 5) (i32.const 0) (i32.const 0) (i32.const 16))
          (i32.mul (call $result (i32.const 32) (i32.const 8)) (i32.const 32))))))"#;
    let outcome = run_wat(wat, b"", Limits::default());
    assert_eq!(
        outcome.exit_code,
        weft_abi::errno::UNAVAILABLE + 32 * weft_abi::errno::INVALID_ARGUMENT
    );
}

#[test]
fn a_pointer_outside_memory_traps() {
    let wat = r#"(module
      (import "weft:chain" "input" (func $input (param i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (drop (call $input (i32.const 65530) (i32.const 100) (i32.const 0)))))"#;
    let runtime = runtime(2);
    let module = runtime.load(wat.as_bytes()).unwrap();
    let failed = block_on(runtime.invoke(&module, Invocation::new("guest", "x"))).unwrap_err();
    assert_eq!(failed.failure.code(), "host_error", "{}", failed.failure);
    assert!(failed.failure.to_string().contains("outside guest memory"));
}

/// Grows its memory by a page of its own, then has its input placed in
/// place (`input_in_place`) and outputs where it landed (pointer and length,
/// little-endian, through stdout) followed by the input itself. Exits with
/// the errno when placing fails.
const IN_PLACE: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (import "weft:chain" "input_in_place" (func $place (param i32 i32) (result i32)))
  (import "weft:chain" "output" (func $output (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $code i32)
    (drop (memory.grow (i32.const 1)))
    (local.set $code (call $place (i32.const 0) (i32.const 4)))
    (if (local.get $code) (then (call $exit (local.get $code))))
    (i32.store (i32.const 100) (i32.const 0))
    (i32.store (i32.const 104) (i32.const 8))
    (drop (call $fd_write (i32.const 1) (i32.const 100) (i32.const 1) (i32.const 108)))
    (drop (call $output (i32.load (i32.const 0)) (i32.load (i32.const 4))))))"#;

const PAGE: u32 = 64 << 10;

/// Splits an `IN_PLACE` output into where the input landed and the rest.
fn placed(output: &[u8]) -> (u32, u32, &[u8]) {
    let word = |at: usize| u32::from_le_bytes(output[at..at + 4].try_into().unwrap());
    (word(0), word(4), &output[8..])
}

fn pattern(len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

/// Runs `IN_PLACE` on `input`, with `reserve` bytes set aside ahead.
fn run_in_place(reserve: usize, input: Bytes, limits: Limits) -> crate::runtime::Outcome {
    let runtime = runtime(2);
    let module = runtime.load(IN_PLACE.as_bytes()).unwrap();
    let mut invocation = Invocation::new("in-place", "");
    invocation.limits = limits;
    block_on(async {
        let mut prepared = runtime
            .prepare(&module, invocation, crate::runtime::InstanceId::new())
            .await
            .unwrap();
        prepared.reserve_input(reserve, true);
        prepared.set_input(input);
        prepared.run().await.unwrap()
    })
}

#[test]
fn an_input_placed_in_place_lands_in_the_room_set_aside_ahead_when_it_fits() {
    let input = pattern(100_000);
    // Nothing set aside: the pages are grown for it after the guest's own.
    let outcome = run_in_place(0, input.clone(), Limits::default());
    assert_eq!(placed(&outcome.output), (2 * PAGE, 100_000, &input[..]));
    // Set aside ahead: it lands there, before the guest's own page.
    let outcome = run_in_place(100_000, input.clone(), Limits::default());
    assert_eq!(placed(&outcome.output), (PAGE, 100_000, &input[..]));
    // Too little set aside: grown anew, past the room and the guest's page.
    let bigger = pattern(200_000);
    let outcome = run_in_place(100_000, bigger.clone(), Limits::default());
    assert_eq!(placed(&outcome.output), (4 * PAGE, 200_000, &bigger[..]));
    // Nothing to place: an empty slice.
    let outcome = run_in_place(100_000, Bytes::new(), Limits::default());
    assert_eq!(placed(&outcome.output).1, 0);
    // A room takes at most half of the memory limit (8 pages here): 3
    // pages are set aside, 5 are not (the input then grows its own).
    let limits = Limits {
        memory: 8 * u64::from(PAGE),
        ..Limits::default()
    };
    let three = pattern(3 * PAGE as usize);
    let outcome = run_in_place(three.len(), three.clone(), limits.clone());
    assert_eq!(placed(&outcome.output), (PAGE, 3 * PAGE, &three[..]));
    let five = pattern(5 * PAGE as usize);
    let outcome = run_in_place(five.len(), five.clone(), limits);
    assert_eq!(placed(&outcome.output), (2 * PAGE, 5 * PAGE, &five[..]));
}

#[test]
fn an_input_that_cannot_be_placed_within_the_memory_limit_is_refused_with_limit() {
    // 2 pages: the guest's own page fills them, so no room is set aside
    // and the input's pages are refused.
    let limits = Limits {
        memory: 2 * u64::from(PAGE),
        ..Limits::default()
    };
    let outcome = run_in_place(100_000, pattern(100_000), limits);
    assert_eq!(outcome.exit_code, weft_abi::errno::LIMIT);
}

#[test]
fn warm_steps_set_aside_room_for_the_input_their_profile_placed_last() {
    let runtime = runtime(8);
    let place = step(&runtime, "in-place", IN_PLACE);
    let plan = Plan {
        name: "placed".into(),
        steps: vec![place.clone(), place],
        timeout: None,
    };
    let pools = WarmPools::new(1, 8);
    let input = pattern(100_000);
    let run = || run_chain(&runtime, &pools, &plan, input.clone(), true).unwrap();
    // Step 1's output is step 0's where-header and the input, behind its
    // own header.
    let headers = |output: &Bytes| {
        let (outer, outer_len, inner) = placed(output);
        let (first, first_len, rest) = placed(inner);
        assert_eq!(rest, &input[..]);
        assert_eq!((first_len, outer_len), (100_000, 100_008));
        (first, outer)
    };
    // Nothing was placed before: no room for step 0, whose input's pages
    // grow after the guest's. (Step 1, prepared while step 0 ran, may have
    // had room already.)
    let cold = run();
    assert!(cold.steps.iter().all(|s| !s.warm));
    assert_eq!(headers(&cold.output).0, 2 * PAGE);
    // Warmed after that run: both instances set room aside for 100,008
    // bytes (the last placed), before their own page.
    block_on(pools.top_up(&runtime, &plan.steps));
    assert_eq!(pools.len(), 2);
    let warm = run();
    assert!(warm.steps.iter().all(|s| s.warm));
    assert_eq!(headers(&warm.output), (PAGE, PAGE));
}

/// Places its input in place and declares it its output: the `identity`
/// example in wasm text.
const IDENTITY_IN_PLACE: &str = r#"(module
  (import "weft:chain" "input_in_place" (func $place (param i32 i32) (result i32)))
  (import "weft:chain" "output" (func $output (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $place (i32.const 0) (i32.const 4)))
    (drop (call $output (i32.load (i32.const 0)) (i32.load (i32.const 4))))))"#;

#[test]
fn a_handed_over_input_comes_as_moved_pages_and_its_partial_last_page_as_a_copy() {
    let runtime = runtime(4);
    let identity = step(&runtime, "identity", IDENTITY_IN_PLACE);
    let plan = Plan {
        name: "same".into(),
        steps: vec![identity; 4],
        timeout: None,
    };
    let page = crate::runtime::pages::page_size();
    let input = pattern(crate::runtime::pages::MOVE_MIN + page + 3);
    let whole = (input.len() / page * page) as u64;
    let moves = crate::runtime::pages::available();
    // Rooms grown as each input arrives, then rooms set aside ahead by
    // warm instances (faulted in only while no move has been seen).
    for pools in [WarmPools::new(0, 0), WarmPools::new(1, 4)] {
        for _ in 0..3 {
            let ran = run_chain(&runtime, &pools, &plan, input.clone(), true).unwrap();
            assert_eq!(ran.output, input, "the chain's output is its input");
            // The request's own bytes are not an instance's to give away.
            assert_eq!(ran.steps[0].input_moved, 0);
            for report in &ran.steps[1..] {
                assert_eq!(report.input_moved, if moves { whole } else { 0 });
            }
        }
    }
    // Told not to move pages, the executor hands nothing over.
    let pools = WarmPools::new(0, 0);
    let ran = run_chain(&runtime, &pools, &plan, input.clone(), false).unwrap();
    assert_eq!(ran.output, input);
    assert!(ran.steps.iter().all(|s| s.input_moved == 0));
    // A smaller input is copied: moving pays only from `MOVE_MIN` up.
    let small = pattern(1 << 20);
    let ran = run_chain(&runtime, &WarmPools::new(0, 0), &plan, small.clone(), true).unwrap();
    assert_eq!(ran.output, small);
    assert!(ran.steps.iter().all(|s| s.input_moved == 0));
    if !moves {
        eprintln!("this kernel cannot move pages: every hop copied");
    }
}

#[test]
fn an_input_set_is_copied_and_the_same_input_handed_over_is_moved() {
    let runtime = runtime(2);
    let module = runtime.load(IDENTITY_IN_PLACE.as_bytes()).unwrap();
    // The output of an instance that ended, held only by `held`.
    let source = pattern(crate::runtime::pages::MOVE_MIN + 17);
    let held =
        block_on(runtime.invoke(&module, Invocation::new("identity", source.clone()))).unwrap();
    assert!(held.held);
    let run = |input: Bytes, hand_over: bool| {
        block_on(async {
            let mut prepared = runtime
                .prepare(
                    &module,
                    Invocation::new("identity", ""),
                    crate::runtime::InstanceId::new(),
                )
                .await
                .unwrap();
            // Faulted in ahead: a move discards those pages first.
            prepared.reserve_input(input.len(), true);
            if hand_over {
                prepared.hand_over_input(input);
            } else {
                prepared.set_input(input);
            }
            prepared.run().await.unwrap()
        })
    };
    // Set as an ordinary input (it might be shared): copied.
    let copied = run(held.output.clone(), false);
    assert_eq!(
        (copied.output.clone(), copied.input_moved),
        (source.clone(), 0)
    );
    drop(copied);
    // Handed over: moved, into pages that had been faulted in.
    let moved = run(held.output, true);
    assert_eq!(moved.output, source);
    if crate::runtime::pages::available() {
        assert_eq!(moved.input_moved as usize, source.len() / 4096 * 4096);
    }
    assert!(moved.held);
}
