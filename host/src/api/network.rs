//! `/v1/subnets`, `/v1/security-groups` and `/v1/nics`: the virtual network.

use super::AppState;
use super::error::ApiError;
use crate::network::{NetworkError, NicRequest};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::Ipv4Addr;
use weft_netstack::router::{Counters, DropReason};
use weft_netstack::secgroup::{Peer, Protocol, Rule};
use weft_netstack::{Direction, Record, SecurityGroup, Subnet};

impl From<NetworkError> for ApiError {
    fn from(error: NetworkError) -> Self {
        let message = error.to_string();
        match error {
            NetworkError::NotFound { .. } => ApiError::not_found(message),
            NetworkError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            NetworkError::Invalid(_) => ApiError::bad_request(message),
            NetworkError::Store(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store_error", message)
            }
        }
    }
}

pub(super) fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(v)| v)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

pub(super) fn created(value: Value) -> Response {
    (StatusCode::CREATED, Json(value)).into_response()
}

fn subnet_json(subnet: &Subnet) -> Value {
    json!({
        "id": subnet.id().to_string(),
        "cidr": subnet.cidr().to_string(),
        "gateway": subnet.gateway().to_string(),
        "name": subnet.name(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetRequest {
    cidr: String,
    #[serde(default)]
    name: String,
}

/// `POST /v1/subnets`.
pub async fn create_subnet(
    State(state): State<AppState>,
    request: Result<Json<SubnetRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let subnet = state
        .node
        .network()
        .create_subnet(&request.cidr, &request.name)?;
    Ok(created(subnet_json(&subnet)))
}

/// `GET /v1/subnets`.
pub async fn subnets(State(state): State<AppState>) -> Json<Value> {
    let subnets: Vec<Value> = state
        .node
        .network()
        .subnets()
        .iter()
        .map(subnet_json)
        .collect();
    Json(json!({ "subnets": subnets }))
}

/// `DELETE /v1/subnets/{id}`.
pub async fn delete_subnet(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.node.network().delete_subnet(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// A rule as the API writes it: `{"protocol", "ports"?, "cidr"?, "group"?}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleJson {
    protocol: String,
    ports: Option<String>,
    cidr: Option<String>,
    group: Option<String>,
}

impl RuleJson {
    fn parse(&self) -> Result<Rule, ApiError> {
        let bad = |e: &dyn std::fmt::Display| ApiError::bad_request(format!("invalid rule: {e}"));
        let protocol: Protocol = self.protocol.parse().map_err(|e| bad(&e))?;
        let ports = self
            .ports
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| bad(&e))?;
        let peer = match (&self.cidr, &self.group) {
            (Some(_), Some(_)) => return Err(bad(&"give `cidr` or `group`, not both")),
            (Some(cidr), None) => Peer::Cidr(cidr.parse().map_err(|e| bad(&e))?),
            (None, Some(group)) => Peer::Group(group.parse().map_err(|e| bad(&e))?),
            (None, None) => Peer::Any,
        };
        Rule::new(protocol, ports, peer).map_err(|e| bad(&e))
    }
}

fn rule_json(rule: &Rule) -> Value {
    let mut value = json!({ "protocol": rule.protocol().name() });
    if let Some(ports) = rule.ports() {
        value["ports"] = ports.to_string().into();
    }
    match rule.peer() {
        Peer::Any => {}
        Peer::Cidr(cidr) => value["cidr"] = cidr.to_string().into(),
        Peer::Group(group) => value["group"] = group.to_string().into(),
    }
    value
}

fn group_json(group: &SecurityGroup) -> Value {
    let rules = |d| -> Vec<Value> { group.rules(d).iter().map(rule_json).collect() };
    json!({
        "id": group.id().to_string(),
        "name": group.name(),
        "ingress": rules(Direction::Ingress),
        "egress": rules(Direction::Egress),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRequest {
    name: String,
    #[serde(default)]
    ingress: Vec<RuleJson>,
    egress: Option<Vec<RuleJson>>,
}

/// `POST /v1/security-groups`.
pub async fn create_group(
    State(state): State<AppState>,
    request: Result<Json<GroupRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let ingress = request
        .ingress
        .iter()
        .map(RuleJson::parse)
        .collect::<Result<_, _>>()?;
    let egress = request
        .egress
        .map(|rules| {
            rules
                .iter()
                .map(RuleJson::parse)
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let group = state
        .node
        .network()
        .create_group(&request.name, ingress, egress)?;
    Ok(created(group_json(&group)))
}

/// `GET /v1/security-groups`.
pub async fn groups(State(state): State<AppState>) -> Json<Value> {
    let groups: Vec<Value> = state
        .node
        .network()
        .groups()
        .iter()
        .map(group_json)
        .collect();
    Json(json!({ "security_groups": groups }))
}

/// `GET /v1/security-groups/{id}`.
pub async fn group(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(group_json(&state.node.network().group(&id)?)))
}

/// `DELETE /v1/security-groups/{id}`.
pub async fn delete_group(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.node.network().delete_group(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub struct RuleChange {
    direction: String,
    #[serde(flatten)]
    rule: RuleJson,
}

async fn change_rule(
    state: AppState,
    id: String,
    request: Result<Json<RuleChange>, JsonRejection>,
    add: bool,
) -> Result<Json<Value>, ApiError> {
    let request = body(request)?;
    let direction = match request.direction.as_str() {
        "ingress" => Direction::Ingress,
        "egress" => Direction::Egress,
        other => {
            return Err(ApiError::bad_request(format!(
                "direction `{other}` is not ingress or egress"
            )));
        }
    };
    let rule = request.rule.parse()?;
    let group = state
        .node
        .network()
        .change_rule(&id, direction, rule, add)?;
    Ok(Json(group_json(&group)))
}

/// `POST /v1/security-groups/{id}/rules`: adds a rule.
pub async fn add_rule(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Result<Json<RuleChange>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    change_rule(state, id, request, true).await
}

/// `POST /v1/security-groups/{id}/rules/delete`: removes a rule.
pub async fn remove_rule(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Result<Json<RuleChange>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    change_rule(state, id, request, false).await
}

pub(super) fn counters_json(counters: &Counters) -> Value {
    let mut drops = serde_json::Map::new();
    for reason in DropReason::ALL {
        let count = counters.drops(reason);
        if count > 0 {
            drops.insert(format!("{reason:?}"), count.into());
        }
    }
    json!({
        "tx_packets": counters.tx_packets,
        "tx_bytes": counters.tx_bytes,
        "rx_packets": counters.rx_packets,
        "rx_bytes": counters.rx_bytes,
        "dropped": counters.dropped(),
        "drops": drops,
    })
}

fn nic_json(record: &Record, counters: Option<&Counters>) -> Value {
    let mut value = json!({
        "id": record.id().to_string(),
        "subnet": record.subnet().to_string(),
        "ip": record.primary_ip().to_string(),
        "secondary_ips": record.secondary_ips().iter().map(|ip| ip.to_string()).collect::<Vec<_>>(),
        "mac": record.mac().to_string(),
        "security_groups": record.security_groups().iter().map(|g| g.to_string()).collect::<Vec<_>>(),
        "source_dest_check": record.source_dest_check(),
        "description": record.description(),
        "status": if record.attachment().is_some() { "in-use" } else { "available" },
        "attachment": record.attachment().map(|a| json!({ "instance": a.instance, "attached_ms": a.attached_ms })),
    });
    if let Some(counters) = counters {
        value["counters"] = counters_json(counters);
    }
    value
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NicCreate {
    subnet: String,
    #[serde(default)]
    security_groups: Vec<String>,
    ip: Option<Ipv4Addr>,
    source_dest_check: Option<bool>,
    description: Option<String>,
}

/// `POST /v1/nics`.
pub async fn create_nic(
    State(state): State<AppState>,
    request: Result<Json<NicCreate>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let record = state.node.network().create_nic(NicRequest {
        subnet: request.subnet,
        security_groups: request.security_groups,
        ip: request.ip,
        source_dest_check: request.source_dest_check,
        description: request.description,
    })?;
    Ok(created(nic_json(&record, None)))
}

/// `GET /v1/nics`.
pub async fn nics(State(state): State<AppState>) -> Json<Value> {
    let nics: Vec<Value> = state
        .node
        .network()
        .nics()
        .iter()
        .map(|(record, counters)| nic_json(record, counters.as_ref()))
        .collect();
    Json(json!({ "nics": nics }))
}

/// `GET /v1/nics/{id}`: with its attachment and, when attached, counters.
pub async fn nic(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (record, counters) = state.node.network().nic(&id)?;
    Ok(Json(nic_json(&record, counters.as_ref())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachRequest {
    instance: String,
}

/// `POST /v1/nics/{id}/attach`.
pub async fn attach(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Result<Json<AttachRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let request = body(request)?;
    let record = state.node.attach_nic(&id, &request.instance)?;
    Ok(Json(nic_json(&record, None)))
}

/// `POST /v1/nics/{id}/detach`.
pub async fn detach(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = state.node.network().detach(&id)?;
    Ok(Json(nic_json(&record, None)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupsRequest {
    security_groups: Vec<String>,
}

/// `PUT /v1/nics/{id}/security-groups`.
pub async fn set_groups(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Result<Json<GroupsRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let request = body(request)?;
    let record = state
        .node
        .network()
        .set_groups(&id, &request.security_groups)?;
    Ok(Json(nic_json(&record, None)))
}

/// `DELETE /v1/nics/{id}`: only when detached.
pub async fn delete_nic(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.node.network().delete_nic(&id)?;
    Ok(StatusCode::NO_CONTENT)
}
