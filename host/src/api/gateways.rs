//! `/v1/gateways` and `/v1/forwards`: where the virtual network meets the
//! host.

use super::AppState;
use super::error::ApiError;
use super::network::{body, counters_json, created};
use crate::network::gateway::ForwardInfo;
use crate::network::{ForwardRequest, GatewayInfo, Proto};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::{SocketAddr, SocketAddrV4};

fn gateway_json(info: &GatewayInfo) -> Value {
    let g = &info.gateway;
    json!({
        "id": g.id,
        "subnet": g.subnet,
        "cidr": info.cidr.map(|c| c.to_string()),
        "ip": g.ip.to_string(),
        "nic": g.nic,
        "nat": g.nat,
        "tun": g.tun,
        "status": info.status,
        "created_ms": g.created_ms,
        "counters": info.counters,
        "port": info.port.as_ref().map(counters_json),
    })
}

fn forward_json(info: &ForwardInfo) -> Value {
    let f = &info.forward;
    json!({
        "id": f.id,
        "proto": f.proto,
        "listen": f.listen.to_string(),
        "to": f.to.to_string(),
        "status": info.status,
        "created_ms": f.created_ms,
        "counters": info.counters,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayCreate {
    subnet: String,
    #[serde(default = "yes")]
    nat: bool,
    tun: Option<String>,
}

fn yes() -> bool {
    true
}

/// `POST /v1/gateways`.
pub async fn create(
    State(state): State<AppState>,
    request: Result<Json<GatewayCreate>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let network = state.node.network().clone();
    // Making a TUN device is a few system calls; keep them off the reactor.
    let info = tokio::task::spawn_blocking(move || {
        network.create_gateway(&request.subnet, request.nat, request.tun)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    Ok(created(gateway_json(&info)))
}

/// `GET /v1/gateways`.
pub async fn list(State(state): State<AppState>) -> Json<Value> {
    let network = state.node.network();
    let gateways: Vec<Value> = network.gateways().iter().map(gateway_json).collect();
    let allow: Vec<String> = network
        .egress_allow()
        .iter()
        .map(|c| c.to_string())
        .collect();
    Json(json!({ "gateways": gateways, "egress_allow": allow }))
}

/// `GET /v1/gateways/{id}`.
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(gateway_json(&state.node.network().gateway(&id)?)))
}

/// `DELETE /v1/gateways/{id}`: refused while forwards use it.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.node.network().delete_gateway(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardCreate {
    listen: String,
    to: String,
    #[serde(default)]
    proto: Option<String>,
}

/// `POST /v1/forwards`.
pub async fn add_forward(
    State(state): State<AppState>,
    request: Result<Json<ForwardCreate>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let listen: SocketAddr = request.listen.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "`listen`: `{}` is not a host address and port (127.0.0.1:8080)",
            request.listen
        ))
    })?;
    let to: SocketAddrV4 = request.to.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "`to`: `{}` is not an instance address and port (10.0.1.5:80)",
            request.to
        ))
    })?;
    let proto: Proto = request
        .proto
        .as_deref()
        .unwrap_or("tcp")
        .parse()
        .map_err(ApiError::bad_request)?;
    let info = state
        .node
        .network()
        .add_forward(ForwardRequest { listen, to, proto })?;
    Ok(created(forward_json(&info)))
}

/// `GET /v1/forwards`.
pub async fn forwards(State(state): State<AppState>) -> Json<Value> {
    let forwards: Vec<Value> = state
        .node
        .network()
        .forwards()
        .iter()
        .map(forward_json)
        .collect();
    Json(json!({ "forwards": forwards }))
}

/// `GET /v1/forwards/{id}`.
pub async fn forward(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(forward_json(&state.node.network().forward(&id)?)))
}

/// `DELETE /v1/forwards/{id}`.
pub async fn remove_forward(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.node.network().remove_forward(&id)?;
    Ok(StatusCode::NO_CONTENT)
}
