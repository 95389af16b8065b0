//! `GET /`, `POST /api/v1/echo` and `GET /healthz` on plain poem: the same answers as poem-api
//! (the echo is parsed into typed structs and serialised back), without anything poem-api adds.
//! Listens on 127.0.0.1:`BARE_POEM_PORT` (default 9291).

use std::sync::LazyLock;

use poem::{Route, Server, get, handler, listener::TcpListener, post, web::Json};
use serde::{Deserialize, Serialize};

/// Read once: no per-request work beyond what poem-api's own `GET /` does.
static HOSTNAME: LazyLock<String> = LazyLock::new(|| {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
});

#[derive(Serialize)]
struct Info {
    name: &'static str,
    version: &'static str,
    revision: &'static str,
    hostname: String,
    message: &'static str,
}

#[derive(Deserialize, Serialize)]
struct Meta {
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<i64>,
}

#[derive(Deserialize)]
struct EchoRequest {
    message: String,
    tags: Option<Vec<String>>,
    count: Option<i64>,
    meta: Option<Meta>,
}

#[derive(Serialize)]
struct EchoResponse {
    message: String,
    tags: Vec<String>,
    count: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<Meta>,
}

#[handler]
fn info() -> Json<Info> {
    Json(Info {
        name: "bare-poem",
        version: env!("CARGO_PKG_VERSION"),
        revision: "unknown",
        hostname: HOSTNAME.clone(),
        message: "greetings from bare poem",
    })
}

#[handler]
fn echo(Json(req): Json<EchoRequest>) -> Json<EchoResponse> {
    Json(EchoResponse {
        message: req.message,
        tags: req.tags.unwrap_or_default(),
        count: req.count.unwrap_or(1),
        meta: req.meta,
    })
}

#[handler]
fn healthz() -> &'static str {
    "ok"
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = std::env::var("BARE_POEM_PORT").unwrap_or_else(|_| "9291".into());
    let app = Route::new()
        .at("/", get(info))
        .at("/api/v1/echo", post(echo))
        .at("/healthz", get(healthz));
    Server::new(TcpListener::bind(format!("127.0.0.1:{port}")))
        .run(app)
        .await
}
