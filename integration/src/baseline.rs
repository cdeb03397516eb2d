//! Baselines for the benchmarks: a kernel TCP echo server on loopback, and
//! the client patterns the `echo-client` example runs inside a guest,
//! here on host threads, so each figure has its kernel twin in the same run.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A kernel echo server on loopback, one connection at a time as the
/// `tcp-echo` example is; runs until the process ends.
pub fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback echo server");
    let addr = listener.local_addr().expect("its address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_nodelay(true);
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
        }
    });
    addr
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connecting to the echo");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    stream
}

/// Streams `total` bytes through the echo at `addr`, at most 512 KiB in
/// flight, as `echo-client bulk` does; how long it took.
pub fn bulk(addr: SocketAddr, total: usize) -> Duration {
    let mut stream = connect(addr);
    let out = vec![0x5au8; 256 * 1024];
    let mut back = vec![0u8; 256 * 1024];
    let (mut sent, mut received) = (0, 0);
    let started = Instant::now();
    while received < total {
        if sent < total && sent - received < 512 * 1024 {
            let n = out.len().min(total - sent);
            stream.write_all(&out[..n]).expect("sending");
            sent += n;
        }
        let n = stream.read(&mut back).expect("receiving");
        assert!(n > 0, "the echo closed after {received} bytes");
        received += n;
    }
    started.elapsed()
}

/// `count` 64-byte request/response transactions on one connection, as
/// `echo-client rr` does; how long they took.
pub fn rr(addr: SocketAddr, count: usize) -> Duration {
    let mut stream = connect(addr);
    let request = [0x42u8; 64];
    let mut back = [0u8; 64];
    let started = Instant::now();
    for _ in 0..count {
        stream.write_all(&request).expect("sending");
        stream.read_exact(&mut back).expect("receiving");
    }
    started.elapsed()
}

/// Gbit/s of payload, one way, for `bytes` in `took`.
pub fn gbits(bytes: usize, took: Duration) -> f64 {
    bytes as f64 * 8.0 / took.as_secs_f64() / 1e9
}

/// Prints one figure beside its baseline, with their ratio.
pub fn row(what: &str, unit: &str, weft: f64, kernel: f64) {
    println!(
        "{what:<36} {weft:>10.2} {unit:<9} kernel loopback {kernel:>10.2} {unit:<9} ratio {:.3}",
        weft / kernel
    );
}
