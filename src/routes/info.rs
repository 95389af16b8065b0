//! `GET /`: who is answering.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::{Object, OpenApi};

use super::Tag;
use crate::{
    error::ApiError,
    state::{AppState, REVISION, VERSION},
    validation::PreparedJson,
};

/// Service information.
#[derive(Debug, Object, serde::Serialize)]
pub struct Info {
    /// Service name.
    pub name: String,
    /// Version of the build.
    pub version: String,
    /// Source revision of the build.
    pub revision: String,
    /// Host (or pod) name.
    pub hostname: String,
    /// The configured message (`POEM_API_MESSAGE`).
    pub message: String,
}

/// The info resource.
pub struct InfoApi;

#[OpenApi(tag = "Tag::Info")]
impl InfoApi {
    /// Service information
    #[oai(path = "/", method = "get", operation_id = "info")]
    async fn info(&self, state: Data<&Arc<AppState>>) -> Result<PreparedJson<Info>, ApiError> {
        // Nothing in it changes while the process runs: serialized once, sent as shared bytes.
        let body = state.info.get_or_init(|| {
            PreparedJson::new(&Info {
                name: env!("CARGO_PKG_NAME").into(),
                version: VERSION.into(),
                revision: REVISION.into(),
                hostname: state.hostname.clone(),
                message: state.config.message.clone(),
            })
            .into_bytes()
        });
        Ok(PreparedJson::from_bytes(body.clone()))
    }
}
