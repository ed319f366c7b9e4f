//! The parser's error vocabulary: the SPEC's dead-letter kinds, where in a record a problem
//! sits, what exactly is wrong, and the one-line reason each renders for the
//! `sessionflow-error` header. Small, `Copy` and allocation-free: made on the hot path.

use std::fmt;

/// The dead-letter kinds of SPEC section 1 (`sessionflow-error-kind`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    InvalidJson,
    InvalidShape,
    MissingField,
    WrongType,
    InvalidValue,
    TooLarge,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::InvalidJson,
        ErrorKind::InvalidShape,
        ErrorKind::MissingField,
        ErrorKind::WrongType,
        ErrorKind::InvalidValue,
        ErrorKind::TooLarge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidJson => "invalid_json",
            ErrorKind::InvalidShape => "invalid_shape",
            ErrorKind::MissingField => "missing_field",
            ErrorKind::WrongType => "wrong_type",
            ErrorKind::InvalidValue => "invalid_value",
            ErrorKind::TooLarge => "too_large",
        }
    }
}

/// The JSON type of a value, for error messages.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum JsonType {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

impl JsonType {
    pub(super) fn article_name(self) -> &'static str {
        match self {
            JsonType::Null => "null",
            JsonType::Bool => "a boolean",
            JsonType::Number => "a number",
            JsonType::String => "a string",
            JsonType::Array => "an array",
            JsonType::Object => "an object",
        }
    }
}

/// Where in the record a Session sits, so that errors name the field exactly.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// The record itself is the Session.
    Root,
    /// The `data` of a webhook envelope.
    WebhookData,
    /// Element `n` of a bare JSON array.
    Element(u32),
    /// Element `n` of a paginated list's `data` array.
    DataElement(u32),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Root => Ok(()),
            Place::WebhookData => f.write_str("data."),
            Place::Element(n) => write!(f, "[{n}]."),
            Place::DataElement(n) => write!(f, "data[{n}]."),
        }
    }
}

/// What exactly is wrong; with [`ParseError::place`] and the field name it renders the
/// one-line reason of the `sessionflow-error` header.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A Kafka message without a value (a tombstone).
    NoValue,
    /// simd-json rejected the bytes: what it expected, and near which byte.
    Json(&'static str, usize),
    RecordTooLarge {
        bytes: usize,
        limit: usize,
    },
    TooDeep {
        limit: usize,
    },
    /// The record is none of the shapes of SPEC section 1.
    UnknownShape(JsonType),
    /// An object without `object`, `id`+`status` or a `data` array.
    UnrecognisedObject,
    /// A list element, or a webhook's `data`, that is an object but not a Session.
    NotASession,
    Missing(&'static str),
    NotString(&'static str, JsonType),
    NotInteger(&'static str, JsonType),
    NotObject(&'static str, JsonType),
    EmptyString(&'static str),
    /// A string longer than SPEC section 1 allows (`id`, `status`), in bytes.
    TooLong {
        field: &'static str,
        bytes: usize,
        limit: usize,
    },
    Negative(&'static str, i64),
    Fraction(&'static str),
    OutOfRange(&'static str),
}

/// A classified reason why a record is invalid. Small and allocation-free: it is made on
/// the hot path for every bad record.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub kind: ErrorKind,
    pub place: Place,
    pub problem: Problem,
}

impl ParseError {
    pub(super) fn new(kind: ErrorKind, place: Place, problem: Problem) -> Self {
        ParseError {
            kind,
            place,
            problem,
        }
    }
}

impl ParseError {
    /// A Kafka message without a value: not a record of any shape.
    pub fn no_value() -> Self {
        ParseError::new(ErrorKind::InvalidShape, Place::Root, Problem::NoValue)
    }

    /// A record of `bytes` bytes, over the `limit`.
    pub fn too_large(bytes: usize, limit: usize) -> Self {
        ParseError::new(
            ErrorKind::TooLarge,
            Place::Root,
            Problem::RecordTooLarge { bytes, limit },
        )
    }
}

impl std::error::Error for ParseError {}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = self.place;
        match &self.problem {
            Problem::NoValue => f.write_str("message has no value (a tombstone)"),
            Problem::Json(what, at) => write!(f, "malformed JSON near byte {at}: {what}"),
            Problem::RecordTooLarge { bytes, limit } => {
                write!(
                    f,
                    "record of {bytes} bytes exceeds max_record_bytes {limit}"
                )
            }
            Problem::TooDeep { limit } => write!(f, "JSON nested deeper than {limit} levels"),
            Problem::UnknownShape(t) => write!(
                f,
                "record is {}, not a Session, webhook event or list",
                t.article_name()
            ),
            Problem::UnrecognisedObject => {
                f.write_str("object has no `object` key, no `id` and `status`, and no `data` array")
            }
            Problem::NotASession => match place {
                Place::Root => f.write_str("record is not a Session"),
                Place::WebhookData => f.write_str("`data` of a session.* event is not a Session"),
                Place::Element(n) => write!(f, "list element [{n}] is not a Session"),
                Place::DataElement(n) => write!(f, "list element data[{n}] is not a Session"),
            },
            Problem::Missing(field) => write!(f, "`{place}{field}` is missing or null"),
            Problem::NotString(field, t) => write!(
                f,
                "`{place}{field}` must be a string, got {}",
                t.article_name()
            ),
            Problem::NotInteger(field, t) => write!(
                f,
                "`{place}{field}` must be an integer timestamp, got {}",
                t.article_name()
            ),
            Problem::NotObject(field, t) => write!(
                f,
                "`{place}{field}` must be an object or null, got {}",
                t.article_name()
            ),
            Problem::EmptyString(field) => write!(f, "`{place}{field}` must not be empty"),
            Problem::TooLong {
                field,
                bytes,
                limit,
            } => write!(
                f,
                "`{place}{field}` is {bytes} bytes long, more than the {limit} allowed"
            ),
            Problem::Negative(field, v) => {
                write!(f, "`{place}{field}` must not be negative, got {v}")
            }
            Problem::Fraction(field) => write!(
                f,
                "`{place}{field}` must be an integer, got a fraction or exponent"
            ),
            Problem::OutOfRange(field) => {
                write!(
                    f,
                    "`{place}{field}` is beyond the range of a 64-bit integer"
                )
            }
        }
    }
}
