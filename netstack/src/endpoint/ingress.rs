//! Screening received datagrams before smoltcp sees them; answering ping.
//!
//! [`Endpoint::screen`] reads a datagram only through
//! [`Flow::parse`](crate::flow::Flow::parse) and smoltcp's checked `wire`
//! constructors, so it never panics on any input.

use std::net::SocketAddrV4;

use smoltcp::wire::{Icmpv4Message, Icmpv4Packet, Ipv4Packet};

use super::Endpoint;
use crate::flow::{Flow, Icmp, Transport};
use crate::packet;

/// What to do with a received datagram.
#[derive(Debug)]
pub(super) enum Screened {
    /// Not for this endpoint, malformed, or not to be answered.
    Drop,
    /// Answered here: queue this datagram (an ICMP echo reply).
    Reply(Vec<u8>),
    /// Hand it to smoltcp; `syn_port` is the local port of a connection
    /// request, whose listener must then be looked at.
    Deliver { syn_port: Option<u16> },
}

impl Endpoint {
    /// Decides what happens to a datagram (see the module docs of
    /// [`endpoint`](super)).
    pub(super) fn screen(&self, datagram: &[u8]) -> Screened {
        let Ok((flow, datagram)) = Flow::parse(datagram) else {
            return Screened::Drop;
        };
        if !self.holds(flow.dst) {
            return Screened::Drop;
        }
        match flow.transport {
            Transport::Icmp(Icmp::EchoRequest { .. }) => match echo_reply(datagram) {
                Some(reply) => Screened::Reply(reply),
                None => Screened::Drop,
            },
            Transport::Tcp {
                src_port,
                dst_port,
                flags,
            } if flags.syn && !flags.ack && !flags.rst => {
                let local = SocketAddrV4::new(flow.dst, dst_port);
                let remote = SocketAddrV4::new(flow.src, src_port);
                if self.admits_syn(local, remote) {
                    Screened::Deliver {
                        syn_port: Some(dst_port),
                    }
                } else {
                    Screened::Drop
                }
            }
            _ => Screened::Deliver { syn_port: None },
        }
    }
}

/// The reply to a well-formed echo request (checksum verified), from the
/// address it was sent to.
fn echo_reply(datagram: &[u8]) -> Option<Vec<u8>> {
    let ip = Ipv4Packet::new_checked(datagram).ok()?;
    let icmp = Icmpv4Packet::new_checked(ip.payload()).ok()?;
    if icmp.msg_type() != Icmpv4Message::EchoRequest || icmp.msg_code() != 0 {
        return None;
    }
    if !icmp.verify_checksum() {
        return None;
    }
    // The reply is no longer than the request (its header has no options),
    // which was at most 65535 bytes: the builder cannot panic.
    Some(packet::icmp_echo_reply(
        ip.dst_addr(),
        ip.src_addr(),
        icmp.echo_ident(),
        icmp.echo_seq_no(),
        icmp.data(),
    ))
}
