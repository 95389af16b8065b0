//! The admin listener: probes, readiness controls, metrics and version. Served on its own
//! port, which the Kubernetes Service does not expose.

use std::sync::Arc;

use poem::{
    Response, Route, get, handler,
    http::Method,
    post,
    web::{Data, Json},
};
use serde_json::json;

use crate::{
    error::ApiError,
    lifecycle::Phase,
    state::{AppState, REVISION, VERSION},
};

const GET: &[Method] = &[Method::GET, Method::HEAD];
const POST: &[Method] = &[Method::POST];

/// Every admin path and its methods: labels for metrics, `Allow` for 405.
pub const PATHS: &[(&str, &[Method])] = &[
    ("/healthz", GET),
    ("/readyz", GET),
    ("/readyz/enable", POST),
    ("/readyz/disable", POST),
    ("/metrics", GET),
    ("/version", GET),
];

/// Content type of the OpenMetrics text format, which Prometheus scrapes natively.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The admin URL map.
pub fn routes() -> Route {
    Route::new()
        .at("/healthz", get(healthz))
        .at("/readyz", get(readyz))
        .at("/readyz/enable", post(enable))
        .at("/readyz/disable", post(disable))
        .at("/metrics", get(metrics))
        .at("/version", get(version))
}

/// Liveness: the process answers. Stays 200 while draining, so Kubernetes does not restart an
/// instance that is stopping on purpose.
#[handler]
fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: 200 when this instance should receive traffic, 503 while starting, draining,
/// stopping or disabled by an operator.
#[handler]
fn readyz(state: Data<&Arc<AppState>>) -> Result<Json<serde_json::Value>, ApiError> {
    let lifecycle = &state.lifecycle;
    if lifecycle.is_ready() {
        return Ok(Json(json!({ "status": "ready" })));
    }
    let why = match lifecycle.phase() {
        _ if lifecycle.has_failed() => "a listener failed",
        Phase::Starting => "starting",
        Phase::Ready => "disabled",
        Phase::Draining => "draining",
        Phase::Stopping => "stopping",
    };
    Err(ApiError::NotReady(why))
}

/// Puts the instance back into rotation.
#[handler]
fn enable(state: Data<&Arc<AppState>>) -> Json<serde_json::Value> {
    state.lifecycle.set_disabled(false);
    tracing::info!("readiness enabled by an operator");
    Json(json!({ "disabled": false }))
}

/// Takes the instance out of rotation without stopping it.
#[handler]
fn disable(state: Data<&Arc<AppState>>) -> Json<serde_json::Value> {
    state.lifecycle.set_disabled(true);
    tracing::info!("readiness disabled by an operator");
    Json(json!({ "disabled": true }))
}

#[handler]
fn metrics(state: Data<&Arc<AppState>>) -> Response {
    Response::builder()
        .content_type(OPENMETRICS)
        .body(state.metrics.render())
}

#[handler]
fn version() -> Json<serde_json::Value> {
    Json(json!({ "version": VERSION, "revision": REVISION }))
}
