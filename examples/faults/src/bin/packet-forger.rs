//! `packet-forger`: builds IPv4 datagrams by hand and sends them raw on the
//! instance's interface record (`weft_guest::net::send_raw`), to show the
//! virtual router judges every datagram, however it was made.
//!
//! - `forge SRC DST:PORT COUNT`: UDP datagrams claiming to come from SRC;
//!   dropped while the record's source/destination check is on.
//! - `malformed COUNT`: datagrams no parser accepts (bad version, header
//!   length, checksum, truncated).
//! - `oversized DST:PORT`: one buffer of 70,000 bytes, more than any IPv4
//!   datagram.
//! - `synflood DST:PORT COUNT`: TCP SYNs from the instance's own address,
//!   each from another port, never completed.
//!
//! It prints how many it handed over; what the router did with them is on
//! the record's counters (`weft nic show`).

use std::net::{Ipv4Addr, SocketAddrV4};
use weft_guest::net::{interfaces, send_raw};

/// The internet checksum of `chunks`, as one byte string.
fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    let mut odd: Option<u8> = None;
    for chunk in chunks {
        for &byte in *chunk {
            match odd.take() {
                Some(high) => sum += u32::from(u16::from_be_bytes([high, byte])),
                None => odd = Some(byte),
            }
        }
    }
    if let Some(high) = odd {
        sum += u32::from(u16::from_be_bytes([high, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 datagram carrying `payload` of protocol `proto`, with both
/// checksums right (the transport one over the pseudo-header).
fn datagram(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, mut transport: Vec<u8>) -> Vec<u8> {
    let checksum_at = match proto {
        6 => 16,
        17 => 6,
        _ => usize::MAX,
    };
    if checksum_at != usize::MAX {
        let len = (transport.len() as u16).to_be_bytes();
        let pseudo = [&src.octets()[..], &dst.octets()[..], &[0, proto], &len[..]].concat();
        let sum = checksum(&[&pseudo, &transport]);
        transport[checksum_at..checksum_at + 2].copy_from_slice(&sum.to_be_bytes());
    }
    let total = (20 + transport.len()) as u16;
    let mut header = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0];
    header[2..4].copy_from_slice(&total.to_be_bytes());
    header.extend_from_slice(&src.octets());
    header.extend_from_slice(&dst.octets());
    let sum = checksum(&[&header]);
    header[10..12].copy_from_slice(&sum.to_be_bytes());
    header.extend_from_slice(&transport);
    header
}

fn udp(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let mut transport = Vec::with_capacity(8 + payload.len());
    transport.extend_from_slice(&src.port().to_be_bytes());
    transport.extend_from_slice(&dst.port().to_be_bytes());
    transport.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    transport.extend_from_slice(&[0, 0]);
    transport.extend_from_slice(payload);
    datagram(*src.ip(), *dst.ip(), 17, transport)
}

fn syn(src: SocketAddrV4, dst: SocketAddrV4, seq: u32) -> Vec<u8> {
    let mut transport = Vec::with_capacity(20);
    transport.extend_from_slice(&src.port().to_be_bytes());
    transport.extend_from_slice(&dst.port().to_be_bytes());
    transport.extend_from_slice(&seq.to_be_bytes());
    transport.extend_from_slice(&0u32.to_be_bytes());
    transport.extend_from_slice(&[0x50, 0x02]); // 5 words, SYN
    transport.extend_from_slice(&64_240u16.to_be_bytes());
    transport.extend_from_slice(&[0, 0, 0, 0]);
    datagram(*src.ip(), *dst.ip(), 6, transport)
}

fn arg<T: std::str::FromStr>(args: &[String], at: usize, what: &str) -> T {
    args.get(at)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| usage(&format!("missing or bad {what}")))
}

fn usage(why: &str) -> ! {
    eprintln!(
        "packet-forger: {why}\nusage: packet-forger forge SRC DST:PORT COUNT | malformed COUNT | \
         oversized DST:PORT | synflood DST:PORT COUNT"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let me = interfaces()
        .ok()
        .and_then(|ips| ips.first().copied())
        .unwrap_or_else(|| usage("this instance holds no interface record"));
    let mut sent = 0u32;
    let mut send = |datagram: &[u8]| match send_raw(datagram) {
        Ok(()) => sent += 1,
        Err(error) => eprintln!("send_raw: {error}"),
    };
    match args.first().map(String::as_str) {
        Some("forge") => {
            let src: Ipv4Addr = arg(&args, 1, "SRC");
            let dst: SocketAddrV4 = arg(&args, 2, "DST:PORT");
            let count: u32 = arg(&args, 3, "COUNT");
            for n in 0..count {
                let payload = format!("forged {n}");
                send(&udp(
                    SocketAddrV4::new(src, 40_000),
                    dst,
                    payload.as_bytes(),
                ));
            }
        }
        Some("malformed") => {
            let count: u32 = arg(&args, 1, "COUNT");
            let good = udp(
                SocketAddrV4::new(me, 40_000),
                SocketAddrV4::new(me, 9),
                b"x",
            );
            for n in 0..count {
                let mut bad = good.clone();
                match n % 4 {
                    0 => bad[0] = 0x65,                     // IP version 6 in a v4 header
                    1 => bad[0] = 0x41,                     // a header of 4 bytes
                    2 => bad[10] ^= 0xff,                   // a wrong header checksum
                    _ => bad.truncate(12 + n as usize % 8), // cut short
                }
                send(&bad);
            }
        }
        Some("oversized") => {
            let dst: SocketAddrV4 = arg(&args, 1, "DST:PORT");
            let mut big = udp(SocketAddrV4::new(me, 40_000), dst, &[0x5a; 1000]);
            big.resize(70_000, 0x5a);
            send(&big);
        }
        Some("synflood") => {
            let dst: SocketAddrV4 = arg(&args, 1, "DST:PORT");
            let count: u32 = arg(&args, 2, "COUNT");
            for n in 0..count {
                let port = 1024 + (n % 60_000) as u16;
                send(&syn(
                    SocketAddrV4::new(me, port),
                    dst,
                    n.wrapping_mul(2_654_435_761),
                ));
            }
        }
        _ => usage("which attack?"),
    }
    println!("handed over {sent} datagrams");
}
