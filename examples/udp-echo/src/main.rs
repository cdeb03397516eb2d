//! `udp-echo`: a UDP echo server. It binds `0.0.0.0:PORT` (first argument,
//! default 7) and sends every datagram back to its sender.
//!
//! Run it as a service with a NIC: `weft service start udp-echo --nic NIC`.

use weft_guest::net::UdpSocket;

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(7);
    let socket = UdpSocket::bind(("0.0.0.0", port))?;
    weft_guest::log::info!("udp-echo listening on port {port}");
    let mut buf = vec![0; 65_536];
    loop {
        let (n, from) = socket.recv_from(&mut buf)?;
        socket.send_to(&buf[..n], from)?;
    }
}
