//! What every request passes before a handler sees it: the `Host` check
//! against DNS rebinding, the bearer token, the body-size limit (answered
//! from `Content-Length` before the body is read), a request timeout, and
//! the response counter.

use super::AppState;
use super::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;
use std::time::Duration;

/// Who may talk to the server.
#[derive(Clone, Debug)]
pub struct Access {
    /// The bearer token every API call must carry, if any.
    pub token: Option<String>,
    /// Host names accepted in the `Host` header besides IP literals and
    /// `localhost`.
    pub allow_hosts: Vec<String>,
}

impl Access {
    /// Whether a `Host` header value names this server. IP literals and
    /// `localhost` always do; other names only when allowed explicitly. A
    /// DNS-rebinding page reaches us under its own domain name, which is
    /// refused.
    pub fn host_allowed(&self, host: &str) -> bool {
        let name = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => host.rsplit_once(':').map_or(host, |(name, port)| {
                if port.bytes().all(|b| b.is_ascii_digit()) {
                    name
                } else {
                    host
                }
            }),
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        name.parse::<IpAddr>().is_ok()
            || name == "localhost"
            || self
                .allow_hosts
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(&name))
    }

    fn token_ok(&self, request: &Request) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        let bearer = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // EventSource cannot send headers: accept `?access_token=` too.
        let query = request.uri().query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "access_token")
                .map(|(_, v)| v.into_owned())
        });
        bearer
            .map(str::to_owned)
            .or(query)
            .is_some_and(|given| constant_time_eq(given.as_bytes(), expected.as_bytes()))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Host check and token check; counts every response.
pub async fn access(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let response = check(&state, request, next).await;
    state
        .node
        .metrics()
        .http_response(response.status().as_u16());
    response
}

async fn check(state: &AppState, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !state.access.host_allowed(host) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "host_not_allowed",
            format!("requests for host `{host}` are not served here (start weft with --allow-host {host} to allow it)"),
        )
        .into_response();
    }
    let path = request.uri().path();
    let protected = path.starts_with("/v1/") || path == "/metrics";
    if protected && !state.access.token_ok(&request) {
        let mut response = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this server needs a bearer token: pass --token or set WEFT_TOKEN",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, "Bearer".parse().unwrap());
        return response;
    }
    next.run(request).await
}

/// Refuses a body whose declared length is over `limit` before reading any
/// of it. (A body without a length is cut off at `limit` while it is read.)
pub fn body_limit(
    limit: usize,
) -> impl Fn(Request, Next) -> std::pin::Pin<Box<dyn Future<Output = Response> + Send>> + Clone {
    move |request: Request, next: Next| {
        Box::pin(async move {
            let declared = request
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|len| len > limit as u64) {
                return ApiError::too_large(limit).into_response();
            }
            next.run(request).await
        })
    }
}

/// Ends a request that takes longer than `limit` with a 503.
pub fn timeout(
    limit: Duration,
) -> impl Fn(Request, Next) -> std::pin::Pin<Box<dyn Future<Output = Response> + Send>> + Clone {
    move |request: Request, next: Next| {
        Box::pin(async move {
            match tokio::time::timeout(limit, next.run(request)).await {
                Ok(response) => response,
                Err(_) => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "timeout",
                    format!(
                        "the request took longer than {}",
                        crate::units::format_duration(limit)
                    ),
                )
                .into_response(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let access = Access {
            token: None,
            allow_hosts: vec!["weft.internal".into()],
        };
        for ok in [
            "127.0.0.1:7878",
            "localhost:7878",
            "localhost",
            "[::1]:7878",
            "10.1.2.3",
            "weft.internal:80",
            "LOCALHOST.",
        ] {
            assert!(access.host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example:7878",
            "",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
        ] {
            assert!(!access.host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn constant_time() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
