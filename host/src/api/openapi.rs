//! The API described as an OpenAPI 3.1 document, served at
//! `/v1/openapi.json`. Written by hand next to the routes it describes; a
//! test checks that every route is in it.

use axum::Json;
use serde_json::{Value, json};

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

fn json_response(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn name_param() -> Value {
    json!({
        "name": "name", "in": "path", "required": true,
        "schema": { "type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$" }
    })
}

/// The document.
pub fn document() -> Value {
    let module_ref = json!({ "$ref": "#/components/schemas/Module" });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "weft",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Run WebAssembly modules as sandboxed instances. Errors are JSON: {\"error\": {\"code\", \"message\", ...}}. When the server is started with --token, every /v1 call and /metrics needs `Authorization: Bearer <token>` (or `?access_token=` for SSE)."
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": {
                    "type": "object", "required": ["error"],
                    "properties": { "error": {
                        "type": "object", "required": ["code", "message"],
                        "properties": {
                            "code": { "type": "string", "description": "stable, machine-readable" },
                            "message": { "type": "string" }
                        },
                        "additionalProperties": true
                    } }
                },
                "Module": {
                    "type": "object",
                    "required": ["name", "digest", "size", "created_ms", "imports", "exports"],
                    "properties": {
                        "name": { "type": "string" },
                        "digest": { "type": "string", "description": "sha256:<hex> of the module bytes" },
                        "size": { "type": "integer" },
                        "created_ms": { "type": "integer", "description": "Unix time in ms of this version's upload" },
                        "imports": { "type": "array", "items": { "type": "string" } },
                        "exports": { "type": "array", "items": { "type": "string" } }
                    }
                },
                "Invocation": {
                    "type": "object",
                    "properties": {
                        "instance": { "type": "string" }, "module": { "type": "string" },
                        "started_ms": { "type": "integer" }, "duration_us": { "type": "integer" },
                        "status": { "enum": ["ok", "failed"] },
                        "exit_code": { "type": ["integer", "null"] },
                        "code": { "type": ["string", "null"] }, "reason": { "type": ["string", "null"] },
                        "input_bytes": { "type": "integer" }, "output_bytes": { "type": "integer" }
                    }
                },
                "Service": {
                    "type": "object",
                    "properties": {
                        "id": { "type": "string", "description": "the service's instance id, stable across restarts" },
                        "module": { "type": "string" },
                        "args": { "type": "array", "items": { "type": "string" } },
                        "restart": { "enum": ["always", "on-failure", "never"] },
                        "state": { "enum": ["running", "restarting", "stopped", "failed"] },
                        "restarts": { "type": "integer" },
                        "started_ms": { "type": ["integer", "null"] },
                        "last_exit": { "type": ["string", "null"] },
                        "created_ms": { "type": "integer" }
                    }
                },
                "LogLine": {
                    "type": "object",
                    "properties": {
                        "time_ms": { "type": "integer" }, "instance": { "type": "string" },
                        "module": { "type": "string" }, "stream": { "enum": ["stdout", "stderr", "log"] },
                        "level": { "type": "string" }, "message": { "type": "string" }
                    }
                }
            }
        },
        "security": [ { "bearer": [] } ],
        "paths": {
            "/v1/health": { "get": {
                "summary": "Liveness and a few numbers",
                "responses": { "200": json_response("healthy", json!({ "type": "object" })) }
            } },
            "/v1/openapi.json": { "get": {
                "summary": "This document",
                "responses": { "200": json_response("the OpenAPI document", json!({ "type": "object" })) }
            } },
            "/v1/modules": { "get": {
                "summary": "List modules",
                "responses": { "200": json_response("modules by name", json!({
                    "type": "object", "properties": { "modules": { "type": "array", "items": module_ref } }
                })) }
            } },
            "/v1/modules/{name}": {
                "parameters": [ name_param() ],
                "put": {
                    "summary": "Upload (or replace) a module: validated and compiled before it is stored",
                    "requestBody": { "required": true, "content": { "application/wasm": { "schema": { "type": "string", "format": "binary" } } } },
                    "responses": {
                        "201": json_response("stored (new)", module_ref.clone()),
                        "200": json_response("stored (replaced an older version)", module_ref.clone()),
                        "400": error_response("not wasm, invalid, or needs imports weft does not provide; nothing stored"),
                        "413": error_response("larger than the module size limit")
                    }
                },
                "get": {
                    "summary": "One module",
                    "responses": { "200": json_response("the module", module_ref.clone()), "404": error_response("no such module") }
                },
                "delete": {
                    "summary": "Delete a module (running invocations finish on it)",
                    "responses": { "204": { "description": "deleted" }, "404": error_response("no such module") }
                }
            },
            "/v1/modules/{name}/invoke": {
                "parameters": [
                    name_param(),
                    { "name": "args", "in": "query", "schema": { "type": "array", "items": { "type": "string" } }, "style": "form", "explode": true },
                    { "name": "env", "in": "query", "description": "K=V", "schema": { "type": "array", "items": { "type": "string" } }, "style": "form", "explode": true },
                    { "name": "timeout", "in": "query", "description": "e.g. 2s, 500ms", "schema": { "type": "string" } }
                ],
                "post": {
                    "summary": "Run the module once: the body is its stdin, the response body its stdout",
                    "requestBody": { "content": {
                        "application/octet-stream": { "schema": { "type": "string", "format": "binary" } },
                        "application/vnd.weft.invoke+json": { "schema": {
                            "type": "object",
                            "properties": {
                                "input": { "type": "string" },
                                "args": { "type": "array", "items": { "type": "string" } },
                                "env": { "type": "object", "additionalProperties": { "type": "string" } },
                                "timeout": { "type": "string" }
                            }
                        } }
                    } },
                    "responses": {
                        "200": {
                            "description": "the guest exited; its exit code is in x-weft-exit-code",
                            "headers": {
                                "x-weft-exit-code": { "schema": { "type": "integer" } },
                                "x-weft-duration-us": { "schema": { "type": "integer" } },
                                "x-weft-instance": { "schema": { "type": "string" } }
                            },
                            "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } }
                        },
                        "400": error_response("bad arguments"),
                        "404": error_response("no such module"),
                        "413": error_response("input larger than the limit"),
                        "422": error_response("the guest failed: code is the reason (deadline_exceeded, memory_limit, stack_overflow, unreachable, ...), with instance, module and stderr"),
                        "503": error_response("at capacity (Retry-After)")
                    }
                }
            },
            "/v1/instances": { "get": {
                "summary": "Running and recent instances",
                "parameters": [ { "name": "limit", "in": "query", "schema": { "type": "integer" } } ],
                "responses": { "200": json_response("instances", json!({
                    "type": "object",
                    "properties": {
                        "running": { "type": "array", "items": { "type": "object" } },
                        "recent": { "type": "array", "items": { "$ref": "#/components/schemas/Invocation" } }
                    }
                })) }
            } },
            "/v1/logs": { "get": {
                "summary": "Guest log lines (stderr, services' stdout, and weft:log); with follow=true an SSE stream of `log` events",
                "parameters": [
                    { "name": "module", "in": "query", "schema": { "type": "string" } },
                    { "name": "instance", "in": "query", "schema": { "type": "string" } },
                    { "name": "limit", "in": "query", "schema": { "type": "integer" } },
                    { "name": "follow", "in": "query", "schema": { "type": "boolean" } }
                ],
                "responses": { "200": {
                    "description": "lines, oldest first (JSON), or a live stream (text/event-stream)",
                    "content": {
                        "application/json": { "schema": { "type": "object", "properties": { "lines": { "type": "array", "items": { "$ref": "#/components/schemas/LogLine" } } } } },
                        "text/event-stream": { "schema": { "type": "string" } }
                    }
                } }
            } },
            "/v1/events": { "get": {
                "summary": "Live events as SSE: deployed, deleted, started, finished, log, built, lagged",
                "responses": { "200": { "description": "an event stream", "content": { "text/event-stream": { "schema": { "type": "string" } } } } }
            } },
            "/v1/services": {
                "get": {
                    "summary": "List services",
                    "responses": { "200": json_response("services", json!({ "type": "object", "properties": { "services": { "type": "array", "items": { "$ref": "#/components/schemas/Service" } } } })) }
                },
                "post": {
                    "summary": "Start a long-running, supervised instance",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": {
                        "type": "object", "required": ["module"],
                        "properties": {
                            "module": { "type": "string" },
                            "args": { "type": "array", "items": { "type": "string" } },
                            "env": { "type": "object", "additionalProperties": { "type": "string" } },
                            "restart": { "enum": ["always", "on-failure", "never"], "default": "always" }
                        }
                    } } } },
                    "responses": {
                        "201": json_response("started", json!({ "$ref": "#/components/schemas/Service" })),
                        "400": error_response("bad request"),
                        "404": error_response("no such module")
                    }
                }
            },
            "/v1/services/{id}": {
                "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } } ],
                "get": {
                    "summary": "One service",
                    "responses": { "200": json_response("the service", json!({ "$ref": "#/components/schemas/Service" })), "404": error_response("no such service") }
                },
                "delete": {
                    "summary": "Stop a service and forget it",
                    "responses": { "204": { "description": "stopped" }, "404": error_response("no such service") }
                }
            },
            "/metrics": { "get": {
                "summary": "Prometheus metrics",
                "responses": { "200": { "description": "text exposition format", "content": { "text/plain": { "schema": { "type": "string" } } } } }
            } }
        }
    })
}

/// `GET /v1/openapi.json`.
pub async fn serve() -> Json<Value> {
    Json(document())
}
