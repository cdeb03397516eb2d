use super::*;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn record() -> Record {
    Record::new(
        NicId::from_entropy(0x2a),
        SubnetId::from_entropy(1),
        ip("10.0.1.2"),
    )
}

#[test]
fn a_new_record() {
    let r = record();
    assert_eq!(r.id(), NicId::from_entropy(0x2a));
    assert_eq!(r.subnet(), SubnetId::from_entropy(1));
    assert_eq!(r.mac().to_string(), "02:00:00:00:00:2a");
    assert_eq!(r.primary_ip(), ip("10.0.1.2"));
    assert!(r.secondary_ips().is_empty());
    assert!(r.security_groups().is_empty());
    assert!(r.source_dest_check());
    assert_eq!(r.description(), "");
    assert_eq!(r.status(), Status::Available);
    assert_eq!(r.attachment(), None);
}

#[test]
fn addresses() {
    let mut r = record();
    r.add_secondary_ip(ip("10.0.1.3")).unwrap();
    assert_eq!(
        r.add_secondary_ip(ip("10.0.1.3")),
        Err(RecordError::DuplicateIp(ip("10.0.1.3")))
    );
    assert_eq!(
        r.add_secondary_ip(ip("10.0.1.2")),
        Err(RecordError::DuplicateIp(ip("10.0.1.2")))
    );
    assert!(r.owns(ip("10.0.1.2")));
    assert!(r.owns(ip("10.0.1.3")));
    assert!(!r.owns(ip("10.0.1.4")));
    assert_eq!(
        r.ips().collect::<Vec<_>>(),
        [ip("10.0.1.2"), ip("10.0.1.3")]
    );
    for last in 4..4 + MAX_SECONDARY_IPS as u8 - 1 {
        r.add_secondary_ip(Ipv4Addr::new(10, 0, 1, last)).unwrap();
    }
    assert_eq!(
        r.add_secondary_ip(ip("10.0.1.200")),
        Err(RecordError::TooManyIps)
    );
    assert!(r.remove_secondary_ip(ip("10.0.1.3")));
    assert!(!r.remove_secondary_ip(ip("10.0.1.3")));
    assert!(!r.owns(ip("10.0.1.3")));
}

#[test]
fn groups_description_and_check() {
    let mut r = record();
    let g = |n| GroupId::from_entropy(n);
    r.set_security_groups(vec![g(1), g(2)]).unwrap();
    assert_eq!(r.security_groups(), [g(1), g(2)]);
    assert_eq!(
        r.set_security_groups(vec![g(1), g(1)]),
        Err(RecordError::DuplicateGroup(g(1)))
    );
    assert_eq!(
        r.set_security_groups((0..9).map(g).collect()),
        Err(RecordError::TooManyGroups)
    );
    assert_eq!(
        r.security_groups(),
        [g(1), g(2)],
        "a refused change changes nothing"
    );
    r.set_source_dest_check(false);
    assert!(!r.source_dest_check());
    r.set_description("nat instance").unwrap();
    assert_eq!(
        r.set_description("x".repeat(256)),
        Err(RecordError::DescriptionTooLong)
    );
    assert_eq!(r.description(), "nat instance");
}

#[test]
fn attach_and_detach() {
    let mut r = record();
    assert_eq!(r.detach(), Err(RecordError::NotAttached));
    r.attach("inst-a", 5).unwrap();
    assert_eq!(r.status(), Status::InUse);
    assert_eq!(
        r.attach("inst-b", 6),
        Err(RecordError::InUse("inst-a".into()))
    );
    assert_eq!(
        r.detach(),
        Ok(Attachment {
            instance: "inst-a".into(),
            attached_ms: 5
        })
    );
    assert_eq!(r.status(), Status::Available);
    r.attach("inst-b", 7).unwrap();
    assert_eq!(r.attachment().map(|a| a.instance.as_str()), Some("inst-b"));
}

#[test]
fn json_form_round_trips() {
    let mut r = record();
    r.add_secondary_ip(ip("10.0.1.9")).unwrap();
    r.set_security_groups(vec![GroupId::from_entropy(3)])
        .unwrap();
    r.set_description("web").unwrap();
    r.attach("inst-a", 1_700_000_000_000).unwrap();
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(
        json,
        concat!(
            r#"{"id":"nic-00000000002a","subnet":"subnet-000000000001","mac":"02:00:00:00:00:2a","#,
            r#""primary_ip":"10.0.1.2","secondary_ips":["10.0.1.9"],"security_groups":["sg-000000000003"],"#,
            r#""source_dest_check":true,"description":"web","status":"in-use","#,
            r#""attachment":{"instance":"inst-a","attached_ms":1700000000000}}"#
        )
    );
    assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), r);

    let plain = serde_json::to_string(&record()).unwrap();
    assert!(
        plain.contains(r#""status":"available","attachment":null"#),
        "{plain}"
    );
    assert_eq!(serde_json::from_str::<Record>(&plain).unwrap(), record());
}

#[test]
fn stored_records_are_checked() {
    let json = serde_json::to_string(&record()).unwrap();
    let bad = [
        json.replace(r#""status":"available""#, r#""status":"in-use""#),
        json.replace("02:00:00:00:00:2a", "01:00:00:00:00:2a"),
        json.replace(r#""secondary_ips":[]"#, r#""secondary_ips":["10.0.1.2"]"#),
        json.replace(
            r#""security_groups":[]"#,
            r#""security_groups":["sg-000000000001","sg-000000000001"]"#,
        ),
        json.replace(r#""primary_ip":"10.0.1.2""#, r#""primary_ip":"10.0.1""#),
    ];
    for bad in bad {
        assert_ne!(bad, json);
        assert!(serde_json::from_str::<Record>(&bad).is_err(), "{bad}");
    }
}
