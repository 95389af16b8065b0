//! `GET /`: who is answering.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::{Object, OpenApi, payload::Json};

use super::Tag;
use crate::{
    error::ApiError,
    state::{AppState, REVISION, VERSION},
};

/// Service information.
#[derive(Debug, Object)]
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
    async fn info(&self, state: Data<&Arc<AppState>>) -> Result<Json<Info>, ApiError> {
        Ok(Json(Info {
            name: env!("CARGO_PKG_NAME").into(),
            version: VERSION.into(),
            revision: REVISION.into(),
            hostname: state.hostname.clone(),
            message: state.config.message.clone(),
        }))
    }
}
