//! `socket-hog`: opens UDP sockets until weft refuses one (or 10,000 are
//! open), then prints how many it got and why it stopped. Shows the
//! per-instance socket limit: the hog is refused cleanly and the other
//! instances on the network are unaffected.
//!
//! `socket-hog ports ADDR FIRST COUNT`: from one socket, one datagram to
//! each of COUNT ports of ADDR from FIRST on, each a destination its
//! subnet's gateway would carry out by NAT; prints how many it sent. Shows
//! the gateway's limit on what one guest address holds open.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("ports") {
        return ports(&args[2..]);
    }
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

fn ports(args: &[String]) {
    let usage = "usage: socket-hog ports ADDR FIRST COUNT";
    let [addr, first, count] = args else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let (Ok(first), Ok(count)) = (first.parse::<u16>(), count.parse::<u16>()) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let socket = weft_guest::net::UdpSocket::bind("0.0.0.0:0").expect("a socket");
    let mut sent = 0;
    for port in (first..).take(count as usize) {
        if socket.send_to(b"hog", format!("{addr}:{port}")).is_ok() {
            sent += 1;
        }
    }
    println!("sent {sent} datagrams to {count} ports");
}
