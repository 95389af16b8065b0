use poem::http::StatusCode;
use serde_json::json;

use crate::helpers;

#[tokio::test]
async fn echo_returns_the_request_with_defaults_filled_in() {
    let state = helpers::state(&[]);

    let response = helpers::api(&state)
        .post("/api/v1/echo")
        .body_json(&json!({"message": "hi", "meta": {"priority": 3}}))
        .send()
        .await;

    response.assert_status_is_ok();
    response
        .assert_json(json!({"message": "hi", "tags": [], "count": 1, "meta": {"priority": 3}}))
        .await;
}

#[tokio::test]
async fn echo_lists_every_invalid_field_in_one_422_problem() {
    let state = helpers::state(&[]);
    let body = json!({
        "message": "",
        "tags": ["ok", "x".repeat(65)],
        "count": 101,
        "meta": {"source": 7, "priority": -1}
    });

    let response = helpers::api(&state)
        .post("/api/v1/echo")
        .body_json(&body)
        .send()
        .await;

    response.assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    let problem = helpers::problem(response).await;
    assert_eq!(problem["status"], 422);
    assert_eq!(problem["instance"], "/api/v1/echo");
    assert!(problem["request_id"].is_string());
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "message",
            "tags[1]",
            "count",
            "meta.source",
            "meta.priority"
        ]
    );
}

#[tokio::test]
async fn echo_answers_a_400_problem_for_malformed_json() {
    let state = helpers::state(&[]);

    let response = helpers::api(&state)
        .post("/api/v1/echo")
        .content_type("application/json")
        .body(r#"{"message": "unterminated"#)
        .send()
        .await;

    response.assert_status(StatusCode::BAD_REQUEST);
    let problem = helpers::problem(response).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"),
        "{problem}"
    );
}

#[tokio::test]
async fn echo_answers_a_400_problem_for_deeply_nested_json() {
    let state = helpers::state(&[]);
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));

    let response = helpers::api(&state)
        .post("/api/v1/echo")
        .content_type("application/json")
        .body(nested)
        .send()
        .await;

    response.assert_status(StatusCode::BAD_REQUEST);
    helpers::problem(response).await;
}

#[tokio::test]
async fn echo_answers_a_415_problem_for_another_content_type() {
    let state = helpers::state(&[]);

    let response = helpers::api(&state)
        .post("/api/v1/echo")
        .content_type("text/plain")
        .body(r#"{"message": "hi"}"#)
        .send()
        .await;

    response.assert_status(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let problem = helpers::problem(response).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("text/plain"),
        "{problem}"
    );
}

#[tokio::test]
async fn echo_answers_a_413_problem_for_a_body_over_the_limit() {
    let state = helpers::state(&["--body-limit", "1KiB"]);
    let body = json!({ "message": "x".repeat(2000) });

    let response = helpers::api(&state)
        .post("/api/v1/echo")
        .body_json(&body)
        .send()
        .await;

    response.assert_status(StatusCode::PAYLOAD_TOO_LARGE);
    helpers::problem(response).await;
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused_with_413_as_it_is_read() {
    // A body without Content-Length can only be bounded while it is read: on a real socket.
    let server = helpers::spawn_api(&["--body-limit", "1KiB"]).await;
    let chunks: Vec<Result<String, std::io::Error>> =
        (0..64).map(|_| Ok("x".repeat(100))).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));

    let response = helpers::http()
        .post(format!("http://{}/api/v1/echo", server.addr))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 413);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}
