//! Prometheus metrics: HTTP request counts and latencies by route template, in-flight requests,
//! open connections, panics, build info and process resource use.

use std::{sync::Arc, time::Duration};

use poem::http::Method;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, text::encode},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::Histogram,
        info::Info,
    },
    registry::{Registry, Unit},
};

/// Labels of the request metrics. The route is the matched template (`/api/v1/delay/{ms}`),
/// never the raw path, so a client cannot create unbounded series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    /// Which listener served it: `api` or `admin`.
    pub listener: &'static str,
    /// HTTP method; unknown methods are folded into `OTHER`.
    pub method: &'static str,
    /// Route template, or `unmatched`.
    pub route: Arc<str>,
    /// Status class: `2xx`, `4xx`, ...
    pub status: &'static str,
}

/// Labels of the connection gauge.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ListenerLabels {
    /// `api` or `admin`.
    pub listener: &'static str,
}

/// All metrics of the process, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RequestLabels, Histogram>,
    in_flight: Gauge,
    shed: Counter,
    panics: Counter,
    connections: Family<ListenerLabels, Gauge>,
}

/// Latency buckets in seconds: fine below 100 ms, where this service answers, coarse above.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Metrics {
    /// Creates and registers every metric.
    pub fn new(version: &str, revision: &str) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        let durations: Family<RequestLabels, Histogram> =
            Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS));
        registry.register_with_unit(
            "http_request_duration",
            "Time from request head to response head",
            Unit::Seconds,
            durations.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "http_requests_in_flight",
            "API requests being handled",
            in_flight.clone(),
        );
        let shed = Counter::default();
        registry.register(
            "http_requests_shed",
            "API requests refused by the in-flight limit",
            shed.clone(),
        );
        let panics = Counter::default();
        registry.register(
            "poem_api_panics",
            "Handler panics turned into 500 responses",
            panics.clone(),
        );
        let connections = Family::<ListenerLabels, Gauge>::default();
        registry.register(
            "http_connections_open",
            "Open client connections",
            connections.clone(),
        );
        registry.register(
            "poem_api_build",
            "Build information",
            Info::new(vec![
                ("version", version.to_owned()),
                ("revision", revision.to_owned()),
            ]),
        );
        registry.register(
            "poem_api_log_lines_dropped",
            "Log lines dropped because stdout fell behind",
            crate::telemetry::dropped_lines().clone(),
        );
        registry.register(
            "poem_api_trace_spans_dropped",
            "Spans not exported: the export queue was full, or the collector failed",
            crate::telemetry::traces::dropped_spans().clone(),
        );
        registry.register_collector(Box::new(ProcessCollector));
        Self {
            registry,
            requests,
            durations,
            in_flight,
            shed,
            panics,
            connections,
        }
    }

    /// Records one answered request.
    pub fn observe(&self, labels: &RequestLabels, elapsed: Duration) {
        self.handles(labels).observe(elapsed);
    }

    /// The series of `labels`, created if new: resolved once, they record a request without
    /// hashing the labels again (two hash-map look-ups under locks per request otherwise).
    pub fn handles(&self, labels: &RequestLabels) -> RequestHandles {
        RequestHandles {
            count: self.requests.get_or_create(labels).clone(),
            duration: self.durations.get_or_create(labels).clone(),
        }
    }

    /// The gauge of API requests in flight.
    pub fn in_flight(&self) -> &Gauge {
        &self.in_flight
    }

    /// Counts a request refused by the in-flight limit.
    pub fn count_shed(&self) {
        self.shed.inc();
    }

    /// Counts a handler panic.
    pub fn count_panic(&self) {
        self.panics.inc();
    }

    /// The gauge of open connections of one listener.
    pub fn connections(&self, listener: &'static str) -> Gauge {
        self.connections
            .get_or_create(&ListenerLabels { listener })
            .clone()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// The request series of one label set.
#[derive(Debug, Clone)]
pub struct RequestHandles {
    count: Counter,
    duration: Histogram,
}

impl RequestHandles {
    /// Records one answered request.
    pub fn observe(&self, elapsed: Duration) {
        self.count.inc();
        self.duration.observe(elapsed.as_secs_f64());
    }
}

/// The status classes, in the order [`status_class_index`] numbers them.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// `200` → 1, the index of `2xx` in [`STATUS_CLASSES`].
pub fn status_class_index(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

/// Folds methods into a fixed set, so a client sending `FOO` cannot add series.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}

/// `200` → `2xx`.
pub fn status_class(status: u16) -> &'static str {
    STATUS_CLASSES[status_class_index(status)]
}

/// Process metrics read from `/proc` at scrape time, named as the Prometheus client libraries
/// of other languages name them, so existing dashboards work.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(usage) = process_usage() else {
            return Ok(());
        };
        let seconds = Some(&Unit::Seconds);
        let bytes = Some(&Unit::Bytes);
        let cpu = ConstCounter::new(usage.cpu_seconds);
        encode_one(
            &mut encoder,
            "process_cpu",
            "User and system CPU time spent",
            seconds,
            cpu,
        )?;
        let rss = ConstGauge::new(usage.resident_bytes);
        encode_one(
            &mut encoder,
            "process_resident_memory",
            "Resident memory size",
            bytes,
            rss,
        )?;
        let fds = ConstGauge::new(usage.open_fds);
        encode_one(
            &mut encoder,
            "process_open_fds",
            "Open file descriptors",
            None,
            fds,
        )
    }
}

fn encode_one(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    metric: impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    metric.encode(encoder.encode_descriptor(name, help, unit, metric.metric_type())?)
}

struct ProcessUsage {
    cpu_seconds: f64,
    resident_bytes: i64,
    open_fds: i64,
}

#[cfg(target_os = "linux")]
#[allow(clippy::unnecessary_cast)] // c_long is i32 on 32-bit targets
fn process_usage() -> Option<ProcessUsage> {
    // /proc/self/stat: the command name (field 2) may contain spaces, so split after its ')'.
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) in clock ticks; field 24 (rss) in pages. `fields[0]` is 3.
    let ticks = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok());
    // SAFETY: sysconf only reads a configuration value.
    let (tick_rate, page_size) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let cpu_seconds = (ticks(14)? + ticks(15)?) / tick_rate as f64;
    let resident_bytes = fields.get(24 - 3)?.parse::<i64>().ok()? * page_size as i64;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as i64;
    Some(ProcessUsage {
        cpu_seconds,
        resident_bytes,
        open_fds,
    })
}

#[cfg(not(target_os = "linux"))]
fn process_usage() -> Option<ProcessUsage> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_fold_into_classes() {
        assert_eq!(status_class(200), "2xx");
        assert_eq!(status_class(422), "4xx");
        assert_eq!(status_class(503), "5xx");
    }

    #[test]
    fn unknown_methods_fold_into_other() {
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "OTHER");
    }
}
