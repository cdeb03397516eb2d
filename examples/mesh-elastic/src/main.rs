//! `mesh-elastic`: ranks that join a running mesh job, talk to the ranks
//! already there, take part in a collective with them, and leave.
//!
//! - `base JOINERS` (the first ranks): after a barrier, rank 0 tells the
//!   parent `ready`. Each base rank then waits to hear (membership events)
//!   that JOINERS ranks joined; rank 0 answers each joiner's `hello` with
//!   a `welcome`. All live ranks then sum `rank + 1` with `allreduce`.
//!   After hearing that every joiner left, the base ranks check the member
//!   list and sum again, among themselves. Rank 0 reports both sums, the
//!   joiners and the final members to the parent.
//! - `joiner` (ranks added with `weft mesh add ID --ranks N joiner`): says
//!   `hello` to rank 0, waits for its `welcome`, takes part in the sum, and
//!   exits.
//!
//! Run it on a server: `weft mesh run --server URL mesh-elastic.wasm
//! --ranks 2 base 2`, then `weft mesh add ID --ranks 2 joiner`.

use weft_guest::mesh::{self, Event, Op, PARENT};

const HELLO: u32 = 1;
const WELCOME: u32 = 2;

fn sum() -> Result<u64, mesh::Error> {
    let mut value = [u64::from(mesh::rank()) + 1];
    mesh::allreduce(&mut value, Op::Sum)?;
    Ok(value[0])
}

fn main() -> Result<(), mesh::Error> {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let me = mesh::rank();
    if mode == "joiner" {
        mesh::send(0, HELLO, format!("hello {me}").as_bytes())?;
        let welcome = mesh::recv(0, WELCOME)?;
        println!("{}", String::from_utf8_lossy(&welcome.data));
        println!("sum {}", sum()?);
        return Ok(());
    }
    let joiners: usize = std::env::args()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    mesh::barrier()?;
    if me == 0 {
        mesh::send(PARENT, 0, b"ready")?;
    }
    // Wait to hear of every joiner: from then on they are live, and in
    // every collective round that opens.
    let mut joined = Vec::new();
    while joined.len() < joiners {
        if let Event::Joined { rank, .. } = mesh::next_event(None)? {
            joined.push(rank);
        }
    }
    joined.sort_unstable();
    if me == 0 {
        for _ in 0..joiners {
            let hello = mesh::recv(mesh::ANY, HELLO)?;
            mesh::send(
                hello.src,
                WELCOME,
                format!("welcome {}", hello.src).as_bytes(),
            )?;
        }
    }
    let first = sum()?;
    let mut left = 0;
    while left < joiners {
        if let Event::Left { .. } = mesh::next_event(None)? {
            left += 1;
        }
    }
    let members = mesh::members()?;
    let second = sum()?;
    let list = |ranks: &[u32]| {
        ranks
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let report = format!(
        "joined={} first={first} second={second} members={} epoch={} size={}",
        list(&joined),
        list(&members.ranks),
        members.epoch,
        mesh::size()
    );
    println!("{report}");
    if me == 0 {
        mesh::send(PARENT, 0, report.as_bytes())?;
    }
    Ok(())
}
