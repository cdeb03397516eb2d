//! Chains: a text pipeline against running its steps by hand and a plain
//! reference, payloads through identity steps, a failing middle step,
//! `chain::call` and its depth limit, bad definitions, deadlines, the CLI.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use weft_integration::http::{Request, Response};
use weft_integration::{Served, Weft, examples};

fn deploy(server: &Served, name: &str, path: &str) {
    let wasm = std::fs::read(path).unwrap();
    let put = server.send(Request::new("PUT", &format!("/v1/modules/{name}")).body(&wasm));
    assert!(put.status == 201 || put.status == 200, "{}", put.text());
}

fn put_chain(server: &Served, name: &str, body: Value) -> Response {
    let body = body.to_string();
    server.send(
        Request::new("PUT", &format!("/v1/chains/{name}"))
            .header("Content-Type", "application/json")
            .body(body.as_bytes()),
    )
}

fn invoke(server: &Served, path: &str, input: &[u8]) -> Response {
    server.send(Request::new("POST", path).body(input))
}

fn steps_header(response: &Response) -> Vec<Value> {
    let header = response.header("x-weft-steps").expect("x-weft-steps");
    serde_json::from_str::<Value>(header)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The pipeline's reference: the K most frequent lower-cased words,
/// `word<TAB>count`, most frequent first, ties by word.
fn reference_top_k(text: &str, k: usize) -> String {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        *counts.entry(word.to_lowercase()).or_default() += 1;
    }
    let mut counts: Vec<(String, u64)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    counts
        .into_iter()
        .take(k)
        .map(|(w, c)| format!("{w}\t{c}\n"))
        .collect()
}

const TEXT: &str = "The quick brown fox jumps over the lazy dog. The dog sleeps; \
    the fox runs! A fox, a dog, and THE END. Über straße: über alles, 42 and 42.";

fn pipeline(server: &Served) {
    deploy(server, "tokenize", examples::TOKENIZE);
    deploy(server, "count", examples::COUNT);
    deploy(server, "top-k", examples::TOP_K);
}

#[test]
fn the_text_pipeline_equals_its_steps_run_by_hand_and_the_reference() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    pipeline(&server);
    let created = put_chain(
        &server,
        "words",
        json!({ "steps": ["tokenize", "count", { "module": "top-k", "args": ["5"] }] }),
    );
    assert_eq!(created.status, 201, "{}", created.text());

    let chained = invoke(&server, "/v1/chains/words/invoke", TEXT.as_bytes());
    assert_eq!(chained.status, 200, "{}", chained.text());

    // By hand: each module invoked on its own, outputs fed along.
    let tokens = invoke(&server, "/v1/modules/tokenize/invoke", TEXT.as_bytes());
    let counts = invoke(&server, "/v1/modules/count/invoke", &tokens.body);
    let top = invoke(&server, "/v1/modules/top-k/invoke?args=5", &counts.body);
    assert_eq!(top.status, 200, "{}", top.text());
    assert_eq!(chained.text(), top.text());
    assert_eq!(chained.text(), reference_top_k(TEXT, 5));
    assert!(chained.text().starts_with("the\t5\n"), "{}", chained.text());

    // The per-step report: modules, sizes handed along, distinct instances.
    let steps = steps_header(&chained);
    assert_eq!(steps.len(), 3);
    let modules: Vec<&str> = steps
        .iter()
        .map(|s| s["module"].as_str().unwrap())
        .collect();
    assert_eq!(modules, ["tokenize", "count", "top-k"]);
    assert_eq!(steps[0]["input_bytes"], TEXT.len());
    assert_eq!(steps[0]["output_bytes"], tokens.body.len());
    assert_eq!(steps[1]["input_bytes"], tokens.body.len());
    assert_eq!(steps[1]["output_bytes"], counts.body.len());
    assert_eq!(steps[2]["output_bytes"], chained.body.len());
    for step in &steps {
        assert_eq!(step["status"], "ok");
        assert!(step["instance"].as_str().unwrap().starts_with("inst-"));
        assert!(step["duration_us"].as_u64().is_some());
    }

    // ?format=json carries the same.
    let json = invoke(
        &server,
        "/v1/chains/words/invoke?format=json",
        TEXT.as_bytes(),
    )
    .json();
    assert_eq!(json["output"], reference_top_k(TEXT, 5));
    assert_eq!(json["steps"].as_array().unwrap().len(), 3);

    // The definition, its recent runs, the list, persisted across a restart.
    let shown = server.get("/v1/chains/words").json();
    assert_eq!(shown["steps"][2]["args"][0], "5");
    assert_eq!(shown["recent"].as_array().unwrap().len(), 2);
    assert_eq!(shown["recent"][0]["steps"][1]["module"], "count");
    let runs = server.get("/v1/chain-runs?chain=words").json();
    assert_eq!(runs["runs"].as_array().unwrap().len(), 2);
    drop(server);
    let server = weft.serve(&[]);
    let listed = server.get("/v1/chains").json();
    assert_eq!(listed["chains"][0]["name"], "words");
    let again = invoke(&server, "/v1/chains/words/invoke", TEXT.as_bytes());
    assert_eq!(again.text(), reference_top_k(TEXT, 5));
    assert_eq!(
        server
            .send(Request::new("DELETE", "/v1/chains/words"))
            .status,
        204
    );
    assert_eq!(server.get("/v1/chains/words").status, 404);
}

/// Deterministic bytes covering every value.
fn payload(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ len as u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

#[test]
fn payloads_pass_through_identity_steps_intact() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    deploy(&server, "identity", examples::IDENTITY);
    let created = put_chain(
        &server,
        "same",
        json!({ "steps": ["identity", "identity", "identity"] }),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    for len in [0, 1, 1 << 20, 64 << 20] {
        let input = payload(len);
        let response = invoke(&server, "/v1/chains/same/invoke", &input);
        assert_eq!(response.status, 200, "{len} bytes: {}", response.text());
        assert_eq!(response.body.len(), len);
        assert!(response.body == input, "{len} bytes came back changed");
        for step in steps_header(&response) {
            assert_eq!(step["input_bytes"], len);
            assert_eq!(step["output_bytes"], len);
        }
    }
    // Runs back to back reuse warm instances.
    let warm = invoke(&server, "/v1/chains/same/invoke", b"x");
    assert!(
        steps_header(&warm).iter().any(|s| s["warm"] == true),
        "{:?}",
        steps_header(&warm)
    );
}

#[test]
fn a_failing_middle_step_is_named_and_the_steps_after_it_do_not_run() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    pipeline(&server);
    deploy(&server, "crash", examples::UNREACHABLE);
    let created = put_chain(
        &server,
        "broken",
        json!({ "steps": ["tokenize", "crash", "count"] }),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let response = invoke(&server, "/v1/chains/broken/invoke", TEXT.as_bytes());
    assert_eq!(response.status, 422, "{}", response.text());
    let error = &response.json()["error"];
    assert_eq!(error["code"], "unreachable");
    assert_eq!(error["step"], 1);
    assert_eq!(error["module"], "crash");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("step 1 (crash): unreachable executed"),
        "{error}"
    );
    assert!(!error["stderr"].as_str().unwrap().is_empty(), "{error}");
    let ran: Vec<&str> = error["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["module"].as_str().unwrap())
        .collect();
    assert_eq!(ran, ["tokenize", "crash"]);
    // The activity log agrees: `count` never ran.
    let instances = server.get("/v1/instances").json();
    let modules: Vec<&str> = instances["recent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["module"].as_str().unwrap())
        .collect();
    assert!(modules.contains(&"crash"), "{modules:?}");
    assert!(!modules.contains(&"count"), "{modules:?}");

    // An exit code other than 0 stops a chain too, with the step's stderr.
    let response = server.send(
        Request::new("POST", "/v1/chain")
            .header("Content-Type", "application/vnd.weft.chain+json")
            .body(
                json!({ "steps": ["tokenize", "count", { "module": "top-k", "args": ["many"] }, "tokenize"], "input": TEXT })
                    .to_string()
                    .as_bytes(),
            ),
    );
    assert_eq!(response.status, 422, "{}", response.text());
    let error = &response.json()["error"];
    assert_eq!(error["code"], "nonzero_exit");
    assert_eq!(error["step"], 2);
    assert_eq!(error["module"], "top-k");
    assert_eq!(error["exit_code"], 2);
    assert!(
        error["stderr"]
            .as_str()
            .unwrap()
            .contains("K must be a number"),
        "{error}"
    );
    assert_eq!(error["steps"].as_array().unwrap().len(), 3);
}

#[test]
fn chain_call_runs_another_module_and_recursion_stops_at_the_depth_limit() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    pipeline(&server);
    deploy(&server, "chain-call", examples::CHAIN_CALL);
    deploy(&server, "nest", examples::CHAIN_CALL);

    // A step that calls `tokenize` gives what `tokenize` gives.
    let via_call = server.send(
        Request::new("POST", "/v1/chain")
            .header("Content-Type", "application/vnd.weft.chain+json")
            .body(
                json!({ "steps": [{ "module": "chain-call", "args": ["tokenize"] }, "count"], "input": TEXT })
                    .to_string()
                    .as_bytes(),
            ),
    );
    assert_eq!(via_call.status, 200, "{}", via_call.text());
    let direct = invoke(
        &server,
        "/v1/chain?step=tokenize&step=count",
        TEXT.as_bytes(),
    );
    assert_eq!(direct.status, 200, "{}", direct.text());
    assert_eq!(via_call.text(), direct.text());

    // `nest` calls itself until the host refuses at the limit.
    let response = invoke(&server, "/v1/chain?step=nest", b"nest\nhello");
    assert_eq!(response.status, 422, "{}", response.text());
    let error = &response.json()["error"];
    assert_eq!(error["code"], "nonzero_exit", "{error}");
    let stderr = error["stderr"].as_str().unwrap();
    assert!(
        stderr.contains("chain-call at depth 8: chain::call to `nest` refused: the depth limit of 8 nested calls is reached"),
        "{stderr}"
    );
    // Every level reported its callee's failure on the way up.
    assert!(stderr.contains("chain-call at depth 0"), "{stderr}");
    // The host is fine.
    assert_eq!(server.get("/v1/health").status, 200);

    // Calling a module that does not exist is an error the guest handles.
    let response = invoke(&server, "/v1/chain?step=nest", b"nowhere\n");
    assert_eq!(response.status, 422);
    assert!(
        response.json()["error"]["stderr"]
            .as_str()
            .unwrap()
            .contains("no module named `nowhere`"),
        "{}",
        response.text()
    );
}

#[test]
fn bad_chains_and_inputs_get_clear_errors() {
    let weft = Weft::new();
    let server = weft.serve(&["--max-input", "1MiB"]);
    pipeline(&server);
    deploy(&server, "spin", examples::SPIN);

    let unknown = put_chain(&server, "x", json!({ "steps": ["tokenize", "nope"] }));
    assert_eq!(unknown.status, 400, "{}", unknown.text());
    let error = &unknown.json()["error"];
    assert_eq!(error["code"], "unknown_module");
    assert_eq!(error["step"], 1);
    assert_eq!(error["module"], "nope");
    assert_eq!(error["message"], "step 1: no module named `nope`");

    let empty = put_chain(&server, "x", json!({ "steps": [] }));
    assert_eq!(empty.status, 400);
    assert_eq!(empty.json()["error"]["code"], "invalid_chain");
    assert_eq!(
        empty.json()["error"]["message"],
        "a chain needs at least one step"
    );
    let bad_name = put_chain(&server, "Bad%20Name", json!({ "steps": ["tokenize"] }));
    assert_eq!(bad_name.status, 400);
    let bad_step = put_chain(
        &server,
        "x",
        json!({ "steps": [{ "module": "tokenize", "memory": "lots" }] }),
    );
    assert_eq!(bad_step.status, 400, "{}", bad_step.text());
    assert!(
        bad_step.text().contains("step 0: memory"),
        "{}",
        bad_step.text()
    );
    let not_json = server.send(Request::new("PUT", "/v1/chains/x").body(b"steps: all"));
    assert_eq!(not_json.status, 400);
    assert!(not_json.text().contains("invalid chain JSON"));
    let no_steps = invoke(&server, "/v1/chain", b"text");
    assert_eq!(no_steps.status, 400);
    assert_eq!(no_steps.json()["error"]["code"], "invalid_chain");

    assert_eq!(invoke(&server, "/v1/chains/none/invoke", b"").status, 404);
    let ad_hoc_unknown = invoke(&server, "/v1/chain?step=tokenize&step=gone", b"");
    assert_eq!(ad_hoc_unknown.status, 404);
    assert_eq!(ad_hoc_unknown.json()["error"]["step"], 1);

    // Oversized input: refused from Content-Length, before it is read.
    assert_eq!(
        put_chain(&server, "words", json!({ "steps": ["tokenize", "count"] })).status,
        201
    );
    let big = server.send(
        Request::new("POST", "/v1/chains/words/invoke")
            .header("Content-Length", ((1 << 20) + 1).to_string())
            .body(b""),
    );
    assert_eq!(big.status, 413, "{}", big.text());

    // A module deleted after the chain was defined.
    assert_eq!(
        server
            .send(Request::new("DELETE", "/v1/modules/count"))
            .status,
        204
    );
    let gone = invoke(&server, "/v1/chains/words/invoke", b"a b");
    assert_eq!(gone.status, 404, "{}", gone.text());
    assert_eq!(gone.json()["error"]["code"], "unknown_module");

    // The chain's deadline stops the step running when it passes, and says so.
    let slow = put_chain(
        &server,
        "slow",
        json!({ "steps": ["tokenize", "spin"], "timeout": "300ms" }),
    );
    assert_eq!(slow.status, 201, "{}", slow.text());
    let started = std::time::Instant::now();
    let stopped = invoke(&server, "/v1/chains/slow/invoke", b"go");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(stopped.status, 422, "{}", stopped.text());
    let error = &stopped.json()["error"];
    assert_eq!(error["code"], "deadline_exceeded");
    assert_eq!(error["step"], 1);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("the chain's deadline of 300ms passed"),
        "{error}"
    );
    // A step's own deadline.
    let per_step = server.send(
        Request::new("POST", "/v1/chain")
            .header("Content-Type", "application/vnd.weft.chain+json")
            .body(
                json!({ "steps": [{ "module": "spin", "timeout": "200ms" }] })
                    .to_string()
                    .as_bytes(),
            ),
    );
    assert_eq!(per_step.status, 422);
    assert_eq!(per_step.json()["error"]["code"], "deadline_exceeded");
    let too_long = invoke(&server, "/v1/chains/slow/invoke?timeout=1h", b"");
    assert_eq!(too_long.status, 400, "{}", too_long.text());
}

#[test]
fn the_cli_defines_lists_shows_invokes_and_removes_chains() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    pipeline(&server);
    let url = server.url();
    let cli = |args: &[&str], stdin: &[u8]| {
        let mut full = vec!["--server", url.as_str()];
        full.extend_from_slice(args);
        weft.run(&full, stdin)
    };
    let created = cli(
        &["chain", "create", "words", "tokenize", "count", "top-k:3"],
        b"",
    );
    assert_eq!(created.code, Some(0), "{}", created.stderr);
    assert_eq!(
        created.stdout_text(),
        "created chain words: tokenize → count → top-k\n"
    );
    let listed = cli(&["chain", "ls"], b"");
    assert!(
        listed.stdout_text().contains("tokenize → count → top-k:3"),
        "{}",
        listed.stdout_text()
    );
    let invoked = cli(&["chain", "invoke", "words", "--timings"], TEXT.as_bytes());
    assert_eq!(invoked.code, Some(0), "{}", invoked.stderr);
    assert_eq!(invoked.stdout_text(), reference_top_k(TEXT, 3));
    assert!(invoked.stderr.contains("top-k"), "{}", invoked.stderr);
    let shown = cli(&["chain", "show", "words"], b"");
    assert!(
        shown.stdout_text().contains("run at"),
        "{}",
        shown.stdout_text()
    );
    assert!(
        shown.stdout_text().contains("count"),
        "{}",
        shown.stdout_text()
    );

    let failing = cli(&["chain", "create", "bad", "tokenize", "top-k:x"], b"");
    assert_eq!(failing.code, Some(0), "{}", failing.stderr);
    let failed = cli(&["chain", "invoke", "bad", "-d", "a b"], b"");
    assert_eq!(failed.code, Some(2), "{}", failed.stderr);
    assert!(
        failed
            .stderr
            .contains("chain bad: step 1 (top-k): exited with code 2"),
        "{}",
        failed.stderr
    );
    let removed = cli(&["chain", "rm", "words"], b"");
    assert_eq!(removed.code, Some(0), "{}", removed.stderr);
    let missing = cli(&["chain", "show", "words"], b"");
    assert_ne!(missing.code, Some(0));
    assert!(
        missing.stderr.contains("no chain named `words`"),
        "{}",
        missing.stderr
    );
}

#[test]
fn the_dashboard_shows_chains_and_the_step_timings_of_recent_runs() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    pipeline(&server);
    deploy(&server, "crash", examples::UNREACHABLE);
    assert_eq!(
        put_chain(
            &server,
            "words",
            json!({ "steps": ["tokenize", "count", "top-k"] })
        )
        .status,
        201
    );
    let mut browser = weft_integration::browser::Browser::open(&format!("{}/", server.url()));
    browser.wait_for(
        "document.querySelector('#chains-defs [data-chain=\"words\"]')?.textContent.includes('tokenize → count → top-k')",
        std::time::Duration::from_secs(20),
    );
    browser.wait_for(
        "document.querySelector('#conn-status')?.dataset.state === 'live'",
        std::time::Duration::from_secs(10),
    );
    assert_eq!(
        invoke(&server, "/v1/chains/words/invoke", TEXT.as_bytes()).status,
        200
    );
    assert_eq!(
        invoke(&server, "/v1/chain?step=tokenize&step=crash", b"x").status,
        422
    );
    // Both runs appear without a reload, one bar per step that ran.
    browser.wait_for(
        "document.querySelectorAll('#chain-runs-body tr[data-chain-run=\"words\"] .chain-step').length === 3",
        std::time::Duration::from_secs(10),
    );
    browser.wait_for(
        "document.querySelector('#chain-runs-body tr[data-chain-run=\"(ad hoc)\"] .chain-step-failed')?.dataset.step === '1'",
        std::time::Duration::from_secs(10),
    );
    let text = browser.eval(
        "document.querySelector('#chain-runs-body tr[data-chain-run=\"words\"] .chain-step').title",
    );
    assert!(
        text.as_str().unwrap().starts_with("step 0: tokenize · "),
        "{text}"
    );
}

#[test]
fn chain_guests_also_run_alone_under_weft_run() {
    let weft = Weft::new();
    // No input in memory: the SDK reads stdin; the output region is printed.
    let identity = weft.run(["run", examples::IDENTITY], b"as it was\n");
    assert_eq!(identity.code, Some(0), "{}", identity.stderr);
    assert_eq!(identity.stdout_text(), "as it was\n");
    // No registry to call into: a clear error, not a crash.
    let call = weft.run(["run", examples::CHAIN_CALL, "tokenize"], b"x");
    assert_eq!(call.code, Some(1));
    assert!(
        call.stderr
            .contains("chain::call is not available in this host"),
        "{}",
        call.stderr
    );
}
