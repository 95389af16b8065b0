//! The layers every request passes, outermost first:
//!
//! 1. [`observe`] — request id, problem+json for every error, metrics, access log, and
//!    `Connection: close` while the instance drains (both listeners);
//! 2. [`catch_panic`] — a panicking handler becomes a 500 (API);
//! 3. [`shed_load`] — the optional in-flight limit (API);
//! 4. [`limit_time`] — the request timeout (API);
//! 5. [`limit_body`] — a declared body over the limit is refused before it is read (API);
//! 6. [`inject_faults`] — optional random delay and errors (API operations only).

use std::{
    panic::AssertUnwindSafe,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::FutureExt;
use poem::{
    Endpoint, IntoResponse, PathPattern, Request, Response, Result,
    error::ResponseError,
    http::{HeaderValue, StatusCode, header},
};
use rand::Rng;

use crate::{
    error::{ApiError, error_response},
    metrics::{RequestLabels, method_label, status_class},
    routes::table::RouteEntry,
    state::AppState,
};

/// Header carrying the request id in both directions.
pub const REQUEST_ID: &str = "x-request-id";

/// Route label of requests no route matched.
const UNMATCHED: &str = "unmatched";

/// Observes one request: see the module docs. `listener` names the port in metrics and logs;
/// admin requests (probes, scrapes) are logged at debug level only.
pub async fn observe<E: Endpoint>(
    ep: Arc<E>,
    mut req: Request,
    state: Arc<AppState>,
    listener: &'static str,
) -> Result<Response> {
    let started = Instant::now();
    let request_id = request_id(&req);
    let method = req.method().clone();
    let uri = req.uri().clone();
    // Resolved before any layer runs, so every outcome is labelled with the route.
    let operation = (listener == "api")
        .then(|| state.routes.resolve(uri.path()).cloned())
        .flatten();
    if let Some(operation) = &operation {
        req.set_data(Operation(operation.clone()));
    }

    let (mut response, pattern) = match ep.call(req).await {
        Ok(output) => {
            let response = output.into_response();
            let pattern = response.data::<PathPattern>().cloned();
            (response, pattern)
        }
        Err(err) => {
            if err.status().is_server_error() {
                tracing::error!(request_id = %request_id, error = %err, "request failed");
            }
            let pattern = err.data::<PathPattern>().cloned();
            let mut response = error_response(&err, uri.path(), &request_id);
            if let (StatusCode::METHOD_NOT_ALLOWED, Some(operation)) = (err.status(), &operation) {
                response
                    .headers_mut()
                    .insert(header::ALLOW, operation.allow().clone());
            }
            (response, pattern)
        }
    };
    let route = match (&operation, pattern) {
        (Some(operation), _) => operation.template.clone(),
        (None, Some(pattern)) if !pattern.0.is_empty() => pattern.0,
        (None, _) => UNMATCHED.into(),
    };

    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert(REQUEST_ID, value);
    }
    if state.lifecycle.is_leaving() {
        // While draining, ask keep-alive clients to reconnect: new connections go to the
        // instances that are still ready, which established ones never would.
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }

    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let labels = RequestLabels {
        listener,
        method: method_label(&method),
        route,
        status: status_class(status),
    };
    state.metrics.observe(&labels, elapsed);
    if state.config.access_log {
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        if listener == "admin" {
            tracing::debug!(target: "access", listener, method = %method, route = %labels.route,
                path = uri.path(), status, latency_ms, request_id = %request_id, "request");
        } else {
            tracing::info!(target: "access", listener, method = %method, route = %labels.route,
                path = uri.path(), status, latency_ms, request_id = %request_id, "request");
        }
    }
    Ok(response)
}

/// The API operation a request is for, resolved by [`observe`].
#[derive(Debug, Clone)]
pub struct Operation(pub Arc<RouteEntry>);

/// The client's request id if it is a reasonable one, else a new UUID.
fn request_id(req: &Request) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// A panic in a handler answers 500 and is counted; the process keeps serving.
pub async fn catch_panic<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    state: Arc<AppState>,
) -> Result<Response> {
    match AssertUnwindSafe(ep.call(req)).catch_unwind().await {
        Ok(result) => result.map(IntoResponse::into_response),
        Err(_) => {
            // The panic hook has logged the message and location.
            state.metrics.count_panic();
            Err(HandlerPanicked.into())
        }
    }
}

/// A handler panicked.
#[derive(Debug)]
struct HandlerPanicked;

impl std::fmt::Display for HandlerPanicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the handler panicked")
    }
}

impl std::error::Error for HandlerPanicked {}

impl ResponseError for HandlerPanicked {
    fn status(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

/// With `max_in_flight` set, requests beyond it are answered 503 with `Retry-After` at once:
/// a fast refusal the client can retry elsewhere beats a slow answer to everyone.
pub async fn shed_load<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    state: Arc<AppState>,
) -> Result<Response> {
    let gauge = state.metrics.in_flight();
    let before = gauge.inc();
    let _release = scopeguard(|| {
        gauge.dec();
    });
    let limit = i64::from(state.config.max_in_flight);
    if limit > 0 && before >= limit {
        state.metrics.count_shed();
        return Err(ApiError::Overloaded.into());
    }
    ep.call(req).await.map(IntoResponse::into_response)
}

/// The handler must produce its response head within `request_timeout`; a streamed body may
/// go on after that.
pub async fn limit_time<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    timeout: Duration,
) -> Result<Response> {
    match tokio::time::timeout(timeout, ep.call(req)).await {
        Ok(result) => result.map(IntoResponse::into_response),
        Err(_) => Err(ApiError::Timeout.into()),
    }
}

/// Refuses a body whose declared length is over the limit without reading it. Bodies without
/// a length (chunked) are bounded where they are read (`validation::ValidJson`).
pub async fn limit_body<E: Endpoint>(ep: Arc<E>, req: Request, limit: usize) -> Result<Response> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit).into());
    }
    ep.call(req).await.map(IntoResponse::into_response)
}

/// Fault injection, as podinfo offers it: a random delay up to `fault_delay`, and a 500 for a
/// `fault_error_rate` fraction of requests.
pub async fn inject_faults<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    state: Arc<AppState>,
) -> Result<Response> {
    // Operations only: a 404 or 405 stays what it is.
    if !req
        .data::<Operation>()
        .is_some_and(|op| op.0.serves(req.method()))
    {
        return ep.call(req).await.map(IntoResponse::into_response);
    }
    let config = &state.config;
    let (delay, fail) = {
        let mut rng = rand::rng();
        let delay = (!config.fault_delay.is_zero())
            .then(|| config.fault_delay.mul_f64(rng.random::<f64>()));
        (
            delay,
            config.fault_error_rate > 0.0 && rng.random_bool(config.fault_error_rate),
        )
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    if fail {
        return Err(ApiError::InjectedFault.into());
    }
    ep.call(req).await.map(IntoResponse::into_response)
}

/// Runs `f` when dropped, also when the request future is cancelled.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
