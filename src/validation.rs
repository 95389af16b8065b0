//! A JSON request body that is validated as a whole: every invalid field is reported at once
//! (422), where poem-openapi's `Json<T>` stops at the first and answers 400.

use std::sync::Arc;

use poem::{Request, RequestBody, Result, error::ReadBodyError, web::Data};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
    registry::{MetaMediaType, MetaRequest, Registry},
    types::Type,
};
use serde_json::Value;

use crate::{
    error::{ApiError, FieldError},
    state::AppState,
};

/// A request type that checks a parsed JSON document and lists every problem.
pub trait Validate: Type + Sized {
    /// The value, or every invalid field.
    fn validate(value: &Value) -> Result<Self, Vec<FieldError>>;
}

/// A body of type `T`: `415` unless JSON, `413` over the body limit, `400` if malformed,
/// `422` listing every invalid field.
#[derive(Debug)]
pub struct ValidJson<T>(pub T);

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence
            .rsplit_once('+')
            .is_some_and(|(_, suffix)| suffix.eq_ignore_ascii_case("json"))
}

impl<'a, T: Validate> ApiExtractor<'a> for ValidJson<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: "application/json",
                schema: T::schema_ref(),
            }],
            required: true,
        })
    }

    async fn from_request(
        req: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> Result<Self> {
        let content_type = req.content_type().unwrap_or("none");
        if !is_json(content_type) {
            return Err(ApiError::UnsupportedMediaType(content_type.to_owned()).into());
        }
        let Data(state) =
            <Data<&Arc<AppState>> as poem::FromRequest>::from_request(req, body).await?;
        let limit = state.config.body_limit;
        let bytes = body
            .take()?
            .into_bytes_limit(limit)
            .await
            .map_err(|err| match err {
                ReadBodyError::PayloadTooLarge => ApiError::PayloadTooLarge(limit),
                other => ApiError::BadRequest(format!("cannot read the request body: {other}")),
            })?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|err| {
            ApiError::BadRequest(format!("the request body is not valid JSON: {err}"))
        })?;
        T::validate(&value)
            .map(ValidJson)
            .map_err(|errors| ApiError::Invalid(errors).into())
    }
}

/// Collects field errors while walking a JSON document.
#[derive(Debug, Default)]
pub struct Errors(Vec<FieldError>);

impl Errors {
    /// Notes that `field` is invalid.
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// `value` if nothing was noted.
    pub fn finish<T>(self, value: impl FnOnce() -> T) -> Result<T, Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(value())
        } else {
            Err(self.0)
        }
    }

    /// A string of `min..=max` characters at `field`; `None` if absent, `None` (noted) if
    /// invalid. `null` is invalid: the schema does not make these fields nullable.
    pub fn string(
        &mut self,
        field: &str,
        value: Option<&Value>,
        min: usize,
        max: usize,
    ) -> Option<String> {
        match value {
            None => None,
            Some(Value::String(s)) => {
                let chars = s.chars().count();
                if chars < min || chars > max {
                    self.add(
                        field,
                        format!("must be {min} to {max} characters long, is {chars}"),
                    );
                    None
                } else {
                    Some(s.clone())
                }
            }
            Some(_) => {
                self.add(field, "must be a string");
                None
            }
        }
    }

    /// An integer in `min..=max` at `field`; `None` if absent, `None` (noted) if invalid.
    pub fn integer(
        &mut self,
        field: &str,
        value: Option<&Value>,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        match value {
            None => None,
            Some(v) => match v.as_i64() {
                Some(n) if (min..=max).contains(&n) => Some(n),
                _ => {
                    self.add(field, format!("must be an integer from {min} to {max}"));
                    None
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn json_content_types_are_recognised_with_parameters_and_suffixes() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/problem+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }
}
