use std::time::{Duration, Instant};

use poem::http::StatusCode;
use serde_json::json;

use crate::helpers;

#[tokio::test]
async fn delay_waits_the_requested_time_then_answers() {
    let state = helpers::state(&[]);

    let started = Instant::now();
    let response = helpers::api(&state).get("/api/v1/delay/50").send().await;

    response.assert_status_is_ok();
    response.assert_json(json!({"delay_ms": 50})).await;
    assert!(started.elapsed() >= Duration::from_millis(50));
}

#[tokio::test]
async fn delay_over_the_configured_maximum_is_a_400_problem() {
    let state = helpers::state(&["--max-delay", "1s"]);

    let response = helpers::api(&state).get("/api/v1/delay/1001").send().await;

    response.assert_status(StatusCode::BAD_REQUEST);
    response.assert_content_type("application/problem+json");
}

#[tokio::test]
async fn status_answers_the_requested_code_with_a_problem_from_400() {
    let state = helpers::state(&[]);
    let client = helpers::api(&state);

    let created = client.get("/api/v1/status/201").send().await;
    let no_content = client.get("/api/v1/status/204").send().await;
    let teapot = client.get("/api/v1/status/418").send().await;
    let unavailable = client.get("/api/v1/status/503").send().await;
    let out_of_range = client.get("/api/v1/status/700").send().await;

    created.assert_status(StatusCode::CREATED);
    created.assert_json(json!({"status": 201})).await;
    no_content.assert_status(StatusCode::NO_CONTENT);
    teapot.assert_status(StatusCode::IM_A_TEAPOT);
    teapot.assert_content_type("application/problem+json");
    unavailable.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    out_of_range.assert_status(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn headers_returns_the_request_headers_as_json() {
    let state = helpers::state(&[]);

    let response = helpers::api(&state)
        .get("/api/v1/headers")
        .header("x-custom", "value")
        .send()
        .await;

    response.assert_status_is_ok();
    let json = response.json().await;
    json.value().object().get("x-custom").assert_string("value");
}

#[tokio::test]
async fn stream_sends_the_requested_events_then_ends() {
    let state = helpers::state(&[]);

    let response = helpers::api(&state)
        .get("/api/v1/stream?count=3&interval_ms=10")
        .send()
        .await;

    response.assert_status_is_ok();
    response.assert_content_type("text/event-stream");
    let body = response.0.into_body().into_string().await.unwrap();
    let events: Vec<&str> = body.lines().filter(|l| l.starts_with("data:")).collect();
    assert_eq!(events.len(), 3, "{body}");
    assert!(events[2].contains(r#""seq":2"#), "{body}");
}

#[tokio::test]
async fn stream_ends_early_and_cleanly_when_the_instance_stops() {
    let state = helpers::state(&[]);
    let response = helpers::api(&state)
        .get("/api/v1/stream?count=1000&interval_ms=10")
        .send()
        .await;
    response.assert_status_is_ok();

    let stopper = state.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        stopper.lifecycle.start_stopping();
    });
    let body = tokio::time::timeout(Duration::from_secs(5), response.0.into_body().into_string())
        .await
        .expect("the stream ends when the instance stops")
        .expect("the stream ends without an error");

    let events = body.lines().filter(|l| l.starts_with("data:")).count();
    assert!((1..1000).contains(&events), "{events} events");
}

#[tokio::test]
async fn streams_beyond_the_limit_are_refused_and_each_ends_at_the_maximum_duration() {
    let state = helpers::state(&["--max-streams", "1", "--stream-max-duration", "200ms"]);
    let client = helpers::api(&state);
    let started = std::time::Instant::now();

    let open = client
        .get("/api/v1/stream?count=1000&interval_ms=10")
        .send()
        .await;
    let refused = client.get("/api/v1/stream?count=1").send().await;
    let body = tokio::time::timeout(Duration::from_secs(10), open.0.into_body().into_string())
        .await
        .expect("the stream ends at its maximum duration")
        .expect("cleanly");
    let after = client
        .get("/api/v1/stream?count=1&interval_ms=10")
        .send()
        .await;

    refused.assert_status(poem::http::StatusCode::SERVICE_UNAVAILABLE);
    refused.assert_header("retry-after", "1");
    let events = body.lines().filter(|l| l.starts_with("data:")).count();
    assert!(
        events < 1000,
        "{events} events: the duration bound did not end it"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    after.assert_status_is_ok();
}
