use std::{sync::Arc, time::Duration};

use poem::{Route, get, handler, http::StatusCode};
use poem_api::routes;
use tokio::sync::Notify;

use crate::helpers;

#[tokio::test]
async fn an_unknown_path_is_a_404_problem() {
    let state = helpers::state(&[]);

    let response = helpers::api(&state).get("/no/such/thing").send().await;

    response.assert_status(StatusCode::NOT_FOUND);
    let problem = helpers::problem(response).await;
    assert_eq!(problem["status"], 404);
    assert_eq!(problem["instance"], "/no/such/thing");
}

#[tokio::test]
async fn a_wrong_method_is_a_405_problem() {
    let state = helpers::state(&[]);

    let response = helpers::api(&state).delete("/api/v1/echo").send().await;

    response.assert_status(StatusCode::METHOD_NOT_ALLOWED);
    response.assert_header("allow", "POST");
    helpers::problem(response).await;
}

#[handler]
fn panics() -> &'static str {
    panic!("secret internal detail")
}

#[tokio::test]
async fn a_panicking_handler_answers_a_500_problem_without_details_and_is_counted() {
    let state = helpers::state(&[]);
    let app = routes::with_api_layers(Route::new().at("/boom", get(panics)), state.clone());
    let client = helpers::client(app);

    let response = client.get("/boom").send().await;
    let after = client.get("/boom").send().await;

    response.assert_status(StatusCode::INTERNAL_SERVER_ERROR);
    let problem = helpers::problem(response).await;
    assert!(
        !problem.to_string().contains("secret"),
        "internals leak: {problem}"
    );
    after.assert_status(StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        state.metrics.render().contains("poem_api_panics_total 2"),
        "{}",
        state.metrics.render()
    );
}

#[tokio::test]
async fn a_request_over_the_request_timeout_is_a_503_problem() {
    #[handler]
    async fn slow() -> &'static str {
        tokio::time::sleep(Duration::from_secs(5)).await;
        "too late"
    }
    let state = helpers::state(&["--request-timeout", "50ms", "--max-delay", "10ms"]);
    let client = helpers::client(routes::with_api_layers(
        Route::new().at("/slow", get(slow)),
        state,
    ));

    let response = client.get("/slow").send().await;

    response.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    let problem = helpers::problem(response).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("timeout"),
        "{problem}"
    );
}

#[tokio::test]
async fn requests_over_the_in_flight_limit_are_shed_with_503_and_retry_after() {
    // Arrange: one request held inside its handler until released.
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (e, r) = (entered.clone(), release.clone());
    let held = poem::endpoint::make(move |_| {
        let (e, r) = (e.clone(), r.clone());
        async move {
            e.notify_one();
            r.notified().await;
            "done"
        }
    });
    let state = helpers::state(&["--max-in-flight", "1"]);
    let client = Arc::new(helpers::client(routes::with_api_layers(
        Route::new().at("/held", held),
        state.clone(),
    )));
    let first = tokio::spawn({
        let client = client.clone();
        async move { client.get("/held").send().await.0.status() }
    });
    entered.notified().await;

    // Act
    let shed = client.get("/held").send().await;
    release.notify_one();

    // Assert
    shed.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    shed.assert_header("retry-after", "1");
    assert_eq!(first.await.unwrap(), StatusCode::OK);
    assert!(
        state
            .metrics
            .render()
            .contains("http_requests_shed_total 1")
    );
}

#[tokio::test]
async fn an_error_rate_of_one_fails_every_api_operation_but_not_the_document() {
    let state = helpers::state(&["--fault-error-rate", "1"]);
    let client = helpers::api(&state);

    let info = client.get("/").send().await;
    let spec = client.get("/openapi.json").send().await;

    info.assert_status(StatusCode::INTERNAL_SERVER_ERROR);
    let problem = helpers::problem(info).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("injected"),
        "{problem}"
    );
    spec.assert_status_is_ok();
}

#[tokio::test]
async fn fault_injection_leaves_unknown_paths_and_methods_alone() {
    let state = helpers::state(&["--fault-error-rate", "1"]);
    let client = helpers::api(&state);

    let unknown = client.get("/api/v1/nope").send().await;
    let wrong_method = client.put("/").send().await;

    unknown.assert_status(StatusCode::NOT_FOUND);
    wrong_method.assert_status(StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn errors_made_before_routing_are_counted_under_their_route() {
    // Arrange: an injected fault and a body over the limit never reach the operation.
    let faulty = helpers::state(&["--fault-error-rate", "1"]);
    let strict = helpers::state(&["--body-limit", "1KiB"]);
    let big = serde_json::json!({ "message": "x".repeat(2000) });

    // Act
    let fault = helpers::api(&faulty).get("/api/v1/delay/5").send().await;
    let too_large = helpers::api(&strict)
        .post("/api/v1/echo")
        .body_json(&big)
        .send()
        .await;

    // Assert
    fault.assert_status(StatusCode::INTERNAL_SERVER_ERROR);
    too_large.assert_status(StatusCode::PAYLOAD_TOO_LARGE);
    let (faulty, strict) = (faulty.metrics.render(), strict.metrics.render());
    assert!(
        faulty.contains(r#"route="/api/v1/delay/{ms}",status="5xx"} 1"#),
        "{faulty}"
    );
    assert!(
        strict.contains(r#"route="/api/v1/echo",status="4xx"} 1"#),
        "{strict}"
    );
    assert!(!faulty.contains("unmatched") && !strict.contains("unmatched"));
}

#[tokio::test]
async fn a_panic_behind_the_admin_pipeline_is_contained_like_one_in_the_api() {
    use poem_api::app::{Listener, Pipeline, table::RouteTable};
    let state = helpers::state(&[]);
    let admin = Pipeline::new(
        Listener::Admin,
        state.clone(),
        Route::new().at("/boom", get(panics)),
        RouteTable::from_paths(&[("/boom", &[poem::http::Method::GET])]),
        Vec::new(),
    );

    let response = helpers::client(admin).get("/boom").send().await;

    response.assert_status(StatusCode::INTERNAL_SERVER_ERROR);
    let problem = helpers::problem(response).await;
    assert_eq!(problem["instance"], "/boom");
    assert!(state.metrics.render().contains("poem_api_panics_total 1"));
}

#[tokio::test]
async fn the_readiness_503_is_a_problem_with_its_instance_and_request_id() {
    let state = helpers::state(&[]);
    state.lifecycle.start_draining();

    let response = helpers::admin(&state)
        .get("/readyz")
        .header("x-request-id", "probe-1")
        .send()
        .await;

    response.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    let problem = helpers::problem(response).await;
    assert_eq!(problem["instance"], "/readyz");
    assert_eq!(problem["request_id"], "probe-1");
    assert_eq!(problem["detail"], "not ready: draining");
}

#[tokio::test]
async fn requests_http_1_1_forbids_are_refused_with_problems() {
    let state = helpers::state(&[]);
    let client = helpers::api(&state);

    let no_host = poem::test::TestClient::new(routes::api(state.clone()))
        .get("/")
        .send()
        .await;
    let gzip = client
        .post("/api/v1/echo")
        .header("transfer-encoding", "gzip, chunked")
        .content_type("application/json")
        .body("{}")
        .send()
        .await;
    let unauthorized = client.get("/api/v1/status/401").send().await;
    let reset = client.get("/api/v1/status/205").send().await;
    let docs_post = client.post("/docs").send().await;

    no_host.assert_status(StatusCode::BAD_REQUEST);
    gzip.assert_status(StatusCode::NOT_IMPLEMENTED);
    unauthorized.assert_header_exist("www-authenticate");
    reset.assert_status(StatusCode::RESET_CONTENT);
    assert!(reset.0.into_body().into_bytes().await.unwrap().is_empty());
    docs_post.assert_status(StatusCode::METHOD_NOT_ALLOWED);
    docs_post.assert_header("allow", "GET, HEAD");
}
