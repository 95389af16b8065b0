//! The request pipeline of both listeners: one [`Endpoint`] whose [`Pipeline::call`] reads top
//! to bottom — request id → protocol checks → route (resolved once) → shed → limits → handler
//! with its panic contained → problem+json → headers → metrics and access log. A request the
//! client abandons is still logged and counted, with nginx's status 499.

pub mod table;

use std::{
    panic::AssertUnwindSafe,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::FutureExt;
use poem::{
    Endpoint, IntoResponse, PathPattern, Request, Response, Result,
    endpoint::BoxEndpoint,
    error::ResponseError,
    http::{HeaderName, HeaderValue, Method, StatusCode, Uri, Version, header, uri::Authority},
};
use rand::Rng;

use crate::{
    error::{ApiError, error_response},
    metrics::{RequestHandles, RequestLabels, method_label, status_class, status_class_index},
    state::AppState,
    telemetry::traces::{self, RequestTrace},
};
use table::{RouteEntry, RouteTable};

/// Header carrying the request id in both directions.
pub const REQUEST_ID: &str = "x-request-id";

/// [`REQUEST_ID`] as a header name: looked up without parsing the name per request.
const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static(REQUEST_ID);

/// Route label of requests no route matched.
const UNMATCHED: &str = "unmatched";

/// The access log keeps at most this much of a path, so a client cannot make log lines large.
pub const LOGGED_PATH_LIMIT: usize = 1024;

/// The status logged and counted for a request whose client went away before the answer
/// (nginx's convention). A request cut by the shutdown timeout is logged as 503 instead.
pub const CLIENT_CLOSED_REQUEST: u16 = 499;

/// Which listener a pipeline serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The public API: every layer.
    Api,
    /// Probes and metrics: no shedding, timeout or faults; logged at debug level.
    Admin,
}

impl Listener {
    fn label(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Admin => "admin",
        }
    }
}

/// A document served as shared bytes: no copy, no rebuild, per response.
#[derive(Debug, Clone)]
pub struct Document {
    /// The path, like `/openapi.json`.
    pub path: &'static str,
    /// Its content type.
    pub content_type: &'static str,
    /// The body.
    pub body: Bytes,
}

/// What a request resolved to; the index is its place in `Pipeline::series`.
enum Target<'a> {
    /// An operation of the route table.
    Operation(&'a Arc<RouteEntry>, usize),
    /// One of the documents.
    Document(&'a Document, usize),
    /// Anything else: the handlers' router answers (404, or a route of its own).
    Other,
}

/// `GET, HEAD`: the methods of the documents.
const DOCUMENT_ALLOW: HeaderValue = HeaderValue::from_static("GET, HEAD");

/// The pipeline: see the module docs.
pub struct Pipeline<E> {
    listener: Listener,
    state: Arc<AppState>,
    /// The handlers (poem's router with the OpenAPI operations, or the admin routes).
    handlers: E,
    routes: RouteTable,
    documents: Vec<Document>,
    /// The metric series of every route, method and status class.
    series: Series,
    /// Operations called straight from the pipeline (see [`Pipeline::with_direct`]).
    direct: Vec<(Arc<str>, Method, BoxEndpoint<'static>)>,
}

/// Per route (the table's operations, then the documents) its `route` label and, per method it
/// serves, the series of each status class, resolved on first use (so `/metrics` lists only
/// series that have counted something).
type Series = Vec<(Arc<str>, Vec<(Method, [OnceLock<RequestHandles>; 5])>)>;

fn series_slots(routes: &RouteTable, documents: &[Document]) -> Series {
    let both = routes
        .entries()
        .map(|e| (e.template.clone(), e.methods().to_vec()))
        .chain(
            documents
                .iter()
                .map(|d| (Arc::from(d.path), vec![Method::GET, Method::HEAD])),
        );
    both.map(|(route, methods)| {
        let per_method = methods
            .into_iter()
            .map(|method| (method, Default::default()))
            .collect();
        (route, per_method)
    })
    .collect()
}

impl<E: Endpoint> Pipeline<E> {
    /// A pipeline for `listener` in front of `handlers`; `routes` lists the operations (their
    /// templates label metrics and give 405 its `Allow`), `documents` are served as they are.
    pub fn new(
        listener: Listener,
        state: Arc<AppState>,
        handlers: E,
        routes: RouteTable,
        documents: Vec<Document>,
    ) -> Self {
        Self {
            series: series_slots(&routes, &documents),
            direct: Vec::new(),
            listener,
            state,
            handlers,
            routes,
            documents,
        }
    }

    /// Calls these operations (route template, method, endpoint) straight from the pipeline
    /// instead of through `handlers`: poem's router would look the path up again and move the
    /// request through three more boxed endpoints, for operations that need nothing from it (no
    /// path or query parameters).
    pub fn with_direct(mut self, direct: Vec<(Arc<str>, Method, BoxEndpoint<'static>)>) -> Self {
        self.direct = direct;
        self
    }

    fn resolve(&self, path: &str) -> Target<'_> {
        let operations = self.routes.entries().len();
        if let Some(i) = self.documents.iter().position(|d| d.path == path) {
            return Target::Document(&self.documents[i], operations + i);
        }
        match self.routes.position(path) {
            Some((i, entry)) => Target::Operation(entry, i),
            None => Target::Other,
        }
    }

    /// Shed, limits, faults and the handler, with its panic contained.
    async fn handle(&self, target: &Target<'_>, mut req: Request) -> Result<Response> {
        let config = &self.state.config;
        let _in_flight = match self.listener {
            Listener::Api => Some(self.admit()?),
            Listener::Admin => None,
        };
        if self.listener == Listener::Api {
            limit_body(&req, config.body_limit)?;
        }
        let method_allowed = match target {
            Target::Operation(entry, _) => entry.serves(req.method()),
            Target::Document(..) => matches!(*req.method(), Method::GET | Method::HEAD),
            Target::Other => false,
        };
        if let (Target::Document(document, _), true) = (target, method_allowed) {
            return Ok(Response::builder()
                .content_type(document.content_type)
                .body(document.body.clone()));
        }
        if let (Target::Document(..), false) = (target, method_allowed) {
            return Err(poem::error::MethodNotAllowedError.into());
        }
        req.extensions_mut().insert(self.state.clone());
        let handler = async {
            // Operations only: a 404 or 405 stays what it is.
            if self.listener == Listener::Api && method_allowed {
                inject_faults(&self.state).await?;
            }
            let direct = match target {
                Target::Operation(entry, _) if method_allowed => self
                    .direct
                    .iter()
                    .find(|(t, m, _)| Arc::ptr_eq(t, &entry.template) && m == req.method()),
                _ => None,
            };
            match direct {
                Some((_, _, endpoint)) => endpoint.call(req).await,
                None => self
                    .handlers
                    .call(req)
                    .await
                    .map(IntoResponse::into_response),
            }
        };
        let contained = AssertUnwindSafe(handler).catch_unwind();
        let outcome = match self.listener {
            // The handler must produce its response head within the request timeout; a
            // streamed body may go on after that.
            Listener::Api => tokio::time::timeout(config.request_timeout, contained)
                .await
                .map_err(|_| ApiError::Timeout)?,
            Listener::Admin => contained.await,
        };
        outcome.unwrap_or_else(|_| {
            // The panic hook has logged the message and location.
            self.state.metrics.count_panic();
            Err(HandlerPanicked.into())
        })
    }

    /// The in-flight count, and the optional limit: a fast refusal the client can retry
    /// elsewhere beats a slow answer to everyone.
    fn admit(&self) -> Result<InFlight<'_>> {
        let gauge = self.state.metrics.in_flight();
        let before = gauge.inc();
        let in_flight = InFlight(gauge);
        let limit = i64::from(self.state.config.max_in_flight);
        if limit > 0 && before >= limit {
            self.state.metrics.count_shed();
            return Err(ApiError::Overloaded.into());
        }
        Ok(in_flight)
    }
}

impl<E: Endpoint> Endpoint for Pipeline<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Response> {
        let request_id = request_id(&req);
        let target = self.resolve(req.uri().path());
        let mut exchange = Exchange {
            started: Instant::now(),
            state: &self.state,
            listener: self.listener,
            method: req.method().clone(),
            uri: req.uri().clone(),
            route: None,
            series: None,
            request_id,
            trace: None,
            done: false,
        };
        if let Target::Operation(_, i) | Target::Document(_, i) = target {
            let (route, methods) = &self.series[i];
            exchange.route = Some(route.clone());
            exchange.series = methods
                .iter()
                .find(|(m, _)| *m == exchange.method)
                .map(|(_, slots)| slots);
        }
        // The API's requests only: probes and scrapes are not worth a trace.
        if self.listener == Listener::Api && traces::enabled() {
            let path = logged_path(req.uri().path()).0;
            let trace = RequestTrace::start(&req, exchange.route.as_deref(), path);
            exchange.trace = Some(Box::new(trace));
        }
        let route_known = exchange.route.is_some();

        // The handler does not run inside the span: it makes no outgoing call and opens no span
        // of its own, so there is nothing to nest, and instrumenting its future would cost the
        // untraced path (a second poll site keeps `handle` from being inlined).
        let result = match protocol_error(&req) {
            Some(err) => Err(err),
            None => self.handle(&target, req).await,
        };

        let mut response = match result {
            Ok(response) => response,
            Err(err) => {
                if err.status().is_server_error() {
                    tracing::error!(request_id = exchange.request_id.as_str(),
                        trace_id = exchange.trace_id(), error = %err, "request failed");
                }
                if exchange.route.is_none() {
                    exchange.route = err.data::<PathPattern>().map(|p| p.0.clone());
                }
                let (path, request_id) = (exchange.uri.path(), exchange.request_id.as_str());
                error_response(&err, path, request_id, exchange.trace_id())
            }
        };
        if exchange.route.is_none() {
            exchange.route = response.data::<PathPattern>().map(|p| p.0.clone());
        }
        if let Some(trace) = &exchange.trace
            && !route_known
            && exchange.route.is_some()
        {
            trace.learnt_route(exchange.method.as_str(), exchange.route.as_deref());
        }
        self.finish_headers(&target, &mut response, &exchange);
        exchange.finish(response.status().as_u16());
        Ok(response)
    }
}

impl<E> Pipeline<E> {
    /// The headers every answer gets, and those a status requires (RFC 9110): `Allow` on 405,
    /// `WWW-Authenticate` on 401, `Proxy-Authenticate` on 407, `Upgrade` on 426.
    fn finish_headers(&self, target: &Target<'_>, response: &mut Response, exchange: &Exchange) {
        let status = response.status();
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_bytes(exchange.request_id.as_str().as_bytes()) {
            headers.insert(REQUEST_ID_HEADER, value);
        }
        let required = match status {
            StatusCode::METHOD_NOT_ALLOWED => match target {
                Target::Operation(entry, _) => Some((header::ALLOW, entry.allow().clone())),
                Target::Document(..) => Some((header::ALLOW, DOCUMENT_ALLOW)),
                Target::Other => None,
            },
            StatusCode::UNAUTHORIZED => Some((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"poem-api\""),
            )),
            StatusCode::PROXY_AUTHENTICATION_REQUIRED => Some((
                header::PROXY_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"poem-api\""),
            )),
            StatusCode::UPGRADE_REQUIRED => {
                Some((header::UPGRADE, HeaderValue::from_static("HTTP/2")))
            }
            _ => None,
        };
        if let Some((name, value)) = required
            && !headers.contains_key(&name)
        {
            headers.insert(name, value);
        }
        if self.state.lifecycle.is_leaving() {
            // While draining, ask keep-alive clients to reconnect: new connections go to the
            // instances that are still ready, which established ones never would.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
}

/// One request's record: metrics and the access-log line, written by [`Exchange::finish`], or
/// with status 499 when the request future is dropped first (the client went away).
struct Exchange<'a> {
    started: Instant,
    state: &'a AppState,
    listener: Listener,
    method: Method,
    uri: Uri,
    route: Option<Arc<str>>,
    /// The series slots of the route and method, if it is one of the table's.
    series: Option<&'a [OnceLock<RequestHandles>; 5]>,
    request_id: RequestId,
    /// The request's span, when traces are exported; it ends when the exchange is dropped.
    /// Boxed, so that without traces the exchange grows by a pointer only.
    trace: Option<Box<RequestTrace>>,
    done: bool,
}

impl Exchange<'_> {
    fn trace_id(&self) -> Option<&str> {
        self.trace.as_deref().map(RequestTrace::trace_id)
    }

    fn finish(&mut self, status: u16) {
        self.done = true;
        if let Some(trace) = &self.trace {
            trace.finish(status);
        }
        let elapsed = self.started.elapsed();
        let route = self.route.as_deref().unwrap_or(UNMATCHED);
        let labels = || RequestLabels {
            listener: self.listener.label(),
            method: method_label(&self.method),
            route: route.into(),
            status: status_class(status),
        };
        match self.series {
            Some(series) => series[status_class_index(status)]
                .get_or_init(|| self.state.metrics.handles(&labels()))
                .observe(elapsed),
            None => self.state.metrics.observe(&labels(), elapsed),
        }
        if self.state.config.access_log {
            self.log(route, status, elapsed);
        }
    }

    fn log(&self, route: &str, status: u16, elapsed: Duration) {
        let listener = self.listener.label();
        let method = self.method.as_str();
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        let (path, path_truncated) = logged_path(self.uri.path());
        let request_id = self.request_id.as_str();
        let trace_id = self.trace_id();
        // Probes and scrapes would drown the API's lines: debug level only.
        macro_rules! line {
            ($level:ident) => {
                if path_truncated {
                    tracing::$level!(target: "access", listener, method, route, path,
                        path_truncated, status, latency_ms, request_id, trace_id, "request");
                } else {
                    tracing::$level!(target: "access", listener, method, route, path, status,
                        latency_ms, request_id, trace_id, "request");
                }
            };
        }
        match self.listener {
            Listener::Api => line!(info),
            Listener::Admin => line!(debug),
        }
    }
}

impl Drop for Exchange<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Dropped unanswered: the client went away, or the shutdown timeout cut it.
            let status = match self.state.lifecycle.is_cut() {
                true => StatusCode::SERVICE_UNAVAILABLE.as_u16(),
                false => CLIENT_CLOSED_REQUEST,
            };
            self.finish(status);
        }
    }
}

/// The first [`LOGGED_PATH_LIMIT`] bytes of `path` (at a character boundary), and whether it
/// was cut.
fn logged_path(path: &str) -> (&str, bool) {
    if path.len() <= LOGGED_PATH_LIMIT {
        return (path, false);
    }
    let mut end = LOGGED_PATH_LIMIT;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    (&path[..end], true)
}

/// A request id, kept on the stack: at most [`RequestId::MAX`] visible ASCII characters.
struct RequestId {
    bytes: [u8; RequestId::MAX],
    len: usize,
}

impl RequestId {
    /// The longest id taken from a client.
    const MAX: usize = 128;

    fn as_str(&self) -> &str {
        // Only visible ASCII is ever stored.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

/// The client's request id if it is a reasonable one, else a new UUID.
fn request_id(req: &Request) -> RequestId {
    let mut id = RequestId {
        bytes: [0; RequestId::MAX],
        len: 0,
    };
    let given = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .map(HeaderValue::as_bytes);
    match given {
        Some(v)
            if !v.is_empty() && v.len() <= RequestId::MAX && v.iter().all(u8::is_ascii_graphic) =>
        {
            id.bytes[..v.len()].copy_from_slice(v);
            id.len = v.len();
        }
        _ => {
            let uuid = uuid::Uuid::new_v4();
            id.len = uuid.hyphenated().encode_lower(&mut id.bytes).len();
        }
    }
    id
}

/// What hyper lets through but HTTP/1.1 forbids or this server does not do, as nginx answers
/// it: a missing, repeated or invalid `Host` (RFC 9112 §3.2: 400); a request target that is
/// not a path (`*`, authority-form, CONNECT: 400); a transfer coding other than `chunked`
/// (hyper reads `gzip, chunked` as chunked and would hand the handler gzip bytes: 501).
fn protocol_error(req: &Request) -> Option<poem::Error> {
    let bad = |detail: &str| Some(ApiError::BadRequest(detail.to_owned()).into());
    if req.version() >= Version::HTTP_11 {
        let mut hosts = req.headers().get_all(header::HOST).iter();
        match (hosts.next(), hosts.next()) {
            (None, _) => return bad("an HTTP/1.1 request needs a Host header"),
            (Some(_), Some(_)) => return bad("the request has more than one Host header"),
            (Some(host), None) if !valid_host(host) => return bad("the Host header is invalid"),
            _ => {}
        }
    }
    if *req.method() == Method::CONNECT {
        return bad("CONNECT is not served: this is not a proxy");
    }
    let path = req.uri().path();
    let asterisk_form = *req.method() == Method::OPTIONS && path == "*";
    if !(path.starts_with('/') || asterisk_form) {
        return bad("the request target must be a path");
    }
    for value in req.headers().get_all(header::TRANSFER_ENCODING) {
        let only_chunked = value.to_str().is_ok_and(|v| {
            v.split(',')
                .all(|coding| coding.trim().eq_ignore_ascii_case("chunked"))
        });
        if !only_chunked {
            return Some(
                ApiError::NotImplemented("only the chunked transfer coding is supported").into(),
            );
        }
    }
    None
}

fn valid_host(host: &HeaderValue) -> bool {
    let Ok(host) = host.to_str() else {
        return false;
    };
    !host.is_empty() && !host.contains('@') && host.parse::<Authority>().is_ok()
}

/// Refuses a body whose declared length is over the limit without reading it. Bodies without
/// a length (chunked) are bounded where they are read (`validation::ValidJson`).
fn limit_body(req: &Request, limit: usize) -> Result<()> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => Err(ApiError::PayloadTooLarge(limit).into()),
        _ => Ok(()),
    }
}

/// Fault injection, as podinfo offers it: a random delay up to `fault_delay`, and a 500 for a
/// `fault_error_rate` fraction of requests.
async fn inject_faults(state: &AppState) -> Result<()> {
    let config = &state.config;
    if config.fault_delay.is_zero() && config.fault_error_rate == 0.0 {
        return Ok(());
    }
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
    Ok(())
}

/// One request counted in flight until dropped, also when the request future is cancelled.
struct InFlight<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_paths_are_cut_for_the_log_at_a_character_boundary() {
        assert_eq!(logged_path("/short"), ("/short", false));
        let long = format!("/{}", "é".repeat(LOGGED_PATH_LIMIT));
        let (cut, truncated) = logged_path(&long);
        assert!(truncated && cut.len() <= LOGGED_PATH_LIMIT && cut.len() >= LOGGED_PATH_LIMIT - 1);
    }

    #[test]
    fn host_values_are_checked_as_authorities() {
        assert!(valid_host(&HeaderValue::from_static("example.com:8080")));
        assert!(valid_host(&HeaderValue::from_static("[::1]:9191")));
        assert!(!valid_host(&HeaderValue::from_static("")));
        assert!(!valid_host(&HeaderValue::from_static("a b")));
        assert!(!valid_host(&HeaderValue::from_static("user@example.com")));
    }
}
