//! `POST /api/v1/echo`: a typed, validated JSON request answered with a typed JSON response.

use poem_openapi::{Object, OpenApi, payload::Json};
use serde_json::Value;

use super::Tag;
use crate::{
    error::{ApiError, FieldError},
    validation::{Errors, ValidJson, Validate},
};

const MESSAGE_CHARS: usize = 1024;
const TAGS: usize = 16;
const TAG_CHARS: usize = 64;
const COUNT: (i64, i64) = (1, 100);
const SOURCE_CHARS: usize = 64;
const PRIORITY: (i64, i64) = (0, 9);

// The constraints below document the schema; `Validate` enforces the same numbers (the
// constants above) and reports every violation at once.
/// What to echo.
#[derive(Debug, Clone, PartialEq, Object)]
pub struct EchoRequest {
    /// The text to echo, 1 to 1024 characters.
    #[oai(validator(min_length = 1, max_length = 1024))]
    pub message: String,
    /// Up to 16 labels of at most 64 characters.
    #[oai(validator(max_items = 16, max_length = 64))]
    pub tags: Option<Vec<String>>,
    /// How many times the message is meant; 1 to 100, default 1.
    #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
    pub count: Option<i64>,
    /// Optional details.
    pub meta: Option<EchoMeta>,
}

/// Optional details of an echo request.
#[derive(Debug, Clone, PartialEq, Object)]
pub struct EchoMeta {
    /// Where the request comes from, at most 64 characters.
    #[oai(validator(max_length = 64), skip_serializing_if_is_none)]
    pub source: Option<String>,
    /// 0 (lowest) to 9.
    #[oai(
        validator(minimum(value = "0"), maximum(value = "9")),
        skip_serializing_if_is_none
    )]
    pub priority: Option<i64>,
}

/// The echoed request, with defaults filled in.
#[derive(Debug, Clone, Object)]
pub struct EchoResponse {
    /// The message, unchanged.
    pub message: String,
    /// The tags, or an empty list.
    pub tags: Vec<String>,
    /// The count, 1 by default.
    pub count: i64,
    /// The details, if any were sent.
    #[oai(skip_serializing_if_is_none)]
    pub meta: Option<EchoMeta>,
}

impl Validate for EchoRequest {
    fn validate(value: &Value) -> Result<Self, Vec<FieldError>> {
        let Some(object) = value.as_object() else {
            return Err(vec![FieldError {
                field: "body".into(),
                message: "must be a JSON object".into(),
            }]);
        };
        let mut errors = Errors::default();
        let message = match object.get("message") {
            None => {
                errors.add("message", "is required");
                None
            }
            present => errors.string("message", present, 1, MESSAGE_CHARS),
        };
        let tags = match object.get("tags") {
            None => None,
            Some(Value::Array(items)) => {
                if items.len() > TAGS {
                    errors.add(
                        "tags",
                        format!("must have at most {TAGS} items, has {}", items.len()),
                    );
                }
                let tags: Vec<String> = items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| {
                        errors.string(&format!("tags[{i}]"), Some(item), 0, TAG_CHARS)
                    })
                    .collect();
                Some(tags)
            }
            Some(_) => {
                errors.add("tags", "must be an array of strings");
                None
            }
        };
        let count = errors.integer("count", object.get("count"), COUNT.0, COUNT.1);
        let meta = match object.get("meta") {
            None => None,
            Some(Value::Object(meta)) => Some(EchoMeta {
                source: errors.string("meta.source", meta.get("source"), 0, SOURCE_CHARS),
                priority: errors.integer(
                    "meta.priority",
                    meta.get("priority"),
                    PRIORITY.0,
                    PRIORITY.1,
                ),
            }),
            Some(_) => {
                errors.add("meta", "must be an object");
                None
            }
        };
        errors.finish(|| EchoRequest {
            message: message.unwrap_or_default(),
            tags,
            count,
            meta,
        })
    }
}

/// The echo resource.
pub struct EchoApi;

#[OpenApi(tag = "Tag::Echo")]
impl EchoApi {
    /// Echo a validated request
    ///
    /// Answers 422 listing every invalid field, 400 for malformed JSON, 415 for another content
    /// type and 413 for a body over the limit.
    #[oai(path = "/api/v1/echo", method = "post", operation_id = "echo")]
    async fn echo(&self, body: ValidJson<EchoRequest>) -> Result<Json<EchoResponse>, ApiError> {
        let EchoRequest {
            message,
            tags,
            count,
            meta,
        } = body.0;
        Ok(Json(EchoResponse {
            message,
            tags: tags.unwrap_or_default(),
            count: count.unwrap_or(1),
            meta,
        }))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(value: Value) -> Vec<String> {
        EchoRequest::validate(&value)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn a_minimal_request_is_valid() {
        let request = EchoRequest::validate(&json!({"message": "hi"})).unwrap();
        assert_eq!(request.message, "hi");
        assert_eq!(request.count, None);
    }

    #[test]
    fn every_invalid_field_is_listed() {
        let too_many_tags: Vec<String> = (0..17).map(|i| i.to_string()).collect();
        let mut tags = too_many_tags.clone();
        tags[3] = "x".repeat(65);
        let got = fields(json!({
            "message": "",
            "tags": tags,
            "count": 0,
            "meta": {"source": 5, "priority": 10}
        }));
        assert_eq!(
            got,
            [
                "message",
                "tags",
                "tags[3]",
                "count",
                "meta.source",
                "meta.priority"
            ]
        );
    }

    #[test]
    fn a_missing_message_and_wrong_types_are_reported() {
        assert_eq!(
            fields(json!({"count": "three", "meta": []})),
            ["message", "count", "meta"]
        );
        assert_eq!(fields(json!([1, 2])), ["body"]);
    }

    #[test]
    fn null_is_not_a_value_of_an_optional_field() {
        let got = fields(
            json!({"message": null, "tags": null, "count": null, "meta": {"priority": null}}),
        );
        assert_eq!(got, ["message", "tags", "count", "meta.priority"]);
    }

    #[test]
    fn lengths_are_counted_in_characters_not_bytes() {
        let message = "é".repeat(MESSAGE_CHARS);
        assert!(EchoRequest::validate(&json!({ "message": message })).is_ok());
    }
}
