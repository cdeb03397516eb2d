//! What mesh jobs compute: the examples' results against references
//! computed here (π, the heat equation to the last bit, every collective),
//! a controller farming work out, groups of several modules, and the
//! ping-pong the benchmark uses.

use super::*;

#[test]
fn pi_on_8_ranks_with_allreduce() {
    let weft = Weft::new();
    let run = mesh_run(&weft, &[examples::MESH_PI, "--ranks", "8"]);
    let stdout = run.stdout_text();
    assert_eq!(run.code, Some(0), "{stdout}\n{}", run.stderr);
    let line = rank_lines(&stdout, 0)
        .into_iter()
        .find(|l| l.starts_with("pi = "))
        .unwrap_or_else(|| panic!("no estimate in {stdout}"));
    let pi: f64 = line["pi = ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((pi - std::f64::consts::PI).abs() < 0.005, "{line}");
    assert!(line.contains("8000000 samples on 8 ranks"), "{line}");
    // What rank 0 sent to its parent, the CLI, is printed too.
    assert!(stdout.contains("[rank 0 -> parent] pi 3.14"), "{stdout}");
}

/// The heat equation of `mesh-heat`, computed sequentially here.
fn heat_reference(cells: usize, steps: usize) -> Vec<u64> {
    let initial = |i: usize| {
        let bump = if i.is_multiple_of(7) { 1.0 } else { 0.0 };
        (i * (cells - i)) as f64 / (cells * cells) as f64 * 100.0 + bump
    };
    let mut u = vec![0.0f64; cells + 2];
    for i in 0..cells {
        u[i + 1] = initial(i);
    }
    let mut next = u.clone();
    for _ in 0..steps {
        for i in 1..=cells {
            next[i] = u[i] + 0.25 * (u[i - 1] - 2.0 * u[i] + u[i + 1]);
        }
        std::mem::swap(&mut u, &mut next);
    }
    u[1..=cells].iter().map(|v| v.to_bits()).collect()
}

#[test]
fn heat_on_1_2_4_and_8_ranks_matches_the_sequential_run_to_the_last_bit() {
    let weft = Weft::new();
    let (cells, steps) = (256, 400);
    let reference = heat_reference(cells, steps);
    for ranks in ["1", "2", "4", "8"] {
        let run = mesh_run(
            &weft,
            &[examples::MESH_HEAT, "--ranks", ranks, "256", "400"],
        );
        let stdout = run.stdout_text();
        assert_eq!(run.code, Some(0), "{ranks} ranks: {stdout}\n{}", run.stderr);
        let field: Vec<u64> = rank_lines(&stdout, 0)
            .iter()
            .filter_map(|line| line.strip_prefix("cell "))
            .map(|rest| u64::from_str_radix(rest.split(' ').nth(1).unwrap(), 16).unwrap())
            .collect();
        assert_eq!(field.len(), cells, "{ranks} ranks: {stdout}");
        assert_eq!(
            field, reference,
            "{ranks} ranks differ from the sequential run"
        );
    }
}

/// What every rank of `mesh-collectives` must print, computed here.
fn collectives_reference(size: u64, seed: u64) -> Vec<String> {
    fn fold<T: Copy>(parts: &[Vec<T>], f: impl Fn(T, T) -> T) -> Vec<T> {
        let mut acc = parts[0].clone();
        for part in &parts[1..] {
            for (a, b) in acc.iter_mut().zip(part) {
                *a = f(*a, *b);
            }
        }
        acc
    }
    fn join<T>(values: &[T], show: impl Fn(&T) -> String) -> String {
        values.iter().map(show).collect::<Vec<_>>().join(",")
    }
    let hex = |bytes: &[u8]| -> String { bytes.iter().map(|b| format!("{b:02x}")).collect() };
    let mut lines = Vec::new();
    let mut step = 0u64;
    let ranks: Vec<u64> = (0..size).collect();
    let per_type: Vec<(&str, [String; 3])> = vec![
        {
            let parts: Vec<Vec<f64>> = ranks
                .iter()
                .map(|r| {
                    (0..5u64)
                        .map(|j| ((r * 7 + j * 13 + seed) % 97) as f64 * 0.5 - 20.25)
                        .collect()
                })
                .collect();
            let show = |v: &f64| format!("{:016x}", v.to_bits());
            (
                "f64",
                [
                    join(&fold(&parts, |a, b| a + b), show),
                    join(&fold(&parts, f64::min), show),
                    join(&fold(&parts, f64::max), show),
                ],
            )
        },
        {
            let parts: Vec<Vec<i64>> = ranks
                .iter()
                .map(|r| {
                    (0..5u64)
                        .map(|j| ((r * 31 + j * 17 + seed) % 201) as i64 - 100)
                        .collect()
                })
                .collect();
            let show = |v: &i64| v.to_string();
            (
                "i64",
                [
                    join(&fold(&parts, i64::wrapping_add), show),
                    join(&fold(&parts, i64::min), show),
                    join(&fold(&parts, i64::max), show),
                ],
            )
        },
        {
            let parts: Vec<Vec<u64>> = ranks
                .iter()
                .map(|r| {
                    (0..5u64)
                        .map(|j| (r * 1_000_003 + j * 7 + seed).wrapping_mul(1 << 40))
                        .collect()
                })
                .collect();
            let show = |v: &u64| v.to_string();
            (
                "u64",
                [
                    join(&fold(&parts, u64::wrapping_add), show),
                    join(&fold(&parts, u64::min), show),
                    join(&fold(&parts, u64::max), show),
                ],
            )
        },
    ];
    for (name, results) in &per_type {
        for (op, result) in ["sum", "min", "max"].iter().zip(results) {
            for r in 0..size {
                lines.push(format!("R{r} allreduce-{name}-{op} {result}"));
            }
            let root = step % size;
            step += 1;
            lines.push(format!("R{root} reduce-{name}-{op} {result}"));
        }
    }
    let broadcast: Vec<u8> = (0..16u64).map(|i| (i * 11 + seed) as u8).collect();
    let gathered: Vec<u8> = (0..size)
        .flat_map(|r| [r as u8, r as u8 + 1, r as u8 + 2, seed as u8])
        .collect();
    let scattered: Vec<u8> = (0..size * 4).map(|i| (i * 3 + seed) as u8).collect();
    for r in 0..size {
        lines.push(format!("R{r} broadcast {}", hex(&broadcast)));
        let piece = &scattered[(r * 4) as usize..(r * 4 + 4) as usize];
        lines.push(format!("R{r} scatter {}", hex(piece)));
        lines.push(format!("R{r} barrier ok"));
    }
    lines.push(format!("R0 gather {}", hex(&gathered)));
    lines.sort();
    lines
}

#[test]
fn collectives_agree_with_a_reference_for_every_op_and_type_in_any_arrival_order() {
    let weft = Weft::new();
    for (size, seed) in [(5u64, 42u64), (3, 7), (1, 3)] {
        let ranks = size.to_string();
        let seed_arg = seed.to_string();
        let run = mesh_run(
            &weft,
            &[examples::MESH_COLLECTIVES, "--ranks", &ranks, &seed_arg],
        );
        let stdout = run.stdout_text();
        assert_eq!(run.code, Some(0), "{stdout}\n{}", run.stderr);
        let mut got: Vec<String> = (0..size as u32)
            .flat_map(|r| rank_lines(&stdout, r))
            .collect();
        got.sort();
        assert_eq!(
            got,
            collectives_reference(size, seed),
            "{size} ranks, seed {seed}"
        );
    }
}

#[test]
fn a_controller_farms_work_out_to_the_ranks() {
    let weft = Weft::new();
    let run = mesh_run(
        &weft,
        &[
            examples::MESH_CONTROLLER,
            "--ranks",
            "4",
            "--controller",
            examples::MESH_CONTROLLER,
            "count",
            "100000",
        ],
    );
    let stdout = run.stdout_text();
    assert_eq!(run.code, Some(0), "{stdout}\n{}", run.stderr);
    let primes = (2u64..100_000)
        .filter(|&n| (2..).take_while(|d| d * d <= n).all(|d| n % d != 0))
        .count();
    assert!(
        stdout.contains(&format!("[controller] primes below 100000: {primes} ")),
        "{stdout}"
    );
}

#[test]
fn the_ping_pong_and_the_micro_benchmarks_report() {
    let weft = Weft::new();
    for (ranks, args, key) in [
        ("2", vec!["pingpong", "1024", "200"], "rtt_us="),
        ("2", vec!["bandwidth", "65536", "4", "8"], "mb_per_s="),
        ("4", vec!["barrier", "100"], "us="),
        ("4", vec!["allreduce", "8", "100"], "us="),
    ] {
        let mut full = vec![examples::MESH_RING, "--ranks", ranks];
        full.extend(args.iter().copied());
        let run = mesh_run(&weft, &full);
        let stdout = run.stdout_text();
        assert_eq!(run.code, Some(0), "{stdout}\n{}", run.stderr);
        let value: f64 = rank_lines(&stdout, 0)
            .iter()
            .find_map(|l| l.split(key).nth(1))
            .unwrap_or_else(|| panic!("no {key} in {stdout}"))
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(value > 0.0, "{stdout}");
    }
}

#[test]
fn a_job_runs_groups_of_ranks_of_several_modules() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    deploy(&server, "heat-a", examples::MESH_HEAT);
    deploy(&server, "heat-b", examples::MESH_HEAT);
    let mesh = start(
        &server,
        json!({
            "modules": [{ "module": "heat-a", "ranks": 2 }, { "module": "heat-b", "ranks": 2 }],
            "args": ["64", "20"], "subnet": false
        }),
    );
    let id = mesh["id"].as_str().unwrap();
    let status = wait_ended(&server, id, Duration::from_secs(30));
    assert_eq!(status["report"]["status"], "ok", "{status:#}");
    let modules: Vec<&str> = status["ranks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["module"].as_str().unwrap())
        .collect();
    assert_eq!(modules, ["heat-a", "heat-a", "heat-b", "heat-b"]);
    // A small ended mesh keeps its rank-by-rank traffic.
    assert_eq!(status["traffic"].as_array().unwrap().len(), 5, "{status:#}");

    // One past 64 ranks keeps each rank's counters but not the matrix,
    // which grows with the square of the ranks, once ended or listed.
    deploy(&server, "pi", examples::MESH_PI);
    let big = start(
        &server,
        json!({ "module": "pi", "ranks": 65, "args": ["1000"], "subnet": false }),
    );
    let big = big["id"].as_str().unwrap();
    let status = wait_ended(&server, big, Duration::from_secs(60));
    assert_eq!(status["report"]["status"], "ok", "{status:#}");
    assert_eq!(status["traffic"], json!([]), "{status:#}");
    let ranks = status["ranks"].as_array().unwrap();
    assert_eq!(ranks.len(), 65);
    assert!(ranks.iter().all(|r| r["sent_bytes"].is_u64()), "{status:#}");
    let listed = server.get("/v1/meshes").json();
    let listed = listed["meshes"].as_array().unwrap();
    let find = |id: &str| listed.iter().find(|m| m["id"] == id).unwrap().clone();
    assert_eq!(find(big)["traffic"], json!([]));
    assert_eq!(find(id)["traffic"].as_array().unwrap().len(), 5);
    // Unknown modules and empty jobs are refused.
    let refused = server.send(
        Request::new("POST", "/v1/meshes")
            .header("Content-Type", "application/json")
            .body(br#"{"module": "nope", "ranks": 2}"#),
    );
    assert_eq!(refused.status, 404, "{}", refused.text());
    let refused = server.send(
        Request::new("POST", "/v1/meshes")
            .header("Content-Type", "application/json")
            .body(br#"{"module": "heat-a", "ranks": 0}"#),
    );
    assert_eq!(refused.status, 400, "{}", refused.text());
    // Groups whose sizes would wrap a u32 when added.
    let refused = server.send(
        Request::new("POST", "/v1/meshes")
            .header("Content-Type", "application/json")
            .body(br#"{"modules": [{"module": "heat-a", "ranks": 4294967295}, {"module": "heat-a", "ranks": 1}]}"#),
    );
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(
        refused.text().contains("not 4294967296"),
        "{}",
        refused.text()
    );
    assert_eq!(server.get("/v1/health").status, 200);
}
