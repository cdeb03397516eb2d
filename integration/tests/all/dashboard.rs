//! The dashboard in a real headless browser: it lists the deployed modules,
//! and an invocation made through the API appears without a reload.

use std::time::Duration;
use weft_integration::browser::Browser;
use weft_integration::http::Request;
use weft_integration::{Weft, examples};

#[test]
fn the_dashboard_shows_modules_and_live_invocations() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    let hello = std::fs::read(examples::HELLO).unwrap();
    assert_eq!(
        server
            .send(Request::new("PUT", "/v1/modules/hello").body(&hello))
            .status,
        201
    );

    let mut browser = Browser::open(&format!("{}/", server.url()));
    browser.wait_for(
        "document.querySelector('#modules-body tr[data-module=\"hello\"]') !== null",
        Duration::from_secs(20),
    );
    browser.wait_for(
        "document.querySelector('#conn-status')?.dataset.state === 'live'",
        Duration::from_secs(10),
    );
    let title = browser.eval("document.title");
    assert_eq!(title, "weft dashboard");

    // Deployed after the page loaded: appears live.
    let spin = std::fs::read(examples::SPIN).unwrap();
    server.send(Request::new("PUT", "/v1/modules/spin").body(&spin));
    browser.wait_for(
        "document.querySelector('#modules-body tr[data-module=\"spin\"]') !== null",
        Duration::from_secs(10),
    );

    let invoked = server.send(Request::new("POST", "/v1/modules/hello/invoke").body(b"browser"));
    let instance = invoked.header("x-weft-instance").unwrap().to_owned();
    browser.wait_for(
        &format!(
            "document.querySelector('#invocations-body tr[data-instance=\"{instance}\"]')?.dataset.status === 'ok'"
        ),
        Duration::from_secs(10),
    );

    let failed = server.send(Request::new(
        "POST",
        "/v1/modules/spin/invoke?timeout=200ms",
    ));
    let failed_instance = failed.json()["error"]["instance"]
        .as_str()
        .unwrap()
        .to_owned();
    browser.wait_for(
        &format!(
            "document.querySelector('#invocations-body tr[data-instance=\"{failed_instance}\"]')?.dataset.status === 'failed'"
        ),
        Duration::from_secs(10),
    );

    // A service shows in its panel, running, with its output in the logs.
    let ticker = std::fs::read(examples::TICKER).unwrap();
    server.send(Request::new("PUT", "/v1/modules/ticker").body(&ticker));
    let started = server.send(
        Request::new("POST", "/v1/services")
            .header("Content-Type", "application/json")
            .body(br#"{"module": "ticker", "args": ["100"]}"#),
    );
    let service = started.json()["id"].as_str().unwrap().to_owned();
    browser.wait_for(
        &format!(
            "document.querySelector('#services-body tr[data-service=\"{service}\"]')?.dataset.state === 'running'"
        ),
        Duration::from_secs(10),
    );
    browser.wait_for(
        "[...document.querySelectorAll('#logs-body .log-line')].some(l => l.textContent.includes('tick 2'))",
        Duration::from_secs(10),
    );

    // The network panel shows subnets and records, and who holds them.
    let json = |path: &str, body: &str| {
        server
            .send(
                Request::new("POST", path)
                    .header("Content-Type", "application/json")
                    .body(body.as_bytes()),
            )
            .json()
    };
    let subnet = json("/v1/subnets", r#"{"cidr": "10.0.7.0/24", "name": "demo"}"#);
    let subnet = subnet["id"].as_str().unwrap().to_owned();
    let nic = json("/v1/nics", &format!(r#"{{"subnet": "{subnet}"}}"#));
    let nic = nic["id"].as_str().unwrap().to_owned();
    json(
        &format!("/v1/nics/{nic}/attach"),
        &format!(r#"{{"instance": "{service}"}}"#),
    );
    browser.wait_for(
        &format!(
            "document.querySelector('#network-body tr[data-nic=\"{nic}\"]')?.dataset.status === 'in-use'"
        ),
        Duration::from_secs(10),
    );

    // With a gateway and a forward, the subnet shows both, the forward as
    // a link to its URL.
    let gateway = json("/v1/gateways", &format!(r#"{{"subnet": "{subnet}"}}"#));
    let gateway = gateway["id"].as_str().unwrap().to_owned();
    let ip = server.get(&format!("/v1/nics/{nic}")).json()["ip"]
        .as_str()
        .unwrap()
        .to_owned();
    let forward = json(
        "/v1/forwards",
        &format!(r#"{{"listen": "127.0.0.1:0", "to": "{ip}:80"}}"#),
    );
    let forward = forward["id"].as_str().unwrap().to_owned();
    browser.wait_for(
        &format!(
            "!!document.querySelector('#network-body [data-gateway=\"{gateway}\"]') && \
             !!document.querySelector('#network-body tr[data-forward=\"{forward}\"] a[href^=\"http://127.0.0.1:\"]')"
        ),
        Duration::from_secs(10),
    );

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    browser.screenshot(&shot);
    eprintln!("dashboard screenshot: {}", shot.display());
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
}
