//! The virtual network's API: subnets, security groups with rules,
//! interface records, attaching them to services, and all of it surviving a
//! host restart.

use serde_json::{Value, json};
use weft_integration::http::Request;
use weft_integration::{Served, Weft, examples};

fn call(server: &Served, method: &str, path: &str, body: Value) -> (u16, Value) {
    let text = body.to_string();
    let response = server.send(
        Request::new(method, path)
            .header("Content-Type", "application/json")
            .body(text.as_bytes()),
    );
    let value = if response.body.is_empty() {
        Value::Null
    } else {
        response.json()
    };
    (response.status, value)
}

fn post(server: &Served, path: &str, body: Value) -> Value {
    let (status, value) = call(server, "POST", path, body);
    assert!(
        status == 200 || status == 201,
        "POST {path}: {status} {value}"
    );
    value
}

#[test]
fn subnets_groups_and_nics_attach_detach_and_persist() {
    let weft = Weft::new();
    let server = weft.serve(&[]);

    let subnet = post(
        &server,
        "/v1/subnets",
        json!({ "cidr": "10.0.1.0/24", "name": "app" }),
    );
    let subnet_id = subnet["id"].as_str().unwrap().to_owned();
    assert!(subnet_id.starts_with("subnet-"));
    assert_eq!(subnet["gateway"], "10.0.1.1");
    let (status, overlap) = call(
        &server,
        "POST",
        "/v1/subnets",
        json!({ "cidr": "10.0.0.0/16" }),
    );
    assert_eq!(status, 409, "{overlap}");
    let (status, _) = call(
        &server,
        "POST",
        "/v1/subnets",
        json!({ "cidr": "10.0.1.7/24" }),
    );
    assert_eq!(status, 400);

    let web = post(
        &server,
        "/v1/security-groups",
        json!({ "name": "web", "ingress": [{ "protocol": "tcp", "ports": "80" }] }),
    );
    let web_id = web["id"].as_str().unwrap().to_owned();
    assert!(web_id.starts_with("sg-"));
    assert_eq!(
        web["ingress"],
        json!([{ "protocol": "tcp", "ports": "80" }])
    );
    assert_eq!(web["egress"], json!([{ "protocol": "all" }]));
    let peers = post(
        &server,
        "/v1/security-groups",
        json!({ "name": "from-web", "ingress": [{ "protocol": "udp", "ports": "5000-5010", "group": web_id }] }),
    );
    let peers_id = peers["id"].as_str().unwrap().to_owned();
    let with_rule = post(
        &server,
        &format!("/v1/security-groups/{web_id}/rules"),
        json!({ "direction": "ingress", "protocol": "icmp", "cidr": "10.0.0.0/8" }),
    );
    assert_eq!(with_rule["ingress"].as_array().unwrap().len(), 2);
    let (status, _) = call(
        &server,
        "POST",
        &format!("/v1/security-groups/{web_id}/rules"),
        json!({ "direction": "ingress", "protocol": "icmp", "ports": "80" }),
    );
    assert_eq!(status, 400, "ICMP takes no ports");

    let nic = post(
        &server,
        "/v1/nics",
        json!({ "subnet": subnet_id, "security_groups": [web_id], "description": "front" }),
    );
    let nic_id = nic["id"].as_str().unwrap().to_owned();
    assert!(nic_id.starts_with("nic-"));
    assert_eq!(nic["ip"], "10.0.1.2");
    assert_eq!(nic["status"], "available");
    assert!(nic["mac"].as_str().unwrap().len() == 17);
    let fixed = post(
        &server,
        "/v1/nics",
        json!({ "subnet": subnet_id, "ip": "10.0.1.50", "source_dest_check": false }),
    );
    assert_eq!(fixed["ip"], "10.0.1.50");
    let (status, _) = call(
        &server,
        "POST",
        "/v1/nics",
        json!({ "subnet": subnet_id, "ip": "10.0.1.50" }),
    );
    assert_eq!(status, 409, "the address is taken");

    // Attach to a running service; the record follows it.
    let ticker = std::fs::read(examples::TICKER).unwrap();
    server.send(Request::new("PUT", "/v1/modules/ticker").body(&ticker));
    let a = post(
        &server,
        "/v1/services",
        json!({ "module": "ticker", "args": ["1000"], "nics": [nic_id] }),
    );
    let a_id = a["id"].as_str().unwrap().to_owned();
    let b = post(
        &server,
        "/v1/services",
        json!({ "module": "ticker", "args": ["1000"] }),
    );
    let b_id = b["id"].as_str().unwrap().to_owned();
    let shown = server.get(&format!("/v1/nics/{nic_id}")).json();
    assert_eq!(shown["status"], "in-use");
    assert_eq!(shown["attachment"]["instance"], a_id.as_str());
    assert_eq!(shown["counters"]["rx_packets"], 0);

    let (status, busy) = call(
        &server,
        "POST",
        &format!("/v1/nics/{nic_id}/attach"),
        json!({ "instance": b_id }),
    );
    assert_eq!(status, 409, "{busy}");
    let (status, _) = call(
        &server,
        "DELETE",
        &format!("/v1/nics/{nic_id}"),
        Value::Null,
    );
    assert_eq!(status, 409, "an attached record cannot be deleted");
    let (status, _) = call(
        &server,
        "DELETE",
        &format!("/v1/security-groups/{web_id}"),
        Value::Null,
    );
    assert_eq!(status, 409, "a group in use cannot be deleted");

    post(&server, &format!("/v1/nics/{nic_id}/detach"), json!({}));
    let moved = post(
        &server,
        &format!("/v1/nics/{nic_id}/attach"),
        json!({ "instance": b_id }),
    );
    assert_eq!(moved["attachment"]["instance"], b_id.as_str());
    let (status, _) = call(
        &server,
        "POST",
        &format!("/v1/nics/{nic_id}/attach"),
        json!({ "instance": "inst-0000000000000000" }),
    );
    assert_eq!(status, 404, "no such instance");
    let (status, _) = call(
        &server,
        "PUT",
        &format!("/v1/nics/{}/security-groups", fixed["id"].as_str().unwrap()),
        json!({ "security_groups": [peers_id] }),
    );
    assert_eq!(status, 200);

    // A restart brings back every object and the attachment.
    assert!(server.stop().success());
    let server = weft.serve(&[]);
    let nics = server.get("/v1/nics").json();
    assert_eq!(nics["nics"].as_array().unwrap().len(), 2);
    let shown = server.get(&format!("/v1/nics/{nic_id}")).json();
    assert_eq!(shown["attachment"]["instance"], b_id.as_str());
    assert!(
        shown.get("counters").is_some(),
        "an attached record is a router port again"
    );
    assert_eq!(
        server.get("/v1/subnets").json()["subnets"][0]["cidr"],
        "10.0.1.0/24"
    );
    assert_eq!(
        server.get("/v1/security-groups").json()["security_groups"]
            .as_array()
            .unwrap()
            .len(),
        3,
        "web, from-web and default"
    );
    let (status, _) = call(
        &server,
        "POST",
        "/v1/nics",
        json!({ "subnet": subnet_id, "ip": "10.0.1.2" }),
    );
    assert_eq!(status, 409, "addresses stay reserved across a restart");

    // Stopping the service frees its record.
    assert_eq!(
        server
            .send(Request::new("DELETE", &format!("/v1/services/{b_id}")))
            .status,
        204
    );
    assert_eq!(
        server.get(&format!("/v1/nics/{nic_id}")).json()["status"],
        "available"
    );
    assert_eq!(
        server
            .send(Request::new("DELETE", &format!("/v1/nics/{nic_id}")))
            .status,
        204
    );
    let (status, _) = call(
        &server,
        "DELETE",
        &format!("/v1/subnets/{subnet_id}"),
        Value::Null,
    );
    assert_eq!(status, 409, "the subnet still holds a record");
}

#[test]
fn the_cli_manages_the_network() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    let url = server.url();
    let cli = |args: &[&str]| {
        let mut full = vec!["--server", url.as_str()];
        full.extend_from_slice(args);
        let run = weft.run(full, b"");
        assert_eq!(run.code, Some(0), "weft {args:?}: {}", run.stderr);
        run.stdout_text()
    };
    let subnet = cli(&["subnet", "create", "10.9.0.0/24", "--name", "cli"]);
    let subnet_id = subnet.split_whitespace().next().unwrap().to_owned();
    assert!(subnet.contains("gateway 10.9.0.1"), "{subnet}");
    let group_id = cli(&[
        "sg",
        "create",
        "web",
        "--ingress",
        "tcp:80",
        "--ingress",
        "icmp@10.0.0.0/8",
    ])
    .trim()
    .to_owned();
    let groups = cli(&["sg", "ls"]);
    assert!(groups.contains("tcp:80, icmp@10.0.0.0/8"), "{groups}");
    cli(&["sg", "rule", "add", &group_id, "--ingress", "udp:53"]);
    cli(&["sg", "rule", "rm", &group_id, "--ingress", "tcp:80"]);
    assert!(cli(&["sg", "ls"]).contains("icmp@10.0.0.0/8, udp:53"));

    let nic = cli(&[
        "nic",
        "create",
        "--subnet",
        &subnet_id,
        "--sg",
        &group_id,
        "--description",
        "cli",
    ]);
    let nic_id = nic.split_whitespace().next().unwrap().to_owned();
    assert!(nic.contains("ip 10.9.0.2"), "{nic}");

    let ticker = std::fs::read(examples::TICKER).unwrap();
    server.send(Request::new("PUT", "/v1/modules/ticker").body(&ticker));
    let started = cli(&[
        "service", "start", "ticker", "--arg", "1000", "--nic", &nic_id,
    ]);
    let instance = started.split_whitespace().nth(1).unwrap().to_owned();
    assert!(cli(&["nic", "ls"]).contains(&instance));
    cli(&["nic", "groups", &nic_id, "--sg", &group_id]);
    cli(&["nic", "detach", &nic_id]);
    let shown: Value = serde_json::from_str(&cli(&["nic", "show", &nic_id])).unwrap();
    assert_eq!(shown["status"], "available");
    cli(&["nic", "rm", &nic_id]);
    cli(&["subnet", "rm", &subnet_id]);
    let missing = weft.run(["--server", url.as_str(), "nic", "show", &nic_id], b"");
    assert_eq!(missing.code, Some(1));
    assert!(
        missing.stderr.contains("no interface"),
        "{}",
        missing.stderr
    );
}
