//! What both readers hand the classifier: a value (`Field`) and the values of the keys a
//! Session needs in one object (`Keys`).

use super::error::JsonType;

/// A value as the classifier sees it, from either reader. Positions are tape indices
/// ([`Doc::Tape`]) or byte offsets ([`Doc::Text`]).
#[derive(Copy, Clone, Debug, PartialEq)]
pub(super) enum Field<'t> {
    Null,
    Bool,
    Str(&'t str),
    Int(i64),
    Uint(u64),
    Float(f64),
    Object(usize),
    /// Position and length.
    Array(usize, usize),
}

impl<'t> Field<'t> {
    pub(super) fn json_type(&self) -> JsonType {
        match self {
            Field::Null => JsonType::Null,
            Field::Bool => JsonType::Bool,
            Field::Str(_) => JsonType::String,
            Field::Int(_) | Field::Uint(_) | Field::Float(_) => JsonType::Number,
            Field::Object(_) => JsonType::Object,
            Field::Array(..) => JsonType::Array,
        }
    }
}

/// The values of the keys we read in a record's object (last occurrence wins, as in
/// JavaScript's `JSON.parse`; null is the same as absent).
#[derive(Clone, Default)]
pub(super) struct Keys<'t> {
    pub(super) object: Option<Field<'t>>,
    pub(super) kind: Option<Field<'t>>,
    pub(super) data: Option<Field<'t>>,
    pub(super) id: Option<Field<'t>>,
    pub(super) status: Option<Field<'t>>,
    pub(super) updated_at: Option<Field<'t>>,
    pub(super) created_at: Option<Field<'t>>,
    pub(super) expire_at: Option<Field<'t>>,
    pub(super) abandon_at: Option<Field<'t>>,
    pub(super) last_active_at: Option<Field<'t>>,
    pub(super) user_id: Option<Field<'t>>,
    pub(super) client_id: Option<Field<'t>>,
    pub(super) actor: Option<Field<'t>>,
}

impl<'t> Keys<'t> {
    /// The slot of a key we read, dispatched on length first: most keys of a Clerk payload
    /// are not ours, and this rejects them with one comparison.
    #[inline]
    pub(super) fn slot(&mut self, key: &[u8]) -> Option<&mut Option<Field<'t>>> {
        let slot = match key.len() {
            2 if key == b"id" => &mut self.id,
            4 if key == b"type" => &mut self.kind,
            4 if key == b"data" => &mut self.data,
            5 if key == b"actor" => &mut self.actor,
            6 if key == b"object" => &mut self.object,
            6 if key == b"status" => &mut self.status,
            7 if key == b"user_id" => &mut self.user_id,
            9 if key == b"expire_at" => &mut self.expire_at,
            9 if key == b"client_id" => &mut self.client_id,
            10 if key == b"updated_at" => &mut self.updated_at,
            10 if key == b"created_at" => &mut self.created_at,
            10 if key == b"abandon_at" => &mut self.abandon_at,
            14 if key == b"last_active_at" => &mut self.last_active_at,
            _ => return None,
        };
        Some(slot)
    }

    /// Records a key's value if we read that key (null clears it).
    #[inline]
    pub(super) fn set(&mut self, key: &[u8], value: Field<'t>) {
        if let Some(slot) = self.slot(key) {
            *slot = (value != Field::Null).then_some(value);
        }
    }
}
