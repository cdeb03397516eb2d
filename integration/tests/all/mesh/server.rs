//! Meshes on a server: ranks talking TCP on the mesh subnet, the
//! dashboard, the CLI against the API, and ranks joining a running job.

use super::*;

/// Checks what `mesh-tcp` on 4 ranks printed: each rank heard the one
/// before it, from that rank's address on the subnet.
fn assert_tcp_exchanges(run: &Finished) {
    let stdout = run.stdout_text();
    assert_eq!(run.code, Some(0), "{stdout}\n{}", run.stderr);
    let mut heard = BTreeMap::new();
    for rank in 0..4u32 {
        let lines = rank_lines(&stdout, rank);
        assert_eq!(lines.len(), 2, "rank {rank}: {stdout}");
        heard.insert(rank, lines);
    }
    for rank in 0..4u32 {
        let previous = (rank + 3) % 4;
        let from = format!("10.244.0.{}", previous + 2);
        assert!(
            heard[&rank].contains(&format!(
                "rank {rank} got \"hello from rank {previous}\" from {from}"
            )),
            "{heard:#?}"
        );
    }
}

#[test]
fn ranks_reach_each_other_over_tcp_on_the_mesh_subnet() {
    let weft = Weft::new();
    // In process: the subnet is on a throwaway network of the CLI.
    assert_tcp_exchanges(&mesh_run(&weft, &[examples::MESH_TCP, "--ranks", "4"]));
    let no_subnet = mesh_run(&weft, &["--no-subnet", examples::MESH_TCP, "--ranks", "2"]);
    assert_ne!(no_subnet.code, Some(0));
    assert!(
        no_subnet.stderr.contains("no network interface"),
        "{}",
        no_subnet.stderr
    );

    // On a server.
    let server = weft.serve(&[]);
    let url = server.url();
    assert_tcp_exchanges(&weft.run(
        [
            "--server",
            url.as_str(),
            "mesh",
            "run",
            "--timeout",
            "60s",
            examples::MESH_TCP,
            "--ranks",
            "4",
        ],
        b"",
    ));
    let meshes = server.get("/v1/meshes").json();
    assert_eq!(meshes["meshes"][0]["subnet"]["cidr"], "10.244.0.0/24");
    assert_eq!(server.get("/v1/subnets").json()["subnets"], json!([]));
    assert_eq!(server.get("/v1/nics").json()["nics"], json!([]));
}

#[test]
fn the_dashboard_shows_meshes_their_ranks_and_traffic() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    deploy(&server, "mesh-heat", examples::MESH_HEAT);
    let mesh = start(
        &server,
        json!({ "module": "mesh-heat", "ranks": 4, "args": ["64", "50"] }),
    );
    let id = mesh["id"].as_str().unwrap().to_owned();
    wait_ended(&server, &id, Duration::from_secs(30));
    let mut browser = weft_integration::browser::Browser::open(&format!("{}/", server.url()));
    browser.wait_for(
        &format!(
            "document.querySelectorAll('#meshes-body [data-mesh=\"{id}\"] tr[data-state=\"exited\"]').length === 4"
        ),
        Duration::from_secs(20),
    );
    // Halo exchange: rank 1 sent bytes to ranks 0 and 2, none to rank 3.
    let cells = browser.eval(&format!(
        "[...document.querySelectorAll('#meshes-body [data-mesh=\"{id}\"] table.mesh-traffic tbody tr')][1].textContent"
    ));
    let cells = cells.as_str().unwrap().to_owned();
    assert!(cells.starts_with('1'), "{cells}");
    assert!(cells.contains("·"), "{cells}");
}

#[test]
fn the_cli_lists_shows_and_stops_meshes_on_a_server() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    deploy(&server, "mesh-ring", examples::MESH_RING);
    let mesh = start(
        &server,
        json!({ "module": "mesh-ring", "ranks": 2, "args": ["ring", "120"], "subnet": false }),
    );
    let id = mesh["id"].as_str().unwrap();
    let url = server.url();
    let cli = |args: &[&str]| {
        let mut full = vec!["--server", url.as_str(), "mesh"];
        full.extend_from_slice(args);
        let run = weft.run(&full, b"");
        assert_eq!(run.code, Some(0), "{args:?}: {}", run.stderr);
        run.stdout_text()
    };
    let listed = cli(&["ls"]);
    assert!(
        listed.contains(id) && listed.contains("running"),
        "{listed}"
    );
    assert_eq!(cli(&["rm", id]).trim(), format!("stopped {id}"));
    let shown: Value = serde_json::from_str(&cli(&["show", id])).unwrap();
    assert_eq!(shown["state"], "ended");
    assert_eq!(shown["report"]["ending"]["why"], "stopped");
    assert_eq!(shown["ranks"][0]["state"], "stopped");
}

#[test]
fn ranks_join_a_running_mesh_talk_to_the_others_and_leave() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    deploy(&server, "mesh-elastic", examples::MESH_ELASTIC);
    let mesh = start(
        &server,
        json!({ "module": "mesh-elastic", "ranks": 2, "args": ["base", "2"], "parent": "external" }),
    );
    let id = mesh["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (mesh["size"].as_u64(), mesh["epoch"].as_u64()),
        (Some(2), Some(0))
    );
    let (mut socket, _) =
        tungstenite::connect(format!("ws://{}/v1/meshes/{id}/parent", server.addr)).unwrap();
    if let tungstenite::stream::MaybeTlsStream::Plain(stream) = socket.get_mut() {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
    }
    let mut messages = Vec::new();
    let mut events = Vec::new();
    while !messages
        .iter()
        .any(|(src, text)| *src == 0 && text == "ready")
    {
        events.extend(next_frame(&mut socket, &mut messages));
    }

    // Bad requests are refused with clear errors, and change nothing.
    let zero = add_ranks(&server, &id, json!({ "count": 0 }));
    assert_eq!(
        zero.status,
        400,
        "{}: {:#}",
        zero.text(),
        mesh_status(&server, &id)
    );
    assert!(zero.text().contains("not 0"), "{}", zero.text());
    let many = add_ranks(&server, &id, json!({ "count": 1023 }));
    assert_eq!(many.status, 400, "{}", many.text());
    assert!(
        many.text().contains("at most 1024 ranks"),
        "{}",
        many.text()
    );
    let unknown = add_ranks(&server, &id, json!({ "count": 1, "module": "nope" }));
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    let nowhere = add_ranks(&server, "mesh-0000000000000000", json!({ "count": 1 }));
    assert_eq!(nowhere.status, 404, "{}", nowhere.text());
    assert_eq!(mesh_status(&server, &id)["size"], 2);

    // Two ranks join through the CLI, with the next numbers, a NIC each on
    // the mesh subnet, and their own arguments.
    let url = server.url();
    let added = weft.run(
        [
            "--server",
            url.as_str(),
            "mesh",
            "add",
            id.as_str(),
            "--ranks",
            "2",
            "joiner",
        ],
        b"",
    );
    assert_eq!(added.code, Some(0), "{}", added.stderr);
    assert_eq!(
        added.stdout_text().trim(),
        format!("added ranks 2 3 to {id}")
    );

    let mut report = None;
    while report.is_none() {
        match next_frame(&mut socket, &mut messages) {
            Some(event) if event["event"] == "ended" => report = Some(event["report"].clone()),
            Some(event) => events.push(event),
            None => {}
        }
    }
    let report = report.unwrap();
    assert_eq!(report["status"], "ok", "{report:#}");
    // The parent heard of both joins, and of every rank leaving.
    let joined: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "rank_joined")
        .map(|e| &e["rank"])
        .collect();
    assert_eq!(joined, [&json!(2), &json!(3)], "{events:#?}");
    let mut ended: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "rank_ended")
        .map(|e| e["rank"].as_u64().unwrap())
        .collect();
    ended.sort_unstable();
    assert_eq!(ended, [0, 1, 2, 3], "{events:#?}");
    // The joiners took part in the first sum (1+2+3+4), the second was
    // among the base ranks only (1+2), after both joiners had left.
    let summary = "joined=2,3 first=10 second=3 members=0,1 epoch=4 size=4";
    assert!(
        messages
            .iter()
            .any(|(src, text)| *src == 0 && text == summary),
        "{messages:?}"
    );

    let status = wait_ended(&server, &id, Duration::from_secs(10));
    assert_eq!(status["size"], 4, "{status:#}");
    assert_eq!(status["initial_size"], 2, "{status:#}");
    assert_eq!(status["live"], 0, "{status:#}");
    // Two joins and four departures.
    assert_eq!(status["epoch"], 6, "{status:#}");
    let ranks = status["ranks"].as_array().unwrap();
    for (rank, expected) in
        ranks
            .iter()
            .zip(["10.244.0.2", "10.244.0.3", "10.244.0.4", "10.244.0.5"])
    {
        assert_eq!(rank["state"], "exited", "{rank:#}");
        assert_eq!(rank["exit_code"], 0, "{rank:#}");
        assert_eq!(rank["addr"], expected, "{rank:#}");
    }
    assert_eq!(ranks[2]["module"], "mesh-elastic");
    // Rank 0: `ready`, two welcomes and the summary; each joiner one hello
    // and one welcome.
    assert_eq!(ranks[0]["sent_messages"], 4, "{status:#}");
    assert_eq!(ranks[0]["received_messages"], 2, "{status:#}");
    for joiner in &ranks[2..] {
        assert_eq!(joiner["sent_messages"], 1, "{joiner:#}");
        assert_eq!(joiner["sent_bytes"], "hello 2".len(), "{joiner:#}");
        assert_eq!(joiner["received_messages"], 1, "{joiner:#}");
        assert_eq!(joiner["received_bytes"], "welcome 2".len(), "{joiner:#}");
    }
    // Traffic between joiners and base ranks, the parent last.
    let traffic = &status["traffic"];
    assert_eq!(traffic.as_array().unwrap().len(), 5, "{traffic}");
    assert_eq!(traffic[2][0], 7, "{traffic}");
    assert_eq!(traffic[0][3], 9, "{traffic}");
    assert_eq!(traffic[0][4], 5 + summary.len(), "{traffic}");
    assert_eq!(traffic[1][2], 0, "{traffic}");
    // Gone without a trace, and no rank joins a mesh that has ended.
    assert_eq!(server.get("/v1/nics").json()["nics"], json!([]));
    assert_eq!(server.get("/v1/subnets").json()["subnets"], json!([]));
    let late = add_ranks(&server, &id, json!({ "count": 1 }));
    assert_eq!(late.status, 409, "{}", late.text());
    assert!(
        late.text().contains("the mesh has ended"),
        "{}",
        late.text()
    );
}
