//! `/v1/modules`: upload, list, inspect, delete and invoke modules.

use super::AppState;
use super::error::ApiError;
use crate::node::InvokeRequest;
use crate::store::ModuleRecord;
use crate::units::parse_duration;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

/// The media type of a JSON invocation envelope (the body is otherwise the
/// raw input).
pub const INVOKE_JSON: &str = "application/vnd.weft.invoke+json";

fn module_json(record: &ModuleRecord) -> Value {
    json!({
        "name": record.name,
        "digest": record.digest,
        "size": record.size,
        "created_ms": record.created_ms,
        "imports": record.imports,
        "exports": record.exports,
    })
}

/// Turns a failed body read into our error: too large, or cut off.
pub(super) fn body(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(limit)
        } else {
            ApiError::bad_request(format!("reading the request body failed: {rejection}"))
        }
    })
}

/// `PUT /v1/modules/{name}`: validate, compile and store; 201 on a new
/// module, 200 on a replacement.
pub async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let limit = state.node.config().runtime.max_module_size;
    let bytes = body(bytes, limit)?;
    let node = state.node.clone();
    let existed = node.registry().record(&name)?.is_some();
    // Compiling is CPU-bound and can take seconds: keep it off the reactor.
    let entry = tokio::task::spawn_blocking(move || node.deploy(&name, &bytes))
        .await
        .map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })??;
    let mut value = module_json(&entry.record);
    let (origin, took) = match entry.loaded.origin() {
        crate::runtime::Origin::Compiled(took) => ("compiled", took),
        crate::runtime::Origin::Cached(took) => ("cached", took),
    };
    value["origin"] = origin.into();
    value["load_ms"] = (took.as_secs_f64() * 1e3).into();
    value["replaced"] = existed.into();
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(value)).into_response())
}

/// `GET /v1/modules`.
pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let modules: Vec<Value> = state.node.modules()?.iter().map(module_json).collect();
    Ok(Json(json!({ "modules": modules })))
}

/// `GET /v1/modules/{name}`.
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match state.node.registry().record(&name)? {
        Some(record) => Ok(Json(module_json(&record))),
        None => Err(ApiError::not_found(format!("no module named `{name}`"))),
    }
}

/// `DELETE /v1/modules/{name}`: 204, or 404.
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.node.delete(&name)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no module named `{name}`")))
    }
}

/// The JSON envelope of an invocation.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    #[serde(default)]
    input: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: std::collections::BTreeMap<String, String>,
    timeout: Option<String>,
}

fn parse_timeout(text: &str) -> Result<Duration, ApiError> {
    parse_duration(text).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Reads args, env and timeout from the query string (`args` and `env` may
/// repeat; `env` is `K=V`).
fn from_query(query: Option<&str>, request: &mut InvokeRequest) -> Result<(), ApiError> {
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*key {
            "args" | "arg" => request.args.push(value.into_owned()),
            "env" => match value.split_once('=') {
                Some((k, v)) if !k.is_empty() => request.env.push((k.to_owned(), v.to_owned())),
                _ => return Err(ApiError::bad_request(format!("env `{value}` is not K=V"))),
            },
            "timeout" => request.timeout = Some(parse_timeout(&value)?),
            "access_token" => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{other}`"
                )));
            }
        }
    }
    Ok(())
}

/// `POST /v1/modules/{name}/invoke`: the body is the input (or a JSON
/// envelope with `Content-Type: application/vnd.weft.invoke+json`); the
/// response body is the output.
pub async fn invoke(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let bytes = body(bytes, state.limits.max_input)?;
    let mut request = InvokeRequest::default();
    from_query(query.as_deref(), &mut request)?;
    let envelope = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(INVOKE_JSON));
    if envelope {
        let envelope: Envelope = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("invalid invocation JSON: {e}")))?;
        request.input = Bytes::from(envelope.input);
        request.args.extend(envelope.args);
        request.env.extend(envelope.env);
        if let Some(timeout) = envelope.timeout {
            request.timeout = Some(parse_timeout(&timeout)?);
        }
    } else {
        request.input = bytes;
    }

    let outcome = state.node.invoke(&name, request).await?;
    let mut response = outcome.output.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert("x-weft-exit-code", HeaderValue::from(outcome.exit_code));
    headers.insert(
        "x-weft-duration-us",
        HeaderValue::from(outcome.duration.as_micros() as u64),
    );
    if let Ok(id) = HeaderValue::from_str(outcome.instance.as_str()) {
        headers.insert("x-weft-instance", id);
    }
    Ok(response)
}
