//! The API's one error type and its RFC 9457 `application/problem+json` rendering. Every error
//! the service answers — validation, 404, 405, limits, timeouts, panics — takes this shape.

use poem::{IntoResponse, Response, error::ResponseError, http::StatusCode};
use poem_openapi::{
    ApiResponse, Object,
    registry::{MetaMediaType, MetaResponse, MetaResponses, Registry},
    types::Type,
};

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem details body.
#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct Problem {
    /// A URI naming the problem type; `about:blank` means "see the status code".
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the problem type.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// What went wrong with this request, safe to show a client.
    pub detail: String,
    /// The request path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The request id, also in the `x-request-id` response header; quote it to find the logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The trace id (W3C Trace Context) of this request, when traces are exported; the
    /// request's own if it carried a `traceparent`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The invalid fields, for 422: at most the first 32, in the request type's field order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// How many fields are invalid in all, for 422 (`errors` lists at most 32 of them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_count: Option<usize>,
}

/// One invalid field of a request body.
#[derive(Debug, Clone, PartialEq, Eq, Object, serde::Serialize)]
pub struct FieldError {
    /// Path of the field, like `tags[2]` or `meta.priority`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// The invalid fields of a request: the first [`FieldErrors::LISTED`] in the request type's
/// field order, and how many there are in all. The cap bounds the 422 body and the work of
/// building it, whatever the request holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldErrors {
    /// The first invalid fields, at most [`FieldErrors::LISTED`].
    pub listed: Vec<FieldError>,
    /// How many fields are invalid, listed or not.
    pub count: usize,
}

impl FieldErrors {
    /// Most field errors one 422 lists.
    pub const LISTED: usize = 32;

    /// A single invalid field.
    pub fn one(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            listed: vec![FieldError {
                field: field.into(),
                message: message.into(),
            }],
            count: 1,
        }
    }

    fn detail(&self) -> String {
        if self.count > self.listed.len() {
            format!(
                "{} invalid fields; the first {} are listed",
                self.count,
                self.listed.len()
            )
        } else {
            format!("{} invalid field(s)", self.count)
        }
    }
}

/// An error a handler returns. Client errors say what was wrong; internal errors are logged
/// with their cause and answered with an opaque 500.
#[derive(Debug, Clone)]
pub enum ApiError {
    /// `400 Bad Request`: the request cannot be parsed.
    BadRequest(String),
    /// `413 Payload Too Large`.
    PayloadTooLarge(usize),
    /// `415 Unsupported Media Type`.
    UnsupportedMediaType(String),
    /// `422 Unprocessable Content`: parsed, but these fields are invalid.
    Invalid(FieldErrors),
    /// `500 Internal Server Error` injected on purpose (`POEM_API_FAULT_ERROR_RATE`).
    InjectedFault,
    /// `503 Service Unavailable`: the request did not finish within the request timeout.
    Timeout,
    /// `503 Service Unavailable` with `Retry-After`: the in-flight limit is reached.
    Overloaded,
    /// `503 Service Unavailable` with `Retry-After`: `POEM_API_MAX_STREAMS` streams are open.
    TooManyStreams,
    /// `503 Service Unavailable`: readiness fails, for the reason given.
    NotReady(&'static str),
    /// `501 Not Implemented`: a protocol feature this server does not support.
    NotImplemented(&'static str),
    /// Any status a client asked for with `/api/v1/status/{code}`.
    Requested(StatusCode),
}

impl ApiError {
    /// Seconds a shed client should wait before retrying.
    pub const RETRY_AFTER_SECONDS: u32 = 1;

    /// Whether the answer tells the client when to retry.
    fn retry_after(&self) -> bool {
        matches!(self, Self::Overloaded | Self::TooManyStreams)
    }

    fn detail(&self) -> String {
        match self {
            Self::BadRequest(detail) => detail.clone(),
            Self::PayloadTooLarge(limit) => {
                format!("the request body exceeds the limit of {limit} bytes")
            }
            Self::UnsupportedMediaType(got) => {
                format!("expected content type application/json, got {got}")
            }
            Self::Invalid(errors) => errors.detail(),
            Self::InjectedFault => "a fault was injected on purpose (fault injection is on)".into(),
            Self::Timeout => "the request did not complete within the request timeout".into(),
            Self::Overloaded => "too many requests in flight; retry later".into(),
            Self::TooManyStreams => "too many streams open; retry later".into(),
            Self::NotReady(why) => format!("not ready: {why}"),
            Self::NotImplemented(what) => (*what).into(),
            Self::Requested(status) => format!("status {} was requested", status.as_u16()),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail())
    }
}

impl std::error::Error for ApiError {}

impl ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::InjectedFault => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Timeout | Self::Overloaded | Self::TooManyStreams | Self::NotReady(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Self::Requested(status) => *status,
        }
    }

    fn as_response(&self) -> Response {
        let mut problem = Problem::new(self.status(), self.detail());
        problem.set_field_errors(self);
        let mut response = problem.into_response();
        if self.retry_after() {
            response
                .headers_mut()
                .insert("retry-after", Self::RETRY_AFTER_SECONDS.into());
        }
        response
    }
}

impl Problem {
    /// A problem with the status's own title.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: detail.into(),
            instance: None,
            request_id: None,
            trace_id: None,
            errors: None,
            error_count: None,
        }
    }

    /// `errors` and `error_count` of a 422.
    fn set_field_errors(&mut self, err: &ApiError) {
        if let ApiError::Invalid(errors) = err {
            self.errors = Some(errors.listed.clone());
            self.error_count = Some(errors.count);
        }
    }

    /// The problem for any error a handler or poem itself produced. Client errors (4xx) keep
    /// their message; server errors get a generic one, their cause goes only to the log.
    pub fn from_error(err: &poem::Error) -> Self {
        let status = err.status();
        if let Some(api) = err.downcast_ref::<ApiError>() {
            let mut problem = Self::new(status, api.detail());
            problem.set_field_errors(api);
            return problem;
        }
        let detail = match status.as_u16() {
            404 => "no route matches this path".to_owned(),
            405 => "this route does not allow this method".to_owned(),
            400..=499 => err.to_string(),
            _ => "the server could not complete the request; the log has the cause".to_owned(),
        };
        Self::new(status, detail)
    }
}

/// The problem+json response for any error, with the request's path and id.
pub fn error_response(
    err: &poem::Error,
    instance: &str,
    request_id: &str,
    trace_id: Option<&str>,
) -> Response {
    let mut problem = Problem::from_error(err);
    problem.instance = Some(instance.to_owned());
    problem.request_id = Some(request_id.to_owned());
    problem.trace_id = trace_id.map(str::to_owned);
    let mut response = problem.into_response();
    if err
        .downcast_ref::<ApiError>()
        .is_some_and(ApiError::retry_after)
    {
        response
            .headers_mut()
            .insert("retry-after", ApiError::RETRY_AFTER_SECONDS.into());
    }
    response
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).expect("a Problem always serializes");
        Response::builder()
            .status(status)
            .content_type(PROBLEM_JSON)
            .body(body)
    }
}

/// Every operation documents the problems it can answer with. Limits, timeouts, load shedding
/// and fault injection are applied to every API route, so these apply everywhere.
impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        let problem = |status: u16, description: &'static str| MetaResponse {
            description,
            status: Some(status),
            status_range: None,
            content: vec![MetaMediaType {
                content_type: PROBLEM_JSON,
                schema: Problem::schema_ref(),
            }],
            headers: vec![],
        };
        MetaResponses {
            responses: vec![
                problem(400, "The request cannot be parsed"),
                problem(413, "The request body is too large"),
                problem(415, "The request body is not JSON"),
                problem(
                    422,
                    "The request body has invalid fields: the first 32 listed, all counted",
                ),
                problem(500, "Internal error, or an injected fault"),
                problem(
                    503,
                    "Timed out, or shed by the in-flight limit (with Retry-After)",
                ),
            ],
        }
    }

    fn register(registry: &mut Registry) {
        Problem::register(registry);
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.as_response()
    }
}
