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
async fn a_422_lists_at_most_32_errors_and_counts_them_all() {
    // The body of the amplification attack: 65 KB of numbers where strings belong.
    let state = helpers::state(&[]);
    let ones = vec!["1"; 32_000].join(",");
    let body = format!(r#"{{"message":"x","tags":[{ones}]}}"#);
    assert!(body.len() > 64_000 && body.len() <= 64 * 1024);

    let response = helpers::api(&state)
        .post("/api/v1/echo")
        .content_type("application/json")
        .body(body)
        .send()
        .await;

    response.assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    let problem = helpers::problem(response).await;
    // 32,000 items of the wrong kind, and one error for the length of the list.
    assert_eq!(problem["error_count"], 32_001);
    let errors = problem["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 32);
    assert_eq!(errors[0]["field"], "tags");
    assert_eq!(errors[1]["field"], "tags[0]");
    assert_eq!(errors[31]["field"], "tags[30]");
    assert_eq!(
        problem["detail"],
        "32001 invalid fields; the first 32 are listed"
    );
    assert!(problem.to_string().len() < 4096, "{problem}");
}

#[tokio::test]
async fn a_422_with_few_errors_counts_them_too() {
    let state = helpers::state(&[]);

    let response = helpers::api(&state)
        .post("/api/v1/echo")
        .body_json(&json!({"message": "x", "count": 0}))
        .send()
        .await;

    response.assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    let problem = helpers::problem(response).await;
    assert_eq!(problem["error_count"], 1);
    assert_eq!(problem["detail"], "1 invalid field(s)");
    assert_eq!(
        problem["errors"],
        json!([{"field": "count", "message": "must be an integer from 1 to 100"}])
    );
}

#[tokio::test]
async fn error_count_appears_only_in_a_422() {
    let state = helpers::state(&[]);

    let response = helpers::api(&state).get("/no/such/route").send().await;

    response.assert_status(StatusCode::NOT_FOUND);
    let problem = helpers::problem(response).await;
    assert!(problem.get("error_count").is_none(), "{problem}");
    assert!(problem.get("errors").is_none(), "{problem}");
}

#[tokio::test]
async fn echo_ignores_unknown_fields() {
    let state = helpers::state(&[]);

    let response = helpers::api(&state)
        .post("/api/v1/echo")
        .body_json(&json!({"message": "hi", "extra": {"nested": [1, 2]}}))
        .send()
        .await;

    response.assert_status_is_ok();
    response.assert_content_type("application/json; charset=utf-8");
    response
        .assert_json(json!({"message": "hi", "tags": [], "count": 1}))
        .await;
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
    let top = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    // Nested inside an unknown field, which is skipped, not parsed into a value.
    let inner = format!(
        r#"{{"message":"x","extra":{}{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );

    for nested in [top, inner] {
        let response = helpers::api(&state)
            .post("/api/v1/echo")
            .content_type("application/json")
            .body(nested)
            .send()
            .await;

        response.assert_status(StatusCode::BAD_REQUEST);
        let problem = helpers::problem(response).await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("recursion limit"),
            "{problem}"
        );
    }
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
