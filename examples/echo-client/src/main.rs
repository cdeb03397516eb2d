//! `echo-client`: checks an echo server. `echo-client tcp|udp IP:PORT BYTES`
//! sends BYTES bytes of a known pattern (TCP: as one stream; UDP: in
//! 1 KiB datagrams) and checks every byte that comes back, then prints
//! `ok tcp 67108864 bytes` and exits 0, or prints what went wrong and exits 1.
//!
//! Two modes measure instead of checking, for the benchmarks:
//! `echo-client bulk IP:PORT BYTES` streams BYTES bytes through a TCP echo
//! and prints `bulk BYTES bytes in MICROS us`; `echo-client rr IP:PORT
//! COUNT` sends 64-byte requests, each after the last one's echo, and
//! prints `rr COUNT transactions in MICROS us`.
//!
//! Used by the tests against `tcp-echo` and `udp-echo`.

use std::io::{Read, Write};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};
use weft_guest::net::{TcpStream, UdpSocket};

fn byte(i: usize) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

fn tcp(addr: SocketAddrV4, total: usize) -> Result<(), String> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut sent = 0;
    let mut received = 0;
    let mut out = vec![0; 64 * 1024];
    let mut back = vec![0; 64 * 1024];
    // Write and read in turns so neither side's buffers fill up.
    while received < total {
        if sent < total {
            let n = out.len().min(total - sent);
            for (k, b) in out[..n].iter_mut().enumerate() {
                *b = byte(sent + k);
            }
            (&stream)
                .write_all(&out[..n])
                .map_err(|e| format!("send at {sent}: {e}"))?;
            sent += n;
        }
        while received < sent {
            let n = (&stream)
                .read(&mut back)
                .map_err(|e| format!("receive at {received}: {e}"))?;
            if n == 0 {
                return Err(format!("the server closed after {received} bytes"));
            }
            for (k, b) in back[..n].iter().enumerate() {
                if *b != byte(received + k) {
                    return Err(format!("byte {} differs", received + k));
                }
            }
            received += n;
        }
    }
    Ok(())
}

fn connect(addr: SocketAddrV4) -> Result<TcpStream, String> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

/// Streams `total` bytes through the echo; unchecked. Returns microseconds.
fn bulk(addr: SocketAddrV4, total: usize) -> Result<u128, String> {
    let stream = connect(addr)?;
    let out = vec![0x5a; 256 * 1024];
    let mut back = vec![0; 256 * 1024];
    let (mut sent, mut received) = (0, 0);
    let started = Instant::now();
    while received < total {
        if sent < total && sent - received < 512 * 1024 {
            let n = out.len().min(total - sent);
            (&stream)
                .write_all(&out[..n])
                .map_err(|e| format!("send at {sent}: {e}"))?;
            sent += n;
        }
        let n = (&stream)
            .read(&mut back)
            .map_err(|e| format!("receive at {received}: {e}"))?;
        if n == 0 {
            return Err(format!("the server closed after {received} bytes"));
        }
        received += n;
    }
    Ok(started.elapsed().as_micros())
}

/// `count` 64-byte request/response transactions. Returns microseconds.
fn rr(addr: SocketAddrV4, count: usize) -> Result<u128, String> {
    let stream = connect(addr)?;
    let request = [0x42u8; 64];
    let mut back = [0u8; 64];
    let started = Instant::now();
    for n in 0..count {
        (&stream)
            .write_all(&request)
            .map_err(|e| format!("send {n}: {e}"))?;
        (&stream)
            .read_exact(&mut back)
            .map_err(|e| format!("receive {n}: {e}"))?;
    }
    Ok(started.elapsed().as_micros())
}

fn udp(addr: SocketAddrV4, total: usize) -> Result<(), String> {
    let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("bind: {e}"))?;
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut offset = 0;
    let mut back = vec![0; 2048];
    while offset < total {
        let n = 1024.min(total - offset);
        let datagram: Vec<u8> = (0..n).map(|k| byte(offset + k)).collect();
        socket
            .send_to(&datagram, addr)
            .map_err(|e| format!("send: {e}"))?;
        let (got, from) = socket
            .recv_from(&mut back)
            .map_err(|e| format!("receive at {offset}: {e}"))?;
        if from != addr || back[..got] != datagram[..] {
            return Err(format!("datagram at {offset} came back wrong from {from}"));
        }
        offset += n;
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: echo-client tcp|udp|bulk IP:PORT BYTES | echo-client rr IP:PORT COUNT");
        std::process::exit(2);
    }
    let addr: SocketAddrV4 = args[2].parse().expect("IP:PORT");
    let total: usize = args[3].parse().expect("BYTES");
    let result = match args[1].as_str() {
        "tcp" => tcp(addr, total),
        "udp" => udp(addr, total),
        "bulk" => bulk(addr, total).map(|us| println!("bulk {total} bytes in {us} us")),
        "rr" => rr(addr, total).map(|us| println!("rr {total} transactions in {us} us")),
        other => Err(format!("unknown mode {other}")),
    };
    match result {
        Ok(()) if args[1] == "bulk" || args[1] == "rr" => {}
        Ok(()) => println!("ok {} {total} bytes", args[1]),
        Err(error) => {
            println!("failed: {error}");
            std::process::exit(1);
        }
    }
}
