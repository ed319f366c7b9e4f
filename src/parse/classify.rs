//! SPEC section 1: which shape a record has (Session, webhook envelope, list, other object),
//! and every Session in it validated field by field, from either reader's `Doc`.

use super::doc::Doc;
use super::error::{ErrorKind, JsonType, ParseError, Place, Problem};
use super::fields::{Field, Keys};
use super::{Ignored, WebhookRoute};
use crate::model::Observation;

/// The longest session id accepted, in bytes (SPEC section 1; Clerk's are about 32).
pub const MAX_ID_BYTES: usize = 256;

/// The longest status accepted, in bytes (SPEC section 1; Clerk's are about 10).
pub const MAX_STATUS_BYTES: usize = 64;

/// Timestamps below this are in seconds (SPEC section 1).
const SECONDS_THRESHOLD: i64 = 100_000_000_000;

/// What a valid record holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Body<'t> {
    /// One Session, already read (reading it again would double the work).
    Single(Observation<'t>),
    /// A validated array of Sessions: the position of the array and its length.
    List(usize, usize),
    Ignored(Ignored),
}

/// Which shape of SPEC section 1 a record has, with every Session in it validated.
pub(super) fn classify<'t>(doc: &Doc<'t>) -> Result<Body<'t>, ParseError> {
    match doc.root() {
        Some(Field::Object(at)) => classify_object(doc, &doc.keys(at)),
        Some(Field::Array(at, len)) => {
            validate_list(doc, at, len, Place::Element)?;
            Ok(Body::List(at, len))
        }
        other => Err(unrecognised_root(other)),
    }
}

/// The error for a top-level value the reader does not take (an empty tape is not JSON).
fn unrecognised_root(root: Option<Field<'_>>) -> ParseError {
    match root {
        Some(other) => ParseError::new(
            ErrorKind::InvalidShape,
            Place::Root,
            Problem::UnknownShape(other.json_type()),
        ),
        None => ParseError::new(
            ErrorKind::InvalidJson,
            Place::Root,
            Problem::UnknownShape(JsonType::Null),
        ),
    }
}

fn classify_object<'t>(doc: &Doc<'t>, keys: &Keys<'t>) -> Result<Body<'t>, ParseError> {
    match keys.object {
        Some(Field::Str("session")) => session_from_keys(keys, Place::Root).map(Body::Single),
        Some(Field::Str("event")) => classify_webhook(doc, keys),
        Some(Field::Str(_)) => Ok(Body::Ignored(Ignored::OtherObject)),
        Some(other) => Err(ParseError::new(
            ErrorKind::WrongType,
            Place::Root,
            Problem::NotString("object", other.json_type()),
        )),
        None if keys.id.is_some() && keys.status.is_some() => {
            session_from_keys(keys, Place::Root).map(Body::Single)
        }
        None => match keys.data {
            Some(Field::Array(at, len)) => {
                validate_list(doc, at, len, Place::DataElement)?;
                Ok(Body::List(at, len))
            }
            _ => Err(ParseError::new(
                ErrorKind::InvalidShape,
                Place::Root,
                Problem::UnrecognisedObject,
            )),
        },
    }
}

/// A webhook envelope's `type`, which must be a string.
fn event_type<'t>(keys: &Keys<'t>) -> Result<&'t str, ParseError> {
    match keys.kind {
        None => Err(ParseError::new(
            ErrorKind::MissingField,
            Place::Root,
            Problem::Missing("type"),
        )),
        Some(Field::Str(kind)) => Ok(kind),
        Some(other) => Err(ParseError::new(
            ErrorKind::WrongType,
            Place::Root,
            Problem::NotString("type", other.json_type()),
        )),
    }
}

/// What ingest needs of a webhook body: the object's string `type`, and `data.id` when
/// there is one (see [`super::Parser::webhook_route`]).
pub(super) fn webhook_route<'t>(doc: &Doc<'t>) -> Result<WebhookRoute<'t>, ParseError> {
    let keys = match doc.root() {
        Some(Field::Object(at)) => doc.keys(at),
        other => return Err(unrecognised_root(other)),
    };
    let kind = event_type(&keys)?;
    let data_id = match keys.data {
        Some(Field::Object(at)) => match doc.keys(at).id {
            Some(Field::Str(id)) => Some(id),
            _ => None,
        },
        _ => None,
    };
    Ok(WebhookRoute { kind, data_id })
}

fn classify_webhook<'t>(doc: &Doc<'t>, keys: &Keys<'t>) -> Result<Body<'t>, ParseError> {
    let kind = event_type(keys)?;
    if !kind.starts_with("session.") {
        return Ok(Body::Ignored(Ignored::NonSessionEvent));
    }
    let Some(data) = keys.data else {
        return Err(ParseError::new(
            ErrorKind::MissingField,
            Place::Root,
            Problem::Missing("data"),
        ));
    };
    read_session(doc, data, Place::WebhookData).map(Body::Single)
}

fn validate_list(
    doc: &Doc<'_>,
    array: usize,
    len: usize,
    place: fn(u32) -> Place,
) -> Result<(), ParseError> {
    if len == 0 {
        return Ok(());
    }
    let mut at = doc.first_element(array);
    for n in 0..len {
        read_session(doc, doc.field_at(at), place(n as u32))?;
        if n + 1 < len {
            at = doc.next_element(at);
        }
    }
    Ok(())
}

/// Reads the Session `value`, which must be an object whose `object` is `"session"` or
/// absent with `id` and `status` present.
pub(super) fn read_session<'t>(
    doc: &Doc<'t>,
    value: Field<'t>,
    place: Place,
) -> Result<Observation<'t>, ParseError> {
    let Field::Object(at) = value else {
        return Err(match place {
            Place::WebhookData => ParseError::new(
                ErrorKind::WrongType,
                Place::Root,
                Problem::NotObject("data", value.json_type()),
            ),
            _ => ParseError::new(ErrorKind::InvalidShape, place, Problem::NotASession),
        });
    };
    let keys = doc.keys(at);
    let is_session = match keys.object {
        Some(Field::Str("session")) => true,
        Some(_) => false,
        None => keys.id.is_some() && keys.status.is_some(),
    };
    if !is_session {
        return Err(ParseError::new(
            ErrorKind::InvalidShape,
            place,
            Problem::NotASession,
        ));
    }
    session_from_keys(&keys, place)
}

fn session_from_keys<'t>(keys: &Keys<'t>, place: Place) -> Result<Observation<'t>, ParseError> {
    let id = required_str(keys.id, "id", place)?;
    if id.is_empty() {
        return Err(ParseError::new(
            ErrorKind::InvalidValue,
            place,
            Problem::EmptyString("id"),
        ));
    }
    check_length(id, "id", MAX_ID_BYTES, place)?;
    let status = required_str(keys.status, "status", place)?;
    check_length(status, "status", MAX_STATUS_BYTES, place)?;
    let updated_at = match keys.updated_at {
        Some(value) => timestamp(value, "updated_at", place)?,
        None => {
            return Err(ParseError::new(
                ErrorKind::MissingField,
                place,
                Problem::Missing("updated_at"),
            ))
        }
    };
    let created_at = optional_timestamp(keys.created_at, "created_at", place)?;
    let expire_at = optional_timestamp(keys.expire_at, "expire_at", place)?;
    let abandon_at = optional_timestamp(keys.abandon_at, "abandon_at", place)?;
    optional_timestamp(keys.last_active_at, "last_active_at", place)?;
    let user_id = optional_str(keys.user_id, "user_id", place)?;
    let client_id = optional_str(keys.client_id, "client_id", place)?;
    let impersonated = match keys.actor {
        None => false,
        Some(Field::Object(_)) => true,
        Some(other) => {
            return Err(ParseError::new(
                ErrorKind::WrongType,
                place,
                Problem::NotObject("actor", other.json_type()),
            ))
        }
    };
    Ok(Observation {
        id,
        status,
        updated_at,
        created_at,
        expire_at,
        abandon_at,
        user_id,
        client_id,
        impersonated,
    })
}

#[inline]
fn required_str<'t>(
    value: Option<Field<'t>>,
    field: &'static str,
    place: Place,
) -> Result<&'t str, ParseError> {
    match value {
        Some(Field::Str(s)) => Ok(s),
        Some(other) => Err(ParseError::new(
            ErrorKind::WrongType,
            place,
            Problem::NotString(field, other.json_type()),
        )),
        None => Err(ParseError::new(
            ErrorKind::MissingField,
            place,
            Problem::Missing(field),
        )),
    }
}

/// SPEC section 1: longer ids and statuses are `invalid_value`, so that input cannot grow
/// the state (ids are held, unknown statuses interned) without bound.
#[inline]
fn check_length(
    text: &str,
    field: &'static str,
    limit: usize,
    place: Place,
) -> Result<(), ParseError> {
    if text.len() > limit {
        return Err(ParseError::new(
            ErrorKind::InvalidValue,
            place,
            Problem::TooLong {
                field,
                bytes: text.len(),
                limit,
            },
        ));
    }
    Ok(())
}

#[inline]
fn optional_str<'t>(
    value: Option<Field<'t>>,
    field: &'static str,
    place: Place,
) -> Result<Option<&'t str>, ParseError> {
    value
        .map(|v| required_str(Some(v), field, place))
        .transpose()
}

#[inline]
fn optional_timestamp(
    value: Option<Field<'_>>,
    field: &'static str,
    place: Place,
) -> Result<Option<i64>, ParseError> {
    value.map(|v| timestamp(v, field, place)).transpose()
}

/// A strict integer timestamp in milliseconds; values below 1e11 are seconds.
#[inline]
fn timestamp(value: Field<'_>, field: &'static str, place: Place) -> Result<i64, ParseError> {
    let value = match value {
        Field::Int(v) => v,
        Field::Uint(v) => i64::try_from(v).map_err(|_| {
            ParseError::new(ErrorKind::InvalidValue, place, Problem::OutOfRange(field))
        })?,
        Field::Float(v) => {
            let problem = if v.abs() >= i64::MAX as f64 {
                Problem::OutOfRange(field)
            } else if v < 0.0 {
                Problem::Negative(field, v as i64)
            } else {
                Problem::Fraction(field)
            };
            return Err(ParseError::new(ErrorKind::InvalidValue, place, problem));
        }
        other => {
            return Err(ParseError::new(
                ErrorKind::WrongType,
                place,
                Problem::NotInteger(field, other.json_type()),
            ))
        }
    };
    if value < 0 {
        return Err(ParseError::new(
            ErrorKind::InvalidValue,
            place,
            Problem::Negative(field, value),
        ));
    }
    Ok(if value < SECONDS_THRESHOLD {
        value * 1000
    } else {
        value
    })
}
