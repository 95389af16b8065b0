//! The URL maps of both listeners, on one screen.
//!
//! API port:
//! - `GET /` — [`info`]
//! - `POST /api/v1/echo` — [`echo`]
//! - `GET /api/v1/delay/{ms}`, `GET /api/v1/status/{code}`, `GET /api/v1/headers` — [`testing`]
//! - `GET /api/v1/stream` — [`stream`]
//! - `GET /openapi.json`, `GET /docs` — generated from the handlers above
//!
//! Admin port: `/healthz`, `/readyz`, `/readyz/enable`, `/readyz/disable`, `/metrics`,
//! `/version` — [`admin`]

pub mod admin;
pub mod echo;
pub mod info;
pub mod stream;
pub mod testing;

use std::sync::Arc;

use poem::{Endpoint, IntoEndpoint, Response};
use poem_openapi::{OpenApiService, Tags};

use crate::{
    app::{Document, Listener, Pipeline, table::RouteTable},
    config::Config,
    state::{AppState, VERSION},
};

/// Groups of operations in the OpenAPI document.
#[derive(Tags)]
pub enum Tag {
    /// Service information.
    Info,
    /// The validated echo resource.
    Echo,
    /// Endpoints for testing clients, meshes and alerts.
    Testing,
    /// Server-sent events.
    Stream,
}

/// The API's operations.
pub type Operations = (
    info::InfoApi,
    echo::EchoApi,
    testing::TestingApi,
    stream::StreamApi,
);

/// The OpenAPI service: every API operation, and the document generated from their types.
pub fn openapi() -> OpenApiService<Operations, ()> {
    OpenApiService::new(
        (
            info::InfoApi,
            echo::EchoApi,
            testing::TestingApi,
            stream::StreamApi,
        ),
        "poem-api",
        VERSION,
    )
    .description("A reference HTTP API service: typed JSON, probes, metrics, graceful draining.")
}

/// The table of API routes, from the generated OpenAPI document.
pub fn route_table() -> RouteTable {
    let spec: serde_json::Value =
        serde_json::from_str(&openapi().spec()).expect("the generated spec is JSON");
    RouteTable::from_openapi(&spec)
}

/// The OpenAPI document as `/openapi.json` serves it: the generated one, plus the bounds that
/// depend on the configuration (poem-openapi's validators are fixed at compile time).
pub fn document(config: &Config) -> String {
    let mut spec: serde_json::Value =
        serde_json::from_str(&openapi().spec()).expect("the generated spec is JSON");
    let ms = &mut spec["paths"]["/api/v1/delay/{ms}"]["get"]["parameters"][0];
    assert_eq!(
        ms["name"], "ms",
        "the delay operation's first parameter is ms"
    );
    ms["schema"]["maximum"] = serde_json::json!(config.max_delay.as_millis() as u64);
    serde_json::to_string_pretty(&spec).expect("a JSON value serializes")
}

/// The public API: the operations behind the pipeline, and the two documents as shared bytes.
pub fn api(state: Arc<AppState>) -> impl Endpoint<Output = Response> + 'static {
    let service = openapi();
    let documents = vec![
        Document {
            path: "/openapi.json",
            content_type: "application/json",
            body: document(&state.config).into(),
        },
        Document {
            path: "/docs",
            content_type: "text/html; charset=utf-8",
            body: service.swagger_ui_html().into(),
        },
    ];
    Pipeline::new(
        Listener::Api,
        state,
        service.into_endpoint(),
        route_table(),
        documents,
    )
}

/// Puts `handlers` behind the API's pipeline, without the documents. Public so tests can put
/// routes of their own (a panicking handler) behind exactly the same layers.
pub fn with_api_layers<E: Endpoint + 'static>(
    handlers: E,
    state: Arc<AppState>,
) -> impl Endpoint<Output = Response> + 'static {
    Pipeline::new(Listener::Api, state, handlers, route_table(), Vec::new())
}

/// The admin listener's endpoint.
pub fn admin(state: Arc<AppState>) -> impl Endpoint<Output = Response> + 'static {
    Pipeline::new(
        Listener::Admin,
        state,
        admin::routes(),
        RouteTable::from_paths(admin::PATHS),
        Vec::new(),
    )
}
