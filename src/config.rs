//! Every setting of the service: a command-line flag and a `POEM_API_*` environment variable,
//! with a default that runs locally with no configuration at all.

use std::{net::IpAddr, time::Duration};

use clap::{CommandFactory, Parser, ValueEnum, error::ContextKind};

/// The service's configuration. `--help` prints this list; the README's table mirrors it.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "poem-api",
    version,
    about = "A production-grade HTTP API on poem and tokio"
)]
pub struct Config {
    /// Address both listeners bind to. The container image sets 0.0.0.0.
    #[arg(long, env = "POEM_API_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,

    /// Port of the public API.
    #[arg(long, env = "POEM_API_PORT", default_value_t = 9191)]
    pub port: u16,

    /// Port of the admin listener: probes, metrics, readiness controls. Never expose it publicly.
    #[arg(long, env = "POEM_API_ADMIN_PORT", default_value_t = 9192)]
    pub admin_port: u16,

    /// Message returned by `GET /`.
    #[arg(
        long,
        env = "POEM_API_MESSAGE",
        default_value = "greetings from poem-api"
    )]
    pub message: String,

    /// After SIGTERM, keep serving this long with readiness failing, so load balancers stop
    /// sending traffic before the listener closes. Kubernetes needs a few seconds; 0 locally.
    #[arg(long, env = "POEM_API_DRAIN_DELAY", default_value = "0s", value_parser = duration)]
    pub drain_delay: Duration,

    /// Then: how long in-flight requests may take to finish before the process exits anyway.
    #[arg(long, env = "POEM_API_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub shutdown_timeout: Duration,

    /// A client must send its complete request headers within this time (slow-loris guard).
    #[arg(long, env = "POEM_API_HEADER_READ_TIMEOUT", default_value = "5s", value_parser = positive_duration)]
    pub header_read_timeout: Duration,

    /// An idle keep-alive connection is closed after this time. Keep it above the idle timeout of
    /// any load balancer in front, or the balancer reuses connections the server is closing.
    #[arg(long, env = "POEM_API_KEEP_ALIVE_TIMEOUT", default_value = "75s", value_parser = positive_duration)]
    pub keep_alive_timeout: Duration,

    /// A client that accepts no byte of a response for this long is disconnected, freeing its
    /// connection slot and the response it holds. Counts time without progress, as nginx's
    /// `send_timeout` (60 s) does; 30 s, half of it, because no client stalls that long on
    /// purpose except one holding a slot, and as long as the request timeout.
    #[arg(long, env = "POEM_API_SEND_TIMEOUT", default_value = "30s", value_parser = positive_duration)]
    pub send_timeout: Duration,

    /// A request whose response has not started within this time is answered with 503.
    #[arg(long, env = "POEM_API_REQUEST_TIMEOUT", default_value = "30s", value_parser = positive_duration)]
    pub request_timeout: Duration,

    /// Largest accepted request body (e.g. 65536, 64KiB, 1MiB); larger ones get 413.
    #[arg(long, env = "POEM_API_BODY_LIMIT", default_value = "64KiB", value_parser = byte_size)]
    pub body_limit: usize,

    /// Largest accepted request head (request line and headers); larger ones get 431.
    #[arg(long, env = "POEM_API_HEADER_LIMIT", default_value = "32KiB", value_parser = byte_size)]
    pub header_limit: usize,

    /// Open connections per listener; beyond it the server stops accepting until one closes.
    #[arg(long, env = "POEM_API_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// API requests handled at once; beyond it requests are shed with 503 and Retry-After.
    /// 0 turns the limit off.
    #[arg(long, env = "POEM_API_MAX_IN_FLIGHT", default_value_t = 0)]
    pub max_in_flight: u32,

    /// Concurrent `GET /api/v1/stream` responses; beyond it: 503 with Retry-After. Streams
    /// hold their connection long after the in-flight limit has let the request go.
    #[arg(long, env = "POEM_API_MAX_STREAMS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams: u32,

    /// A stream ends (cleanly) after this long, whatever its count and interval.
    #[arg(long, env = "POEM_API_STREAM_MAX_DURATION", default_value = "5m", value_parser = positive_duration)]
    pub stream_max_duration: Duration,

    /// Upper bound of `GET /api/v1/delay/{ms}`.
    #[arg(long, env = "POEM_API_MAX_DELAY", default_value = "10s", value_parser = duration)]
    pub max_delay: Duration,

    /// Fault injection: add a random delay of up to this much to every API request. 0 is off.
    #[arg(long, env = "POEM_API_FAULT_DELAY", default_value = "0s", value_parser = duration)]
    pub fault_delay: Duration,

    /// Fault injection: answer this fraction (0 to 1) of API requests with 500. 0 is off.
    #[arg(long, env = "POEM_API_FAULT_ERROR_RATE", default_value_t = 0.0, value_parser = probability)]
    pub fault_error_rate: f64,

    /// Log filter in `tracing` syntax, e.g. `info` or `poem_api=debug`. Falls back to RUST_LOG.
    #[arg(long, env = "POEM_API_LOG")]
    pub log: Option<String>,

    /// Log format: JSON when stdout is not a terminal (in a cluster), readable text on one.
    #[arg(long, env = "POEM_API_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,

    /// Write one log event per request (method, route, status, latency, request id).
    #[arg(long, env = "POEM_API_ACCESS_LOG", default_value_t = true, action = clap::ArgAction::Set)]
    pub access_log: bool,

    /// OTLP/HTTP collector to send traces to, as a base URL (`http://otel-collector:4318`):
    /// spans go to `<base>/v1/traces` as protobuf. Unset, tracing is off unless
    /// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT is set (README, "Tracing").
    #[arg(long, env = "POEM_API_OTLP_ENDPOINT", value_parser = otlp_endpoint)]
    pub otlp_endpoint: Option<String>,

    /// The `service.name` of exported spans (OpenTelemetry's own variable).
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = "poem-api")]
    pub otel_service_name: String,

    /// Finished spans held for export at most; beyond it spans are dropped and counted
    /// (`poem_api_trace_spans_dropped_total`). OpenTelemetry's own variable and default.
    #[arg(long, env = "OTEL_BSP_MAX_QUEUE_SIZE", default_value_t = 2048, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub otel_queue_size: u32,

    /// Print the worst-case memory for these settings (bytes, as JSON) and exit: the figure a
    /// container's memory limit must cover.
    #[arg(long)]
    pub memory_budget: bool,

    /// Serve HTTP/2 by prior knowledge (h2c) on the API port beside HTTP/1.1: a connection that
    /// opens with the HTTP/2 preface is served as HTTP/2, any other as HTTP/1.1.
    #[arg(long, env = "POEM_API_HTTP2", default_value_t = true, action = clap::ArgAction::Set)]
    pub http2: bool,

    /// Streams open at once on one HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS). Every
    /// stream beyond a connection's first also takes a slot of POEM_API_MAX_CONNECTIONS.
    #[arg(long, env = "POEM_API_HTTP2_MAX_STREAMS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub http2_max_streams: u32,

    /// An HTTP/2 connection that has sent no frame for this long is sent a PING.
    #[arg(long, env = "POEM_API_HTTP2_PING_INTERVAL", default_value = "20s", value_parser = positive_duration)]
    pub http2_ping_interval: Duration,

    /// A PING not acknowledged within this time closes the HTTP/2 connection (a dead peer).
    #[arg(long, env = "POEM_API_HTTP2_PING_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub http2_ping_timeout: Duration,
}

/// How log events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// JSON off a terminal, text on one.
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

impl Config {
    /// Reads flags and environment, and names the offending variable when a value is invalid.
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let config = Self::try_parse_from(args).map_err(name_the_variable)?;
        config.check()
    }

    /// Rules that involve more than one setting.
    fn check(self) -> Result<Self, clap::Error> {
        if self.max_delay >= self.request_timeout {
            return Err(Self::command().error(
                clap::error::ErrorKind::ValueValidation,
                format!(
                    "POEM_API_MAX_DELAY ({}) must be shorter than POEM_API_REQUEST_TIMEOUT ({}), \
                     or every long delay request would time out",
                    humantime::format_duration(self.max_delay),
                    humantime::format_duration(self.request_timeout)
                ),
            ));
        }
        Ok(self)
    }
}

/// clap reports a bad value by its flag (`--drain-delay <DRAIN_DELAY>`) even when it came from
/// the environment; operators set variables, so say the variable's name too.
fn name_the_variable(mut err: clap::Error) -> clap::Error {
    let Some(flag) = err.get(ContextKind::InvalidArg).map(|v| v.to_string()) else {
        return err;
    };
    let long = flag
        .trim_start_matches("--")
        .split([' ', '='])
        .next()
        .unwrap_or_default()
        .to_owned();
    let command = Config::command();
    let env = command
        .get_arguments()
        .find(|a| a.get_long() == Some(long.as_str()))
        .and_then(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned());
    if let Some(env) = env {
        err.insert(
            ContextKind::InvalidArg,
            clap::error::ContextValue::String(format!("{flag} (environment variable {env})")),
        );
    }
    err
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{e}; expected a duration like 250ms, 5s or 1m"))
}

/// An `http://` URL with a host. https is refused here rather than at the first export: the
/// exporter is built without a TLS stack (README, "Tracing").
pub(crate) fn otlp_endpoint(s: &str) -> Result<String, String> {
    let uri: poem::http::Uri = s
        .parse()
        .map_err(|e| format!("{e}; expected a URL like http://otel-collector:4318"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http"), Some(_)) => Ok(s.trim_end_matches('/').to_owned()),
        (Some("https"), _) => Err("https is not supported: send to a collector over http \
             (a node-local agent or a sidecar terminates TLS onwards)"
            .into()),
        _ => Err("expected a URL like http://otel-collector:4318".into()),
    }
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    match duration(s)? {
        Duration::ZERO => Err("must be greater than zero".into()),
        d => Ok(d),
    }
}

fn byte_size(s: &str) -> Result<usize, String> {
    let size: bytesize::ByteSize = s
        .parse()
        .map_err(|e| format!("{e}; expected a size like 65536, 64KiB or 1MiB"))?;
    match usize::try_from(size.as_u64()) {
        Ok(0) => Err("must be greater than zero".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("too large".into()),
    }
}

fn probability(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err("expected a number from 0 to 1".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_run_locally_without_configuration() {
        let config = Config::from_args(["poem-api"]).unwrap();
        assert_eq!(config.port, 9191);
        assert_eq!(config.admin_port, 9192);
        assert_eq!(config.drain_delay, Duration::ZERO);
        assert_eq!(config.body_limit, 64 * 1024);
    }

    #[test]
    fn durations_and_sizes_accept_human_units() {
        let config = Config::from_args([
            "poem-api",
            "--drain-delay=250ms",
            "--shutdown-timeout=1m",
            "--body-limit=1MiB",
        ])
        .unwrap();
        assert_eq!(config.drain_delay, Duration::from_millis(250));
        assert_eq!(config.shutdown_timeout, Duration::from_secs(60));
        assert_eq!(config.body_limit, 1024 * 1024);
    }

    #[test]
    fn an_invalid_value_is_reported_with_its_environment_variable() {
        let err = Config::from_args(["poem-api", "--drain-delay=soon"]).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("POEM_API_DRAIN_DELAY"), "{message}");
        assert!(message.contains("soon"), "{message}");
    }

    #[test]
    fn the_otlp_endpoint_must_be_an_http_url_with_a_host() {
        let config =
            Config::from_args(["poem-api", "--otlp-endpoint=http://collector:4318/"]).unwrap();
        assert_eq!(
            config.otlp_endpoint.as_deref(),
            Some("http://collector:4318")
        );
        for bad in [
            "collector:4318",
            "/v1/traces",
            "ftp://collector",
            "https://collector",
        ] {
            let err = Config::from_args(["poem-api", &format!("--otlp-endpoint={bad}")])
                .unwrap_err()
                .to_string();
            assert!(err.contains("POEM_API_OTLP_ENDPOINT"), "{bad}: {err}");
        }
    }

    #[test]
    fn an_error_rate_outside_zero_to_one_is_rejected() {
        let err = Config::from_args(["poem-api", "--fault-error-rate=1.5"]).unwrap_err();
        assert!(
            err.to_string().contains("POEM_API_FAULT_ERROR_RATE"),
            "{err}"
        );
    }

    #[test]
    fn a_max_delay_longer_than_the_request_timeout_is_rejected() {
        let err = Config::from_args(["poem-api", "--max-delay=40s"]).unwrap_err();
        assert!(
            err.to_string().contains("POEM_API_REQUEST_TIMEOUT"),
            "{err}"
        );
    }
}
