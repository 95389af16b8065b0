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
pub mod table;
pub mod testing;

use std::sync::Arc;

use poem::{Endpoint, EndpointExt, Response, Route, endpoint::BoxEndpoint};
use poem_openapi::{OpenApiService, Tags};

use crate::{config::Config, middleware, state::AppState, state::VERSION};
use table::RouteTable;

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

/// The OpenAPI service: every API operation, and the document generated from their types.
pub fn openapi() -> OpenApiService<
    (
        info::InfoApi,
        echo::EchoApi,
        testing::TestingApi,
        stream::StreamApi,
    ),
    (),
> {
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

/// The public API with all its layers (see [`middleware`]).
pub fn api(state: Arc<AppState>) -> BoxEndpoint<'static, Response> {
    let service = openapi();
    let faults = state.clone();
    let routes = Route::new()
        .at("/openapi.json", {
            let document = document(&state.config);
            poem::endpoint::make_sync(move |_| {
                Response::builder()
                    .content_type("application/json")
                    .body(document.clone())
            })
        })
        .nest("/docs", service.swagger_ui())
        // Fault injection applies to the API operations only, not to the document.
        .nest(
            "/",
            service.around(move |ep, req| middleware::inject_faults(ep, req, faults.clone())),
        );
    with_api_layers(routes, state)
}

/// Wraps API routes in the API's layers, innermost first. Public so tests can put routes of
/// their own (a panicking handler) behind exactly the same layers.
pub fn with_api_layers(
    routes: impl Endpoint + 'static,
    state: Arc<AppState>,
) -> BoxEndpoint<'static, Response> {
    let (timeout, body_limit) = (state.config.request_timeout, state.config.body_limit);
    let (shed, panics, observe) = (state.clone(), state.clone(), state.clone());
    routes
        .around(move |ep, req| middleware::limit_body(ep, req, body_limit))
        .around(move |ep, req| middleware::limit_time(ep, req, timeout))
        .around(move |ep, req| middleware::shed_load(ep, req, shed.clone()))
        .around(move |ep, req| middleware::catch_panic(ep, req, panics.clone()))
        .data(state)
        .around(move |ep, req| middleware::observe(ep, req, observe.clone(), "api"))
        .map_to_response()
        .boxed()
}

/// The admin listener's endpoint.
pub fn admin(state: Arc<AppState>) -> BoxEndpoint<'static, Response> {
    let observe = state.clone();
    admin::routes()
        .data(state)
        .around(move |ep, req| middleware::observe(ep, req, observe.clone(), "admin"))
        .map_to_response()
        .boxed()
}
