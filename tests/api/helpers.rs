//! Shared setup: state from flags, in-process clients, and servers on real sockets.

use std::{
    net::SocketAddr,
    sync::{Arc, LazyLock},
    time::Duration,
};

use poem::{Endpoint, test::TestClient};
use poem_api::{
    config::Config,
    routes,
    server::{self, Limits},
    state::AppState,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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

/// An in-process client of the API listener.
pub fn api(state: &Arc<AppState>) -> TestClient<impl Endpoint> {
    TestClient::new(routes::api(state.clone()))
}

/// An in-process client of the admin listener.
pub fn admin(state: &Arc<AppState>) -> TestClient<impl Endpoint> {
    TestClient::new(routes::admin(state.clone()))
}

/// A server on a real socket, stopped when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub stopping: CancellationToken,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stopping.cancel();
    }
}

/// Serves the API, configured with `flags`, on 127.0.0.1 and a port the OS picks.
pub async fn spawn_api(flags: &[&str]) -> TestServer {
    let state = state(flags);
    spawn(routes::api(state.clone()), state).await
}

/// Serves `endpoint` with the connection limits of `state`'s configuration.
pub async fn spawn(
    endpoint: poem::endpoint::BoxEndpoint<'static, poem::Response>,
    state: Arc<AppState>,
) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a port");
    let addr = listener.local_addr().unwrap();
    let config = &state.config;
    let limits = Limits::from_config(config);
    let stopping = state.lifecycle.stopping_token();
    tokio::spawn(server::serve(
        listener,
        endpoint,
        limits,
        stopping.clone(),
        state.metrics.connections("api"),
    ));
    TestServer { addr, stopping }
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
