use super::*;
use crate::packet;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn syn() -> Vec<u8> {
    packet::tcp(
        "10.0.0.2:40000".parse().unwrap(),
        "10.0.0.3:80".parse().unwrap(),
        TcpFlags::SYN,
        b"",
    )
}

/// Applies `edit` to the IPv4 header and fixes its checksum.
fn edited(mut bytes: Vec<u8>, edit: impl FnOnce(&mut Ipv4Packet<&mut Vec<u8>>)) -> Vec<u8> {
    let mut packet = Ipv4Packet::new_unchecked(&mut bytes);
    edit(&mut packet);
    packet.fill_checksum();
    bytes
}

#[test]
fn refuses_truncated_headers() {
    let bytes = syn();
    for len in 0..20 {
        assert_eq!(
            Flow::parse(&bytes[..len]),
            Err(ParseError::Header),
            "len {len}"
        );
    }
    // A total length over the buffer.
    assert_eq!(
        Flow::parse(&bytes[..bytes.len() - 1]),
        Err(ParseError::Header)
    );
    // A header length under 20.
    let short_ihl = edited(syn(), |p| p.set_header_len(16));
    assert_eq!(Flow::parse(&short_ihl), Err(ParseError::Header));
}

#[test]
fn refuses_other_versions_and_bad_checksums() {
    let v6 = edited(syn(), |p| p.set_version(6));
    assert_eq!(Flow::parse(&v6), Err(ParseError::Version(6)));

    let mut bad = syn();
    bad[8] ^= 1; // TTL, without fixing the checksum
    assert_eq!(Flow::parse(&bad), Err(ParseError::Checksum));
}

#[test]
fn refuses_fragments() {
    let first = edited(syn(), |p| p.set_more_frags(true));
    assert_eq!(Flow::parse(&first), Err(ParseError::Fragment));
    let later = edited(syn(), |p| p.set_frag_offset(8));
    assert_eq!(Flow::parse(&later), Err(ParseError::Fragment));
}

#[test]
fn refuses_martian_sources() {
    for src in ["0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255"] {
        let bytes = edited(syn(), |p| p.set_src_addr(ip(src)));
        assert_eq!(Flow::parse(&bytes), Err(ParseError::MartianSource(ip(src))));
    }
}

#[test]
fn refuses_truncated_transport_headers() {
    let (a, b) = (ip("10.0.0.2"), ip("10.0.0.3"));
    assert_eq!(
        Flow::parse(&packet::raw(a, b, proto::TCP, &[0; 19])),
        Err(ParseError::Transport("TCP"))
    );
    // A TCP data offset of 4 words (under the 5-word minimum).
    let mut tcp = [0u8; 20];
    tcp[12] = 4 << 4;
    assert_eq!(
        Flow::parse(&packet::raw(a, b, proto::TCP, &tcp)),
        Err(ParseError::Transport("TCP"))
    );
    assert_eq!(
        Flow::parse(&packet::raw(a, b, proto::UDP, &[0; 7])),
        Err(ParseError::Transport("UDP"))
    );
    // A UDP length field over the payload.
    let mut udp = [0u8; 8];
    udp[4..6].copy_from_slice(&9u16.to_be_bytes());
    assert_eq!(
        Flow::parse(&packet::raw(a, b, proto::UDP, &udp)),
        Err(ParseError::Transport("UDP"))
    );
    assert_eq!(
        Flow::parse(&packet::raw(a, b, proto::ICMP, &[8, 0, 0, 0, 0, 0, 0])),
        Err(ParseError::Transport("ICMP"))
    );
}

#[test]
fn trims_bytes_after_the_total_length() {
    let bytes = syn();
    let mut padded = bytes.clone();
    padded.extend_from_slice(&[0xee; 10]);
    let (_, datagram) = Flow::parse(&padded).unwrap();
    assert_eq!(datagram, &bytes[..]);
}

#[test]
fn classifies_icmp_types_and_other_protocols() {
    let (a, b) = (ip("10.0.0.2"), ip("10.0.0.3"));
    // Timestamp request: type 13.
    let (flow, _) =
        Flow::parse(&packet::raw(a, b, proto::ICMP, &[13, 0, 0, 0, 0, 0, 0, 0])).unwrap();
    assert_eq!(
        flow.transport,
        Transport::Icmp(Icmp::Other { msg_type: 13 })
    );
    assert_eq!(flow.transport.protocol(), proto::ICMP);
    assert_eq!(flow.transport.dst_port(), None);
    // An error whose quote is too short to read.
    let (flow, _) = Flow::parse(&packet::raw(
        a,
        b,
        proto::ICMP,
        &[3, 3, 0, 0, 0, 0, 0, 0, 0x45],
    ))
    .unwrap();
    assert_eq!(
        flow.transport,
        Transport::Icmp(Icmp::Error { quoted: None })
    );
    let (flow, _) = Flow::parse(&packet::raw(a, b, 89, b"")).unwrap();
    assert_eq!(flow.transport, Transport::Other(89));
}

#[test]
fn reads_quotes() {
    let (a, b) = (ip("10.0.0.2"), ip("10.0.0.3"));
    let quote_of = |original: &[u8]| {
        let error = packet::icmp_unreachable(b, a, 1, original);
        match Flow::parse(&error).unwrap().0.transport {
            Transport::Icmp(Icmp::Error { quoted }) => quoted,
            other => panic!("not an error: {other:?}"),
        }
    };
    let ping = packet::icmp_echo_request(a, b, 77, 1, b"");
    assert_eq!(
        quote_of(&ping).map(|q| q.transport),
        Some(QuotedTransport::EchoRequest { ident: 77 })
    );
    let pong = packet::icmp_echo_reply(a, b, 77, 1, b"");
    assert_eq!(
        quote_of(&pong).map(|q| q.transport),
        Some(QuotedTransport::EchoReply { ident: 77 })
    );
    assert_eq!(
        quote_of(&syn()).map(|q| q.transport),
        Some(QuotedTransport::Tcp {
            src_port: 40000,
            dst_port: 80
        })
    );
    assert_eq!(
        quote_of(&packet::raw(a, b, 47, b"")).map(|q| q.transport),
        Some(QuotedTransport::Other(47))
    );
    // A quote cut inside the transport header tells nothing.
    assert_eq!(quote_of(&syn()[..24]), None);
    // Nor does a quoted non-first fragment, or a quote that is not IPv4.
    assert_eq!(quote_of(&edited(syn(), |p| p.set_frag_offset(8))), None);
    assert_eq!(quote_of(&edited(syn(), |p| p.set_version(6))), None);
    assert_eq!(quote_of(&edited(syn(), |p| p.set_header_len(16))), None);
}

/// Every prefix and every single-byte corruption of valid datagrams parses or
/// errs, never panics.
#[test]
fn never_panics_on_prefixes_or_corruptions() {
    let (a, b) = (ip("10.0.0.2"), ip("10.0.0.3"));
    let samples = [
        syn(),
        packet::udp(
            "10.0.0.2:1".parse().unwrap(),
            "10.0.0.3:2".parse().unwrap(),
            b"data",
        ),
        packet::icmp_echo_request(a, b, 1, 2, b"ping"),
        packet::icmp_unreachable(b, a, 3, &syn()),
        packet::raw(a, b, 200, b"opaque"),
    ];
    for sample in &samples {
        for len in 0..=sample.len() {
            let _ = Flow::parse(&sample[..len]);
        }
        for at in 0..sample.len() {
            for value in [0x00, 0x0f, 0x45, 0x80, 0xff] {
                let mut bytes = sample.clone();
                bytes[at] = value;
                let _ = Flow::parse(&bytes);
                // With the header checksum fixed, corruption reaches the
                // transport parsers too.
                if Ipv4Packet::new_checked(&bytes).is_ok() {
                    let _ = Flow::parse(&edited(bytes, |_| ()));
                }
            }
        }
    }
}
