//! Watching the host: health, instances, logs, the live event feed (SSE) and
//! Prometheus metrics.

use super::AppState;
use super::error::ApiError;
use crate::activity::Event;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use std::convert::Infallible;
use tokio::sync::broadcast::{self, error::RecvError};

/// `GET /v1/health`.
pub async fn health(State(state): State<AppState>) -> Json<Value> {
    let modules = state.node.modules().map(|m| m.len()).unwrap_or(0);
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": state.node.uptime().as_secs(),
        "modules": modules,
        "running": state.node.activity().running().len(),
    }))
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.node.render_metrics(),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<usize>,
    #[serde(rename = "access_token")]
    _access_token: Option<String>,
}

/// `GET /v1/instances`: running, and recent (newest first).
pub async fn instances(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Json<Value> {
    let activity = state.node.activity();
    Json(json!({
        "running": activity.running(),
        "recent": activity.recent(query.limit.unwrap_or(200).min(crate::activity::RECENT)),
    }))
}

#[derive(Debug, Deserialize)]
pub struct LogQuery {
    module: Option<String>,
    instance: Option<String>,
    limit: Option<usize>,
    #[serde(default)]
    follow: bool,
    #[serde(rename = "access_token")]
    _access_token: Option<String>,
}

/// `GET /v1/logs?module=&instance=&limit=&follow=`: the newest lines; with
/// `follow=true`, an SSE stream of `log` events, the newest lines first.
pub async fn logs(
    State(state): State<AppState>,
    Query(query): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let activity = state.node.activity();
    let limit = query.limit.unwrap_or(200).min(crate::activity::LOG_LINES);
    if !query.follow {
        let lines = activity.logs(query.module.as_deref(), query.instance.as_deref(), limit);
        return Ok(Json(json!({ "lines": lines })).into_response());
    }
    // Subscribe before reading the backlog so no line falls between them.
    let receiver = activity.subscribe();
    let backlog: Vec<Event> = activity
        .logs(query.module.as_deref(), query.instance.as_deref(), limit)
        .into_iter()
        .map(Event::Log)
        .collect();
    let (module, instance) = (query.module, query.instance);
    let filter = move |event: &Event| match event {
        Event::Log(line) => {
            module.as_ref().is_none_or(|m| &line.module == m)
                && instance.as_ref().is_none_or(|i| &line.instance == i)
        }
        _ => false,
    };
    Ok(sse_response(backlog, receiver, filter))
}

/// `GET /v1/events`: every event, live, as SSE.
pub async fn events(State(state): State<AppState>) -> Response {
    sse_response(Vec::new(), state.node.activity().subscribe(), |_| true)
}

fn sse_response(
    backlog: Vec<Event>,
    receiver: broadcast::Receiver<Event>,
    filter: impl Fn(&Event) -> bool + Send + 'static,
) -> Response {
    Sse::new(event_stream(backlog, receiver, filter))
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn to_sse(event: &Event) -> sse::Event {
    sse::Event::default()
        .event(event.name())
        .data(event.to_json())
}

fn event_stream(
    backlog: Vec<Event>,
    receiver: broadcast::Receiver<Event>,
    filter: impl Fn(&Event) -> bool + Send + 'static,
) -> impl Stream<Item = Result<sse::Event, Infallible>> {
    let backlog = futures_util::stream::iter(backlog.into_iter().map(|e| Ok(to_sse(&e))));
    let live =
        futures_util::stream::unfold((receiver, filter), |(mut receiver, filter)| async move {
            loop {
                match receiver.recv().await {
                    Ok(event) if filter(&event) => {
                        return Some((Ok(to_sse(&event)), (receiver, filter)));
                    }
                    Ok(_) => continue,
                    // A slow reader: say how much it missed and go on.
                    Err(RecvError::Lagged(missed)) => {
                        let event = sse::Event::default()
                            .event("lagged")
                            .data(json!({ "missed": missed }).to_string());
                        return Some((Ok(event), (receiver, filter)));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        });
    futures_util::StreamExt::chain(backlog, live)
}
