//! JSON bodies read straight into their typed structs and written straight from them with serde,
//! no `serde_json::Value` in between.
//!
//! A request body is checked as a whole: every invalid field is reported at once (422), where
//! poem-openapi's `Json<T>` stops at the first and answers 400. The check runs while serde reads
//! the body, so its cost follows the body's size, not the number of errors: past
//! [`FieldErrors::LISTED`] errors a field's error is only counted, never formatted or stored.

use std::{fmt, marker::PhantomData, sync::Arc};

use bytes::Bytes;

use poem::{IntoResponse, Request, RequestBody, Response, Result, error::ReadBodyError, web::Data};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ApiResponse, ExtractParamOptions,
    registry::{MetaMediaType, MetaRequest, MetaResponse, MetaResponses, Registry},
    types::Type,
};
use serde::{
    Deserialize, Deserializer, Serialize,
    de::{DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor},
};

use crate::{
    error::{ApiError, FieldError, FieldErrors},
    state::AppState,
};

/// A request body as read: the typed value, or its invalid fields. A request type `T` makes
/// itself a [`ValidJson`] body by implementing `Deserialize` for `Checked<T>`; that
/// implementation fails only for malformed JSON and notes every invalid field instead.
#[derive(Debug)]
pub struct Checked<T>(pub Result<T, FieldErrors>);

/// A body of type `T`: `415` unless JSON, `413` over the body limit, `400` if malformed,
/// `422` listing the invalid fields.
#[derive(Debug)]
pub struct ValidJson<T>(pub T);

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence
            .rsplit_once('+')
            .is_some_and(|(_, suffix)| suffix.eq_ignore_ascii_case("json"))
}

fn malformed(err: serde_json::Error) -> ApiError {
    ApiError::BadRequest(format!("the request body is not valid JSON: {err}"))
}

/// Reads `bytes` as one JSON document into `T`: `Err` for malformed JSON (including trailing
/// data and nesting deeper than serde_json's recursion limit of 128), `Ok(Checked)` otherwise.
pub fn read<T>(bytes: &[u8]) -> Result<Checked<T>, serde_json::Error>
where
    Checked<T>: DeserializeOwned,
{
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let checked = Checked::<T>::deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(checked)
}

impl<'a, T: Type> ApiExtractor<'a> for ValidJson<T>
where
    Checked<T>: DeserializeOwned,
{
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
        match read::<T>(&bytes).map_err(malformed)? {
            Checked(Ok(value)) => Ok(ValidJson(value)),
            Checked(Err(errors)) => Err(ApiError::Invalid(errors).into()),
        }
    }
}

/// A `200` JSON response serialized straight from `T` with serde. poem-openapi's `Json<T>`
/// converts `T` into a `serde_json::Value` first (`ToJSON`), then serializes that tree; this
/// documents the same schema and sends the same bytes without the tree. `T`'s serde attributes
/// must match its `Object` ones (names, skipped `None`s); the echo unit tests compare both
/// serializations.
#[derive(Debug)]
pub struct TypedJson<T>(pub T);

impl<T: Serialize + Send> IntoResponse for TypedJson<T> {
    fn into_response(self) -> Response {
        poem::web::Json(self.0).into_response()
    }
}

impl<T: Type> TypedJson<T> {
    fn meta_of() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "",
                status: Some(200),
                status_range: None,
                content: vec![MetaMediaType {
                    // What poem's `Json` sends, as poem-openapi's `Json` documents it.
                    content_type: "application/json; charset=utf-8",
                    schema: T::schema_ref(),
                }],
                headers: vec![],
            }],
        }
    }
}

impl<T: Type + Serialize + Send> ApiResponse for TypedJson<T> {
    fn meta() -> MetaResponses {
        Self::meta_of()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

/// A JSON answer of type `T` serialized once and sent as shared bytes: for answers that never
/// change, such as `GET /`. Documented as `T`, like [`TypedJson`].
#[derive(Debug)]
pub struct PreparedJson<T>(Bytes, PhantomData<fn() -> T>);

impl<T: Serialize> PreparedJson<T> {
    /// `value`'s JSON.
    pub fn new(value: &T) -> Self {
        let body = serde_json::to_vec(value).expect("a response type always serializes");
        Self(body.into(), PhantomData)
    }
}

impl<T> PreparedJson<T> {
    /// The serialized JSON.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// JSON serialized earlier by [`PreparedJson::new`] for the same `T`.
    pub fn from_bytes(body: Bytes) -> Self {
        Self(body, PhantomData)
    }
}

impl<T: Send> IntoResponse for PreparedJson<T> {
    fn into_response(self) -> Response {
        Response::builder()
            .content_type("application/json; charset=utf-8")
            .body(self.0)
    }
}

impl<T: Type + Send> ApiResponse for PreparedJson<T> {
    fn meta() -> MetaResponses {
        TypedJson::<T>::meta_of()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

/// The field errors of one part of a request, in the order found: the first
/// [`FieldErrors::LISTED`] kept, all counted. A request type keeps one slot per part whose errors
/// it lists together, so that the 422 lists them in field order whatever the key order of the
/// body, and a repeated key can forget what its earlier value produced.
#[derive(Debug, Default)]
pub struct Slot {
    kept: Vec<FieldError>,
    count: usize,
}

impl Slot {
    /// Notes that `field` is invalid. Formats nothing once the slot holds as many errors as a
    /// 422 lists.
    pub fn add(&mut self, field: impl fmt::Display, message: impl fmt::Display) {
        self.count += 1;
        if self.kept.len() < FieldErrors::LISTED {
            self.kept.push(FieldError {
                field: field.to_string(),
                message: message.to_string(),
            });
        }
    }

    /// Forgets every error noted: a key given twice counts with its last value, as serde_json
    /// does when it reads an object into a map.
    pub fn clear(&mut self) {
        self.kept.clear();
        self.count = 0;
    }

    /// Whether nothing was noted.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

impl FieldErrors {
    /// The errors of `slots`, in that order, as one list capped at [`FieldErrors::LISTED`];
    /// `None` if there are none.
    pub fn from_slots<'s>(slots: impl IntoIterator<Item = &'s mut Slot>) -> Option<Self> {
        let mut errors = Self {
            listed: Vec::new(),
            count: 0,
        };
        for slot in slots {
            errors.count += slot.count;
            let room = Self::LISTED - errors.listed.len();
            errors.listed.extend(slot.kept.drain(..).take(room));
        }
        (errors.count > 0).then_some(errors)
    }
}

/// What a value in one place of a request accepts. serde hands it exactly one JSON value;
/// every kind it does not accept ends in [`Expect::wrong`], after an array or object has been
/// read through (depth-limited like any value: see [`Skip`]).
pub trait Expect<'de>: Sized {
    /// What reading the value gives.
    type Value;

    /// A string (escapes resolved). Borrowed for the call only: copy what is kept.
    fn string(self, _value: &str) -> Self::Value {
        self.wrong()
    }

    /// An integer that fits `i64`. Larger integers and numbers with a fraction or exponent
    /// are `wrong`, as `serde_json::Value::as_i64` treats them.
    fn integer(self, _value: i64) -> Self::Value {
        self.wrong()
    }

    /// An array, read element by element.
    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element_seed(Seed(Skip))?.is_some() {}
        Ok(self.wrong())
    }

    /// An object, read entry by entry.
    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_key_seed(Seed(Skip))?.is_some() {
            map.next_value_seed(Seed(Skip))?;
        }
        Ok(self.wrong())
    }

    /// Any other value: `null`, a boolean, a non-integer number, or a kind not accepted.
    fn wrong(self) -> Self::Value;
}

/// An [`Expect`] as a serde seed: it reads one value of any kind (`deserialize_any`).
pub struct Seed<E>(pub E);

impl<'de, E: Expect<'de>> DeserializeSeed<'de> for Seed<E> {
    type Value = E::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<E::Value, D::Error> {
        deserializer.deserialize_any(AnyValue(self.0, PhantomData))
    }
}

struct AnyValue<'de, E>(E, PhantomData<&'de ()>);

impl<'de, E: Expect<'de>> Visitor<'de> for AnyValue<'de, E> {
    type Value = E::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<Er>(self, _: bool) -> Result<E::Value, Er> {
        Ok(self.0.wrong())
    }

    fn visit_i64<Er>(self, value: i64) -> Result<E::Value, Er> {
        Ok(self.0.integer(value))
    }

    fn visit_u64<Er>(self, value: u64) -> Result<E::Value, Er> {
        Ok(match i64::try_from(value) {
            Ok(value) => self.0.integer(value),
            Err(_) => self.0.wrong(),
        })
    }

    fn visit_f64<Er>(self, _: f64) -> Result<E::Value, Er> {
        Ok(self.0.wrong())
    }

    fn visit_str<Er>(self, value: &str) -> Result<E::Value, Er> {
        Ok(self.0.string(value))
    }

    fn visit_unit<Er>(self) -> Result<E::Value, Er> {
        Ok(self.0.wrong())
    }

    fn visit_none<Er>(self) -> Result<E::Value, Er> {
        Ok(self.0.wrong())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<E::Value, A::Error> {
        self.0.seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<E::Value, A::Error> {
        self.0.map(map)
    }
}

/// Reads a value and drops it: unknown fields, and the inside of a value of the wrong kind.
/// It goes through `deserialize_any`, not `IgnoredAny`, on purpose: serde_json skips an
/// `IgnoredAny` without its recursion limit, and a body nested deeper than 128 levels anywhere
/// stays a 400, as it was when bodies were parsed into a `Value` first.
pub struct Skip;

impl Expect<'_> for Skip {
    type Value = ();

    fn string(self, _: &str) {}

    fn integer(self, _: i64) {}

    fn wrong(self) {}
}

/// A string of `min..=max` characters (not bytes) at `field`; `None` if invalid (noted).
/// With `keep` false a valid string is checked but not copied (`None` too).
pub struct Text<'s, F> {
    /// Where an error goes.
    pub errors: &'s mut Slot,
    /// The field's path in errors.
    pub field: F,
    /// Fewest characters.
    pub min: usize,
    /// Most characters.
    pub max: usize,
    /// Whether a valid string is returned.
    pub keep: bool,
}

impl<F: fmt::Display> Expect<'_> for Text<'_, F> {
    type Value = Option<String>;

    fn string(self, value: &str) -> Option<String> {
        let (min, max) = (self.min, self.max);
        let chars = value.chars().count();
        if chars < min || chars > max {
            self.errors.add(
                self.field,
                format_args!("must be {min} to {max} characters long, is {chars}"),
            );
            None
        } else {
            self.keep.then(|| value.to_owned())
        }
    }

    fn wrong(self) -> Option<String> {
        self.errors.add(self.field, "must be a string");
        None
    }
}

/// An integer in `min..=max` at `field`; `None` if invalid (noted).
pub struct Integer<'s, F> {
    /// Where an error goes.
    pub errors: &'s mut Slot,
    /// The field's path in errors.
    pub field: F,
    /// Smallest value.
    pub min: i64,
    /// Largest value.
    pub max: i64,
}

impl<F: fmt::Display> Expect<'_> for Integer<'_, F> {
    type Value = Option<i64>;

    fn integer(self, value: i64) -> Option<i64> {
        if (self.min..=self.max).contains(&value) {
            Some(value)
        } else {
            self.wrong()
        }
    }

    fn wrong(self) -> Option<i64> {
        let (min, max) = (self.min, self.max);
        self.errors.add(
            self.field,
            format_args!("must be an integer from {min} to {max}"),
        );
        None
    }
}

/// An object key of a request type, matched against its field names without copying it;
/// `None` for a key the type does not have (ignored, like serde's default).
pub struct Key<K>(pub fn(&str) -> Option<K>);

impl<K> Expect<'_> for Key<K> {
    type Value = Option<K>;

    fn string(self, key: &str) -> Option<K> {
        (self.0)(key)
    }

    fn wrong(self) -> Option<K> {
        None
    }
}

/// The path of an array element, `name[index]`, formatted only if the error is listed.
#[derive(Debug, Clone, Copy)]
pub struct Element(pub &'static str, pub usize);

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}[{}]", self.0, self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types_are_recognised_with_parameters_and_suffixes() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/problem+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }

    #[test]
    fn a_slot_keeps_the_first_errors_and_counts_all() {
        let mut slot = Slot::default();
        for i in 0..100 {
            slot.add(Element("tags", i), "must be a string");
        }

        assert_eq!(slot.count, 100);
        assert_eq!(slot.kept.len(), FieldErrors::LISTED);
        assert_eq!(slot.kept[31].field, "tags[31]");
    }

    #[test]
    fn slots_are_listed_in_order_up_to_the_cap() {
        let (mut first, mut second, mut empty) = Default::default();
        Slot::add(&mut first, "a", "x");
        for i in 0..40 {
            Slot::add(&mut second, Element("b", i), "y");
        }

        let errors = FieldErrors::from_slots([&mut first, &mut empty, &mut second]).unwrap();

        assert_eq!(errors.count, 41);
        assert_eq!(errors.listed.len(), FieldErrors::LISTED);
        assert_eq!(errors.listed[0].field, "a");
        assert_eq!(errors.listed[1].field, "b[0]");
        assert_eq!(errors.listed[31].field, "b[30]");
        assert!(FieldErrors::from_slots([&mut Slot::default()]).is_none());
    }

    #[test]
    fn a_cleared_slot_forgets_its_errors() {
        let mut slot = Slot::default();
        slot.add("message", "must be a string");

        slot.clear();

        assert!(slot.is_empty());
        assert!(FieldErrors::from_slots([&mut slot]).is_none());
    }

    /// Reads `json` with `expect`, through serde_json as the extractor does.
    fn with<'a, E: Expect<'a>>(json: &'a str, expect: E) -> E::Value {
        let mut de = serde_json::Deserializer::from_str(json);
        let value = Seed(expect).deserialize(&mut de).unwrap();
        de.end().unwrap();
        value
    }

    fn text<'s>(errors: &'s mut Slot) -> Text<'s, &'static str> {
        Text {
            errors,
            field: "f",
            min: 1,
            max: 3,
            keep: true,
        }
    }

    #[test]
    fn text_checks_the_length_in_characters_and_the_kind() {
        let mut slot = Slot::default();

        assert_eq!(with(r#""ééé""#, text(&mut slot)), Some("ééé".to_owned()));
        assert_eq!(with(r#""\u00e9""#, text(&mut slot)), Some("é".to_owned()));
        assert!(slot.is_empty());
        assert_eq!(with(r#""""#, text(&mut slot)), None);
        assert_eq!(with(r#""abcd""#, text(&mut slot)), None);
        assert_eq!(with("null", text(&mut slot)), None);
        assert_eq!(with(r#"["a", {"b": 1}]"#, text(&mut slot)), None);

        let messages: Vec<&str> = slot.kept.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "must be 1 to 3 characters long, is 0",
                "must be 1 to 3 characters long, is 4",
                "must be a string",
                "must be a string"
            ]
        );
    }

    #[test]
    fn text_without_keep_checks_but_does_not_copy() {
        let mut slot = Slot::default();
        fn unkept(errors: &mut Slot) -> Text<'_, &'static str> {
            Text {
                keep: false,
                ..text(errors)
            }
        }

        assert_eq!(with(r#""abc""#, unkept(&mut slot)), None);
        assert!(slot.is_empty());
        assert_eq!(with(r#""abcd""#, unkept(&mut slot)), None);
        assert_eq!(slot.count, 1);
    }

    #[test]
    fn integer_accepts_only_integers_in_range() {
        let mut slot = Slot::default();
        fn integer(errors: &mut Slot) -> Integer<'_, &'static str> {
            Integer {
                errors,
                field: "n",
                min: 1,
                max: 100,
            }
        }

        assert_eq!(with("1", integer(&mut slot)), Some(1));
        assert_eq!(with("100", integer(&mut slot)), Some(100));
        assert!(slot.is_empty());
        for wrong in [
            "0",
            "101",
            "-5",
            "1.0",
            "1e2",
            "18446744073709551615",
            r#""3""#,
            "true",
            "null",
            "[]",
        ] {
            assert_eq!(with(wrong, integer(&mut slot)), None, "{wrong}");
        }
        assert_eq!(slot.count, 10);
        assert_eq!(slot.kept[0].message, "must be an integer from 1 to 100");
    }

    #[test]
    fn skipping_keeps_the_recursion_limit_of_serde_json() {
        let shallow = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
        let deep_in_object = format!(r#"{{"a": {}1{}}}"#, "[".repeat(200), "]".repeat(200));

        with(&shallow, Skip);
        for json in [&deep, &deep_in_object] {
            let mut de = serde_json::Deserializer::from_str(json);
            let err = Seed(Skip).deserialize(&mut de).unwrap_err();
            assert!(err.to_string().contains("recursion limit"), "{err}");
        }
    }
}
