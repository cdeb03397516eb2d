//! `tcp-echo`: a TCP echo server on the instance's interface records. It
//! listens on `0.0.0.0:PORT` (first argument, default 7) and sends back
//! every byte it receives, one connection at a time.
//!
//! Run it as a service with a NIC: `weft service start tcp-echo --nic NIC`,
//! then connect to the NIC's IP on port 7 from another instance (see
//! `echo-client`).

use std::io::{Read, Write};
use weft_guest::net::TcpListener;

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(7);
    let listener = TcpListener::bind(("0.0.0.0", port))?;
    weft_guest::log::info!("tcp-echo listening on port {port}");
    loop {
        let (mut stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(error) => {
                eprintln!("accept: {error}");
                continue;
            }
        };
        let mut buf = vec![0; 64 * 1024];
        let mut total = 0usize;
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Err(error) = stream.write_all(&buf[..n]) {
                        eprintln!("{peer}: write: {error}");
                        break;
                    }
                    total += n;
                }
                Err(error) => {
                    eprintln!("{peer}: read: {error}");
                    break;
                }
            }
        }
        println!("echoed {total} bytes to {peer}");
    }
}
