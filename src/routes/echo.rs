//! `POST /api/v1/echo`: a typed, validated JSON request answered with a typed JSON response.

use poem_openapi::{Object, OpenApi};
use serde::{
    Deserialize, Deserializer, Serialize,
    de::{DeserializeSeed, MapAccess, SeqAccess},
};

use super::Tag;
use crate::{
    error::{ApiError, FieldErrors},
    validation::{
        Checked, Element, Expect, Integer, Key, Seed, Skip, Slot, Text, TypedJson, ValidJson,
    },
};

const MESSAGE_CHARS: usize = 1024;
const TAGS: usize = 16;
const TAG_CHARS: usize = 64;
const COUNT: (i64, i64) = (1, 100);
const SOURCE_CHARS: usize = 64;
const PRIORITY: (i64, i64) = (0, 9);

// The constraints below document the schema; `Checked<EchoRequest>` enforces the same numbers
// (the constants above) while serde reads the body, and reports every violation at once.
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
#[derive(Debug, Clone, PartialEq, Object, Serialize)]
pub struct EchoMeta {
    /// Where the request comes from, at most 64 characters.
    #[oai(validator(max_length = 64), skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// 0 (lowest) to 9.
    #[oai(
        validator(minimum(value = "0"), maximum(value = "9")),
        skip_serializing_if_is_none
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
}

/// The echoed request, with defaults filled in.
#[derive(Debug, Clone, Object, Serialize)]
pub struct EchoResponse {
    /// The message, unchanged.
    pub message: String,
    /// The tags, or an empty list.
    pub tags: Vec<String>,
    /// The count, 1 by default.
    pub count: i64,
    /// The details, if any were sent.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<EchoMeta>,
}

/// Field errors of an echo request, one slot per part, in the order the 422 lists them.
#[derive(Default)]
struct EchoErrors {
    message: Slot,
    tags: Slot,
    tag_items: Slot,
    count: Slot,
    meta: Slot,
    meta_source: Slot,
    meta_priority: Slot,
}

impl EchoErrors {
    fn finish(&mut self) -> Option<FieldErrors> {
        FieldErrors::from_slots([
            &mut self.message,
            &mut self.tags,
            &mut self.tag_items,
            &mut self.count,
            &mut self.meta,
            &mut self.meta_source,
            &mut self.meta_priority,
        ])
    }
}

/// The fields of [`EchoRequest`] a body may hold.
enum RequestKey {
    Message,
    Tags,
    Count,
    Meta,
}

fn request_key(key: &str) -> Option<RequestKey> {
    Some(match key {
        "message" => RequestKey::Message,
        "tags" => RequestKey::Tags,
        "count" => RequestKey::Count,
        "meta" => RequestKey::Meta,
        _ => return None,
    })
}

/// The fields of [`EchoMeta`].
enum MetaKey {
    Source,
    Priority,
}

fn meta_key(key: &str) -> Option<MetaKey> {
    Some(match key {
        "source" => MetaKey::Source,
        "priority" => MetaKey::Priority,
        _ => return None,
    })
}

/// The whole body: an object, or the single error `body`.
struct Body;

impl<'de> Expect<'de> for Body {
    type Value = Checked<EchoRequest>;

    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut errors = EchoErrors::default();
        let (mut message, mut tags, mut count, mut meta) = (None, None, None, None);
        let mut has_message = false;
        // A repeated key clears what its earlier value noted: the last value counts.
        while let Some(key) = map.next_key_seed(Seed(Key(request_key)))? {
            match key {
                Some(RequestKey::Message) => {
                    errors.message.clear();
                    has_message = true;
                    message = map.next_value_seed(Seed(Text {
                        errors: &mut errors.message,
                        field: "message",
                        min: 1,
                        max: MESSAGE_CHARS,
                        keep: true,
                    }))?;
                }
                Some(RequestKey::Tags) => {
                    errors.tags.clear();
                    errors.tag_items.clear();
                    tags = map.next_value_seed(Seed(Tags {
                        length: &mut errors.tags,
                        items: &mut errors.tag_items,
                    }))?;
                }
                Some(RequestKey::Count) => {
                    errors.count.clear();
                    count = map.next_value_seed(Seed(Integer {
                        errors: &mut errors.count,
                        field: "count",
                        min: COUNT.0,
                        max: COUNT.1,
                    }))?;
                }
                Some(RequestKey::Meta) => {
                    errors.meta.clear();
                    errors.meta_source.clear();
                    errors.meta_priority.clear();
                    meta = map.next_value_seed(Seed(Meta {
                        meta: &mut errors.meta,
                        source: &mut errors.meta_source,
                        priority: &mut errors.meta_priority,
                    }))?;
                }
                _ => map.next_value_seed(Seed(Skip))?,
            }
        }
        if !has_message {
            errors.message.add("message", "is required");
        }
        Ok(Checked(match errors.finish() {
            Some(errors) => Err(errors),
            None => Ok(EchoRequest {
                message: message.unwrap_or_default(),
                tags,
                count,
                meta,
            }),
        }))
    }

    fn wrong(self) -> Self::Value {
        Checked(Err(FieldErrors::one("body", "must be a JSON object")))
    }
}

/// `tags`: an array of strings. Only the first [`TAGS`] are kept; the rest are checked and
/// counted, so a long array costs no memory.
struct Tags<'s> {
    length: &'s mut Slot,
    items: &'s mut Slot,
}

impl<'de> Expect<'de> for Tags<'_> {
    type Value = Option<Vec<String>>;

    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut tags = Vec::new();
        let mut len = 0;
        loop {
            let item = Text {
                errors: &mut *self.items,
                field: Element("tags", len),
                min: 0,
                max: TAG_CHARS,
                keep: len < TAGS,
            };
            let Some(tag) = seq.next_element_seed(Seed(item))? else {
                break;
            };
            tags.extend(tag);
            len += 1;
        }
        if len > TAGS {
            self.length.add(
                "tags",
                format_args!("must have at most {TAGS} items, has {len}"),
            );
        }
        Ok(Some(tags))
    }

    fn wrong(self) -> Self::Value {
        self.length.add("tags", "must be an array of strings");
        None
    }
}

/// `meta`: an object with optional `source` and `priority`.
struct Meta<'s> {
    meta: &'s mut Slot,
    source: &'s mut Slot,
    priority: &'s mut Slot,
}

impl<'de> Expect<'de> for Meta<'_> {
    type Value = Option<EchoMeta>;

    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut source, mut priority) = (None, None);
        while let Some(key) = map.next_key_seed(Seed(Key(meta_key)))? {
            match key {
                Some(MetaKey::Source) => {
                    self.source.clear();
                    source = map.next_value_seed(Seed(Text {
                        errors: &mut *self.source,
                        field: "meta.source",
                        min: 0,
                        max: SOURCE_CHARS,
                        keep: true,
                    }))?;
                }
                Some(MetaKey::Priority) => {
                    self.priority.clear();
                    priority = map.next_value_seed(Seed(Integer {
                        errors: &mut *self.priority,
                        field: "meta.priority",
                        min: PRIORITY.0,
                        max: PRIORITY.1,
                    }))?;
                }
                _ => map.next_value_seed(Seed(Skip))?,
            }
        }
        Ok(Some(EchoMeta { source, priority }))
    }

    fn wrong(self) -> Self::Value {
        self.meta.add("meta", "must be an object");
        None
    }
}

/// Reads the body in one pass: malformed JSON is a serde error (400), anything else gives the
/// request or its field errors.
impl<'de> Deserialize<'de> for Checked<EchoRequest> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Seed(Body).deserialize(deserializer)
    }
}

/// The echo resource.
pub struct EchoApi;

#[OpenApi(tag = "Tag::Echo")]
impl EchoApi {
    /// Echo a validated request
    ///
    /// Answers 422 listing the invalid fields (the first 32, with `error_count` for all), 400 for
    /// malformed JSON, 415 for another content type and 413 for a body over the limit.
    #[oai(path = "/api/v1/echo", method = "post", operation_id = "echo")]
    async fn echo(
        &self,
        body: ValidJson<EchoRequest>,
    ) -> Result<TypedJson<EchoResponse>, ApiError> {
        let EchoRequest {
            message,
            tags,
            count,
            meta,
        } = body.0;
        Ok(TypedJson(EchoResponse {
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
    use crate::validation::read;

    fn check(body: &str) -> Result<EchoRequest, FieldErrors> {
        read::<EchoRequest>(body.as_bytes()).expect("valid JSON").0
    }

    fn invalid(body: serde_json::Value) -> FieldErrors {
        check(&body.to_string()).unwrap_err()
    }

    fn fields(body: serde_json::Value) -> Vec<String> {
        invalid(body).listed.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_minimal_request_is_valid() {
        let request = check(r#"{"message": "hi"}"#).unwrap();
        assert_eq!(request.message, "hi");
        assert_eq!(request.count, None);
    }

    #[test]
    fn a_full_request_is_read_into_its_fields() {
        let request = check(
            r#"{"message": "hi\n", "tags": ["a", ""], "count": 100,
                "meta": {"source": "cli", "priority": 0}}"#,
        )
        .unwrap();

        assert_eq!(
            request,
            EchoRequest {
                message: "hi\n".into(),
                tags: Some(vec!["a".into(), "".into()]),
                count: Some(100),
                meta: Some(EchoMeta {
                    source: Some("cli".into()),
                    priority: Some(0),
                }),
            }
        );
    }

    #[test]
    fn every_invalid_field_is_listed_with_its_message() {
        let mut tags: Vec<String> = (0..17).map(|i| i.to_string()).collect();
        tags[3] = "x".repeat(65);

        let errors = invalid(json!({
            "message": "",
            "tags": tags,
            "count": 0,
            "meta": {"source": 5, "priority": 10}
        }));

        let got: Vec<(&str, &str)> = errors
            .listed
            .iter()
            .map(|e| (e.field.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("message", "must be 1 to 1024 characters long, is 0"),
                ("tags", "must have at most 16 items, has 17"),
                ("tags[3]", "must be 0 to 64 characters long, is 65"),
                ("count", "must be an integer from 1 to 100"),
                ("meta.source", "must be a string"),
                ("meta.priority", "must be an integer from 0 to 9"),
            ]
        );
        assert_eq!(errors.count, 6);
    }

    #[test]
    fn errors_are_listed_in_field_order_whatever_the_key_order() {
        let body = r#"{"meta": {"priority": 10, "source": 5}, "count": 0, "tags": [1],
                       "message": ""}"#;

        let fields: Vec<String> = check(body)
            .unwrap_err()
            .listed
            .into_iter()
            .map(|e| e.field)
            .collect();

        assert_eq!(
            fields,
            [
                "message",
                "tags[0]",
                "count",
                "meta.source",
                "meta.priority"
            ]
        );
    }

    #[test]
    fn a_missing_message_and_wrong_types_are_reported() {
        assert_eq!(
            fields(json!({"count": "three", "tags": "a", "meta": []})),
            ["message", "tags", "count", "meta"]
        );
        let errors = invalid(json!({}));
        assert_eq!(errors.listed[0].message, "is required");
    }

    #[test]
    fn a_body_that_is_not_an_object_is_one_error() {
        for body in ["[1, 2]", "\"hi\"", "3", "null", "[[[]]]"] {
            let errors = check(body).unwrap_err();
            assert_eq!(
                errors,
                FieldErrors::one("body", "must be a JSON object"),
                "{body}"
            );
        }
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
        assert!(check(&json!({ "message": message }).to_string()).is_ok());
        let tag = "é".repeat(TAG_CHARS + 1);
        assert_eq!(
            invalid(json!({"message": "x", "tags": [tag]})).listed[0].message,
            "must be 0 to 64 characters long, is 65"
        );
    }

    #[test]
    fn unknown_fields_are_ignored_at_any_depth() {
        let request = check(
            r#"{"extra": {"a": [1, {"b": null}]}, "message": "hi",
                "meta": {"other": [true], "priority": 1}}"#,
        )
        .unwrap();

        assert_eq!(request.message, "hi");
        assert_eq!(request.meta.unwrap().priority, Some(1));
    }

    #[test]
    fn a_repeated_key_counts_with_its_last_value() {
        let request = check(r#"{"message": "", "count": 0, "message": "hi", "count": 2}"#);
        assert_eq!(request.unwrap().count, Some(2));

        let fields: Vec<String> = check(r#"{"message": "hi", "message": ""}"#)
            .unwrap_err()
            .listed
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["message"]);
        assert!(check(r#"{"message": "x", "meta": {"priority": 10, "priority": 1}}"#).is_ok());
    }

    #[test]
    fn at_most_32_errors_are_listed_and_all_are_counted() {
        let tags = vec![1; 1000];

        let errors = invalid(json!({"message": "", "tags": tags, "count": 0}));

        // message, tags (length), 1000 × tags[i], count.
        assert_eq!(errors.count, 1003);
        assert_eq!(errors.listed.len(), FieldErrors::LISTED);
        assert_eq!(errors.listed[0].field, "message");
        assert_eq!(errors.listed[1].field, "tags");
        assert_eq!(errors.listed[2].field, "tags[0]");
        assert_eq!(errors.listed[31].field, "tags[29]");
        assert_eq!(errors.listed[31].message, "must be a string");
    }

    #[test]
    fn a_long_list_of_valid_tags_is_one_error() {
        let tags = vec!["a"; 5000];

        let errors = invalid(json!({"message": "x", "tags": tags}));

        assert_eq!(
            errors,
            FieldErrors::one("tags", "must have at most 16 items, has 5000")
        );
    }

    #[test]
    fn malformed_json_is_a_serde_error_not_a_field_error() {
        let deep_tags = format!(
            r#"{{"message": "x", "tags": {}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let deep_meta = format!(
            r#"{{"message": "x", "meta": {}{}}}"#,
            "[".repeat(20_000),
            "]".repeat(20_000)
        );
        let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
        for body in [
            r#"{"message": "unterminated"#,
            r#"{"message": "hi"} trailing"#,
            r#"{"message": "hi",}"#,
            "",
            &deep_tags,
            &deep_meta,
            &deep,
        ] {
            assert!(read::<EchoRequest>(body.as_bytes()).is_err(), "{body:.40}");
        }
        assert!(read::<EchoRequest>(b"{\"message\": \"\xff\"}").is_err());
    }

    #[test]
    fn the_response_serializes_as_poem_openapi_would() {
        use poem_openapi::types::ToJSON;
        let full = EchoResponse {
            message: "hi \"there\"".into(),
            tags: vec!["a".into(), "é".into()],
            count: 7,
            meta: Some(EchoMeta {
                source: Some("cli".into()),
                priority: Some(3),
            }),
        };
        let partial = EchoResponse {
            meta: Some(EchoMeta {
                source: None,
                priority: Some(3),
            }),
            ..full.clone()
        };
        let bare = EchoResponse {
            meta: None,
            ..full.clone()
        };

        for response in [full, partial, bare.clone()] {
            let by_serde = serde_json::to_string(&response).unwrap();
            let by_poem_openapi = serde_json::to_string(&response.to_json()).unwrap();
            assert_eq!(by_serde, by_poem_openapi);
        }
        assert_eq!(
            serde_json::to_string(&bare).unwrap(),
            r#"{"message":"hi \"there\"","tags":["a","é"],"count":7}"#
        );
    }
}
