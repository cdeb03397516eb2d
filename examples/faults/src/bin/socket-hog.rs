//! `socket-hog`: opens UDP sockets until weft refuses one (or 10,000 are
//! open), then prints how many it got and why it stopped. Shows the
//! per-instance socket limit: the hog is refused cleanly and the other
//! instances on the network are unaffected.

fn main() {
    let mut held = Vec::new();
    let reason = loop {
        if held.len() == 10_000 {
            break "opened all 10000".to_owned();
        }
        match weft_guest::net::UdpSocket::bind("0.0.0.0:0") {
            Ok(socket) => held.push(socket),
            Err(error) => break error.to_string(),
        }
    };
    println!("opened {} sockets; stopped: {reason}", held.len());
}
