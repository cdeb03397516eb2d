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
    let mut document = json!({
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
                "Rule": {
                    "type": "object", "required": ["protocol"],
                    "properties": {
                        "protocol": { "enum": ["tcp", "udp", "icmp", "all"] },
                        "ports": { "type": "string", "description": "80 or 8000-8099; tcp and udp only" },
                        "cidr": { "type": "string", "description": "peer block" },
                        "group": { "type": "string", "description": "peer security group (sg-…)" }
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
                            "nics": { "type": "array", "items": { "type": "string" }, "description": "interface records to attach" },
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
            "/v1/subnets": {
                "get": { "summary": "List subnets", "responses": { "200": json_response("subnets", json!({ "type": "object" })) } },
                "post": {
                    "summary": "Create a subnet (gateway at the first address; overlapping blocks are refused)",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": {
                        "type": "object", "required": ["cidr"],
                        "properties": { "cidr": { "type": "string", "example": "10.0.1.0/24" }, "name": { "type": "string" } }
                    } } } },
                    "responses": {
                        "201": json_response("created: id, cidr, gateway, name", json!({ "type": "object" })),
                        "400": error_response("not a valid block"),
                        "409": error_response("overlaps another subnet")
                    }
                }
            },
            "/v1/subnets/{id}": {
                "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } } ],
                "delete": { "summary": "Delete a subnet that holds no interfaces", "responses": { "204": { "description": "deleted" }, "404": error_response("no such subnet"), "409": error_response("still holds interfaces") } }
            },
            "/v1/security-groups": {
                "get": { "summary": "List security groups", "responses": { "200": json_response("groups", json!({ "type": "object" })) } },
                "post": {
                    "summary": "Create a security group: stateful allow rules; no ingress and all egress unless given",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": {
                        "type": "object", "required": ["name"],
                        "properties": {
                            "name": { "type": "string" },
                            "ingress": { "type": "array", "items": { "$ref": "#/components/schemas/Rule" } },
                            "egress": { "type": "array", "items": { "$ref": "#/components/schemas/Rule" } }
                        }
                    } } } },
                    "responses": { "201": json_response("created: id, name, ingress, egress", json!({ "type": "object" })), "400": error_response("invalid rule"), "404": error_response("a peer group does not exist") }
                }
            },
            "/v1/security-groups/{id}": {
                "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } } ],
                "get": { "summary": "One group", "responses": { "200": json_response("the group", json!({ "type": "object" })), "404": error_response("no such group") } },
                "delete": { "summary": "Delete a group no interface uses", "responses": { "204": { "description": "deleted" }, "409": error_response("in use") } }
            },
            "/v1/security-groups/{id}/rules": {
                "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } } ],
                "post": {
                    "summary": "Add a rule: {direction: ingress|egress, ...Rule}; new flows see it at once",
                    "responses": { "200": json_response("the group", json!({ "type": "object" })), "400": error_response("invalid rule") }
                }
            },
            "/v1/security-groups/{id}/rules/delete": {
                "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } } ],
                "post": {
                    "summary": "Remove a rule: {direction, ...Rule}; tracked flows continue until they expire",
                    "responses": { "200": json_response("the group", json!({ "type": "object" })), "404": error_response("no such rule") }
                }
            },
            "/v1/nics": {
                "get": { "summary": "List interface records, with counters when attached", "responses": { "200": json_response("records", json!({ "type": "object" })) } },
                "post": {
                    "summary": "Create an interface record (detached)",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": {
                        "type": "object", "required": ["subnet"],
                        "properties": {
                            "subnet": { "type": "string" },
                            "security_groups": { "type": "array", "items": { "type": "string" } },
                            "ip": { "type": "string", "description": "allocated from the subnet when absent" },
                            "source_dest_check": { "type": "boolean", "default": true },
                            "description": { "type": "string" }
                        }
                    } } } },
                    "responses": { "201": json_response("created: id, ip, mac, status, ...", json!({ "type": "object" })), "404": error_response("no such subnet or group"), "409": error_response("the address is taken or the subnet is full") }
                }
            },
            "/v1/nics/{id}": {
                "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } } ],
                "get": { "summary": "One record with its attachment and, when attached, its port counters", "responses": { "200": json_response("the record", json!({ "type": "object" })), "404": error_response("no such record") } },
                "delete": { "summary": "Delete a detached record", "responses": { "204": { "description": "deleted" }, "409": error_response("attached") } }
            },
            "/v1/nics/{id}/attach": {
                "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } } ],
                "post": { "summary": "Attach to an instance: {instance}", "responses": { "200": json_response("the record", json!({ "type": "object" })), "404": error_response("no such record or instance"), "409": error_response("already attached") } }
            },
            "/v1/nics/{id}/detach": {
                "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } } ],
                "post": { "summary": "Detach: traffic to its addresses is dropped, its flows end", "responses": { "200": json_response("the record", json!({ "type": "object" })), "409": error_response("not attached") } }
            },
            "/v1/nics/{id}/security-groups": {
                "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } } ],
                "put": { "summary": "Replace the record's groups: {security_groups: [...]}", "responses": { "200": json_response("the record", json!({ "type": "object" })) } }
            },
            "/metrics": { "get": {
                "summary": "Prometheus metrics",
                "responses": { "200": { "description": "text exposition format", "content": { "text/plain": { "schema": { "type": "string" } } } } }
            } }
        }
    });
    if let (Some(paths), Value::Object(more)) = (document["paths"].as_object_mut(), gateway_paths())
    {
        paths.extend(more);
    }
    if let (Some(paths), Value::Object(more)) = (
        document["paths"].as_object_mut(),
        super::meshes::openapi_paths(),
    ) {
        paths.extend(more);
    }
    if let (Some(paths), Value::Object(more)) = (
        document["paths"].as_object_mut(),
        super::chains::openapi_paths(),
    ) {
        paths.extend(more);
    }
    document
}

/// The gateway's paths: `/v1/gateways` and `/v1/forwards`.
fn gateway_paths() -> Value {
    let id =
        json!([ { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } } ]);
    json!({
        "/v1/gateways": {
            "get": { "summary": "List gateways with their status and counters, and the host's egress allow-list", "responses": { "200": json_response("gateways", json!({ "type": "object" })) } },
            "post": {
                "summary": "Create a subnet's gateway: outbound NAT (default on), optionally a TUN device routing the subnet into the host kernel (needs CAP_NET_ADMIN)",
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "required": ["subnet"],
                    "properties": {
                        "subnet": { "type": "string" },
                        "nat": { "type": "boolean", "default": true },
                        "tun": { "type": "string", "description": "the TUN device's name, e.g. weft0" }
                    }
                } } } },
                "responses": { "201": json_response("created: id, ip, nic, status", json!({ "type": "object" })), "400": error_response("bad name, or the TUN device cannot be made (e.g. no CAP_NET_ADMIN)"), "404": error_response("no such subnet"), "409": error_response("the subnet has a gateway") }
            }
        },
        "/v1/gateways/{id}": {
            "parameters": id.clone(),
            "get": { "summary": "One gateway with its counters", "responses": { "200": json_response("the gateway", json!({ "type": "object" })), "404": error_response("no such gateway") } },
            "delete": { "summary": "Delete a gateway no forward uses", "responses": { "204": { "description": "deleted" }, "409": error_response("forwards use it") } }
        },
        "/v1/forwards": {
            "get": { "summary": "List port forwards with their counters", "responses": { "200": json_response("forwards", json!({ "type": "object" })) } },
            "post": {
                "summary": "Forward a host address to an instance address: {listen, to, proto?}",
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "required": ["listen", "to"],
                    "properties": {
                        "listen": { "type": "string", "description": "host address and port, e.g. 127.0.0.1:8080 (port 0: any)" },
                        "to": { "type": "string", "description": "instance address and port, e.g. 10.0.1.5:80" },
                        "proto": { "type": "string", "enum": ["tcp", "udp"], "default": "tcp" }
                    }
                } } } },
                "responses": { "201": json_response("created: id, listen", json!({ "type": "object" })), "400": error_response("bad address"), "409": error_response("no gateway serves the target, or the host address is taken") }
            }
        },
        "/v1/forwards/{id}": {
            "parameters": id,
            "get": { "summary": "One forward with its counters", "responses": { "200": json_response("the forward", json!({ "type": "object" })), "404": error_response("no such forward") } },
            "delete": { "summary": "Remove a forward: it stops listening", "responses": { "204": { "description": "removed" }, "404": error_response("no such forward") } }
        }
    })
}

/// `GET /v1/openapi.json`.
pub async fn serve() -> Json<Value> {
    Json(document())
}

#[cfg(test)]
mod tests {
    /// Every path the router serves (every `/v1/…` or `/metrics` literal in
    /// `api/mod.rs`, where the routes are declared) is in the document.
    #[test]
    fn every_route_is_documented() {
        let routes = include_str!("mod.rs");
        let document = super::document();
        let paths = document["paths"].as_object().unwrap();
        let mut checked = 0;
        for literal in routes.split('"').skip(1).step_by(2) {
            if literal.starts_with("/v1/") || literal == "/metrics" {
                assert!(
                    paths.contains_key(literal),
                    "{literal} is not in the OpenAPI document"
                );
                checked += 1;
            }
        }
        assert!(checked > 20, "found only {checked} routes");
    }
}
