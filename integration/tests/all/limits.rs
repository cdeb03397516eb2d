//! Runaway guests: each limit ends the instance with its own reason, and the
//! host carries on.

use std::time::{Duration, Instant};
use weft::runtime::{Failure, Invocation, Limits, Runtime, RuntimeConfig};
use weft_integration::{Weft, examples};

#[test]
fn a_spinning_guest_stops_at_its_deadline_with_exit_124() {
    let weft = Weft::new();
    // Warm the compile cache so the timing below is the guest's alone.
    weft.run(["run", "--timeout", "1ms", examples::SPIN], b"");

    let run = weft.run(["run", "--timeout", "1s", examples::SPIN], b"");
    eprintln!(
        "spin under --timeout 1s: the weft process ran {:?}",
        run.elapsed
    );
    assert_eq!(run.code, Some(124), "stderr: {}", run.stderr);
    assert!(
        run.stderr
            .contains("deadline exceeded: still running after 1s"),
        "{}",
        run.stderr
    );
    assert!(run.elapsed >= Duration::from_secs(1));
    // About 1.1 s on a quiet machine; generous for a loaded 2-core CI box.
    assert!(
        run.elapsed < Duration::from_millis(2500),
        "took {:?}",
        run.elapsed
    );

    // The next invocation runs normally.
    let next = weft.run(["run", examples::HELLO], b"again");
    assert_eq!(next.code, Some(0));
    assert_eq!(next.stdout_text(), "hello, again!\n");
}

#[test]
fn a_memory_hog_hits_its_limit_and_the_host_stays_small() {
    let weft = Weft::new();
    let run = weft.run(["run", "--memory", "32MiB", examples::GROW_MEMORY], b"");
    eprintln!(
        "grow-memory under --memory 32MiB: peak RSS of weft {} KiB",
        run.max_rss_kib
    );
    assert_eq!(run.code, Some(134), "stderr: {}", run.stderr);
    assert!(
        run.stderr.contains("memory limit exceeded") && run.stderr.contains("the limit is 32 MiB"),
        "{}",
        run.stderr
    );
    // The guest may use 32 MiB; weft itself needs a few tens of MiB more.
    assert!(
        run.max_rss_kib < 160 * 1024,
        "peak RSS {} KiB",
        run.max_rss_kib
    );
}

#[test]
fn each_trap_has_its_own_reason() {
    let weft = Weft::new();
    let cases = [
        (examples::RECURSE, "stack overflow"),
        (examples::UNREACHABLE, "unreachable executed"),
        (examples::OUT_OF_BOUNDS, "out-of-bounds memory access"),
    ];
    for (module, reason) in cases {
        let run = weft.run(["run", module], b"");
        assert_eq!(run.code, Some(134), "{module}: {}", run.stderr);
        let last = run.stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("weft: ") && last.contains(reason),
            "{module}: expected `{reason}` in {:?}",
            run.stderr
        );
    }
    // The guest's own stderr is kept before weft's line.
    let run = weft.run(["run", examples::UNREACHABLE], b"");
    assert!(
        run.stderr.starts_with("about to hit unreachable\n"),
        "{}",
        run.stderr
    );
}

#[test]
fn fuel_runs_out_with_its_own_reason() {
    let weft = Weft::new();
    let run = weft.run(["run", "--fuel", "100000", examples::SPIN], b"");
    assert_eq!(run.code, Some(134), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("fuel exhausted: the guest used all 100000 units"),
        "{}",
        run.stderr
    );
}

fn load(runtime: &Runtime, path: &str) -> weft::runtime::LoadedModule {
    runtime.load(&std::fs::read(path).unwrap()).unwrap()
}

/// In one host process: a guest that never yields is time-sliced with the
/// others on the same thread, stopped at its deadline, and the runtime keeps
/// serving.
#[test]
fn one_runtime_survives_a_runaway_and_keeps_others_running() {
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: 8,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let spin = load(&runtime, examples::SPIN);
    let hello = load(&runtime, examples::HELLO);

    // A single-threaded executor: the spinning guest shares the thread.
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let started = Instant::now();
        let mut invocation = Invocation::new("spin", "");
        invocation.limits = Limits {
            timeout: Some(Duration::from_secs(1)),
            ..Limits::default()
        };
        let spinning = runtime.invoke(&spin, invocation);
        let others = async {
            for i in 0..20 {
                let outcome = runtime
                    .invoke(&hello, Invocation::new("hello", format!("{i}")))
                    .await
                    .unwrap();
                assert_eq!(outcome.output, format!("hello, {i}!\n"));
            }
            started.elapsed()
        };
        let (spun, others_done) = tokio::join!(spinning, others);
        let failed = spun.unwrap_err();
        assert_eq!(
            failed.failure,
            Failure::Deadline {
                limit: Duration::from_secs(1)
            }
        );
        assert!(
            others_done < Duration::from_secs(1),
            "the other invocations waited for the spinning one: {others_done:?}"
        );

        let outcome = runtime
            .invoke(&hello, Invocation::new("hello", "after"))
            .await
            .unwrap();
        assert_eq!(outcome.output, "hello, after!\n");
    });
}
