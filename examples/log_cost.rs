//! Emits `N` (default 10,000) access-log events as the middleware does, through the telemetry
//! `main` installs, for counting their cost with callgrind (README, "Logging"):
//!
//! ```text
//! CARGO_PROFILE_RELEASE_STRIP=false cargo build --release --example log_cost
//! N=10000 valgrind --tool=callgrind --separate-threads=yes \
//!   --toggle-collect='log_cost::emit_access_events' target/release/examples/log_cost >/dev/null
//! ```
//!
//! (unstripped, so that callgrind finds the function by name), and the same with `N=20000`:
//! the difference of the `summary:` totals of the two `callgrind.out.<pid>-01` files (thread 1),
//! over 10,000, is what one event costs the thread that logs it.

use std::sync::Arc;

use poem::http::Method;
use poem_api::{config::Config, telemetry};

fn main() {
    let config = Config::from_args(["poem-api", "--log-format", "json"]).expect("valid arguments");
    let _guard = telemetry::init(&config).expect("telemetry starts");
    let n = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    emit_access_events(n);
}

/// The fields and types of the access-log event in `middleware::observe`.
#[inline(never)]
fn emit_access_events(n: u64) {
    let method = Method::GET;
    let route: Arc<str> = Arc::from("/");
    let request_id = String::from("8719a546-218c-4fe9-a632-178c855544dc");
    let listener = "api";
    for i in 0..n {
        let status: u16 = 200;
        let latency_ms = 0.049 + (i % 7) as f64 * 0.001;
        tracing::info!(target: "access", listener, method = %method, route = %route,
            path = "/", status, latency_ms, request_id = %request_id, "request");
    }
}
