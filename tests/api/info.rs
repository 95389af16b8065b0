use poem::http::StatusCode;

use crate::helpers;

#[tokio::test]
async fn get_root_returns_the_service_info_with_the_configured_message() {
    // Arrange
    let state = helpers::state(&["--message", "hello from a test"]);

    // Act
    let response = helpers::api(&state).get("/").send().await;

    // Assert
    response.assert_status_is_ok();
    let json = response.json().await;
    let info = json.value().object();
    info.get("name").assert_string("poem-api");
    info.get("version").assert_string(env!("CARGO_PKG_VERSION"));
    info.get("message").assert_string("hello from a test");
    assert!(!info.get("hostname").string().is_empty());
    assert!(!info.get("revision").string().is_empty());
}

#[tokio::test]
async fn a_request_id_sent_by_the_client_is_returned_and_one_is_made_when_absent() {
    let state = helpers::state(&[]);
    let client = helpers::api(&state);

    let given = client
        .get("/")
        .header("x-request-id", "abc-123")
        .send()
        .await;
    let made = client.get("/").send().await;
    let rejected = client
        .get("/")
        .header("x-request-id", "has spaces in it")
        .send()
        .await;

    given.assert_header("x-request-id", "abc-123");
    let made = made
        .0
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(made.len(), 36, "a UUID: {made}");
    let replaced = rejected
        .0
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap();
    assert_ne!(replaced, "has spaces in it");
}

#[tokio::test]
async fn responses_ask_clients_to_close_the_connection_while_the_instance_drains() {
    let state = helpers::state(&[]);
    let client = helpers::api(&state);

    let before = client.get("/").send().await;
    state.lifecycle.start_draining();
    let draining = client.get("/").send().await;

    assert!(before.0.headers().get("connection").is_none());
    draining.assert_status(StatusCode::OK);
    draining.assert_header("connection", "close");
}

#[tokio::test]
async fn get_root_is_served_without_poems_router() {
    let state = helpers::state(&[]);
    let response = helpers::api(&state).get("/").send().await;
    response.assert_status_is_ok();
    assert!(response.0.data::<poem::PathPattern>().is_none());
}
