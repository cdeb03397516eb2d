//! `mesh-tcp`: ranks reaching each other over TCP on the mesh subnet. Each
//! rank listens on port 7000 of its mesh address, then connects to the
//! next rank's address (`mesh::addr`), says hello, and answers the hello
//! of the previous rank. Prints `rank R got "…" from A` per exchange.
//!
//! Run it on a server (the subnet comes with the mesh there):
//! `weft mesh run --server URL mesh-tcp.wasm --ranks 4`.

use std::io::{Read, Write};
use weft_guest::mesh;
use weft_guest::net::{TcpListener, TcpStream};

const PORT: u16 = 7000;

fn main() -> std::io::Result<()> {
    let (me, size) = (mesh::rank(), mesh::size());
    let mine = mesh::addr(me)?;
    let next = mesh::addr((me + 1) % size)?;
    let listener = TcpListener::bind((mine, PORT))?;
    mesh::barrier()?;
    // Even ranks answer first, odd ranks call first: nobody waits on
    // someone who waits on them.
    if me.is_multiple_of(2) {
        answer(&listener, me)?;
        call(next, me)?;
    } else {
        call(next, me)?;
        answer(&listener, me)?;
    }
    mesh::barrier()?;
    Ok(())
}

fn call(to: std::net::Ipv4Addr, me: u32) -> std::io::Result<()> {
    let mut stream = TcpStream::connect((to, PORT))?;
    stream.write_all(format!("hello from rank {me}").as_bytes())?;
    stream.shutdown_write()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    println!("rank {me} got {reply:?} from {to}");
    Ok(())
}

fn answer(listener: &TcpListener, me: u32) -> std::io::Result<()> {
    let (mut stream, peer) = listener.accept()?;
    let mut hello = String::new();
    stream.read_to_string(&mut hello)?;
    println!("rank {me} got {hello:?} from {}", peer.ip());
    stream.write_all(format!("rank {me} heard \"{hello}\"").as_bytes())?;
    Ok(())
}
