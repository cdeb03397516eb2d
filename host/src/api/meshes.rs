//! `/v1/meshes`: start, list, inspect and stop mesh jobs, and the external
//! parent's WebSocket.
//!
//! The WebSocket at `/v1/meshes/{id}/parent` is the parent of a job started
//! with `"parent": "external"`; one client may hold it. Binary frames are
//! messages both ways: an 8-byte header (the peer rank, `u32` LE: the
//! destination from the client, the source to it; then the tag, `i32` LE)
//! and the payload. The server also sends JSON text frames: `line` events
//! (ranks' stdout and stderr), `rank_joined` and `rank_ended` (membership:
//! ranks join through `POST /v1/meshes/{id}/ranks`), `error` (a message that could
//! not be delivered), and `ended` with the job's report, after which it
//! closes. When the socket closes first, the job stops.

use super::AppState;
use super::error::ApiError;
use crate::mesh::job::OnFailure;
use crate::mesh::{MeshError, ParentLink};
use crate::node::meshes::{JoinRequest, MeshRequest, MeshStartError, ParentRequest};
use axum::Json;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

impl From<MeshStartError> for ApiError {
    fn from(error: MeshStartError) -> Self {
        let message = error.to_string();
        match error {
            MeshStartError::NoModule(_) => ApiError::not_found(message),
            MeshStartError::Busy { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message)
            }
            MeshStartError::NoMesh(_) => ApiError::not_found(message),
            MeshStartError::Mesh(MeshError::Ended) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            MeshStartError::BadRequest(_) | MeshStartError::Mesh(_) => {
                ApiError::bad_request(message)
            }
            MeshStartError::Registry(error) => error.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRequest {
    module: String,
    ranks: u32,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ParentBody {
    Named(String),
    Controller { controller: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    module: Option<String>,
    ranks: Option<u32>,
    #[serde(default)]
    modules: Vec<GroupRequest>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    parent: Option<ParentBody>,
    on_failure: Option<String>,
    timeout_ms: Option<u64>,
    subnet: Option<bool>,
}

/// `POST /v1/meshes`.
pub async fn start(
    State(state): State<AppState>,
    body: Result<Json<StartRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let mut groups: Vec<(String, u32)> = request
        .modules
        .into_iter()
        .map(|g| (g.module, g.ranks))
        .collect();
    match (request.module, request.ranks) {
        (Some(module), ranks) => groups.insert(0, (module, ranks.unwrap_or(1))),
        (None, Some(_)) => return Err(ApiError::bad_request("`ranks` without `module`")),
        (None, None) => {}
    }
    if groups.is_empty() {
        return Err(ApiError::bad_request(
            "give `module` and `ranks`, or `modules`: [{module, ranks}]",
        ));
    }
    let parent = match request.parent {
        None => ParentRequest::None,
        Some(ParentBody::Named(name)) => match name.as_str() {
            "none" => ParentRequest::None,
            "external" => ParentRequest::External,
            other => {
                return Err(ApiError::bad_request(format!(
                    "parent `{other}` is not one of none, external, {{\"controller\": MODULE}}"
                )));
            }
        },
        Some(ParentBody::Controller { controller }) => ParentRequest::Controller(controller),
    };
    let on_failure = match request.on_failure.as_deref() {
        None => OnFailure::Abort,
        Some(text) => OnFailure::parse(text).ok_or_else(|| {
            ApiError::bad_request(format!("on_failure `{text}` is not one of abort, parent"))
        })?,
    };
    let status = state.node.start_mesh(MeshRequest {
        groups,
        args: request.args,
        env: request.env.into_iter().collect(),
        parent,
        on_failure,
        timeout: request.timeout_ms.map(Duration::from_millis),
        subnet: request.subnet.unwrap_or(true),
    })?;
    Ok((StatusCode::CREATED, Json(status)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddRequest {
    module: Option<String>,
    count: u32,
    args: Option<Vec<String>>,
}

/// `POST /v1/meshes/{id}/ranks`: starts `count` more ranks in a running
/// job (rank 0's module unless `module` is given; the job's arguments
/// unless `args` are). Answers with their numbers and the job's status.
pub async fn add_ranks(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<AddRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (ranks, status) = state.node.add_mesh_ranks(
        &id,
        JoinRequest {
            module: request.module,
            count: request.count,
            args: request.args,
        },
    )?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "ranks": ranks, "mesh": status })),
    )
        .into_response())
}

/// `GET /v1/meshes`.
pub async fn list(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "meshes": state.node.meshes().list() }))
}

/// `GET /v1/meshes/{id}`.
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match state.node.meshes().status(&id) {
        Some(status) => Ok(Json(status).into_response()),
        None => Err(ApiError::not_found(format!("no mesh `{id}`"))),
    }
}

/// `DELETE /v1/meshes/{id}`: stops every rank, waits for the teardown, and
/// answers with the ended job's status.
pub async fn stop(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let Some(job) = state.node.meshes().stop(&id) else {
        return Err(ApiError::not_found(format!("no running mesh `{id}`")));
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), job.wait()).await;
    Ok(Json(job.status()).into_response())
}

/// `GET /v1/meshes/{id}/parent`: the external parent's WebSocket.
pub async fn parent(
    State(state): State<AppState>,
    Path(id): Path<String>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Some(job) = state.node.meshes().get(&id) else {
        return Err(ApiError::not_found(format!("no running mesh `{id}`")));
    };
    let conflict = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("mesh `{id}` has no external parent, or its parent is connected"),
        )
    };
    if !state.node.meshes().parent_waiting(&id) {
        return Err(conflict());
    }
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::new(rejection.status(), "not_websocket", rejection.body_text())
    })?;
    let Some((link, forward)) = state.node.meshes().take_parent(&id) else {
        return Err(conflict());
    };
    let events = forward.connect();
    Ok(upgrade
        .max_message_size(weft_abi::mesh::MAX_MESSAGE + 8)
        .max_frame_size(weft_abi::mesh::MAX_MESSAGE + 8)
        .on_upgrade(move |socket| async move {
            serve_parent(socket, link, events).await;
            // Whatever ended the connection, the job ends with it (if it
            // has not already): dropping the link stopped it.
            let report = job.wait().await;
            tracing::debug!(mesh = %job.id(), status = report.status, "parent gone");
        })
        .into_response())
}

type Sending = std::pin::Pin<Box<dyn Future<Output = (u32, Result<(), MeshError>)> + Send>>;

async fn serve_parent(
    mut socket: WebSocket,
    link: ParentLink,
    mut events: tokio::sync::mpsc::Receiver<crate::mesh::registry::ParentEvent>,
) {
    let link = Arc::new(link);
    // A message to a rank waits while its mailbox is full; meanwhile the
    // ranks' messages keep flowing to the parent (no read from the socket).
    let mut sending: Option<Sending> = None;
    let mut events_open = true;
    loop {
        tokio::select! {
            (dst, sent) = async { sending.as_mut().expect("guarded").await }, if sending.is_some() => {
                sending = None;
                if let Err(error) = sent {
                    let event = json!({"event": "error", "message": format!("to rank {dst}: {error}")});
                    if socket.send(Message::Text(event.to_string().into())).await.is_err() {
                        break;
                    }
                }
            }
            frame = socket.recv(), if sending.is_none() => match frame {
                Some(Ok(Message::Binary(frame))) if frame.len() >= 8 => {
                    let dst = u32::from_le_bytes(frame[..4].try_into().expect("4 bytes"));
                    let tag = i32::from_le_bytes(frame[4..8].try_into().expect("4 bytes"));
                    let data: Bytes = frame.slice(8..);
                    let link = link.clone();
                    sending = Some(Box::pin(async move { (dst, link.send(dst, tag, data).await) }));
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            message = link.recv() => match message {
                Ok(message) => {
                    let mut frame = Vec::with_capacity(8 + message.data.len());
                    frame.extend_from_slice(&(message.src as u32).to_le_bytes());
                    frame.extend_from_slice(&message.tag.to_le_bytes());
                    frame.extend_from_slice(&message.data);
                    if socket.send(Message::Binary(frame.into())).await.is_err() {
                        break;
                    }
                }
                Err(_) => {
                    // The job ended and every message was read: flush the
                    // last events, then the report.
                    while let Ok(event) = events.try_recv() {
                        let text = serde_json::to_string(&event).unwrap_or_default();
                        let _ = socket.send(Message::Text(text.into())).await;
                    }
                    let report = link_report(&link).await;
                    let event = json!({"event": "ended", "report": report});
                    let _ = socket.send(Message::Text(event.to_string().into())).await;
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
            },
            event = events.recv(), if events_open => match event {
                Some(event) => {
                    let text = serde_json::to_string(&event).unwrap_or_default();
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                None => events_open = false,
            },
        }
    }
}

async fn link_report(link: &ParentLink) -> Value {
    serde_json::to_value(&*link.report().await).unwrap_or(Value::Null)
}

/// The OpenAPI description of these routes (merged into
/// [`super::openapi::document`]).
pub fn openapi_paths() -> Value {
    let id =
        json!([ { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } } ]);
    let error = |description: &str| json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
    let mesh = |description: &str| {
        json!({ "description": description, "content": { "application/json": { "schema": { "type": "object",
            "description": "id, state (running|ended), parent, on_failure, size (ranks started so far), initial_size, live (ranks live now), epoch (one more per join or departure), subnet {id, cidr}, ranks [{rank, module, instance, state, exit_code|code+reason|stop_latency_us, started_ms, addr, sent_messages, sent_bytes, received_messages, received_bytes, queued_messages, queued_bytes, mailbox_high_water, mailbox_bound}], parent_traffic, traffic (bytes, rank x rank, parent last; empty in listings and once ended for meshes past 64 ranks), report {status, exit_code, ending, reason, max_stop_latency_us}" } } } })
    };
    json!({
        "/v1/meshes": {
            "get": { "summary": "Running meshes, then recently ended ones", "responses": { "200": { "description": "{meshes: [...]}" } } },
            "post": {
                "summary": "Start a mesh job: ranks wired into an in-memory mesh, with a subnet, bound to their parent",
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object",
                    "properties": {
                        "module": { "type": "string" },
                        "ranks": { "type": "integer", "minimum": 1, "maximum": 1024 },
                        "modules": { "type": "array", "items": { "type": "object", "properties": { "module": { "type": "string" }, "ranks": { "type": "integer" } } }, "description": "groups of ranks running other modules, after `module`'s" },
                        "args": { "type": "array", "items": { "type": "string" } },
                        "env": { "type": "object", "additionalProperties": { "type": "string" } },
                        "parent": { "description": "\"none\" (the default: the job ends with its ranks), \"external\" (a client on /v1/meshes/{id}/parent), or {\"controller\": MODULE}" },
                        "on_failure": { "enum": ["abort", "parent"], "default": "abort" },
                        "timeout_ms": { "type": "integer", "description": "each instance's deadline" },
                        "subnet": { "type": "boolean", "default": true }
                    }
                } } } },
                "responses": { "201": mesh("started"), "400": error("bad request"), "404": error("no such module"), "503": error("not enough free instance slots") }
            }
        },
        "/v1/meshes/{id}": {
            "parameters": id,
            "get": { "summary": "One mesh: its ranks, their state and counters, traffic between ranks", "responses": { "200": mesh("the mesh"), "404": error("no such mesh") } },
            "delete": { "summary": "Stop a mesh: every rank ends, its mailboxes and subnet are freed", "responses": { "200": mesh("the ended mesh"), "404": error("no running mesh") } }
        },
        "/v1/meshes/{id}/ranks": {
            "parameters": id,
            "post": {
                "summary": "Start more ranks in a running mesh: they get the next rank numbers, a mailbox and a NIC on the mesh subnet, take part in collectives from the next round that opens, and the parent and ranks hear of them (a membership event; rank_joined on the parent's WebSocket)",
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object",
                    "required": ["count"],
                    "properties": {
                        "count": { "type": "integer", "minimum": 1, "description": "how many ranks; the job holds at most 1024 in all, ended ones counted" },
                        "module": { "type": "string", "description": "the module they run (default: rank 0's)" },
                        "args": { "type": "array", "items": { "type": "string" }, "description": "their arguments (default: the job's)" }
                    }
                } } } },
                "responses": { "201": { "description": "{ranks: [numbers], mesh: the mesh's status}" }, "400": error("bad count"), "404": error("no such mesh or module"), "409": error("the mesh has ended"), "503": error("not enough free instance slots") }
            }
        },
        "/v1/meshes/{id}/parent": {
            "parameters": id,
            "get": {
                "summary": "WebSocket: the external parent. Binary frames are messages ([rank u32 LE][tag i32 LE][payload]); text frames are JSON events (line, rank_joined, rank_ended, error, ended). Closing it stops the job.",
                "responses": { "101": { "description": "switching protocols" }, "404": error("no running mesh"), "409": error("no external parent, or one is connected") }
            }
        }
    })
}
