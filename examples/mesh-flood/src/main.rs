//! `mesh-flood`: rank 0 floods rank 1, which never receives, with COUNT
//! small messages (first argument, default 1,000,000) without waiting, and
//! counts how many the bounded mailbox accepted and how many were refused
//! (`WOULD_BLOCK`); then a waiting send that times out, and one message
//! over the mesh's size cap, which is refused. Rank 0 prints
//! `accepted=… refused=… blocked=… oversized=…`; both ranks then meet at a
//! barrier and end.
//!
//! Run it: `weft mesh run mesh-flood.wasm --ranks 2`.

use std::time::Duration;
use weft_guest::mesh;

fn main() -> Result<(), mesh::Error> {
    let count: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    if mesh::rank() == 0 {
        let (mut accepted, mut refused) = (0u64, 0u64);
        for i in 0..count {
            match mesh::try_send(1, 0, &i.to_le_bytes()) {
                Ok(()) => accepted += 1,
                Err(e) if e.would_block() => refused += 1,
                Err(e) => {
                    eprintln!("mesh-flood: send {i}: {e}");
                    std::process::exit(1);
                }
            }
        }
        let blocked = match mesh::send_timeout(1, 0, b"late", Some(Duration::from_millis(50))) {
            Ok(()) => "sent".to_string(),
            Err(e) => e.to_string(),
        };
        let huge = vec![0u8; weft_guest::abi::mesh::MAX_MESSAGE + 1];
        let oversized = match mesh::send(1, 0, &huge) {
            Ok(()) => "sent".to_string(),
            Err(e) => e.to_string(),
        };
        let summary = format!(
            "accepted={accepted} refused={refused} blocked={blocked} oversized={oversized}"
        );
        println!("{summary}");
        let _ = mesh::send(mesh::PARENT, 0, summary.as_bytes());
    }
    mesh::barrier()
}
