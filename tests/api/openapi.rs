use std::path::Path;

use crate::helpers;

/// The checked-in document: API changes show up in review. `UPDATE_SNAPSHOTS=1 cargo test`
/// rewrites it.
const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");

async fn document() -> String {
    let state = helpers::state(&[]);
    let response = helpers::api(&state).get("/openapi.json").send().await;
    response.assert_status_is_ok();
    response.0.into_body().into_string().await.unwrap()
}

#[tokio::test]
async fn the_openapi_document_is_valid_openapi_3() {
    let text = document().await;

    let spec: openapiv3::OpenAPI = serde_json::from_str(&text).expect("an OpenAPI 3 document");

    assert!(spec.openapi.starts_with("3."));
    for path in [
        "/",
        "/api/v1/echo",
        "/api/v1/delay/{ms}",
        "/api/v1/status/{code}",
        "/api/v1/headers",
        "/api/v1/stream",
    ] {
        assert!(
            spec.paths.paths.contains_key(path),
            "{path} is not documented"
        );
    }
}

#[tokio::test]
async fn the_openapi_document_matches_the_checked_in_snapshot() {
    let text = document().await;

    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(SNAPSHOT, format!("{text}\n")).unwrap();
    }
    let snapshot =
        std::fs::read_to_string(Path::new(SNAPSHOT)).expect("openapi.json is checked in");

    let first_difference = snapshot
        .lines()
        .zip(text.lines())
        .enumerate()
        .find(|(_, (a, b))| a != b);
    assert!(
        snapshot.trim_end() == text.trim_end(),
        "the API changed (first difference: {first_difference:?}); review it, then run \
         UPDATE_SNAPSHOTS=1 cargo test"
    );
}

#[tokio::test]
async fn swagger_ui_is_served_at_docs() {
    let state = helpers::state(&[]);

    let response = helpers::api(&state).get("/docs").send().await;

    response.assert_status_is_ok();
    let html = response.0.into_body().into_string().await.unwrap();
    assert!(html.contains("swagger"), "{html}");
}

#[tokio::test]
async fn the_document_states_the_configured_maximum_delay() {
    let state = helpers::state(&["--max-delay", "2s"]);

    let response = helpers::api(&state).get("/openapi.json").send().await;

    let spec: serde_json::Value =
        serde_json::from_str(&response.0.into_body().into_string().await.unwrap()).unwrap();
    let ms = &spec["paths"]["/api/v1/delay/{ms}"]["get"]["parameters"][0];
    assert_eq!(ms["schema"]["maximum"], 2000, "{ms}");
}
