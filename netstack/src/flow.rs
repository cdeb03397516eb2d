//! What filtering needs to know of a packet: addresses, protocol, ports, flags.
//!
//! [`Flow::parse`] is the one place where raw IPv4 datagrams from instances
//! are read. It goes through smoltcp's `new_checked` constructors, so every
//! field access after it is in bounds, and it never panics on any input: a
//! datagram is either a [`Flow`] or a [`ParseError`].
//!
//! What it accepts: IPv4 with a valid header checksum, not a fragment (the
//! virtual network's MTU is large enough that nothing needs fragmenting, and a
//! non-first fragment carries no ports to filter on), a source that can be a
//! host (not unspecified, loopback, multicast or broadcast), and a TCP, UDP or
//! ICMP header that fits. Other protocols are accepted with no ports. Transport
//! checksums are not verified: that is the endpoints' job, as on a router.
//!
//! ```
//! use weft_netstack::flow::{Flow, TcpFlags, Transport};
//! use weft_netstack::packet;
//!
//! let bytes = packet::tcp("10.0.1.2:40000".parse().unwrap(), "10.0.1.3:80".parse().unwrap(), TcpFlags::SYN, b"");
//! let (flow, datagram) = Flow::parse(&bytes).unwrap();
//! assert_eq!(flow.transport.dst_port(), Some(80));
//! assert!(matches!(flow.transport, Transport::Tcp { flags: TcpFlags::SYN, .. }));
//! assert_eq!(datagram.len(), bytes.len());
//! ```

use core::net::Ipv4Addr;

use smoltcp::wire::{Icmpv4Message, Icmpv4Packet, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket};

/// The IANA protocol numbers this crate names.
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
}

/// Why a datagram was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Shorter than its IPv4 header or total length, or with a header length
    /// under 20 or over the total length.
    #[error("truncated or inconsistent IPv4 header")]
    Header,
    /// The version field is not 4.
    #[error("IP version {0}, expected 4")]
    Version(u8),
    /// The header checksum is wrong.
    #[error("bad IPv4 header checksum")]
    Checksum,
    /// A fragment (more-fragments set or a non-zero offset).
    #[error("IPv4 fragments are not forwarded")]
    Fragment,
    /// The source cannot be a host: unspecified, loopback, multicast or broadcast.
    #[error("source {0} cannot be a host")]
    MartianSource(Ipv4Addr),
    /// The TCP, UDP or ICMP header is truncated or inconsistent.
    #[error("truncated or inconsistent {0} header")]
    Transport(&'static str),
}

/// The TCP flags connection tracking looks at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags {
    /// SYN: opens a connection.
    pub syn: bool,
    /// ACK: acknowledges; set on everything after the first SYN.
    pub ack: bool,
    /// FIN: closes one direction.
    pub fin: bool,
    /// RST: aborts.
    pub rst: bool,
}

impl TcpFlags {
    /// A bare SYN, as a client opens with.
    pub const SYN: TcpFlags = TcpFlags {
        syn: true,
        ack: false,
        fin: false,
        rst: false,
    };
    /// SYN+ACK, as a server answers.
    pub const SYN_ACK: TcpFlags = TcpFlags {
        syn: true,
        ack: true,
        fin: false,
        rst: false,
    };
    /// A bare ACK.
    pub const ACK: TcpFlags = TcpFlags {
        syn: false,
        ack: true,
        fin: false,
        rst: false,
    };
    /// FIN+ACK.
    pub const FIN_ACK: TcpFlags = TcpFlags {
        syn: false,
        ack: true,
        fin: true,
        rst: false,
    };
    /// A bare RST.
    pub const RST: TcpFlags = TcpFlags {
        syn: false,
        ack: false,
        fin: false,
        rst: true,
    };
}

/// The transport part of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// TCP, with the flags that drive connection tracking.
    Tcp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// SYN, ACK, FIN, RST.
        flags: TcpFlags,
    },
    /// UDP.
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
    /// ICMP.
    Icmp(Icmp),
    /// Any other IP protocol, by number; it has no ports.
    Other(u8),
}

impl Transport {
    /// The IP protocol number.
    pub fn protocol(&self) -> u8 {
        match self {
            Transport::Tcp { .. } => proto::TCP,
            Transport::Udp { .. } => proto::UDP,
            Transport::Icmp(_) => proto::ICMP,
            Transport::Other(p) => *p,
        }
    }

    /// The destination port, for TCP and UDP.
    pub fn dst_port(&self) -> Option<u16> {
        match self {
            Transport::Tcp { dst_port, .. } | Transport::Udp { dst_port, .. } => Some(*dst_port),
            Transport::Icmp(_) | Transport::Other(_) => None,
        }
    }
}

/// The ICMP messages that filtering distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmp {
    /// Echo request (ping), type 8.
    EchoRequest {
        /// The identifier, which pairs replies with requests.
        ident: u16,
    },
    /// Echo reply, type 0.
    EchoReply {
        /// The identifier of the request answered.
        ident: u16,
    },
    /// Destination unreachable, time exceeded or parameter problem, with the
    /// start of the datagram that caused it when that start is readable.
    Error {
        /// The quoted datagram's addresses and ports.
        quoted: Option<Quoted>,
    },
    /// Any other message type.
    Other {
        /// The ICMP type.
        msg_type: u8,
    },
}

/// The transport part of a datagram quoted in an ICMP error (its first 8 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotedTransport {
    /// A TCP segment's ports.
    Tcp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
    /// A UDP datagram's ports.
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
    /// An echo request.
    EchoRequest {
        /// Its identifier.
        ident: u16,
    },
    /// An echo reply.
    EchoReply {
        /// Its identifier.
        ident: u16,
    },
    /// Anything else, by IP protocol number (ICMP errors quoting other ICMP
    /// messages included); such quotes relate to no tracked flow.
    Other(u8),
}

/// The datagram quoted by an ICMP error: who sent it to whom, and its ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quoted {
    /// The quoted datagram's source.
    pub src: Ipv4Addr,
    /// The quoted datagram's destination.
    pub dst: Ipv4Addr,
    /// Its transport header, as far as the quote shows it.
    pub transport: QuotedTransport,
}

/// A parsed datagram: addresses and transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Protocol and ports.
    pub transport: Transport,
}

impl Flow {
    /// Parses a raw IPv4 datagram (see the module docs for what is accepted).
    ///
    /// Returns the flow and the datagram trimmed to its IPv4 total length:
    /// bytes after it (padding) are not part of the datagram and are not
    /// forwarded. Never panics.
    pub fn parse(buffer: &[u8]) -> Result<(Flow, &[u8]), ParseError> {
        let packet = Ipv4Packet::new_checked(buffer).map_err(|_| ParseError::Header)?;
        if packet.version() != 4 {
            return Err(ParseError::Version(packet.version()));
        }
        if !packet.verify_checksum() {
            return Err(ParseError::Checksum);
        }
        if packet.more_frags() || packet.frag_offset() != 0 {
            return Err(ParseError::Fragment);
        }
        let src = packet.src_addr();
        if src.is_unspecified() || src.is_loopback() || src.is_multicast() || src.is_broadcast() {
            return Err(ParseError::MartianSource(src));
        }
        let transport = parse_transport(packet.next_header(), packet.payload())?;
        let flow = Flow {
            src,
            dst: packet.dst_addr(),
            transport,
        };
        // new_checked guarantees total_len ≤ buffer.len().
        let datagram = buffer
            .get(..usize::from(packet.total_len()))
            .ok_or(ParseError::Header)?;
        Ok((flow, datagram))
    }
}

fn parse_transport(protocol: IpProtocol, payload: &[u8]) -> Result<Transport, ParseError> {
    Ok(match protocol {
        IpProtocol::Tcp => {
            let tcp = TcpPacket::new_checked(payload).map_err(|_| ParseError::Transport("TCP"))?;
            Transport::Tcp {
                src_port: tcp.src_port(),
                dst_port: tcp.dst_port(),
                flags: TcpFlags {
                    syn: tcp.syn(),
                    ack: tcp.ack(),
                    fin: tcp.fin(),
                    rst: tcp.rst(),
                },
            }
        }
        IpProtocol::Udp => {
            let udp = UdpPacket::new_checked(payload).map_err(|_| ParseError::Transport("UDP"))?;
            Transport::Udp {
                src_port: udp.src_port(),
                dst_port: udp.dst_port(),
            }
        }
        IpProtocol::Icmp => {
            let icmp =
                Icmpv4Packet::new_checked(payload).map_err(|_| ParseError::Transport("ICMP"))?;
            Transport::Icmp(match icmp.msg_type() {
                Icmpv4Message::EchoRequest => Icmp::EchoRequest {
                    ident: icmp.echo_ident(),
                },
                Icmpv4Message::EchoReply => Icmp::EchoReply {
                    ident: icmp.echo_ident(),
                },
                Icmpv4Message::DstUnreachable
                | Icmpv4Message::TimeExceeded
                | Icmpv4Message::ParamProblem => Icmp::Error {
                    quoted: parse_quoted(icmp.data()),
                },
                other => Icmp::Other {
                    msg_type: u8::from(other),
                },
            })
        }
        other => Transport::Other(u8::from(other)),
    })
}

/// Reads the IPv4 header and first 8 transport bytes quoted in an ICMP error.
///
/// The quoted header's total length names the original datagram, not the
/// quote, so smoltcp's `new_checked` would refuse it; the fields are read here
/// from fixed-size arrays taken with `get`, which cannot go out of bounds.
fn parse_quoted(data: &[u8]) -> Option<Quoted> {
    let header: &[u8; 20] = data.get(..20)?.try_into().ok()?;
    if header[0] >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(header[0] & 0x0f) * 4;
    let frag_offset = u16::from_be_bytes([header[6] & 0x1f, header[7]]);
    if header_len < 20 || frag_offset != 0 {
        return None;
    }
    let protocol = header[9];
    let src = Ipv4Addr::new(header[12], header[13], header[14], header[15]);
    let dst = Ipv4Addr::new(header[16], header[17], header[18], header[19]);
    let l4: Option<&[u8; 8]> = data
        .get(header_len..header_len.checked_add(8)?)
        .and_then(|s| s.try_into().ok());
    let port = |l4: &[u8; 8], at: usize| u16::from_be_bytes([l4[at], l4[at + 1]]);
    let transport = match (protocol, l4) {
        (proto::TCP, Some(l4)) => QuotedTransport::Tcp {
            src_port: port(l4, 0),
            dst_port: port(l4, 2),
        },
        (proto::UDP, Some(l4)) => QuotedTransport::Udp {
            src_port: port(l4, 0),
            dst_port: port(l4, 2),
        },
        (proto::ICMP, Some(l4)) if l4[0] == 8 => {
            QuotedTransport::EchoRequest { ident: port(l4, 4) }
        }
        (proto::ICMP, Some(l4)) if l4[0] == 0 => QuotedTransport::EchoReply { ident: port(l4, 4) },
        (proto::TCP | proto::UDP | proto::ICMP, None) => return None,
        (other, _) => QuotedTransport::Other(other),
    };
    Some(Quoted {
        src,
        dst,
        transport,
    })
}

#[cfg(test)]
mod tests;
