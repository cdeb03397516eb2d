//! `http-server`: answers HTTP/1.1 requests with a small page naming the
//! instance that served it (from `WEFT_INSTANCE`, which weft sets for
//! services) and the address it was reached at. Listens on `0.0.0.0:PORT`
//! (first argument, default 80); a second argument names the page.
//!
//! Run it as a service with a NIC: `weft service start http-server --nic NIC`,
//! then fetch `http://NIC-IP/` from another instance (`http-client`).

use std::io::{Read, Write};
use weft_guest::net::{TcpListener, TcpStream};

fn serve(mut stream: TcpStream, instance: &str, name: &str) -> std::io::Result<()> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut request = Vec::new();
    let mut buf = [0; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
        if request.len() > 64 * 1024 {
            stream.write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
            return Ok(());
        }
    }
    let head = String::from_utf8_lossy(&request);
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let local = stream.local_addr()?;
    let body = format!(
        "<!doctype html><title>{name}</title><h1>{name}</h1><p>served by {instance} at {local}, path {path}</p>\n"
    );
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nX-Served-By: {instance}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())?;
    stream.shutdown_write()
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(80);
    let name = args.next().unwrap_or_else(|| "weft http-server".to_owned());
    let instance =
        std::env::var("WEFT_INSTANCE").unwrap_or_else(|_| "an unnamed instance".to_owned());
    let listener = TcpListener::bind(("0.0.0.0", port))?;
    weft_guest::log::info!("http-server `{name}` listening on port {port}");
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                if let Err(error) = serve(stream, &instance, &name) {
                    eprintln!("request failed: {error}");
                }
            }
            Err(error) => eprintln!("accept: {error}"),
        }
    }
    Ok(())
}
