//! Durability: a process storing modules is killed with SIGKILL at random
//! moments, again and again, on the same data directory. Every acknowledged
//! write must be there, intact, and the store must always open.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use weft::runtime::digest;
use weft::store::Store;

const CYCLES: u64 = 60;

/// What the parent knows a name should hold: a digest, or nothing.
type Model = HashMap<String, Option<String>>;

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Put(String, String),
    Del(String),
}

fn parse(line: &str) -> Option<(bool, Op)> {
    let parts: Vec<&str> = line.split(' ').collect();
    let acked = match *parts.first()? {
        "BEGIN" => false,
        "ACK" => true,
        _ => return None,
    };
    let op = match parts.get(1..)? {
        ["PUT", name, digest] => Op::Put(name.to_string(), digest.to_string()),
        ["DEL", name] => Op::Del(name.to_string()),
        _ => return None,
    };
    Some((acked, op))
}

#[test]
fn acknowledged_uploads_survive_sigkill() {
    let data = tempfile::tempdir().unwrap();
    let mut model: Model = HashMap::new();
    let mut rng: u64 = 0x2545_F491_4F6C_DD1D
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
    let mut acks_total = 0;
    let started = Instant::now();

    for cycle in 0..CYCLES {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let kill_after = Duration::from_millis(20 + rng % 180);

        let mut child = Command::new(env!("CARGO_BIN_EXE_store-writer"))
            .arg(data.path())
            .arg(cycle.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<String>>()
        });
        std::thread::sleep(kill_after);
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        let lines = reader.join().unwrap();
        assert!(
            status.code().is_none(),
            "cycle {cycle}: the writer exited by itself ({status}) instead of being killed: {}",
            std::io::read_to_string(child.stderr.take().unwrap()).unwrap_or_default()
        );

        let mut in_flight: Option<Op> = None;
        for line in &lines {
            match parse(line) {
                Some((false, op)) => in_flight = Some(op),
                Some((true, op)) => {
                    assert_eq!(
                        in_flight.take().as_ref(),
                        Some(&op),
                        "cycle {cycle}: {line}"
                    );
                    acks_total += 1;
                    match op {
                        Op::Put(name, digest) => model.insert(name, Some(digest)),
                        Op::Del(name) => model.insert(name, None),
                    };
                }
                // A line cut by the kill.
                None => {}
            }
        }

        let store = Store::open(data.path()).unwrap_or_else(|e| {
            panic!("cycle {cycle}: the store does not open after SIGKILL: {e}")
        });
        let mut names: Vec<String> = model.keys().cloned().collect();
        if let Some(Op::Put(name, _) | Op::Del(name)) = &in_flight {
            names.push(name.clone());
        }
        for name in names {
            let found = store.module(&name).unwrap().map(|record| {
                let bytes = store
                    .blob(&record.digest)
                    .unwrap()
                    .unwrap_or_else(|| panic!("cycle {cycle}: `{name}` has no bytes"));
                assert_eq!(
                    digest(&bytes),
                    record.digest,
                    "cycle {cycle}: `{name}` is damaged"
                );
                assert_eq!(bytes.len() as u64, record.size);
                record.digest
            });
            let expected = model.get(&name).cloned().flatten();
            let in_flight_result = match &in_flight {
                Some(Op::Put(n, digest)) if *n == name => Some(Some(digest.clone())),
                Some(Op::Del(n)) if *n == name => Some(None),
                _ => None,
            };
            assert!(
                found == expected || Some(&found) == in_flight_result.as_ref(),
                "cycle {cycle}: `{name}` holds {found:?}, acknowledged {expected:?}, in flight {in_flight:?}"
            );
            // The store is the truth from here on (an in-flight write may
            // have committed without its acknowledgement).
            model.insert(name, found);
        }
    }
    eprintln!(
        "{CYCLES} SIGKILL cycles, {acks_total} acknowledged writes checked, in {:?}",
        started.elapsed()
    );
    assert!(
        acks_total >= CYCLES,
        "too few writes were acknowledged to mean anything: {acks_total}"
    );
}
