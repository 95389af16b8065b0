//! poem-api: a production-grade HTTP API service on poem and tokio, built to run on Kubernetes.
//!
//! - [`config`]     — every setting, as a flag and a `POEM_API_*` variable
//! - [`telemetry`]  — the tracing subscriber (JSON in a cluster, text on a terminal), OTLP traces
//! - [`instance`]   — one instance from start to exit: bind, serve, supervise, drain, stop
//! - [`lifecycle`]  — `starting → ready → draining → stopping`, and the stop signals
//! - [`server`]     — the accept loop and each connection's phases, limits and timeouts
//! - [`app`]        — the request pipeline: id, route, shed, limits, handler, problem+json, log
//! - [`routes`]     — the URL maps of the API and admin listeners, one module per resource
//! - [`validation`] — JSON bodies validated as a whole, every invalid field reported
//! - [`error`]      — the API error type and its problem+json rendering
//! - [`metrics`]    — Prometheus metrics
//! - [`state`]      — what handlers share

pub mod app;
pub mod config;
pub mod error;
pub mod instance;
pub mod lifecycle;
pub mod metrics;
pub mod routes;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod validation;
