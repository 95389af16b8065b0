//! Logging never blocks: the lines the log writer drops are counted where operators look.

use std::time::Duration;

use poem_api::telemetry::{self, QueueLimits, format, writer};

use crate::helpers;

#[tokio::test]
async fn log_lines_the_writer_drops_are_counted_on_the_admin_metrics() {
    // Arrange: a queue that holds nothing drops every line, into the process-wide counter.
    let state = helpers::state(&[]);
    let none = QueueLimits {
        max_lines: 0,
        max_bytes: 0,
    };
    let (queue, _guard) = writer::spawn(
        std::io::sink(),
        none,
        telemetry::dropped_lines().clone(),
        format::json_summary,
        Duration::from_secs(1),
    )
    .unwrap();
    let before = telemetry::dropped_lines().get();

    // Act
    for _ in 0..3 {
        queue.push(b"{\"message\":\"lost\"}\n");
    }
    let response = helpers::admin(&state).get("/metrics").send().await;

    // Assert
    response.assert_status_is_ok();
    let text = response.0.into_body().into_string().await.unwrap();
    let expected = format!("poem_api_log_lines_dropped_total {}\n", before + 3);
    assert!(text.contains(&expected), "{expected:?} not in\n{text}");
}

#[test]
fn the_readme_states_the_queue_bounds_and_the_line_cap_the_code_has() {
    // Arrange
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let limits = QueueLimits::default();

    // Act
    let queue = format!(
        "at most **{} lines or {} MiB**",
        limits.max_lines,
        limits.max_bytes / (1024 * 1024)
    );
    let cap = format!(
        "**No line is longer than {} KiB**",
        telemetry::MAX_LINE_BYTES / 1024
    );

    // Assert
    assert!(readme.contains(&queue), "{queue:?} is not in the README");
    assert!(readme.contains(&cap), "{cap:?} is not in the README");
}
