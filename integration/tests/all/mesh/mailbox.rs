//! Mailbox bounds: a flood waits for room instead of growing, and an
//! oversized message is refused.

use super::*;

#[test]
fn a_flood_stays_within_the_mailbox_bound_and_an_oversized_message_is_refused() {
    let weft = Weft::new();
    let server = weft.serve(&[]);
    deploy(&server, "mesh-flood", examples::MESH_FLOOD);
    let started = Instant::now();
    let mesh = start(&server, json!({ "module": "mesh-flood", "ranks": 2 }));
    let id = mesh["id"].as_str().unwrap().to_owned();
    // While rank 0 floods, the host answers promptly and rank 1's mailbox
    // never holds more than its bound.
    let mut polls = 0;
    let status = loop {
        let asked = Instant::now();
        let health = server.get("/v1/health");
        assert_eq!(health.status, 200);
        let status = mesh_status(&server, &id);
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "the host took {:?} to answer",
            asked.elapsed()
        );
        let rank1 = &status["ranks"][1];
        let bound = rank1["mailbox_bound"].as_u64().unwrap();
        assert!(
            rank1["queued_messages"].as_u64().unwrap() <= bound,
            "{rank1:#}"
        );
        assert!(
            rank1["mailbox_high_water"].as_u64().unwrap() <= bound,
            "{rank1:#}"
        );
        polls += 1;
        if status["state"] == "ended" {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the flood did not end"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(polls >= 1);
    assert_eq!(status["report"]["status"], "ok", "{status:#}");
    assert_eq!(status["ranks"][1]["mailbox_high_water"], 1024, "{status:#}");
    assert_eq!(status["ranks"][0]["sent_messages"], 1024, "{status:#}");
    let rank0 = status["ranks"][0]["instance"].as_str().unwrap();
    let logs = server
        .get(&format!("/v1/logs?instance={rank0}&limit=100"))
        .json();
    let lines: Vec<&str> = logs["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    let summary = lines
        .iter()
        .find(|l| l.starts_with("accepted="))
        .unwrap_or_else(|| panic!("no summary in {lines:?}"));
    assert_eq!(
        *summary,
        "accepted=1024 refused=998976 blocked=weft mesh: timed out oversized=weft mesh: message too large"
    );
}
