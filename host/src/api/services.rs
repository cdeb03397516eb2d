//! `/v1/services`: start, list, inspect and stop long-running instances.

use super::AppState;
use super::error::ApiError;
use crate::node::{ServiceError, ServiceRequest};
use crate::service::Restart;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        let message = error.to_string();
        match error {
            ServiceError::NoModule(_) | ServiceError::NotFound(_) => ApiError::not_found(message),
            ServiceError::Registry(error) => error.into(),
            ServiceError::Network(error) => error.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    module: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    nics: Vec<String>,
    restart: Option<String>,
}

/// `POST /v1/services`.
pub async fn start(
    State(state): State<AppState>,
    body: Result<Json<StartRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let restart = match request.restart.as_deref() {
        None => Restart::Always,
        Some(text) => Restart::parse(text).ok_or_else(|| {
            ApiError::bad_request(format!(
                "restart `{text}` is not one of always, on-failure, never"
            ))
        })?,
    };
    let status = state.node.start_service(ServiceRequest {
        module: request.module,
        args: request.args,
        env: request.env.into_iter().collect(),
        restart,
        nics: request.nics,
    })?;
    Ok((StatusCode::CREATED, Json(status)).into_response())
}

/// `GET /v1/services`.
pub async fn list(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "services": state.node.services() }))
}

/// `GET /v1/services/{id}`.
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match state.node.service(&id) {
        Some(status) => Ok(Json(status).into_response()),
        None => Err(ApiError::not_found(format!("no service `{id}`"))),
    }
}

/// `DELETE /v1/services/{id}`: stops it (the instance ends within a tick)
/// and forgets it.
pub async fn stop(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.node.stop_service(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
