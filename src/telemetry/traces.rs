//! OTLP trace export: one server span per API request, bridged from `tracing` by
//! tracing-opentelemetry, exported by the OpenTelemetry SDK's batch processor over OTLP/HTTP.
//!
//! Off unless a collector is configured ([`endpoint`]); off, the pipeline checks one
//! `OnceLock` per request and creates no span.
//!
//! Export never waits on serving: a finished span is handed to the batch processor's thread,
//! and at most `OTEL_BSP_MAX_QUEUE_SIZE` spans are held (queued or in an export in progress);
//! beyond that, and when an export fails, spans are dropped and counted
//! ([`dropped_spans`]). The SDK counts its own drops but does not expose the count
//! (`BatchSpanProcessor::dropped_spans_count` is private), so [`Bounded`] keeps the bound
//! itself, below the SDK's queue, which then never overflows.

use std::{
    sync::{
        Arc, LazyLock, Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use opentelemetry::{
    Context,
    propagation::TextMapPropagator,
    trace::{TraceContextExt, TraceId, TracerProvider as _},
};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    propagation::TraceContextPropagator,
    trace::{
        BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, Span, SpanData, SpanExporter,
        SpanProcessor,
    },
};
use poem::{Request, http::Version};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::Config;

/// The target of the request span: the only spans and events the OpenTelemetry layer sees.
pub const SPAN_TARGET: &str = "poem_api::request";

/// An exporter failure is logged at most once per this interval, with the count since.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// At least this much for the flush at stop, even when the shutdown timeout is used up.
const MIN_FLUSH: Duration = Duration::from_secs(1);

/// The OTLP/HTTP path of traces below a base URL (the OTLP exporter specification).
const TRACES_PATH: &str = "/v1/traces";

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Why spans were dropped.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    /// `queue_full` or `export_failed`.
    pub reason: &'static str,
}

/// Spans that never reached the collector. Exists before the registry does (like the log
/// counter); `Metrics::new` registers it.
pub fn dropped_spans() -> &'static Family<DropLabels, Counter> {
    static DROPPED: LazyLock<Family<DropLabels, Counter>> = LazyLock::new(Family::default);
    &DROPPED
}

/// True when spans are exported: checked once per request.
pub fn enabled() -> bool {
    PROVIDER.get().is_some()
}

/// Where spans go, when anywhere.
enum Endpoint {
    /// `POEM_API_OTLP_ENDPOINT` + `/v1/traces`.
    Given(String),
    /// What the exporter reads from `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (checked here first, to name the variable if invalid).
    FromEnvironment,
}

/// The endpoint; None (tracing off) when none is set, or with `OTEL_SDK_DISABLED=true` or
/// `OTEL_TRACES_EXPORTER=none`.
fn endpoint(config: &Config) -> Result<Option<Endpoint>, String> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
    {
        return Ok(None);
    }
    if let Some(base) = &config.otlp_endpoint {
        return Ok(Some(Endpoint::Given(format!("{base}{TRACES_PATH}"))));
    }
    for name in [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ] {
        if let Some(value) = env(name) {
            crate::config::otlp_endpoint(&value).map_err(|e| format!("invalid {name}: {e}"))?;
            return Ok(Some(Endpoint::FromEnvironment));
        }
    }
    Ok(None)
}

/// The OpenTelemetry layer, when a collector is configured: builds the exporter and the batch
/// processor (its thread starts here) and makes [`enabled`] true. Call before the runtime
/// starts: the blocking HTTP client must not be created inside it.
pub fn layer<S>(config: &Config) -> Result<Option<impl tracing_subscriber::Layer<S>>, String>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let Some(endpoint) = endpoint(config)? else {
        return Ok(None);
    };
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(super::otlp_http::OtlpHttp::from_env())
        .with_protocol(Protocol::HttpBinary);
    if let Endpoint::Given(url) = endpoint {
        exporter = exporter.with_endpoint(url);
    }
    let exporter = exporter
        .build()
        .map_err(|e| format!("cannot build the OTLP exporter: {e}"))?;
    let limit = config.otel_queue_size as usize;
    let held = Arc::new(AtomicUsize::new(0));
    let batch = BatchSpanProcessor::builder(Counted {
        inner: exporter,
        held: held.clone(),
        failures: Mutex::default(),
    })
    // The SDK's queue as large as ours: `Bounded` refuses first, so it never drops.
    .with_batch_config(
        BatchConfigBuilder::default()
            .with_max_queue_size(limit)
            .build(),
    )
    .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(Bounded {
            inner: batch,
            held,
            limit,
        })
        .with_resource(
            // The default detectors read OTEL_RESOURCE_ATTRIBUTES; the service name and
            // version are ours.
            Resource::builder()
                .with_service_name(config.otel_service_name.clone())
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.version",
                    crate::state::VERSION,
                ))
                .build(),
        )
        .build();
    let tracer = provider.tracer("poem-api");
    PROVIDER
        .set(provider)
        .map_err(|_| "tracing is initialised twice".to_owned())?;
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        // The attributes a span carries are the semantic-convention ones set below, not the
        // source location, thread or per-poll timings.
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_target(false)
        .with_level(false);
    use tracing_subscriber::Layer as _;
    Ok(Some(layer.with_filter(
        tracing_subscriber::filter::filter_fn(|meta| meta.target() == SPAN_TARGET),
    )))
}

/// Exports what is left, for the time left of the shutdown timeout (at least [`MIN_FLUSH`]),
/// and stops the processor's thread. Called once, after the last request.
pub async fn flush(left: Duration) {
    let Some(provider) = PROVIDER.get().cloned() else {
        return;
    };
    let timeout = left.max(MIN_FLUSH);
    let started = Instant::now();
    // The processor waits on a channel for its thread: not on a runtime thread.
    let result = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(timeout)).await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(Ok(())) => tracing::info!(elapsed_ms, "spans flushed"),
        Ok(Err(err)) => tracing::warn!(elapsed_ms, error = %err, "span flush incomplete"),
        Err(err) => tracing::warn!(error = %err, "span flush failed"),
    }
}

/// A request's span and trace id.
pub struct RequestTrace {
    span: tracing::Span,
    trace_id: [u8; 32],
}

impl RequestTrace {
    /// Starts the server span of `req`, continuing the trace of its `traceparent` (W3C Trace
    /// Context) if it has a valid one. `route` is the matched template.
    pub fn start(req: &Request, route: Option<&str>, path: &str) -> Self {
        let method = semconv_method(req.method().as_str());
        let version = match req.version() {
            Version::HTTP_2 => "2",
            Version::HTTP_10 => "1.0",
            _ => "1.1",
        };
        let user_agent = req
            .headers()
            .get(poem::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| prefix(ua, MAX_USER_AGENT));
        let client = req.remote_addr().as_socket_addr().map(|a| a.ip());
        let span = tracing::info_span!(
            target: SPAN_TARGET,
            "request",
            otel.name = span_name(method, route).as_str(),
            otel.kind = "server",
            otel.status_code = Empty,
            http.request.method = method,
            http.route = route,
            http.response.status_code = Empty,
            "error.type" = Empty,
            url.path = path,
            url.scheme = "http",
            network.protocol.version = version,
            client.address = client.map(tracing::field::display),
            user_agent.original = user_agent,
        );
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(req.headers()));
        // Fails only if the span is disabled (a filter), in which case nothing is exported.
        let _ = span.set_parent(parent);
        let trace_id = hex(span.context().span().span_context().trace_id());
        Self { span, trace_id }
    }

    /// The trace id, 32 lowercase hex digits.
    pub fn trace_id(&self) -> &str {
        std::str::from_utf8(&self.trace_id).unwrap_or_default()
    }

    /// The route template, learnt only from the response (poem's router matched it).
    pub fn learnt_route(&self, method: &str, route: Option<&str>) {
        self.span.record("http.route", route);
        let name = span_name(semconv_method(method), route);
        self.span.record("otel.name", name.as_str());
    }

    /// Records the answer's status; the span ends when this is dropped.
    pub fn finish(&self, status: u16) {
        let span = &self.span;
        // As i64: the layer records other integers as strings (it has no `record_u64`).
        span.record("http.response.status_code", i64::from(status));
        // Server spans: 5xx is an error, 4xx is the client's (HTTP semantic conventions).
        if status >= 500 {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", tracing::field::display(status));
        }
    }
}

/// The most of a `User-Agent` a span keeps: spans wait in the export queue, and a header may be
/// as long as `POEM_API_HEADER_LIMIT` (`server::budget::HELD_SPAN` counts on this bound).
const MAX_USER_AGENT: usize = 256;

/// The first `max` bytes of `s` at most, cut at a character boundary.
fn prefix(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `GET /api/v1/echo`, or the method alone when no route matched (never the raw path: its
/// cardinality is the client's choice).
fn span_name(method: &str, route: Option<&str>) -> String {
    match route {
        Some(route) => format!("{method} {route}"),
        None => method.to_owned(),
    }
}

/// The semantic conventions' method: one of the known ones, or `_OTHER`.
fn semconv_method(method: &str) -> &str {
    match method {
        "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "CONNECT" | "OPTIONS" | "TRACE" | "PATCH" => {
            method
        }
        _ => "_OTHER",
    }
}

fn hex(id: TraceId) -> [u8; 32] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, byte) in id.to_bytes().iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(byte >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(byte & 0xf)];
    }
    out
}

/// The batch processor behind a bound on the spans held: queued, or in an export in progress.
#[derive(Debug)]
struct Bounded {
    inner: BatchSpanProcessor,
    held: Arc<AtomicUsize>,
    limit: usize,
}

impl SpanProcessor for Bounded {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.held.fetch_add(1, Relaxed) >= self.limit {
            self.held.fetch_sub(1, Relaxed);
            dropped_spans()
                .get_or_create(&DropLabels {
                    reason: "queue_full",
                })
                .inc();
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter, releasing the spans it was given from the bound and counting and logging
/// its failures (the SDK would log each one, or none without its `internal-logs` feature).
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    held: Arc<AtomicUsize>,
    failures: Mutex<FailureLog>,
}

#[derive(Debug, Default)]
struct FailureLog {
    /// When a failure was last logged.
    logged: Option<Instant>,
    /// Failures since then, not logged.
    unlogged: u64,
    /// Failures in a row: a success after some is logged once.
    in_a_row: u64,
    /// Failures in all.
    total: u64,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        self.held.fetch_sub(spans, Relaxed);
        let mut log = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match &result {
            Ok(()) => {
                if log.in_a_row > 0 {
                    tracing::info!(failed_exports = log.in_a_row, "trace export recovered");
                }
                log.in_a_row = 0;
                log.unlogged = 0;
            }
            Err(err) => {
                dropped_spans()
                    .get_or_create(&DropLabels {
                        reason: "export_failed",
                    })
                    .inc_by(spans as u64);
                log.total += 1;
                log.in_a_row += 1;
                let now = Instant::now();
                if log
                    .logged
                    .is_none_or(|at| now.duration_since(at) >= FAILURE_LOG_INTERVAL)
                {
                    tracing::warn!(
                        error = %err,
                        cause = super::otlp_http::last_cause(),
                        spans,
                        failed_exports = log.total,
                        not_logged = log.unlogged,
                        interval_s = FAILURE_LOG_INTERVAL.as_secs(),
                        "trace export failed; spans dropped (logged once per interval)"
                    );
                    log.logged = Some(now);
                    log.unlogged = 0;
                } else {
                    log.unlogged += 1;
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_are_lowercase_hex() {
        let id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        assert_eq!(&hex(id), b"4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn span_names_use_the_route_template_never_the_path() {
        assert_eq!(
            span_name("GET", Some("/api/v1/delay/{ms}")),
            "GET /api/v1/delay/{ms}"
        );
        assert_eq!(span_name("GET", None), "GET");
        assert_eq!(semconv_method("BREW"), "_OTHER");
    }

    #[test]
    fn long_user_agents_are_cut_at_a_character_boundary() {
        let ua = "é".repeat(MAX_USER_AGENT);
        let cut = prefix(&ua, MAX_USER_AGENT);
        assert!(cut.len() <= MAX_USER_AGENT && cut.len() >= MAX_USER_AGENT - 1);
        assert_eq!(prefix("curl/8", MAX_USER_AGENT), "curl/8");
    }
}
