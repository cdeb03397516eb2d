//! `/v1/chains`: define, list, inspect, delete and invoke chains; `/v1/chain`
//! runs an ad-hoc chain; `/v1/chain-runs` lists recent runs.
//!
//! An invocation answers with the last step's output as the body (no copy:
//! the body is the `Bytes` the last step produced) and the per-step report
//! in `x-weft-steps`, or everything as JSON with `?format=json`. A failing
//! step answers 422 naming the step's index and module, its reason and its
//! stderr.

use super::AppState;
use super::error::ApiError;
use crate::chain::{ChainError, Definition, DefinitionError, PlanError, Ran, StepDef, StepReport};
use crate::node::{ChainRequest, ChainRunError};
use crate::units::{parse_duration, parse_size};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// The media type of an ad-hoc chain's JSON envelope (the body is
/// otherwise the raw input).
pub const CHAIN_JSON: &str = "application/vnd.weft.chain+json";

/// Stderr kept in a 422 body.
const STDERR_IN_ERROR: usize = 64 << 10;

/// A step in a request: a module name, or the module with its settings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StepBody {
    Name(String),
    Full(FullStep),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FullStep {
    module: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    timeout: Option<String>,
    memory: Option<String>,
}

/// `PUT /v1/chains/{name}`'s body, and the ad-hoc envelope (which adds
/// `input`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChainBody {
    steps: Vec<StepBody>,
    timeout: Option<String>,
    #[serde(default)]
    input: Option<String>,
}

fn duration(text: &str, what: &str) -> Result<Duration, ApiError> {
    parse_duration(text).map_err(|e| ApiError::bad_request(format!("{what}: {e}")))
}

fn steps(body: Vec<StepBody>) -> Result<Vec<StepDef>, ApiError> {
    body.into_iter()
        .enumerate()
        .map(|(index, step)| match step {
            StepBody::Name(module) => Ok(StepDef::module(module)),
            StepBody::Full(step) => {
                let timeout = step
                    .timeout
                    .map(|t| duration(&t, &format!("step {index}: timeout")))
                    .transpose()?;
                let memory = step
                    .memory
                    .map(|m| {
                        parse_size(&m).map_err(|e| {
                            ApiError::bad_request(format!("step {index}: memory: {e}"))
                        })
                    })
                    .transpose()?;
                Ok(StepDef {
                    module: step.module,
                    args: step.args,
                    env: step.env.into_iter().collect(),
                    timeout_ms: timeout.map(|t| t.as_millis().max(1) as u64),
                    memory,
                })
            }
        })
        .collect()
}

fn definition(state: &AppState, name: &str, body: ChainBody) -> Result<Definition, ApiError> {
    let timeout = body.timeout.map(|t| duration(&t, "timeout")).transpose()?;
    Ok(Definition::new(
        name,
        steps(body.steps)?,
        timeout,
        &state.node.chain_ceilings(),
    )?)
}

fn chain_json(definition: &Definition) -> Value {
    let steps: Vec<Value> = definition
        .steps
        .iter()
        .map(|step| {
            let env: serde_json::Map<String, Value> = step
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect();
            json!({
                "module": step.module,
                "args": step.args,
                "env": env,
                "timeout_ms": step.timeout_ms,
                "memory": step.memory,
            })
        })
        .collect();
    json!({
        "name": definition.name,
        "steps": steps,
        "timeout_ms": definition.timeout_ms,
        "created_ms": definition.created_ms,
    })
}

fn parse_body(bytes: Result<Bytes, BytesRejection>, limit: usize) -> Result<ChainBody, ApiError> {
    let bytes = super::modules::body(bytes, limit)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid chain JSON: {e}")))
}

/// `PUT /v1/chains/{name}`: 201 on a new chain, 200 on a replacement.
pub async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // JSON bodies are under the router's default limit (`max_json`).
    let body = parse_body(bytes, 1 << 20)?;
    if body.input.is_some() {
        return Err(ApiError::bad_request(
            "a stored chain has no `input`: give it when invoking",
        ));
    }
    let definition = definition(&state, &name, body)?;
    let replaced = state
        .node
        .chains()
        .put(&definition, state.node.registry())?;
    let status = if replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(chain_json(&definition))).into_response())
}

/// `GET /v1/chains`.
pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let chains = state.node.chains().list().map_err(ChainError::from)?;
    let chains: Vec<Value> = chains.iter().map(chain_json).collect();
    Ok(Json(json!({ "chains": chains })))
}

/// `GET /v1/chains/{name}`: the definition and its recent runs.
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let definition = state.node.chain(&name)?;
    let mut value = chain_json(&definition);
    value["recent"] = json!(state.node.chains().recent(Some(&name), 20));
    Ok(Json(value))
}

/// `DELETE /v1/chains/{name}`: 204, or 404.
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state
        .node
        .chains()
        .remove(&name)
        .map_err(ChainError::from)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no chain named `{name}`")))
    }
}

/// `GET /v1/chain-runs?chain=&limit=`: recent runs, newest first.
pub async fn runs(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let (mut chain, mut limit) = (None, 50usize);
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*key {
            "chain" => chain = Some(value.into_owned()),
            "limit" => {
                limit = value.parse().map_err(|_| {
                    ApiError::bad_request(format!("limit `{value}` is not a number"))
                })?
            }
            "access_token" => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{other}`"
                )));
            }
        }
    }
    let runs = state.node.chains().recent(chain.as_deref(), limit);
    Ok(Json(json!({ "runs": runs })))
}

/// Options of an invocation, from the query string.
#[derive(Debug, Default)]
struct Options {
    timeout: Option<Duration>,
    json: bool,
    steps: Vec<String>,
}

fn options(query: Option<&str>, ad_hoc: bool) -> Result<Options, ApiError> {
    let mut options = Options::default();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*key {
            "timeout" => options.timeout = Some(duration(&value, "timeout")?),
            "format" => match &*value {
                "json" => options.json = true,
                "raw" => options.json = false,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "format `{other}`: use `json` or `raw`"
                    )));
                }
            },
            "step" if ad_hoc => options.steps.push(value.into_owned()),
            "access_token" => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{other}`"
                )));
            }
        }
    }
    Ok(options)
}

/// `POST /v1/chains/{name}/invoke`: the body is the first step's input.
pub async fn invoke(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let input = super::modules::body(bytes, state.limits.max_input)?;
    let options = options(query.as_deref(), false)?;
    let definition = state.node.chain(&name)?;
    run(&state, &definition, input, &options).await
}

/// `POST /v1/chain?step=A&step=B`: an ad-hoc chain of modules, the body its
/// input; or, with `Content-Type: application/vnd.weft.chain+json`, a JSON
/// envelope `{steps, input, timeout}` whose steps may carry arguments.
pub async fn ad_hoc(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let bytes = super::modules::body(bytes, state.limits.max_input)?;
    let mut options = options(query.as_deref(), true)?;
    let envelope = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(CHAIN_JSON));
    let (definition, input) = if envelope {
        if !options.steps.is_empty() {
            return Err(ApiError::bad_request(
                "give the steps either as `step` parameters or in the JSON envelope, not both",
            ));
        }
        let mut body: ChainBody = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("invalid chain JSON: {e}")))?;
        let input = Bytes::from(body.input.take().unwrap_or_default());
        (definition(&state, "", body)?, input)
    } else {
        let steps = std::mem::take(&mut options.steps)
            .into_iter()
            .map(StepDef::module)
            .collect();
        let definition = Definition::new("", steps, None, &state.node.chain_ceilings())?;
        (definition, bytes)
    };
    run(&state, &definition, input, &options).await
}

async fn run(
    state: &AppState,
    definition: &Definition,
    input: Bytes,
    options: &Options,
) -> Result<Response, ApiError> {
    let request = ChainRequest {
        input,
        timeout: options.timeout,
    };
    let ran = state.node.invoke_chain(definition, request).await?;
    if options.json {
        return Ok(Json(run_json(&ran)).into_response());
    }
    let Ran {
        output,
        steps,
        duration,
        ..
    } = ran;
    let steps_header = serde_json::to_string(&steps).expect("reports always serialize");
    let mut response = output.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(
        "x-weft-duration-us",
        HeaderValue::from(duration.as_micros() as u64),
    );
    // Module names and instance ids are plain ASCII: the JSON always is.
    if let Ok(value) = HeaderValue::from_str(&steps_header) {
        headers.insert("x-weft-steps", value);
    }
    Ok(response)
}

fn run_json(ran: &Ran) -> Value {
    let mut value = json!({
        "output_bytes": ran.output.len(),
        "duration_us": ran.duration.as_micros() as u64,
        "steps": ran.steps,
    });
    match std::str::from_utf8(&ran.output) {
        Ok(text) => value["output"] = text.into(),
        Err(_) => value["output_base64"] = base64(&ran.output).into(),
    }
    value
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn steps_json(steps: &[StepReport]) -> Value {
    json!(steps)
}

impl From<DefinitionError> for ApiError {
    fn from(error: DefinitionError) -> Self {
        let message = error.to_string();
        let mut api = ApiError::new(StatusCode::BAD_REQUEST, "invalid_chain", message);
        if let DefinitionError::Step { index, .. } = error {
            api = api.with("step", index);
        }
        api
    }
}

fn plan_error(error: PlanError, status: StatusCode) -> ApiError {
    let message = error.to_string();
    match error {
        PlanError::UnknownModule { index, module } => {
            ApiError::new(status, "unknown_module", message)
                .with("step", index)
                .with("module", module)
        }
        PlanError::Registry(error) => error.into(),
    }
}

impl From<ChainError> for ApiError {
    fn from(error: ChainError) -> Self {
        match error {
            ChainError::Plan(error) => plan_error(error, StatusCode::BAD_REQUEST),
            ChainError::Store(error) => {
                let message = error.to_string();
                tracing::error!("store failure: {message}");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store_error", message)
            }
        }
    }
}

impl From<ChainRunError> for ApiError {
    fn from(error: ChainRunError) -> Self {
        let message = error.to_string();
        match error {
            ChainRunError::NotFound(_) => ApiError::not_found(message),
            ChainRunError::Plan(error) => plan_error(error, StatusCode::NOT_FOUND),
            ChainRunError::Busy(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message)
            }
            ChainRunError::BadRequest(_) => ApiError::bad_request(message),
            ChainRunError::Chain(error) => error.into(),
            ChainRunError::Step(failed) => {
                let stderr = failed
                    .trails
                    .last()
                    .map(|t| &t.stderr[..t.stderr.len().min(STDERR_IN_ERROR)])
                    .unwrap_or_default();
                let mut api = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, failed.code, message)
                    .with("step", failed.index)
                    .with("module", failed.module.clone())
                    .with("reason", failed.reason.clone())
                    .with("stderr", String::from_utf8_lossy(stderr).into_owned())
                    .with("steps", steps_json(&failed.steps));
                if let Some(step) = failed.steps.last().filter(|s| s.index == failed.index) {
                    api = api.with("instance", step.instance.clone());
                }
                if let Some(code) = failed.exit_code {
                    api = api.with("exit_code", code);
                }
                if let Some(backtrace) = &failed.backtrace {
                    api = api.with("backtrace", backtrace.clone());
                }
                api
            }
        }
    }
}

/// The OpenAPI description of these routes (merged into
/// [`super::openapi::document`]).
pub fn openapi_paths() -> Value {
    let name = json!({ "name": "name", "in": "path", "required": true,
        "schema": { "type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$" } });
    let error = |description: &str| json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
    let step = json!({ "oneOf": [
        { "type": "string", "description": "a module name" },
        { "type": "object", "required": ["module"], "properties": {
            "module": { "type": "string" },
            "args": { "type": "array", "items": { "type": "string" } },
            "env": { "type": "object", "additionalProperties": { "type": "string" } },
            "timeout": { "type": "string", "description": "this step's deadline, e.g. 2s" },
            "memory": { "type": "string", "description": "this step's memory limit, e.g. 64MiB" }
        } }
    ] });
    let chain = json!({ "type": "object", "required": ["steps"], "properties": {
        "steps": { "type": "array", "minItems": 1, "maxItems": crate::chain::plan::MAX_STEPS, "items": step },
        "timeout": { "type": "string", "description": "the whole chain's deadline" }
    } });
    let report = json!({ "type": "array", "items": { "type": "object", "properties": {
        "index": { "type": "integer" }, "module": { "type": "string" }, "instance": { "type": "string" },
        "duration_us": { "type": "integer" }, "input_bytes": { "type": "integer" },
        "output_bytes": { "type": "integer" },
        "input_moved": { "type": "integer", "description": "bytes of input moved in as pages from the previous step's memory rather than copied" },
        "warm": { "type": "boolean" }, "status": { "type": "string" }
    } } });
    let ran = json!({
        "description": "the last step's output as the body, with x-weft-steps (the per-step report as JSON) and x-weft-duration-us; with format=json: {output | output_base64, output_bytes, duration_us, steps}",
        "headers": {
            "x-weft-steps": { "schema": { "type": "string" }, "description": "JSON: the steps' reports" },
            "x-weft-duration-us": { "schema": { "type": "integer" } }
        },
        "content": {
            "application/octet-stream": { "schema": { "type": "string", "format": "binary" } },
            "application/json": { "schema": { "type": "object", "properties": { "output": { "type": "string" }, "output_base64": { "type": "string" }, "steps": report } } }
        }
    });
    let query = json!([
        { "name": "timeout", "in": "query", "description": "the whole chain's deadline", "schema": { "type": "string" } },
        { "name": "format", "in": "query", "schema": { "enum": ["raw", "json"] } }
    ]);
    let failed = error(
        "a step failed (trap, limit, or exit code other than 0); the steps after it did not run: {error: {code, message, step, module, instance, reason, stderr, exit_code?, steps}}",
    );
    json!({
        "/v1/chains": { "get": { "summary": "List chains", "responses": { "200": { "description": "{chains: [...]}" } } } },
        "/v1/chains/{name}": {
            "parameters": [ name.clone() ],
            "put": {
                "summary": "Define (or replace) a chain; every module it names must be deployed",
                "requestBody": { "required": true, "content": { "application/json": { "schema": chain } } },
                "responses": { "201": { "description": "stored (new)" }, "200": { "description": "stored (replaced)" },
                    "400": error("empty, too long, bad names or limits (invalid_chain), or a module that is not deployed (unknown_module, with step and module)") }
            },
            "get": { "summary": "One chain, with its recent runs", "responses": { "200": { "description": "the chain" }, "404": error("no such chain") } },
            "delete": { "summary": "Delete a chain", "responses": { "204": { "description": "deleted" }, "404": error("no such chain") } }
        },
        "/v1/chains/{name}/invoke": {
            "parameters": query.clone(),
            "post": {
                "summary": "Run the chain: the body is the first step's input",
                "parameters": [ name ],
                "requestBody": { "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } } },
                "responses": { "200": ran.clone(), "404": error("no such chain, or a step's module is gone"), "413": error("input larger than the limit"), "422": failed.clone(), "503": error("at capacity") }
            }
        },
        "/v1/chain": {
            "post": {
                "summary": "Run an ad-hoc chain: steps as repeated `step` parameters and the body as input, or a JSON envelope {steps, input, timeout} (Content-Type: application/vnd.weft.chain+json)",
                "parameters": [ { "name": "step", "in": "query", "schema": { "type": "array", "items": { "type": "string" } }, "style": "form", "explode": true } ],
                "requestBody": { "content": {
                    "application/octet-stream": { "schema": { "type": "string", "format": "binary" } },
                    "application/vnd.weft.chain+json": { "schema": { "type": "object", "properties": { "steps": { "type": "array", "items": step }, "input": { "type": "string" }, "timeout": { "type": "string" } } } }
                } },
                "responses": { "200": ran, "400": error("no steps, or bad ones"), "404": error("a step's module is not deployed"), "422": failed }
            }
        },
        "/v1/chain-runs": { "get": {
            "summary": "Recent chain runs, newest first, with per-step timings",
            "parameters": [ { "name": "chain", "in": "query", "schema": { "type": "string" } }, { "name": "limit", "in": "query", "schema": { "type": "integer" } } ],
            "responses": { "200": { "description": "{runs: [{chain, started_ms, duration_us, status, failed_step, reason, steps}]}" } }
        } }
    })
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_pads_like_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0xff, 0xfe]), "//4=");
    }
}
