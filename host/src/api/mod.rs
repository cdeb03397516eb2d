//! The HTTP API (axum): routes under `/v1`, JSON errors, the OpenAPI
//! document, SSE feeds, `/metrics`, and the dashboard at `/`.
//!
//! [`Server::bind`] checks the access policy (a non-loopback address needs a
//! token) and binds; [`Server::serve`] runs the accept loop with bounded
//! connections, header-read and request timeouts, until shut down.
//!
//! ```no_run
//! # async fn demo(node: std::sync::Arc<weft::node::Node>) -> anyhow::Result<()> {
//! use weft::api::{ServeConfig, Server};
//! let server = Server::bind(node, ServeConfig::default()).await?;
//! println!("listening on http://{}", server.local_addr());
//! server.serve(std::future::pending()).await?;
//! # Ok(()) }
//! ```

mod chains;
mod dashboard;
pub mod error;
mod gateways;
pub mod guard;
mod meshes;
mod modules;
mod network;
mod observe;
pub mod openapi;
mod services;

use crate::limit::{LOG_EVERY, Quota, Throttle};
use crate::node::Node;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::get;
use error::ApiError;
use guard::Access;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use modules::INVOKE_JSON;

/// The default address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

/// How the server listens and what it accepts.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The address to bind.
    pub listen: SocketAddr,
    /// Required on every API call when set; required to bind a non-loopback
    /// address.
    pub token: Option<String>,
    /// Host names accepted in `Host` besides IP literals and `localhost`.
    pub allow_hosts: Vec<String>,
    /// Largest invocation input, in bytes.
    pub max_input: usize,
    /// Largest body of any other request, in bytes.
    pub max_json: usize,
    /// Time a client has to send a request's headers.
    pub header_timeout: Duration,
    /// Time a request may take, body included (event streams excepted).
    pub request_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Connections one client address holds at once: past it, a new one
    /// is answered with 503 and closed, so that one client cannot take
    /// every connection from the others.
    pub max_connections_per_client: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: DEFAULT_LISTEN.parse().unwrap(),
            token: None,
            allow_hosts: Vec::new(),
            max_input: 64 << 20,
            max_json: 1 << 20,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(330),
            max_connections: 1024,
            max_connections_per_client: 256,
        }
    }
}

/// Limits the handlers need.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    pub max_input: usize,
}

/// What every handler gets.
#[derive(Clone, Debug)]
pub struct AppState {
    pub(crate) node: Arc<Node>,
    pub(crate) access: Arc<Access>,
    pub(crate) limits: Limits,
}

/// Why the server would not start.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Binding beyond loopback without a token.
    #[error(
        "refusing to listen on {0} without a token: anyone who can reach it could run code here. Pass --token (or set WEFT_TOKEN), or listen on 127.0.0.1"
    )]
    NeedsToken(SocketAddr),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Builds the router.
pub fn router(node: Arc<Node>, config: &ServeConfig) -> Router {
    router_with(node, config, Router::new())
}

/// Builds the router with `extra` routes behind the same guards (used by
/// benchmarks for a baseline handler).
pub fn router_with(node: Arc<Node>, config: &ServeConfig, extra: Router<AppState>) -> Router {
    let state = AppState {
        node: node.clone(),
        access: Arc::new(Access {
            token: config.token.clone(),
            allow_hosts: config.allow_hosts.clone(),
        }),
        limits: Limits {
            max_input: config.max_input,
        },
    };
    let max_module = node.config().runtime.max_module_size;

    let upload = axum::routing::put(modules::put)
        .layer(DefaultBodyLimit::max(max_module))
        .layer(middleware::from_fn(guard::body_limit(max_module)));
    let invoke = axum::routing::post(modules::invoke)
        .layer(DefaultBodyLimit::max(config.max_input))
        .layer(middleware::from_fn(guard::body_limit(config.max_input)));
    let invoke_chain = axum::routing::post(chains::invoke)
        .layer(DefaultBodyLimit::max(config.max_input))
        .layer(middleware::from_fn(guard::body_limit(config.max_input)));
    let ad_hoc_chain = axum::routing::post(chains::ad_hoc)
        .layer(DefaultBodyLimit::max(config.max_input))
        .layer(middleware::from_fn(guard::body_limit(config.max_input)));

    let requests = Router::new()
        .route("/v1/health", get(observe::health))
        .route("/v1/openapi.json", get(openapi::serve))
        .route("/v1/modules", get(modules::list))
        .route(
            "/v1/modules/{name}",
            upload.get(modules::get).delete(modules::delete),
        )
        .route("/v1/modules/{name}/invoke", invoke)
        .route("/v1/chains", get(chains::list))
        .route(
            "/v1/chains/{name}",
            axum::routing::put(chains::put)
                .get(chains::get)
                .delete(chains::delete),
        )
        .route("/v1/chains/{name}/invoke", invoke_chain)
        .route("/v1/chain", ad_hoc_chain)
        .route("/v1/chain-runs", get(chains::runs))
        .route("/v1/instances", get(observe::instances))
        .route(
            "/v1/subnets",
            get(network::subnets).post(network::create_subnet),
        )
        .route(
            "/v1/subnets/{id}",
            axum::routing::delete(network::delete_subnet),
        )
        .route(
            "/v1/security-groups",
            get(network::groups).post(network::create_group),
        )
        .route(
            "/v1/security-groups/{id}",
            get(network::group).delete(network::delete_group),
        )
        .route(
            "/v1/security-groups/{id}/rules",
            axum::routing::post(network::add_rule),
        )
        .route(
            "/v1/security-groups/{id}/rules/delete",
            axum::routing::post(network::remove_rule),
        )
        .route("/v1/nics", get(network::nics).post(network::create_nic))
        .route(
            "/v1/nics/{id}",
            get(network::nic).delete(network::delete_nic),
        )
        .route("/v1/nics/{id}/attach", axum::routing::post(network::attach))
        .route("/v1/nics/{id}/detach", axum::routing::post(network::detach))
        .route(
            "/v1/nics/{id}/security-groups",
            axum::routing::put(network::set_groups),
        )
        .route("/v1/gateways", get(gateways::list).post(gateways::create))
        .route(
            "/v1/gateways/{id}",
            get(gateways::get).delete(gateways::delete),
        )
        .route(
            "/v1/forwards",
            get(gateways::forwards).post(gateways::add_forward),
        )
        .route(
            "/v1/forwards/{id}",
            get(gateways::forward).delete(gateways::remove_forward),
        )
        .route("/v1/meshes", get(meshes::list).post(meshes::start))
        .route("/v1/meshes/{id}", get(meshes::get).delete(meshes::stop))
        .route(
            "/v1/meshes/{id}/ranks",
            axum::routing::post(meshes::add_ranks),
        )
        .route("/v1/services", get(services::list).post(services::start))
        .route(
            "/v1/services/{id}",
            get(services::get).delete(services::stop),
        )
        .route("/metrics", get(observe::metrics))
        .layer(middleware::from_fn(guard::timeout(config.request_timeout)));
    // Event streams live as long as the client wants: no request timeout.
    let streams = Router::new()
        .route("/v1/logs", get(observe::logs))
        .route("/v1/events", get(observe::events))
        // A mesh's external parent holds its WebSocket as long as it likes.
        .route("/v1/meshes/{id}/parent", get(meshes::parent));
    let pages = Router::new()
        .route("/", get(dashboard::index))
        .route("/app.js", get(dashboard::app))
        .route("/style.css", get(dashboard::style));

    Router::new()
        .merge(extra)
        .merge(requests)
        .merge(streams)
        .merge(pages)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Only uploads and invocations take big bodies; they set their own.
        .layer(DefaultBodyLimit::max(config.max_json))
        .layer(middleware::from_fn_with_state(state.clone(), guard::access))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// A bound server, ready to serve.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    router: Router,
    config: ServeConfig,
}

impl Server {
    /// Checks the access policy and binds the address.
    pub async fn bind(node: Arc<Node>, config: ServeConfig) -> Result<Server, BindError> {
        let router = router(node, &config);
        Server::bind_router(router, config).await
    }

    /// [`Server::bind`] with a router of the caller's making.
    pub async fn bind_router(router: Router, config: ServeConfig) -> Result<Server, BindError> {
        if !config.listen.ip().is_loopback() && config.token.is_none() {
            return Err(BindError::NeedsToken(config.listen));
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| BindError::Io {
                addr: config.listen,
                source,
            })?;
        Ok(Server {
            router,
            listener,
            config,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.listen)
    }

    /// Serves until `shutdown` completes, then stops accepting and gives open
    /// requests a few seconds to finish.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        use hyper_util::rt::{TokioIo, TokioTimer};
        let max = self.config.max_connections;
        let connections = Arc::new(Semaphore::new(max));
        let clients = Quota::new(self.config.max_connections_per_client);
        let refusals = Throttle::new(LOG_EVERY);
        let (stopping, stop) = tokio::sync::watch::channel(false);
        let service = hyper_util::service::TowerToHyperService::new(self.router);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                permit = connections.clone().acquire_owned() => permit.expect("never closed"),
                () = &mut shutdown => break,
            };
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!("accept failed: {error}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let Some(place) = clients.take(peer.ip()) else {
                refuse_connection(&stream, clients.limit());
                if let Some(skipped) = refusals.admit() {
                    tracing::warn!(
                        "refused a connection from {}: it holds {} already ({skipped} more refused since the last such line)",
                        peer.ip(),
                        clients.limit()
                    );
                }
                continue;
            };
            let _ = stream.set_nodelay(true);
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(self.config.header_timeout)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service.clone())
                .with_upgrades();
            let mut stop = stop.clone();
            tokio::spawn(async move {
                let _held = (permit, place);
                let mut connection = std::pin::pin!(connection);
                let result = tokio::select! {
                    result = connection.as_mut() => result,
                    _ = async { stop.wait_for(|stopping| *stopping).await.is_ok() } => {
                        // Finish the request in flight, then close.
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                };
                if let Err(error) = result {
                    tracing::debug!("connection ended: {error}");
                }
            });
        }
        drop(self.listener);
        let _ = stopping.send(true);
        // Every permit back means every connection has closed.
        let all_closed = connections.acquire_many(max as u32);
        if tokio::time::timeout(Duration::from_secs(5), all_closed)
            .await
            .is_err()
        {
            tracing::warn!("some connections were still open at shutdown");
        }
        Ok(())
    }
}

/// Answers a connection past its client's share with a 503 and closes
/// it, without reading its request: one write into the new connection's
/// empty send buffer, which never waits.
fn refuse_connection(stream: &tokio::net::TcpStream, limit: usize) {
    let body = serde_json::json!({
        "error": {
            "code": "busy",
            "message": format!(
                "this client holds {limit} connections to weft already; close one or reuse it (keep-alive)"
            ),
        }
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(response.as_bytes());
}
