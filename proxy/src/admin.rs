//! The admin HTTP API, on its own address (loopback by default).
//!
//! | method and path | what it does |
//! |---|---|
//! | `GET /metrics` | Prometheus text format |
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 200 while a valid certificate is served, else 503 |
//! | `GET /status` | JSON: mode, listeners, certificate, trust bundle, rotation, last reload |
//! | `GET /mode` | the mode in force |
//! | `PUT /mode` | body `strict` or `permissive` (or JSON `{"mode": "..."}`) |
//! | `POST /reload` | re-read the configuration file and the certificate source |
//! | `POST /rotate` | obtain a new certificate now |
//!
//! When a token file is configured, the mutating endpoints need `Authorization: Bearer TOKEN`.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use portcullis_rotator::inspect::unix_seconds;

use crate::app::App;
use crate::mode::Mode;

/// Largest request body the admin API reads.
const MAX_BODY: usize = 4096;

/// Time a client has to send a request's headers, so idle sockets do not pile up.
const ADMIN_HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

type AdminResponse = Response<Full<Bytes>>;

/// Serves the admin API until the task is aborted. It keeps serving while the listeners
/// drain, so metrics stay readable; the caller stops it last.
pub async fn serve(socket: TcpListener, app: Arc<App>) {
    info!(address = ?socket.local_addr().ok(), "admin API listening");
    loop {
        let (stream, peer) = match socket.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                warn!(error = %err, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let app = app.clone();
                async move { Ok::<_, std::convert::Infallible>(route(&app, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(ADMIN_HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(err) = connection.await {
                debug!(peer.addr = %peer, error = %err, "admin connection failed");
            }
        });
    }
}

async fn route(app: &App, request: Request<Incoming>) -> AdminResponse {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mutating = !matches!(method, Method::GET | Method::HEAD);
    if mutating && !authorized(app, &request) {
        return text(StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n");
    }

    match (method, path.as_str()) {
        (Method::GET, "/metrics") => {
            let mut response = text(StatusCode::OK, &app.metrics.render());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        }
        (Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (Method::GET, "/readyz") if app.ready() => text(StatusCode::OK, "ready\n"),
        (Method::GET, "/readyz") => text(StatusCode::SERVICE_UNAVAILABLE, "no valid certificate\n"),
        (Method::GET, "/status") => json_response(StatusCode::OK, status(app)),
        (Method::GET, "/mode") => json_response(StatusCode::OK, json!({ "mode": app.mode.get() })),
        (Method::PUT, "/mode") => put_mode(app, request).await,
        (Method::POST, "/reload") => {
            let report = app.reload("admin").await;
            let code = if report.result == "applied" {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            json_response(code, json!(report))
        }
        (Method::POST, "/rotate") => match app.rotator.rotate_now().await {
            Ok(outcome) => {
                let code = if outcome.is_success() {
                    StatusCode::OK
                } else {
                    StatusCode::BAD_GATEWAY
                };
                json_response(code, json!(outcome))
            }
            Err(err) => text(StatusCode::SERVICE_UNAVAILABLE, &format!("{err}\n")),
        },
        (_, "/metrics" | "/healthz" | "/readyz" | "/status" | "/mode" | "/reload" | "/rotate") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn authorized(app: &App, request: &Request<Incoming>) -> bool {
    let Some(expected) = &app.admin_token else {
        return true;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match presented {
        // Compare without an early exit so timing does not reveal a matching prefix.
        Some(token) => {
            token.len() == expected.len()
                && token
                    .bytes()
                    .zip(expected.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        }
        None => false,
    }
}

async fn put_mode(app: &App, request: Request<Incoming>) -> AdminResponse {
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n"),
    };
    let text_body = String::from_utf8_lossy(&body);
    let requested = match serde_json::from_str::<serde_json::Value>(&text_body) {
        Ok(value) => value
            .get("mode")
            .and_then(|mode| mode.as_str())
            .map(str::to_owned),
        Err(_) => Some(text_body.trim().to_owned()),
    };
    match requested.unwrap_or_default().parse::<Mode>() {
        Ok(mode) => {
            let previous = app.set_mode(mode, "admin");
            json_response(
                StatusCode::OK,
                json!({ "mode": mode, "previous": previous }),
            )
        }
        Err(err) => text(StatusCode::BAD_REQUEST, &format!("{err}\n")),
    }
}

fn status(app: &App) -> serde_json::Value {
    let now = unix_seconds(SystemTime::now());
    // One load, so the certificate and trust bundle shown belong to the same publication.
    let configs = app.tls.load();
    let certificate = configs.as_ref().map(|configs| {
        let leaf = &configs.identity.leaf;
        json!({
            "serial": leaf.serial,
            "subject": leaf.subject,
            "issuer": leaf.issuer,
            "dns_names": leaf.dns_names,
            "uris": leaf.uris,
            "ip_addresses": leaf.ip_addresses,
            "spiffe_id": leaf.spiffe_id,
            "not_before": leaf.not_before,
            "not_after": leaf.not_after,
            "seconds_left": leaf.not_after - now,
            "key_type": leaf.key_type,
            "sha256": leaf.sha256,
        })
    });
    let trust_bundle = configs.as_ref().map(|configs| {
        configs
            .identity
            .trust_summaries
            .iter()
            .map(|ca| {
                json!({ "subject": ca.subject, "serial": ca.serial, "not_after": ca.not_after })
            })
            .collect::<Vec<_>>()
    });
    json!({
        "mode": app.mode.get(),
        "ready": app.ready(),
        "listeners": app.listeners,
        "certificate": certificate,
        "trust_bundle": trust_bundle,
        "rotation": *app.rotator.status(),
        "last_reload": *app.last_reload.load_full(),
        "allow": *app.allow.load_full(),
    })
}

fn text(status: StatusCode, body: &str) -> AdminResponse {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    response
}

fn json_response(status: StatusCode, value: serde_json::Value) -> AdminResponse {
    let mut body = serde_json::to_string_pretty(&value).unwrap_or_else(|_| "{}".into());
    body.push('\n');
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}
