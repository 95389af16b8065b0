use poem::http::StatusCode;
use poem_api::{lifecycle::Lifecycle, state::AppState};

use crate::helpers;

#[tokio::test]
async fn liveness_stays_200_while_readiness_follows_the_lifecycle() {
    let state = helpers::state(&[]);
    let admin = helpers::admin(&state);

    let ready = admin.get("/readyz").send().await;
    state.lifecycle.start_draining();
    let draining = admin.get("/readyz").send().await;
    let alive = admin.get("/healthz").send().await;

    ready.assert_status_is_ok();
    draining.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    draining.assert_content_type("application/problem+json");
    alive.assert_status_is_ok();
}

#[tokio::test]
async fn readiness_fails_until_the_instance_is_ready() {
    let state = AppState::new(poem_api::config::Config::from_args(["poem-api"]).unwrap());
    let admin = helpers::admin(&state);

    let starting = admin.get("/readyz").send().await;

    starting.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    assert!(!Lifecycle::default().is_ready());
}

#[tokio::test]
async fn an_operator_can_take_the_instance_out_of_rotation_and_back() {
    let state = helpers::state(&[]);
    let admin = helpers::admin(&state);

    admin
        .post("/readyz/disable")
        .send()
        .await
        .assert_status_is_ok();
    let disabled = admin.get("/readyz").send().await;
    admin
        .post("/readyz/enable")
        .send()
        .await
        .assert_status_is_ok();
    let enabled = admin.get("/readyz").send().await;

    disabled.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    enabled.assert_status_is_ok();
}

#[tokio::test]
async fn metrics_parse_and_count_a_request_under_its_route_template() {
    // Arrange
    let state = helpers::state(&[]);
    helpers::api(&state)
        .get("/api/v1/delay/1")
        .send()
        .await
        .assert_status_is_ok();
    helpers::api(&state).get("/api/v1/status/404").send().await;

    // Act
    let response = helpers::admin(&state).get("/metrics").send().await;

    // Assert
    response.assert_status_is_ok();
    let text = response.0.into_body().into_string().await.unwrap();
    let samples = parse_openmetrics(&text);
    let count = |name: &str, route: &str, status: &str| {
        samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.label("route") == Some(route)
                    && s.label("status") == Some(status)
                    && s.label("method") == Some("GET")
            })
            .map(|s| s.value)
    };
    assert_eq!(
        count("http_requests_total", "/api/v1/delay/{ms}", "2xx"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        count("http_requests_total", "/api/v1/status/{code}", "4xx"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        count(
            "http_request_duration_seconds_count",
            "/api/v1/delay/{ms}",
            "2xx"
        ),
        Some(1.0),
        "{text}"
    );
    for name in [
        "http_requests_in_flight",
        "poem_api_build_info",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(
            samples.iter().any(|s| s.name == name),
            "{name} missing:\n{text}"
        );
    }
    assert!(
        !text.contains("/api/v1/delay/1\""),
        "raw paths must never become labels"
    );
}

#[tokio::test]
async fn version_reports_the_build() {
    let state = helpers::state(&[]);

    let response = helpers::admin(&state).get("/version").send().await;

    response.assert_status_is_ok();
    let json = response.json().await;
    json.value()
        .object()
        .get("version")
        .assert_string(env!("CARGO_PKG_VERSION"));
}

struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A strict reader of the OpenMetrics text format: every line is a comment or
/// `name{label="value",...} number`, and the exposition ends with `# EOF`. Panics otherwise.
fn parse_openmetrics(text: &str) -> Vec<Sample> {
    assert_eq!(
        text.lines().last(),
        Some("# EOF"),
        "the exposition must end with # EOF"
    );
    let is_name = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series, Vec::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {line}"));
                let labels = body
                    .split("\",")
                    .filter(|pair| !pair.is_empty())
                    .map(|pair| {
                        let (key, value) = pair
                            .split_once("=\"")
                            .unwrap_or_else(|| panic!("bad label: {line}"));
                        assert!(is_name(key), "bad label name: {line}");
                        (key.to_owned(), value.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name, labels)
            }
        };
        assert!(is_name(name), "bad metric name: {line}");
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    samples
}
