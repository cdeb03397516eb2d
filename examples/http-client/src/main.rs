//! `http-client`: fetches `http://IP[:PORT]/PATH` (first argument) over the
//! instance's interface records and prints the response body. Exits 1 with
//! a message when the fetch fails (refused, timed out, unreachable).
//!
//! Run it as a service with a NIC in the server's subnet:
//! `weft service start http-client --restart never --nic NIC --arg http://10.0.1.5/`.

use std::io::{Read, Write};
use std::net::SocketAddrV4;
use std::time::Duration;
use weft_guest::net::TcpStream;

fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddrV4 = if authority.contains(':') {
        authority
            .parse()
            .map_err(|e| format!("bad address {authority}: {e}"))?
    } else {
        SocketAddrV4::new(
            authority
                .parse()
                .map_err(|e| format!("bad address {authority}: {e}"))?,
            80,
        )
    };
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("receive: {e}"))?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the response has no header end")?;
    let status = String::from_utf8_lossy(&response[..split]);
    let status = status.lines().next().unwrap_or("");
    if !status.contains(" 200 ") {
        return Err(format!("server answered `{status}`"));
    }
    Ok(response[split + 4..].to_vec())
}

fn main() {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://10.0.1.2/".to_owned());
    match fetch(&url) {
        Ok(body) => weft_guest::output(&body),
        Err(error) => {
            eprintln!("http-client: {url}: {error}");
            std::process::exit(1);
        }
    }
}
