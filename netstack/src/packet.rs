//! Building well-formed IPv4 datagrams: for tests, fuzzing and the gateway.
//!
//! Each builder returns a complete datagram (IPv4 header without options,
//! DF set, TTL 64, checksums filled) that [`Flow::parse`](crate::flow::Flow::parse)
//! accepts. They are built with smoltcp's `wire` types over buffers sized here,
//! so the unchecked constructors are in bounds.
//!
//! # Panics
//! Every builder panics if the datagram would be longer than 65535 bytes,
//! which the IPv4 total-length field cannot express. That is a caller bug,
//! never a property of received data.
//!
//! ```
//! use weft_netstack::packet;
//!
//! let ping = packet::icmp_echo_request("10.0.1.2".parse().unwrap(), "10.0.1.3".parse().unwrap(), 7, 1, b"hi");
//! assert_eq!(ping.len(), 20 + 8 + 2);
//! ```

use core::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    Icmpv4Message, Icmpv4Packet, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, TCP_HEADER_LEN,
    TcpPacket, TcpSeqNumber, UDP_HEADER_LEN, UdpPacket,
};

use crate::flow::TcpFlags;

const IPV4_HEADER_LEN: usize = 20;
const ICMP_HEADER_LEN: usize = 8;
const TTL: u8 = 64;

/// A datagram from `src` to `dst` carrying `payload_len` bytes of `protocol`,
/// header written, payload zeroed; returns the buffer.
fn datagram(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, payload_len: usize) -> Vec<u8> {
    let total = IPV4_HEADER_LEN + payload_len;
    assert!(
        total <= usize::from(u16::MAX),
        "IPv4 datagram of {total} bytes"
    );
    let mut buffer = vec![0; total];
    let repr = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: protocol,
        payload_len,
        hop_limit: TTL,
    };
    repr.emit(
        &mut Ipv4Packet::new_unchecked(&mut buffer),
        &ChecksumCapabilities::default(),
    );
    buffer
}

/// A TCP segment with the given flags, a fixed sequence number and a 64 KiB
/// window.
pub fn tcp(src: SocketAddrV4, dst: SocketAddrV4, flags: TcpFlags, payload: &[u8]) -> Vec<u8> {
    let mut buffer = datagram(
        *src.ip(),
        *dst.ip(),
        IpProtocol::Tcp,
        TCP_HEADER_LEN + payload.len(),
    );
    let mut tcp = TcpPacket::new_unchecked(&mut buffer[IPV4_HEADER_LEN..]);
    tcp.set_src_port(src.port());
    tcp.set_dst_port(dst.port());
    tcp.set_seq_number(TcpSeqNumber(1));
    tcp.set_ack_number(TcpSeqNumber(if flags.ack { 1 } else { 0 }));
    tcp.set_header_len(TCP_HEADER_LEN as u8);
    tcp.clear_flags();
    tcp.set_syn(flags.syn);
    tcp.set_ack(flags.ack);
    tcp.set_fin(flags.fin);
    tcp.set_rst(flags.rst);
    tcp.set_window_len(u16::MAX);
    tcp.set_urgent_at(0);
    tcp.payload_mut().copy_from_slice(payload);
    tcp.fill_checksum(&IpAddress::Ipv4(*src.ip()), &IpAddress::Ipv4(*dst.ip()));
    buffer
}

/// A UDP datagram.
pub fn udp(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let len = UDP_HEADER_LEN + payload.len();
    let mut buffer = datagram(*src.ip(), *dst.ip(), IpProtocol::Udp, len);
    let mut udp = UdpPacket::new_unchecked(&mut buffer[IPV4_HEADER_LEN..]);
    udp.set_src_port(src.port());
    udp.set_dst_port(dst.port());
    // datagram() checked that the whole fits in 65535 bytes.
    udp.set_len(len as u16);
    udp.payload_mut().copy_from_slice(payload);
    udp.fill_checksum(&IpAddress::Ipv4(*src.ip()), &IpAddress::Ipv4(*dst.ip()));
    buffer
}

fn icmp(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    message: Icmpv4Message,
    code: u8,
    rest: [u16; 2],
    data: &[u8],
) -> Vec<u8> {
    let mut buffer = datagram(src, dst, IpProtocol::Icmp, ICMP_HEADER_LEN + data.len());
    let mut icmp = Icmpv4Packet::new_unchecked(&mut buffer[IPV4_HEADER_LEN..]);
    icmp.set_msg_type(message);
    icmp.set_msg_code(code);
    // For echo messages the rest of the header is ident and sequence number;
    // for errors it is unused and zero.
    icmp.set_echo_ident(rest[0]);
    icmp.set_echo_seq_no(rest[1]);
    icmp.data_mut().copy_from_slice(data);
    icmp.fill_checksum();
    buffer
}

/// An ICMP echo request (ping).
pub fn icmp_echo_request(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ident: u16,
    seq: u16,
    data: &[u8],
) -> Vec<u8> {
    icmp(src, dst, Icmpv4Message::EchoRequest, 0, [ident, seq], data)
}

/// An ICMP echo reply.
pub fn icmp_echo_reply(src: Ipv4Addr, dst: Ipv4Addr, ident: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    icmp(src, dst, Icmpv4Message::EchoReply, 0, [ident, seq], data)
}

/// An ICMP destination-unreachable with `code` (3 is port unreachable),
/// quoting the IPv4 header and first 8 payload bytes of `original` (or all of
/// it, if shorter), as RFC 792 asks.
pub fn icmp_unreachable(src: Ipv4Addr, dst: Ipv4Addr, code: u8, original: &[u8]) -> Vec<u8> {
    let header_len = original
        .first()
        .map_or(0, |b| usize::from(b & 0x0f) * 4)
        .max(IPV4_HEADER_LEN);
    let quote = &original[..original.len().min(header_len + 8)];
    icmp(src, dst, Icmpv4Message::DstUnreachable, code, [0, 0], quote)
}

/// A datagram of any IP protocol number with an opaque payload.
pub fn raw(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload: &[u8]) -> Vec<u8> {
    let mut buffer = datagram(src, dst, IpProtocol::from(protocol), payload.len());
    buffer[IPV4_HEADER_LEN..].copy_from_slice(payload);
    buffer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Flow, Icmp, QuotedTransport, Transport};

    fn sa(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn tcp_round_trips() {
        let bytes = tcp(
            sa("10.0.0.2:1234"),
            sa("10.0.0.3:80"),
            TcpFlags::FIN_ACK,
            b"abc",
        );
        let (flow, datagram) = Flow::parse(&bytes).unwrap();
        assert_eq!(datagram, &bytes[..]);
        assert_eq!(flow.src, sa("10.0.0.2:1234").ip().to_owned());
        assert_eq!(
            flow.transport,
            Transport::Tcp {
                src_port: 1234,
                dst_port: 80,
                flags: TcpFlags::FIN_ACK
            }
        );
        let ip = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        let seg = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(seg.verify_checksum(
            &IpAddress::Ipv4(ip.src_addr()),
            &IpAddress::Ipv4(ip.dst_addr())
        ));
        assert_eq!(seg.payload(), b"abc");
    }

    #[test]
    fn udp_round_trips() {
        let bytes = udp(sa("10.0.0.2:53"), sa("10.0.0.3:5353"), b"query");
        let (flow, _) = Flow::parse(&bytes).unwrap();
        assert_eq!(
            flow.transport,
            Transport::Udp {
                src_port: 53,
                dst_port: 5353
            }
        );
        let ip = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        let dgram = UdpPacket::new_checked(ip.payload()).unwrap();
        assert!(dgram.verify_checksum(
            &IpAddress::Ipv4(ip.src_addr()),
            &IpAddress::Ipv4(ip.dst_addr())
        ));
    }

    #[test]
    fn icmp_round_trips() {
        let (a, b) = ("10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap());
        let req = icmp_echo_request(a, b, 9, 1, b"x");
        let (flow, _) = Flow::parse(&req).unwrap();
        assert_eq!(
            flow.transport,
            Transport::Icmp(Icmp::EchoRequest { ident: 9 })
        );
        let rep = icmp_echo_reply(b, a, 9, 1, b"x");
        let (flow, _) = Flow::parse(&rep).unwrap();
        assert_eq!(
            flow.transport,
            Transport::Icmp(Icmp::EchoReply { ident: 9 })
        );

        let original = udp(sa("10.0.0.2:4000"), sa("10.0.0.3:53"), &[0; 100]);
        let err = icmp_unreachable(b, a, 3, &original);
        assert_eq!(err.len(), 20 + 8 + 20 + 8);
        let (flow, _) = Flow::parse(&err).unwrap();
        let Transport::Icmp(Icmp::Error {
            quoted: Some(quoted),
        }) = flow.transport
        else {
            panic!("not a quoting error: {flow:?}");
        };
        assert_eq!((quoted.src, quoted.dst), (a, b));
        assert_eq!(
            quoted.transport,
            QuotedTransport::Udp {
                src_port: 4000,
                dst_port: 53
            }
        );
    }

    #[test]
    fn raw_carries_any_protocol() {
        let bytes = raw(
            "10.0.0.2".parse().unwrap(),
            "10.0.0.3".parse().unwrap(),
            47,
            b"gre",
        );
        let (flow, _) = Flow::parse(&bytes).unwrap();
        assert_eq!(flow.transport, Transport::Other(47));
    }

    #[test]
    #[should_panic(expected = "IPv4 datagram of 65536 bytes")]
    fn refuses_to_build_oversized_datagrams() {
        raw(
            "10.0.0.2".parse().unwrap(),
            "10.0.0.3".parse().unwrap(),
            47,
            &[0; 65516],
        );
    }
}
