//! What every handler and the pipeline share: configuration, lifecycle, metrics, identity.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use tokio::sync::Semaphore;

use crate::{config::Config, lifecycle::Lifecycle, metrics::Metrics};

/// Version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Source revision, set at build time by the Nix build (`POEM_API_REVISION`); `unknown` in a
/// plain `cargo build`.
pub const REVISION: &str = match option_env!("POEM_API_REVISION") {
    Some(revision) => revision,
    None => "unknown",
};

/// Shared state, created once in `main` (or per test).
#[derive(Debug)]
pub struct AppState {
    /// The configuration the process started with.
    pub config: Config,
    /// Phase and readiness.
    pub lifecycle: Lifecycle,
    /// Every metric.
    pub metrics: Metrics,
    /// The machine's (or pod's) name, for `GET /`.
    pub hostname: String,
    /// One permit per stream that may be open (`POEM_API_MAX_STREAMS`).
    pub streams: Arc<Semaphore>,
    /// The JSON of `GET /`, made on first use: nothing in it changes while the process runs.
    pub info: OnceLock<Bytes>,
}

impl AppState {
    /// State for a process started with `config`.
    pub fn new(config: Config) -> Arc<Self> {
        Arc::new(Self {
            streams: Arc::new(Semaphore::new(config.max_streams as usize)),
            config,
            lifecycle: Lifecycle::default(),
            metrics: Metrics::new(VERSION, REVISION),
            hostname: hostname(),
            info: OnceLock::new(),
        })
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
