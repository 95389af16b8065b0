//! Shared setup: state from flags, in-process clients, and servers on real sockets.

use std::{
    net::SocketAddr,
    sync::{Arc, LazyLock},
    time::Duration,
};

use poem::{Endpoint, test::TestClient};
use poem_api::{config::Config, instance, routes, state::AppState};

/// Logs stay quiet unless `TEST_LOG` is set.
static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_test_writer()
            .try_init();
    }
});

/// State of a ready instance configured with `flags` (as on the command line).
pub fn state(flags: &[&str]) -> Arc<AppState> {
    LazyLock::force(&TRACING);
    let args = std::iter::once("poem-api").chain(flags.iter().copied());
    let state = AppState::new(Config::from_args(args).expect("valid test flags"));
    state.lifecycle.set_ready();
    state
}

/// An in-process client of `endpoint`; its requests carry a Host header, as HTTP/1.1 needs.
pub fn client<E: Endpoint>(endpoint: E) -> TestClient<E> {
    TestClient::new(endpoint).default_header("host", "localhost")
}

/// An in-process client of the API listener.
pub fn api(state: &Arc<AppState>) -> TestClient<impl Endpoint> {
    client(routes::api(state.clone()))
}

/// An in-process client of the admin listener.
pub fn admin(state: &Arc<AppState>) -> TestClient<impl Endpoint> {
    client(routes::admin(state.clone()))
}

/// An instance on real sockets, started as `main` starts it; stopped (SIGTERM) when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub state: Arc<AppState>,
    signals: tokio::sync::mpsc::UnboundedSender<i32>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.signals.send(libc_sigterm());
    }
}

fn libc_sigterm() -> i32 {
    15
}

/// Starts an instance configured with `flags` on 127.0.0.1, on ports the OS picks.
pub async fn spawn_api(flags: &[&str]) -> TestServer {
    LazyLock::force(&TRACING);
    let args = [
        "poem-api",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--admin-port",
        "0",
    ];
    let config = Config::from_args(args.iter().chain(flags)).expect("valid test flags");
    let instance = instance::start(config).expect("the instance starts");
    let (signals, receiver) = tokio::sync::mpsc::unbounded_channel();
    let server = TestServer {
        addr: instance.api_addr,
        admin_addr: instance.admin_addr,
        state: instance.state.clone(),
        signals,
    };
    tokio::spawn(instance.run(receiver));
    server
}

/// An HTTP client that gives up after a few seconds, so a broken server fails a test
/// instead of hanging it.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The body of a response that must be `application/problem+json`.
pub async fn problem(response: poem::test::TestResponse) -> serde_json::Value {
    response.assert_content_type("application/problem+json");
    serde_json::from_str(&response.0.into_body().into_string().await.unwrap()).unwrap()
}
