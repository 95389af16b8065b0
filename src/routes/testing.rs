//! Endpoints for testing clients, meshes and alerts: a bounded delay, any status code, and the
//! request headers as the server saw them.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use poem::{http::StatusCode, web::Data};
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::Path,
    payload::Json,
    registry::{MetaMediaType, MetaResponse, MetaResponses, Registry},
    types::Type,
};

use super::Tag;
use crate::{
    error::{ApiError, PROBLEM_JSON, Problem},
    state::AppState,
};

/// The answer of a delay request.
#[derive(Debug, Object)]
pub struct Delayed {
    /// How long the server waited, in milliseconds.
    pub delay_ms: u64,
}

/// The answer of a status request below 400.
#[derive(Debug, Object)]
pub struct StatusEcho {
    /// The status code that was asked for.
    pub status: u16,
}

/// Any status code below 400, with a JSON body unless the status forbids one.
pub struct RequestedStatus(StatusCode);

impl poem::IntoResponse for RequestedStatus {
    fn into_response(self) -> poem::Response {
        let status = self.0;
        // RFC 9110 §15.3.5, §15.3.6, §15.4.5: these never have content.
        if matches!(
            status,
            StatusCode::NO_CONTENT | StatusCode::RESET_CONTENT | StatusCode::NOT_MODIFIED
        ) {
            return status.into_response();
        }
        let mut response = Json(StatusEcho {
            status: status.as_u16(),
        })
        .into_response();
        response.set_status(status);
        response
    }
}

impl ApiResponse for RequestedStatus {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "The requested status; a JSON body below 400 (none for 204, 205 and 304), \
                              problem+json from 400",
                status: None,
                status_range: None,
                content: vec![
                    MetaMediaType {
                        content_type: "application/json",
                        schema: StatusEcho::schema_ref(),
                    },
                    MetaMediaType {
                        content_type: PROBLEM_JSON,
                        schema: Problem::schema_ref(),
                    },
                ],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        StatusEcho::register(registry);
        Problem::register(registry);
    }
}

/// The testing resources.
pub struct TestingApi;

#[OpenApi(tag = "Tag::Testing")]
impl TestingApi {
    /// Answer after a delay
    ///
    /// Waits `ms` milliseconds, at most `POEM_API_MAX_DELAY`: a stand-in for I/O-bound work.
    #[oai(path = "/api/v1/delay/:ms", method = "get", operation_id = "delay")]
    async fn delay(
        &self,
        // The maximum is the configured one, added to the document by `routes::document`.
        #[oai(validator(minimum(value = "0")))] ms: Path<u64>,
        state: Data<&Arc<AppState>>,
    ) -> Result<Json<Delayed>, ApiError> {
        let max = state.config.max_delay.as_millis() as u64;
        if ms.0 > max {
            return Err(ApiError::BadRequest(format!(
                "ms must be at most {max}, got {}",
                ms.0
            )));
        }
        tokio::time::sleep(Duration::from_millis(ms.0)).await;
        Ok(Json(Delayed { delay_ms: ms.0 }))
    }

    /// Answer with a status code
    ///
    /// Any code from 200 to 599; from 400 the body is a problem document.
    #[oai(path = "/api/v1/status/:code", method = "get", operation_id = "status")]
    async fn status(
        &self,
        #[oai(validator(minimum(value = "200"), maximum(value = "599")))] code: Path<u16>,
    ) -> Result<RequestedStatus, ApiError> {
        // 1xx cannot be a final response; the validator answers 400 outside 200..=599.
        let status = StatusCode::from_u16(code.0).expect("200..=599 are valid status codes");
        if status.as_u16() >= 400 {
            return Err(ApiError::Requested(status));
        }
        Ok(RequestedStatus(status))
    }

    /// The request headers
    ///
    /// Every header as the server received it; repeated headers are joined with ", ".
    #[oai(path = "/api/v1/headers", method = "get", operation_id = "headers")]
    async fn headers(
        &self,
        req: &poem::Request,
    ) -> Result<Json<BTreeMap<String, String>>, ApiError> {
        let mut headers = BTreeMap::<String, String>::new();
        for (name, value) in req.headers() {
            let value = String::from_utf8_lossy(value.as_bytes());
            headers
                .entry(name.as_str().to_owned())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert_with(|| value.into_owned());
        }
        Ok(Json(headers))
    }
}
