//! `weft serve` and the HTTP API, against the real binary on loopback.

use std::net::TcpStream;
use std::time::{Duration, Instant};
use weft_integration::http::{EventStream, Request};
use weft_integration::netkit::{connect_from, eventually, exchange};
use weft_integration::{Weft, examples, large_module_wat};

fn wasm(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn upload_list_invoke_delete_over_the_api() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    let hello = wasm(examples::HELLO);

    let put = server.send(Request::new("PUT", "/v1/modules/hello").body(&hello));
    assert_eq!(put.status, 201, "{}", put.text());
    let module = put.json();
    assert_eq!(module["name"], "hello");
    assert_eq!(module["size"], hello.len());
    assert!(module["digest"].as_str().unwrap().starts_with("sha256:"));
    assert!(
        module["imports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i == "wasi_snapshot_preview1::fd_write")
    );
    assert!(
        module["exports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "_start")
    );

    let list = server.get("/v1/modules").json();
    assert_eq!(list["modules"][0]["name"], "hello");
    assert_eq!(
        server.get("/v1/modules/hello").json()["digest"],
        module["digest"]
    );

    let invoke = server.send(Request::new("POST", "/v1/modules/hello/invoke").body(b"world"));
    assert_eq!(invoke.status, 200, "{}", invoke.text());
    assert_eq!(invoke.text(), "hello, world!\n");
    assert_eq!(invoke.header("x-weft-exit-code"), Some("0"));
    assert!(
        invoke
            .header("x-weft-instance")
            .unwrap()
            .starts_with("inst-")
    );
    assert!(
        invoke
            .header("x-weft-duration-us")
            .unwrap()
            .parse::<u64>()
            .is_ok()
    );

    let exit = server.send(Request::new("POST", "/v1/modules/hello/invoke?args=7").body(b"x"));
    assert_eq!(exit.header("x-weft-exit-code"), Some("7"));

    // The JSON envelope.
    let envelope = server.send(
        Request::new("POST", "/v1/modules/hello/invoke")
            .header("Content-Type", "application/vnd.weft.invoke+json")
            .body(br#"{"input": "json", "args": ["5"]}"#),
    );
    assert_eq!(envelope.text(), "hello, json!\n");
    assert_eq!(envelope.header("x-weft-exit-code"), Some("5"));

    let instances = server.get("/v1/instances").json();
    assert_eq!(instances["recent"].as_array().unwrap().len(), 3);
    assert_eq!(instances["recent"][0]["module"], "hello");

    // Re-upload replaces (200, not 201).
    let again = server.send(Request::new("PUT", "/v1/modules/hello").body(&hello));
    assert_eq!(again.status, 200);

    assert_eq!(
        server
            .send(Request::new("DELETE", "/v1/modules/hello"))
            .status,
        204
    );
    let gone = server.get("/v1/modules/hello");
    assert_eq!(gone.status, 404);
    assert_eq!(gone.json()["error"]["code"], "not_found");
    let unknown = server.send(Request::new("POST", "/v1/modules/hello/invoke"));
    assert_eq!(unknown.status, 404);
    assert_eq!(
        unknown.json()["error"]["message"],
        "no module named `hello`"
    );
}

#[test]
fn bad_uploads_are_refused_and_nothing_is_stored() {
    let weft = Weft::new();
    let server = weft.serve(&["--max-module-size", "1MiB"]);

    let text = server.send(Request::new("PUT", "/v1/modules/notes").body(b"plain text"));
    assert_eq!(text.status, 400);
    assert_eq!(text.json()["error"]["code"], "not_wasm");

    let hello = wasm(examples::HELLO);
    let truncated =
        server.send(Request::new("PUT", "/v1/modules/cut").body(&hello[..hello.len() / 3]));
    assert_eq!(truncated.status, 400);
    let error = truncated.json();
    assert_eq!(error["error"]["code"], "invalid_module");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unexpected end"),
        "{error}"
    );

    let imports = server.send(
        Request::new("PUT", "/v1/modules/needs")
            .body(br#"(module (import "env" "f" (func)) (func (export "_start")))"#),
    );
    assert_eq!(imports.status, 400);
    assert_eq!(imports.json()["error"]["code"], "missing_imports");

    let bad_name = server.send(Request::new("PUT", "/v1/modules/Bad%20Name").body(&hello));
    assert_eq!(bad_name.status, 400);
    assert_eq!(bad_name.json()["error"]["code"], "invalid_name");

    // A declared 1 GiB upload is refused from its headers: the server does
    // not wait for (or read) the body.
    let started = Instant::now();
    let huge = server.send(
        Request::new("PUT", "/v1/modules/huge")
            .header("Content-Length", (1u64 << 30).to_string())
            .body(&[0u8; 64 << 10]),
    );
    assert_eq!(huge.status, 413);
    assert_eq!(huge.json()["error"]["code"], "too_large");
    assert!(started.elapsed() < Duration::from_secs(5));

    // A body without a declared length is cut off at the limit.
    let chunked = vec![b'x'; 2 << 20];
    let mut request = format!(
        "PUT /v1/modules/chunked HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        server.addr
    )
    .into_bytes();
    for piece in chunked.chunks(64 << 10) {
        request.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        request.extend_from_slice(piece);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    use std::io::Write;
    let _ = stream.write_all(&request);
    let response = weft_integration::http::read_response(&mut std::io::BufReader::new(stream));
    assert_eq!(response.status, 413);

    assert_eq!(
        server.get("/v1/modules").json()["modules"],
        serde_json::json!([])
    );
    let cache = weft.data_dir().join("cache");
    assert_eq!(std::fs::read_dir(cache).map(|d| d.count()).unwrap_or(0), 0);
}

#[test]
fn a_runaway_guest_gets_422_while_others_are_served() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    for (name, path) in [
        ("spin", examples::SPIN),
        ("hello", examples::HELLO),
        ("unreachable", examples::UNREACHABLE),
    ] {
        let put =
            server.send(Request::new("PUT", &format!("/v1/modules/{name}")).body(&wasm(path)));
        assert!(put.status == 201, "{name}: {}", put.text());
    }
    let addr = server.addr;
    let spinning = std::thread::spawn(move || {
        weft_integration::http::send(
            addr,
            Request::new("POST", "/v1/modules/spin/invoke?timeout=2s"),
        )
    });
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    for i in 0..20 {
        let input = format!("{i}");
        let hello =
            server.send(Request::new("POST", "/v1/modules/hello/invoke").body(input.as_bytes()));
        assert_eq!(hello.text(), format!("hello, {i}!\n"));
    }
    let others = started.elapsed();
    let spun = spinning.join().unwrap();
    assert_eq!(spun.status, 422, "{}", spun.text());
    let error = spun.json();
    assert_eq!(error["error"]["code"], "deadline_exceeded");
    assert_eq!(
        error["error"]["message"],
        "deadline exceeded: still running after 2s"
    );
    assert_eq!(error["error"]["module"], "spin");
    assert!(
        others < Duration::from_secs(2),
        "hello waited for spin: {others:?}"
    );

    let trap = server.send(Request::new("POST", "/v1/modules/unreachable/invoke"));
    assert_eq!(trap.status, 422);
    let error = trap.json();
    assert_eq!(error["error"]["code"], "unreachable");
    assert_eq!(error["error"]["stderr"], "about to hit unreachable\n");

    let bad = server.send(Request::new("POST", "/v1/modules/hello/invoke?timeout=1h"));
    assert_eq!(bad.status, 400);
    let bad = server.send(Request::new("POST", "/v1/modules/hello/invoke?bogus=1"));
    assert_eq!(bad.status, 400);
}

#[test]
fn past_the_running_cap_requests_are_refused_not_queued() {
    let weft = Weft::new();
    let server = weft.serve(&["--max-running", "1"]);
    server.send(Request::new("PUT", "/v1/modules/spin").body(&wasm(examples::SPIN)));
    server.send(Request::new("PUT", "/v1/modules/hello").body(&wasm(examples::HELLO)));
    let addr = server.addr;
    let spinning = std::thread::spawn(move || {
        weft_integration::http::send(
            addr,
            Request::new("POST", "/v1/modules/spin/invoke?timeout=2s"),
        )
    });
    // Once spin holds the one running slot.
    eventually(Duration::from_secs(10), || {
        let metrics = server.get("/metrics").text();
        metrics
            .contains("\nweft_instances_running 1\n")
            .then_some(())
    });
    let busy = server.send(Request::new("POST", "/v1/modules/hello/invoke"));
    assert_eq!(busy.status, 503, "{}", busy.text());
    assert_eq!(busy.json()["error"]["code"], "busy");
    assert_eq!(busy.header("retry-after"), Some("1"));
    assert_eq!(spinning.join().unwrap().status, 422);
    let after = server.send(Request::new("POST", "/v1/modules/hello/invoke"));
    assert_eq!(after.status, 200);
    let metrics = server.get("/metrics").text();
    assert!(
        metrics.contains("weft_invocations_busy_total 1"),
        "{metrics}"
    );
}

#[test]
fn one_client_holding_its_share_of_connections_gets_a_503_and_others_get_in() {
    let weft = Weft::new();
    let server = weft.serve(&["--max-connections-per-client", "4"]);
    // Four connections held open, quiet: this client's whole share.
    let held: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    // Its next one is answered at once, with the reason.
    let refused = eventually(Duration::from_secs(10), || {
        let answer = server.get("/v1/health");
        (answer.status == 503).then_some(answer)
    });
    assert_eq!(refused.json()["error"]["code"], "busy");
    assert!(
        refused.text().contains("holds 4 connections"),
        "{}",
        refused.text()
    );
    // Another client gets in meanwhile.
    let request = format!("GET /v1/health HTTP/1.0\r\nHost: {}\r\n\r\n", server.addr);
    let other = exchange(connect_from([127, 0, 0, 2], server.addr).unwrap(), &request);
    assert!(other.starts_with("HTTP/1.0 200"), "{other}");
    // And the first, once it lets one go.
    drop(held);
    eventually(Duration::from_secs(10), || {
        (server.get("/v1/health").status == 200).then_some(())
    });
    // Logged (stderr is read as it comes, so the line may trail a little).
    eventually(Duration::from_secs(10), || {
        server
            .stderr()
            .contains("refused a connection from 127.0.0.1")
            .then_some(())
    });
}

#[test]
fn a_restarted_server_keeps_modules_and_does_not_recompile() {
    let weft = Weft::new();
    let large = large_module_wat(5_000);
    {
        let server = weft.serve(&[]);
        assert_eq!(
            server
                .send(Request::new("PUT", "/v1/modules/hello").body(&wasm(examples::HELLO)))
                .status,
            201
        );
        assert_eq!(
            server
                .send(Request::new("PUT", "/v1/modules/large").body(large.as_bytes()))
                .status,
            201
        );
        assert!(server.stop().success());
    }
    let cache = weft.data_dir().join("cache");
    let artifacts = |dir: &std::path::Path| -> Vec<(std::path::PathBuf, std::time::SystemTime)> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path(), e.metadata().unwrap().modified().unwrap())
            })
            .collect();
        files.sort();
        files
    };
    let before = artifacts(&cache);
    assert_eq!(before.len(), 2);

    let server = weft.serve(&["-v"]);
    let names: Vec<String> = server.get("/v1/modules").json()["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["hello", "large"]);
    let started = Instant::now();
    let hello = server.send(Request::new("POST", "/v1/modules/hello/invoke").body(b"again"));
    assert_eq!(hello.text(), "hello, again!\n");
    assert_eq!(
        server
            .send(Request::new("POST", "/v1/modules/large/invoke"))
            .status,
        200
    );
    eprintln!("first invocations after restart: {:?}", started.elapsed());
    assert_eq!(
        artifacts(&cache),
        before,
        "artifacts were rewritten: something recompiled"
    );
    // The harness reads the server's stderr on a thread of its own: a line
    // the server wrote may reach `stderr()` a moment after the response.
    let wanted = [
        "loaded `hello` from the compiled-artifact cache",
        "loaded `large` from the compiled-artifact cache",
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut log = server.stderr();
    while !wanted.iter().all(|line| log.contains(line)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        log = server.stderr();
    }
    for line in wanted {
        assert!(log.contains(line), "{log}");
    }
}

#[test]
fn beyond_loopback_a_token_is_required() {
    let weft = Weft::new();
    let refused = weft.run(["serve", "--listen", "0.0.0.0:0"], b"");
    assert_eq!(refused.code, Some(1));
    assert!(
        refused
            .stderr
            .contains("refusing to listen on 0.0.0.0:0 without a token"),
        "{}",
        refused.stderr
    );

    let server = weft.start(&["serve", "--listen", "0.0.0.0:0", "--token", "s3cret"]);
    // Talk to it over loopback only.
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", server.addr.port()).parse().unwrap();
    let send = |request: Request<'_>| weft_integration::http::send(addr, request);
    let anonymous = send(Request::new("GET", "/v1/modules"));
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.json()["error"]["code"], "unauthorized");
    let wrong = send(Request::new("GET", "/v1/modules").header("Authorization", "Bearer nope"));
    assert_eq!(wrong.status, 401);
    let right = send(Request::new("GET", "/v1/modules").header("Authorization", "Bearer s3cret"));
    assert_eq!(right.status, 200);
    assert_eq!(send(Request::new("GET", "/metrics")).status, 401);
    assert_eq!(
        send(Request::new("GET", "/v1/health?access_token=s3cret")).status,
        200
    );
    // The page itself holds no data and loads without the token.
    assert_eq!(send(Request::new("GET", "/")).status, 200);
}

#[test]
fn requests_for_other_host_names_are_refused() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    let rebound =
        server.send(Request::new("GET", "/v1/modules").header("Host", "attacker.example:7878"));
    assert_eq!(rebound.status, 403);
    assert_eq!(rebound.json()["error"]["code"], "host_not_allowed");
    let local = server.send(Request::new("GET", "/v1/modules").header("Host", "localhost:7878"));
    assert_eq!(local.status, 200);
}

#[test]
fn health_metrics_openapi_and_events() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    let health = server.get("/v1/health").json();
    assert_eq!(health["status"], "ok");

    let mut events = EventStream::open(server.addr, "/v1/events");
    let mut logs = EventStream::open(server.addr, "/v1/logs?follow=true&module=unreachable");
    server.send(Request::new("PUT", "/v1/modules/hello").body(&wasm(examples::HELLO)));
    server.send(Request::new("PUT", "/v1/modules/unreachable").body(&wasm(examples::UNREACHABLE)));
    let deployed = events.next_named("deployed");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&deployed.data).unwrap()["name"],
        "hello"
    );
    server.send(Request::new("POST", "/v1/modules/hello/invoke").body(b"sse"));
    let started = events.next_named("started");
    let finished = events.next_named("finished");
    let finished: serde_json::Value = serde_json::from_str(&finished.data).unwrap();
    assert!(
        started
            .data
            .contains(finished["instance"].as_str().unwrap())
    );
    assert_eq!(finished["status"], "ok");
    assert_eq!(finished["output_bytes"], "hello, sse!\n".len());

    server.send(Request::new("POST", "/v1/modules/unreachable/invoke"));
    let line: serde_json::Value = serde_json::from_str(&logs.next_named("log").data).unwrap();
    assert_eq!(line["module"], "unreachable");
    assert_eq!(line["stream"], "stderr");
    assert_eq!(line["message"], "about to hit unreachable");
    let failed: serde_json::Value =
        serde_json::from_str(&events.next_named("finished").data).unwrap();
    assert_eq!(failed["code"], "unreachable");

    let recent_logs = server.get("/v1/logs?module=unreachable").json();
    assert_eq!(
        recent_logs["lines"][0]["message"],
        "about to hit unreachable"
    );

    let metrics = server.get("/metrics");
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.text();
    assert!(
        text.contains("weft_invocations_total{module=\"hello\",status=\"ok\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("weft_invocations_total{module=\"unreachable\",status=\"unreachable\"} 1"),
        "{text}"
    );
    assert!(text.contains("weft_modules 2"), "{text}");

    let openapi = server.get("/v1/openapi.json").json();
    assert_eq!(openapi["openapi"], "3.1.0");
    for path in [
        "/v1/health",
        "/v1/openapi.json",
        "/v1/modules",
        "/v1/modules/{name}",
        "/v1/modules/{name}/invoke",
        "/v1/instances",
        "/v1/logs",
        "/v1/events",
        "/metrics",
        "/v1/services",
        "/v1/services/{id}",
        "/v1/meshes",
        "/v1/meshes/{id}",
        "/v1/meshes/{id}/parent",
        "/v1/subnets",
        "/v1/subnets/{id}",
        "/v1/security-groups",
        "/v1/security-groups/{id}",
        "/v1/security-groups/{id}/rules",
        "/v1/security-groups/{id}/rules/delete",
        "/v1/nics",
        "/v1/nics/{id}",
        "/v1/nics/{id}/attach",
        "/v1/nics/{id}/detach",
        "/v1/nics/{id}/security-groups",
        "/v1/gateways",
        "/v1/gateways/{id}",
        "/v1/forwards",
        "/v1/forwards/{id}",
    ] {
        assert!(
            openapi["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    let wrong_method = server.send(Request::new("PATCH", "/v1/modules"));
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.json()["error"]["code"], "method_not_allowed");
}

#[test]
fn the_cli_talks_to_a_running_server() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    let url = server.url();
    let cli = |args: &[&str], stdin: &[u8]| {
        let mut full = vec!["--server", url.as_str()];
        full.extend_from_slice(args);
        weft.run(full, stdin)
    };

    let deploy = cli(&["deploy", examples::HELLO], b"");
    assert_eq!(deploy.code, Some(0), "{}", deploy.stderr);
    assert!(
        deploy.stdout_text().starts_with("deployed hello (sha256:"),
        "{}",
        deploy.stdout_text()
    );
    let deploy = cli(&["deploy", examples::SPIN, "--name", "spinner"], b"");
    assert_eq!(deploy.code, Some(0), "{}", deploy.stderr);

    let ls = cli(&["ls"], b"").stdout_text();
    assert!(ls.lines().any(|l| l.starts_with("hello ")), "{ls}");
    assert!(ls.lines().any(|l| l.starts_with("spinner ")), "{ls}");

    let invoke = cli(&["invoke", "hello"], b"cli\n");
    assert_eq!(invoke.code, Some(0), "{}", invoke.stderr);
    assert_eq!(invoke.stdout_text(), "hello, cli!\n");
    let invoke = cli(&["invoke", "hello", "--data", "flag", "--arg", "9"], b"");
    assert_eq!(invoke.code, Some(9));
    assert_eq!(invoke.stdout_text(), "hello, flag!\n");
    let (_dir, file) = weft_integration::temp_file("input.txt", b"file");
    let invoke = cli(
        &["invoke", "hello", "--data", &format!("@{}", file.display())],
        b"",
    );
    assert_eq!(invoke.stdout_text(), "hello, file!\n");

    let spin = cli(&["invoke", "spinner", "--timeout", "500ms"], b"");
    assert_eq!(spin.code, Some(124));
    assert!(
        spin.stderr.contains("weft: spinner: deadline exceeded"),
        "{}",
        spin.stderr
    );

    let ps = cli(&["ps"], b"").stdout_text();
    assert!(
        ps.contains("deadline_exceeded") && ps.contains("exit 9"),
        "{ps}"
    );

    let rm = cli(&["rm", "hello"], b"");
    assert_eq!(rm.stdout_text(), "deleted hello\n");
    let missing = cli(&["invoke", "hello"], b"");
    assert_eq!(missing.code, Some(1));
    assert_eq!(missing.stderr, "weft: hello: no module named `hello`\n");

    drop(server);
    let unreachable = cli(&["ls"], b"");
    assert_eq!(unreachable.code, Some(1));
    assert!(
        unreachable.stderr.contains("cannot reach a weft server at"),
        "{}",
        unreachable.stderr
    );
}

#[test]
fn weft_logs_prints_guest_lines() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    server.send(Request::new("PUT", "/v1/modules/unreachable").body(&wasm(examples::UNREACHABLE)));
    server.send(Request::new("POST", "/v1/modules/unreachable/invoke"));
    let logs = weft.run(["--server", &server.url(), "logs", "unreachable"], b"");
    assert_eq!(logs.code, Some(0), "{}", logs.stderr);
    let out = logs.stdout_text();
    assert!(
        out.contains("unreachable inst-") && out.contains("about to hit unreachable"),
        "{out}"
    );
}
