//! Mesh ranks on threads of their own (`weft::mesh::placement`), on small
//! wasm-text guests: messages and backpressure between rank threads,
//! timeouts and stops reaching a rank there (waiting in a receive, or
//! running wasm), no thread left once a job has ended, and a job with
//! more ranks than cores run as tasks. (On a one-core machine every job
//! but the one-rank one runs as tasks.)
//!
//! Its own test binary: it counts this process's `weft-rank-*` threads,
//! so its tests take turns.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weft::mesh::job::{self, Ending, Group, Parent, RankState, Spec};
use weft::mesh::mailbox::Bounds;
use weft::mesh::placement;
use weft::runtime::{Runtime, RuntimeConfig};
use weft_abi::errno;

/// Runs `test` on a two-worker runtime, one test at a time: they count
/// the process's rank threads.
fn serial(test: impl Future<Output = ()>) {
    static TURN: Mutex<()> = Mutex::new(());
    let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(test);
}

/// This process's threads whose name starts with `weft-rank-`.
fn rank_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("weft-rank-"))
        .count()
}

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        max_instances: 16,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

/// A guest whose `_start` is `body`, with the mesh calls imported and a
/// page of memory: `$rank` holds the caller's rank; a call returning an
/// unexpected errno traps through `$ok`.
fn guest(body: &str) -> String {
    format!(
        r#"(module
          (import "weft:mesh" "rank" (func $rank_of (param i32) (result i32)))
          (import "weft:mesh" "send" (func $send (param i32 i32 i32 i32 i64) (result i32)))
          (import "weft:mesh" "recv" (func $recv (param i32 i32 i32 i32 i64 i32) (result i32)))
          (import "weft:mesh" "send_now" (func $send_now (param i32 i32 i32 i32) (result i32)))
          (import "weft:mesh" "recv_now" (func $recv_now (param i32 i32 i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (global $rank (mut i32) (i32.const 0))
          (func $ok (param i32) (if (local.get 0) (then unreachable)))
          ;; Takes the next 8-byte message from $src with the plain call,
          ;; looking again while it answers WOULD_BLOCK, and checks that
          ;; it carries $n.
          (func $take (param $src i32) (param $n i32) (local $r i32)
            (loop $again
              (local.set $r (call $recv_now (local.get $src) (i32.const 0) (i32.const 64) (i32.const 8) (i32.const 128) (i32.const 1)))
              (br_if $again (i32.eq (local.get $r) (i32.const {would_block}))))
            (call $ok (local.get $r))
            (if (i32.ne (i32.load (i32.const 64)) (local.get $n)) (then unreachable)))
          ;; The same as the SDK takes it: the plain call once, then, on
          ;; WOULD_BLOCK, the call that can wait.
          (func $get (param $src i32) (param $n i32) (local $r i32)
            (local.set $r (call $recv_now (local.get $src) (i32.const 0) (i32.const 64) (i32.const 8) (i32.const 128) (i32.const 1)))
            (if (i32.eq (local.get $r) (i32.const {would_block}))
              (then (local.set $r (call $recv (local.get $src) (i32.const 0) (i32.const 64) (i32.const 8) (i64.const -1) (i32.const 128)))))
            (call $ok (local.get $r))
            (if (i32.ne (i32.load (i32.const 64)) (local.get $n)) (then unreachable)))
          (func (export "_start") (local $i i32)
            (call $ok (call $rank_of (i32.const 0)))
            (global.set $rank (i32.load (i32.const 0)))
            {body}))"#,
        would_block = errno::WOULD_BLOCK,
    )
}

/// [`pingpong`] with the plain calls (`send_now`, `recv_now`), as the SDK
/// makes them first: each message carries its round's number, checked by
/// its receiver.
fn plain_pingpong(n: u32) -> String {
    guest(&format!(
        r#"(loop $next
             (i32.store (i32.const 16) (local.get $i))
             (if (i32.eqz (global.get $rank))
               (then
                 (call $ok (call $send_now (i32.const 1) (i32.const 0) (i32.const 16) (i32.const 8)))
                 (call $take (i32.const 1) (local.get $i)))
               (else
                 (call $take (i32.const 0) (local.get $i))
                 (call $ok (call $send_now (i32.const 0) (i32.const 0) (i32.const 16) (i32.const 8)))))
             (local.set $i (i32.add (local.get $i) (i32.const 1)))
             (br_if $next (i32.lt_u (local.get $i) (i32.const {n}))))"#
    ))
}

/// Rank 0 trades `n` rounds with ranks 1 and 2 in turn, with the plain
/// calls, so the routes it keeps (of its last send, of its last receive)
/// change at every message; then ranks 1 and 2 end, and rank 0 sends to
/// rank 2, along the route it kept, until the answer is `PEER_GONE`.
/// (Three ranks on two cores run as tasks: each waits as the SDK does,
/// with the call that can suspend after the plain one.)
fn two_peers(n: u32) -> String {
    guest(&format!(
        r#"(if (i32.eqz (global.get $rank))
             (then
               (loop $next
                 (i32.store (i32.const 16) (local.get $i))
                 (call $ok (call $send_now (i32.const 1) (i32.const 0) (i32.const 16) (i32.const 8)))
                 (call $ok (call $send_now (i32.const 2) (i32.const 0) (i32.const 16) (i32.const 8)))
                 (call $get (i32.const 1) (local.get $i))
                 (call $get (i32.const 2) (local.get $i))
                 (local.set $i (i32.add (local.get $i) (i32.const 1)))
                 (br_if $next (i32.lt_u (local.get $i) (i32.const {n}))))
               (loop $gone
                 (br_if $gone (i32.ne
                   (call $send_now (i32.const 2) (i32.const 0) (i32.const 16) (i32.const 8))
                   (i32.const {peer_gone})))))
             (else
               (loop $next
                 (call $get (i32.const 0) (local.get $i))
                 (call $ok (call $send_now (i32.const 0) (i32.const 0) (i32.const 64) (i32.const 8)))
                 (local.set $i (i32.add (local.get $i) (i32.const 1)))
                 (br_if $next (i32.lt_u (local.get $i) (i32.const {n}))))))"#,
        peer_gone = errno::PEER_GONE,
    ))
}

/// Rank 0 sends `n` 8-byte messages to rank 1 and waits for each reply.
fn pingpong(n: u32) -> String {
    guest(&format!(
        r#"(loop $next
             (if (i32.eqz (global.get $rank))
               (then
                 (call $ok (call $send (i32.const 1) (i32.const 0) (i32.const 16) (i32.const 8) (i64.const -1)))
                 (call $ok (call $recv (i32.const 1) (i32.const 0) (i32.const 64) (i32.const 8) (i64.const -1) (i32.const 128))))
               (else
                 (call $ok (call $recv (i32.const 0) (i32.const 0) (i32.const 64) (i32.const 8) (i64.const -1) (i32.const 128)))
                 (call $ok (call $send (i32.const 0) (i32.const 0) (i32.const 64) (i32.const 8) (i64.const -1)))))
             (local.set $i (i32.add (local.get $i) (i32.const 1)))
             (br_if $next (i32.lt_u (local.get $i) (i32.const {n}))))"#
    ))
}

/// Rank 0 streams `n` messages to rank 1, which takes them; with small
/// mailboxes, rank 0 keeps waiting for room.
fn stream(n: u32) -> String {
    guest(&format!(
        r#"(loop $next
             (if (i32.eqz (global.get $rank))
               (then
                 (call $ok (call $send (i32.const 1) (i32.const 0) (i32.const 16) (i32.const 8) (i64.const -1))))
               (else
                 (call $ok (call $recv (i32.const 0) (i32.const 0) (i32.const 64) (i32.const 8) (i64.const -1) (i32.const 128)))))
             (local.set $i (i32.add (local.get $i) (i32.const 1)))
             (br_if $next (i32.lt_u (local.get $i) (i32.const {n}))))"#
    ))
}

/// Every rank waits for a message that never comes.
fn wait_forever() -> String {
    guest(
        r#"(drop (call $recv (i32.const -1) (i32.const -1) (i32.const 64) (i32.const 8) (i64.const -1) (i32.const 128)))
           unreachable"#,
    )
}

/// Rank 0 runs wasm forever; the others receive with a 5 ms timeout,
/// again and again.
fn spin_and_poll() -> String {
    guest(&format!(
        r#"(if (i32.eqz (global.get $rank))
             (then (loop $forever (br $forever))))
           (loop $again
             (if (i32.ne
                   (call $recv (i32.const 0) (i32.const 0) (i32.const 64) (i32.const 8) (i64.const 5) (i32.const 128))
                   (i32.const {timed_out}))
               (then unreachable))
             (br $again))"#,
        timed_out = errno::TIMED_OUT
    ))
}

/// Exits with what a receive with a `ms` timeout returned.
fn receive_with_timeout(ms: u32) -> String {
    guest(&format!(
        r#"(call $exit (call $recv (i32.const -1) (i32.const -1) (i32.const 64) (i32.const 8) (i64.const {ms}) (i32.const 128)))"#
    ))
}

fn spec(runtime: &Runtime, wat: &str, ranks: u32) -> Spec {
    let module = runtime.load(wat.as_bytes()).unwrap();
    let mut spec = Spec::new(vec![Group {
        name: "t".into(),
        module,
        ranks,
    }]);
    spec.limits.timeout = Some(Duration::from_secs(60));
    spec
}

/// Waits until `ready` holds (polling), or panics after 10 s.
async fn until(what: &str, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(started.elapsed() < Duration::from_secs(10), "never: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[test]
fn mesh_ranks_exchange_messages_on_threads_of_their_own() {
    serial(async {
        let runtime = runtime();
        let (job, _) =
            job::start(&runtime, spec(&runtime, &pingpong(20_000), 2), Parent::None).unwrap();
        let report = job.wait().await;
        assert_eq!(report.status, "ok", "{report:?}");
        let status = job.status();
        assert_eq!(status.ranks[0].traffic.sent_messages, 20_000);
        assert_eq!(status.ranks[1].traffic.received_messages, 20_000);
        until("no rank thread left", || rank_threads() == 0).await;
    });
}

#[test]
fn mesh_the_plain_calls_carry_messages_in_order_and_trap_on_a_bad_pointer() {
    serial(async {
        let runtime = runtime();
        let (job, _) = job::start(
            &runtime,
            spec(&runtime, &plain_pingpong(20_000), 2),
            Parent::None,
        )
        .unwrap();
        let report = job.wait().await;
        assert_eq!(report.status, "ok", "{report:?}");
        let status = job.status();
        assert_eq!(status.ranks[0].traffic.sent_messages, 20_000);
        assert_eq!(status.ranks[1].traffic.received_messages, 20_000);
        // A receive whose buffer runs past the memory's end traps, before
        // anything is taken.
        let bad = guest(
            r#"(drop (call $recv_now (i32.const -1) (i32.const -1) (i32.const 65530) (i32.const 100) (i32.const 128) (i32.const 0)))"#,
        );
        let (job, _) = job::start(&runtime, spec(&runtime, &bad, 1), Parent::None).unwrap();
        let report = job.wait().await;
        let state = &job.status().ranks[0].state;
        assert!(
            matches!(state, RankState::Failed { reason, .. } if reason.contains("outside guest memory")),
            "{state:?} {report:?}"
        );
        until("no rank thread left", || rank_threads() == 0).await;
    });
}

#[test]
fn mesh_kept_routes_follow_each_peer_and_see_one_end() {
    serial(async {
        let runtime = runtime();
        let (job, _) =
            job::start(&runtime, spec(&runtime, &two_peers(5_000), 3), Parent::None).unwrap();
        let report = job.wait().await;
        assert_eq!(report.status, "ok", "{report:?}");
        let status = job.status();
        for peer in [1, 2] {
            assert_eq!(status.ranks[peer].traffic.received_messages, 5_000);
            assert_eq!(status.ranks[peer].traffic.sent_messages, 5_000);
        }
        assert_eq!(status.ranks[0].traffic.received_messages, 10_000);
        assert!(
            status
                .ranks
                .iter()
                .all(|r| matches!(r.state, RankState::Exited { exit_code: 0 })),
            "{status:?}"
        );
    });
}

#[test]
fn mesh_a_full_mailbox_holds_the_sender_on_its_thread() {
    serial(async {
        let runtime = runtime();
        let mut spec = spec(&runtime, &stream(20_000), 2);
        spec.bounds = Bounds {
            messages: 2,
            bytes: 1024,
        };
        let (job, _) = job::start(&runtime, spec, Parent::None).unwrap();
        let report = job.wait().await;
        assert_eq!(report.status, "ok", "{report:?}");
        let status = job.status();
        assert_eq!(status.ranks[1].traffic.received_messages, 20_000);
        assert_eq!(job.status().ranks[1].queued_messages, 0);
        until("no rank thread left", || rank_threads() == 0).await;
    });
}

#[test]
fn mesh_a_timeout_fires_for_a_rank_on_its_own_thread() {
    serial(async {
        let runtime = runtime();
        let started = Instant::now();
        let (job, _) = job::start(
            &runtime,
            spec(&runtime, &receive_with_timeout(30), 1),
            Parent::None,
        )
        .unwrap();
        let report = job.wait().await;
        assert_eq!(report.exit_code, errno::TIMED_OUT, "{report:?}");
        assert!(started.elapsed() >= Duration::from_millis(30));
        until("no rank thread left", || rank_threads() == 0).await;
    });
}

/// Runs `ranks` ranks of `wat` (on threads of their own when they fit
/// the cores, else as tasks), drops the parent, and checks that every rank
/// stopped within 100 ms and that no rank thread is left.
async fn stopping(wat: &str, ranks: u32) {
    let runtime = runtime();
    let threads = if ranks as usize <= placement::cores() {
        ranks as usize
    } else {
        0
    };
    let (job, link) = job::start(&runtime, spec(&runtime, wat, ranks), Parent::External).unwrap();
    let job = Arc::new(job);
    until(
        "every rank running, on a thread of its own if it fits",
        || {
            job.running_ranks() == ranks as usize
                && placement::running() == ranks as usize
                && rank_threads() == threads
        },
    )
    .await;
    // Waiting ranks have parked by now; running ones are in wasm.
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(link);
    let report = job.wait().await;
    assert_eq!(
        report.ending,
        Some(Ending::ParentDisconnected),
        "{report:?}"
    );
    let latency = report.max_stop_latency_us.expect("ranks were stopped");
    assert!(latency < 100_000, "stopped after {latency} µs");
    for rank in job.status().ranks {
        assert!(
            matches!(rank.state, RankState::Stopped { .. }),
            "{:?}",
            rank.state
        );
    }
    until("no rank thread left", || rank_threads() == 0).await;
}

#[test]
fn mesh_ranks_waiting_in_recv_are_stopped_and_their_threads_end() {
    serial(async {
        stopping(&wait_forever(), 2).await;
    });
}

#[test]
fn mesh_ranks_running_wasm_or_polling_are_stopped_and_their_threads_end() {
    serial(async {
        stopping(&spin_and_poll(), 2).await;
    });
}

#[test]
fn mesh_a_job_with_more_ranks_than_cores_runs_them_as_tasks() {
    serial(async {
        let ranks = placement::cores() as u32 * 2 + 1;
        stopping(&wait_forever(), ranks).await;
        stopping(&spin_and_poll(), ranks).await;
    });
}

/// The CPUs each `weft-rank-*` thread of this process may run on, as
/// `/proc` lists them.
fn rank_thread_cpus() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| {
            let path = task.ok()?.path();
            let name = std::fs::read_to_string(path.join("comm")).ok()?;
            let status = std::fs::read_to_string(path.join("status")).ok()?;
            let cpus = status
                .lines()
                .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))?;
            name.starts_with("weft-rank-")
                .then(|| cpus.trim().to_owned())
        })
        .collect()
}

#[test]
fn mesh_rank_threads_are_pinned_to_cpus_of_their_own() {
    if placement::cores() < 2 {
        return;
    }
    serial(async {
        let runtime = runtime();
        let (job, link) = job::start(
            &runtime,
            spec(&runtime, &wait_forever(), 2),
            Parent::External,
        )
        .unwrap();
        // A rank's thread is named when it is made and pins itself as it
        // starts: wait for both to have done so (a thread that could not
        // pin itself keeps the whole set, and this times out).
        let pinned = || {
            let cpus = rank_thread_cpus();
            let each_on_one = cpus.iter().all(|list| list.parse::<usize>().is_ok());
            (cpus.len() == 2 && each_on_one).then_some(cpus)
        };
        until(
            "both ranks on threads of their own, each on one CPU",
            || job.running_ranks() == 2 && pinned().is_some(),
        )
        .await;
        let cpus = pinned().expect("pinned threads stay pinned");
        assert_ne!(cpus[0], cpus[1], "on different CPUs");
        drop(link);
        job.wait().await;
        until("no rank thread left", || rank_threads() == 0).await;
    });
}
