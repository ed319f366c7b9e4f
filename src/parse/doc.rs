//! A parsed record as the classifier reads it (`Doc`): simd-json's tape, or the record's own
//! bytes after the on-demand scan, each answering through the same `Field`s and `Keys`.

use std::borrow::Cow;

use simd_json::Node;

use super::fields::{Field, Keys};
use super::{ondemand, tape};

/// A parsed record as the classifier reads it: simd-json's tape, or the record's own bytes
/// after the on-demand scan validated them.
pub(super) enum Doc<'t> {
    Tape(&'t [Node<'t>]),
    Text(ondemand::Text<'t>),
}

impl<'t> Doc<'t> {
    /// The top-level value; `None` for an empty tape.
    pub(super) fn root(&self) -> Option<Field<'t>> {
        match self {
            Doc::Tape(nodes) => (!nodes.is_empty()).then(|| Field::from_node(nodes, 0)),
            Doc::Text(text) => Some(text.root()),
        }
    }

    /// The keys we read of the object at `at`.
    pub(super) fn keys(&self, at: usize) -> Cow<'_, Keys<'t>> {
        match self {
            Doc::Tape(nodes) => Cow::Owned(Keys::scan(nodes, at)),
            Doc::Text(text) => text.keys(at),
        }
    }

    /// The value at `at`.
    pub(super) fn field_at(&self, at: usize) -> Field<'t> {
        match self {
            Doc::Tape(nodes) => Field::from_node(nodes, at),
            Doc::Text(text) => text.field_at(at),
        }
    }

    /// Position of the first element of a non-empty array.
    pub(super) fn first_element(&self, array: usize) -> usize {
        match self {
            Doc::Tape(_) => array + 1,
            Doc::Text(text) => text.first_element(array),
        }
    }

    /// Position of the element after the one at `at` (which is not the array's last).
    pub(super) fn next_element(&self, at: usize) -> usize {
        match self {
            Doc::Tape(nodes) => at + tape::span(&nodes[at]),
            Doc::Text(text) => text.next_element(at),
        }
    }
}
