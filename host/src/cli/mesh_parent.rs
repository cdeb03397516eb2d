//! The CLI as the external parent of a mesh on a server, over the
//! WebSocket at `/v1/meshes/{id}/parent`.
//!
//! Frames, both ways: a binary frame is one message, an 8-byte header
//! (the peer rank as a little-endian `u32`: the destination when sent, the
//! source when received; then the tag, a little-endian `i32`) and the
//! payload. Text frames from the server are JSON events: `line` (a rank's
//! stdout or stderr line), `rank_joined`, `rank_ended`, and last `ended` with the job's
//! report. Closing the socket (or the process dying) stops the job.

use super::client::Client;
use super::mesh::{finish_remote, parse_command, print_message, stdin_lines};
use super::print_error;
use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::io::Write;
use std::process::ExitCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Connects as the parent of mesh `id` and stays it until the job ends.
pub async fn run(client: &Client, id: &str, mut size: u32) -> anyhow::Result<ExitCode> {
    let base = client.base();
    let url = match base.strip_prefix("https://") {
        Some(rest) => format!("wss://{rest}"),
        None => format!("ws://{}", base.strip_prefix("http://").unwrap_or(base)),
    } + &format!("/v1/meshes/{id}/parent");
    let mut request = url
        .as_str()
        .into_client_request()
        .with_context(|| format!("bad server URL {base}"))?;
    if let Some(token) = client.token() {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
    }
    // A frame holds one whole message (and its 8-byte header).
    let largest = weft_abi::mesh::MAX_MESSAGE + 8;
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(largest))
        .max_frame_size(Some(largest));
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
        .await
        .with_context(|| format!("connecting to {url} as the mesh's parent"))?;
    let mut commands = stdin_lines();
    let mut stdin_open = true;
    loop {
        tokio::select! {
            frame = socket.next() => match frame {
                Some(Ok(Message::Binary(frame))) if frame.len() >= 8 => {
                    let src = u32::from_le_bytes(frame[..4].try_into().expect("4 bytes"));
                    let tag = i32::from_le_bytes(frame[4..8].try_into().expect("4 bytes"));
                    print_message(src, tag, &frame[8..]);
                }
                Some(Ok(Message::Text(text))) => {
                    let event: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                    match event["event"].as_str() {
                        Some("line") => {
                            let rank = event["rank"].as_i64().unwrap_or(-1);
                            let who = if rank < 0 { "controller".into() } else { format!("rank {rank}") };
                            let text = event["text"].as_str().unwrap_or("");
                            if event["stream"] == "stderr" {
                                let _ = writeln!(std::io::stderr().lock(), "[{who}] {text}");
                            } else {
                                let _ = writeln!(std::io::stdout().lock(), "[{who}] {text}");
                            }
                        }
                        Some("rank_joined") => {
                            // `* TEXT` goes to the joined ranks too.
                            if let Some(rank) = event["rank"].as_u64() {
                                size = size.max(rank as u32 + 1);
                            }
                            let _ = writeln!(std::io::stderr().lock(), "[rank {}] joined", event["rank"]);
                        }
                        Some("rank_ended") if event["state"]["state"] == "failed" => {
                            print_error(format!(
                                "rank {} failed: {}",
                                event["rank"],
                                event["state"]["reason"].as_str().unwrap_or("")
                            ));
                        }
                        Some("ended") => return Ok(finish_remote(&event["report"])),
                        Some("error") => print_error(event["message"].as_str().unwrap_or("")),
                        _ => {}
                    }
                }
                Some(Ok(Message::Close(_))) | None => {
                    anyhow::bail!("the server closed the parent connection before the mesh ended")
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => anyhow::bail!("the parent connection failed: {error}"),
            },
            line = commands.recv(), if stdin_open => match line {
                Some(line) => match parse_command(&line, size) {
                    Some((ranks, data)) => {
                        for rank in ranks {
                            let mut frame = Vec::with_capacity(8 + data.len());
                            frame.extend_from_slice(&rank.to_le_bytes());
                            frame.extend_from_slice(&0i32.to_le_bytes());
                            frame.extend_from_slice(&data);
                            socket.send(Message::Binary(frame.into())).await?;
                        }
                    }
                    None => print_error(format!("type `RANK TEXT` or `* TEXT` (ranks 0 to {})", size - 1)),
                },
                None => stdin_open = false,
            },
        }
    }
}
