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

use std::{collections::HashMap, sync::Arc};

use poem::{Endpoint, IntoEndpoint, Response, endpoint::BoxEndpoint, http::Method};
use poem_openapi::{OpenApi, OpenApiService, Tags};

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

/// The operations without path or query parameters, each as its endpoint: the pipeline calls
/// them without poem's router (see `Pipeline::with_direct`).
fn direct_operations(
    table: &RouteTable,
    spec: &serde_json::Value,
) -> Vec<(Arc<str>, Method, BoxEndpoint<'static>)> {
    let mut endpoints = HashMap::new();
    (
        info::InfoApi,
        echo::EchoApi,
        testing::TestingApi,
        stream::StreamApi,
    )
        .add_routes(&mut endpoints);
    let mut direct = Vec::new();
    for entry in table.entries() {
        if entry.template.contains('{') {
            continue;
        }
        for method in entry.methods() {
            let operation = &spec["paths"][&*entry.template][method.as_str().to_ascii_lowercase()];
            let has_query = operation["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
            let endpoint = endpoints
                .get_mut(&*entry.template)
                .and_then(|by_method| by_method.remove(method));
            if let (false, Some(endpoint)) = (has_query, endpoint) {
                direct.push((entry.template.clone(), method.clone(), endpoint));
            }
        }
    }
    direct
}

/// The public API: the operations behind the pipeline, and the two documents as shared bytes.
pub fn api(state: Arc<AppState>) -> impl Endpoint<Output = Response> + 'static {
    let service = openapi();
    let spec: serde_json::Value =
        serde_json::from_str(&service.spec()).expect("the generated spec is JSON");
    let table = RouteTable::from_openapi(&spec);
    let direct = direct_operations(&table, &spec);
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
        table,
        documents,
    )
    .with_direct(direct)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_without_parameters_are_called_directly() {
        let spec: serde_json::Value = serde_json::from_str(&openapi().spec()).unwrap();
        let table = RouteTable::from_openapi(&spec);
        let direct: Vec<String> = direct_operations(&table, &spec)
            .iter()
            .map(|(t, m, _)| format!("{m} {t}"))
            .collect();
        assert_eq!(
            direct,
            ["GET /", "POST /api/v1/echo", "GET /api/v1/headers"]
        );
    }
}
