//! One error type for every API response: a status, a stable code and a
//! human message, as `{"error": {"code": "...", "message": "...", ...}}`.

use crate::node::InvokeError;
use crate::runtime::LoadError;
use crate::runtime::registry::RegistryError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// An API error.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    extra: Map<String, Value>,
    retry_after: Option<u32>,
}

impl ApiError {
    /// An error with a status, a stable code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: Map::new(),
            retry_after: None,
        }
    }

    /// Adds a field beside `code` and `message`.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 413 `too_large`.
    pub fn too_large(limit: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the request body is larger than this endpoint's limit of {}",
                crate::units::format_size(limit as u64)
            ),
        )
        .with("limit", limit)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = Map::new();
        error.insert("code".into(), self.code.into());
        error.insert("message".into(), self.message.into());
        error.extend(self.extra);
        let mut response = (self.status, axum::Json(json!({ "error": error }))).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        let message = error.to_string();
        match error {
            RegistryError::InvalidName(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_name", message)
            }
            RegistryError::Load(load) => {
                let (status, code) = match load {
                    LoadError::TooLarge { limit, .. } => return ApiError::too_large(limit),
                    LoadError::NotWasm { .. } => (StatusCode::BAD_REQUEST, "not_wasm"),
                    LoadError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_module"),
                    LoadError::MissingImports(_) => (StatusCode::BAD_REQUEST, "missing_imports"),
                    LoadError::Link(_) => (StatusCode::BAD_REQUEST, "link_error"),
                };
                ApiError::new(status, code, message)
            }
            RegistryError::Store(_) => {
                tracing::error!("store failure: {message}");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store_error", message)
            }
            RegistryError::Unloadable { .. } => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "unloadable", message)
            }
        }
    }
}

/// Stderr kept in a 422 body.
const STDERR_IN_ERROR: usize = 64 << 10;

impl From<InvokeError> for ApiError {
    fn from(error: InvokeError) -> Self {
        let message = error.to_string();
        match error {
            InvokeError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
            InvokeError::Busy(_) => {
                let mut error = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message);
                error.retry_after = Some(1);
                error
            }
            InvokeError::BadRequest(_) => ApiError::bad_request(message),
            InvokeError::Registry(error) => error.into(),
            InvokeError::Failed { module, failed } => {
                let stderr = &failed.stderr[..failed.stderr.len().min(STDERR_IN_ERROR)];
                let mut error = ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    failed.failure.code(),
                    failed.failure.to_string(),
                )
                .with("module", module)
                .with("instance", failed.instance.to_string())
                .with("duration_us", failed.duration.as_micros() as u64)
                .with("stderr", String::from_utf8_lossy(stderr).into_owned());
                if let Some(backtrace) = &failed.backtrace {
                    error = error.with("backtrace", backtrace.clone());
                }
                error
            }
        }
    }
}
