//! Record bytes to validated [`Observation`]s (SPEC section 1): steady-state parsing
//! allocates nothing, and every failure is a typed, non-allocating [`ParseError`] with one of
//! the SPEC's dead-letter kinds.
//!
//! Two readers share one classifier. The on-demand scan (`ondemand`) validates a record in
//! one pass over its own bytes and keeps only the values a Session needs; it takes the
//! ordinary records. What it is not sure about (escapes, exponents, deep nesting, every
//! invalid record) goes to simd-json's tape with reused buffers, which also words the JSON
//! errors. The classifier reads either through [`Doc`], so both give the same answer.

use std::borrow::Cow;
use std::fmt;

use simd_json::{Buffers, Node, StaticNode, Tape, INPUT_PADDING};

use crate::model::Observation;

mod ondemand;

/// Default largest record accepted, in bytes (larger ones are `too_large`).
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Default deepest JSON nesting accepted (deeper records are `too_large`). Clerk's webhook
/// payloads nest about six levels.
pub const DEFAULT_MAX_DEPTH: usize = 64;
/// Timestamps below this are in seconds (SPEC section 1).
/// The longest session id accepted, in bytes (SPEC section 1; Clerk's are about 32).
pub const MAX_ID_BYTES: usize = 256;

/// The longest status accepted, in bytes (SPEC section 1; Clerk's are about 10).
pub const MAX_STATUS_BYTES: usize = 64;

const SECONDS_THRESHOLD: i64 = 100_000_000_000;

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
    fn article_name(self) -> &'static str {
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
    fn new(kind: ErrorKind, place: Place, problem: Problem) -> Self {
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

/// Why a valid record produced no observation.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// A webhook envelope whose `type` is not `session.*`.
    NonSessionEvent,
    /// A Clerk object other than a session or an event.
    OtherObject,
}

/// Size and nesting limits; records beyond them are `too_large`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_record_bytes: usize,
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// What a valid record holds.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Body<'t> {
    /// One Session, already read (reading it again would double the work).
    Single(Observation<'t>),
    /// A validated array of Sessions: the position of the array and its length.
    List(usize, usize),
    Ignored(Ignored),
}

/// A valid record: its observations borrow the record's bytes or the parser's buffers until
/// the callback returns.
pub struct Parsed<'t> {
    doc: Doc<'t>,
    body: Body<'t>,
}

impl<'t> Parsed<'t> {
    /// The observations of the record, in order (none for an ignored record).
    pub fn observations(&self) -> Observations<'_, 't> {
        let (single, next, remaining) = match &self.body {
            Body::Single(o) => (Some(o.clone()), 0, 0),
            Body::List(array, len) if *len > 0 => (None, self.doc.first_element(*array), *len),
            Body::List(..) | Body::Ignored(_) => (None, 0, 0),
        };
        Observations {
            doc: &self.doc,
            single,
            next,
            remaining,
        }
    }

    /// `Some` when the record is valid but carries no observation.
    pub fn ignored(&self) -> Option<Ignored> {
        match self.body {
            Body::Ignored(reason) => Some(reason),
            _ => None,
        }
    }
}

/// Iterator over the (already validated) observations of a [`Parsed`] record.
pub struct Observations<'p, 't> {
    doc: &'p Doc<'t>,
    single: Option<Observation<'t>>,
    /// Position of the next list element, and how many are left.
    next: usize,
    remaining: usize,
}

impl<'t> Iterator for Observations<'_, 't> {
    type Item = Observation<'t>;

    fn next(&mut self) -> Option<Observation<'t>> {
        if let Some(single) = self.single.take() {
            return Some(single);
        }
        while self.remaining > 0 {
            self.remaining -= 1;
            let at = self.next;
            if self.remaining > 0 {
                self.next = self.doc.next_element(at);
            }
            // Validated when the record was classified, so this is always Ok.
            if let Ok(observation) = read_session(self.doc, self.doc.field_at(at), Place::Root) {
                return Some(observation);
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.remaining + usize::from(self.single.is_some());
        (n, Some(n))
    }
}

/// A reusable parser. Keep one per thread (or per partition) so its buffers are reused.
pub struct Parser {
    limits: Limits,
    /// Records nested deeper than this take the tape path, which applies `max_depth`.
    scan_depth: usize,
    buffers: Buffers,
    tape: Tape<'static>,
    /// A mutable, padded copy of the current record (simd-json unescapes in place).
    scratch: Vec<u8>,
    /// The on-demand scan's quote bitmap of the current record.
    quotes: Vec<u64>,
    paths: PathStats,
}

/// How many records each path parsed.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct PathStats {
    /// The on-demand scan over the record's bytes.
    pub scan: u64,
    /// simd-json's tape: records the scan was not sure about, and every invalid JSON.
    pub tape: u64,
}

impl Default for Parser {
    fn default() -> Self {
        Parser::new(Limits::default())
    }
}

/// The deepest nesting the on-demand scan takes on (Clerk's payloads nest about six levels).
const SCAN_MAX_DEPTH: usize = 16;

impl Parser {
    pub fn new(limits: Limits) -> Self {
        Parser {
            limits,
            // Two levels of margin below the tape's limit, so that a record the scan
            // accepts is never one the tape would reject as too deep.
            scan_depth: SCAN_MAX_DEPTH.min(limits.max_depth.saturating_sub(2)),
            buffers: Buffers::with_max_depth(4096, limits.max_depth),
            tape: Tape(Vec::new()),
            scratch: Vec::new(),
            quotes: Vec::new(),
            paths: PathStats::default(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Records parsed so far, by path.
    pub fn path_stats(&self) -> PathStats {
        self.paths
    }

    /// Parses one record and hands the result to `f` (the observations borrow the record
    /// or the parser).
    pub fn parse<R>(
        &mut self,
        raw: &[u8],
        f: impl FnOnce(Result<Parsed<'_>, ParseError>) -> R,
    ) -> R {
        self.parse_with(raw, true, f)
    }

    /// Parses one record with simd-json's tape only: what [`Parser::parse`] does when the
    /// on-demand scan is not sure. Public for the tests that prove both paths agree.
    #[doc(hidden)]
    pub fn parse_tape<R>(
        &mut self,
        raw: &[u8],
        f: impl FnOnce(Result<Parsed<'_>, ParseError>) -> R,
    ) -> R {
        self.parse_with(raw, false, f)
    }

    fn parse_with<R>(
        &mut self,
        raw: &[u8],
        scan: bool,
        f: impl FnOnce(Result<Parsed<'_>, ParseError>) -> R,
    ) -> R {
        if let Err(e) = self.check_size(raw) {
            return f(Err(e));
        }
        let mut keys = ondemand::ScannedKeys::default();
        let scanned = scan
            .then(|| ondemand::scan(raw, self.scan_depth, &mut self.quotes, &mut keys))
            .flatten();
        if let Some(text) = scanned {
            self.paths.scan += 1;
            let doc = Doc::Text(text);
            return f(classify(&doc).map(|body| Parsed { doc, body }));
        }
        self.paths.tape += 1;
        self.scratch.clear();
        self.scratch.extend_from_slice(raw);
        self.scratch.resize(raw.len() + INPUT_PADDING, b' ');
        let mut tape = std::mem::replace(&mut self.tape, Tape(Vec::new())).reset();
        let filled =
            simd_json::fill_tape_padded(&mut self.scratch, raw.len(), &mut self.buffers, &mut tape);
        let out = match filled {
            Ok(()) => {
                let doc = Doc::Tape(&tape.0);
                f(classify(&doc).map(|body| Parsed { doc, body }))
            }
            Err(e) => f(Err(json_error(&e, raw, self.limits.max_depth))),
        };
        self.tape = tape.reset();
        out
    }

    fn check_size(&self, raw: &[u8]) -> Result<(), ParseError> {
        if raw.len() > self.limits.max_record_bytes {
            return Err(ParseError::new(
                ErrorKind::TooLarge,
                Place::Root,
                Problem::RecordTooLarge {
                    bytes: raw.len(),
                    limit: self.limits.max_record_bytes,
                },
            ));
        }
        Ok(())
    }
}

/// A value as the classifier sees it, from either reader. Positions are tape indices
/// ([`Doc::Tape`]) or byte offsets ([`Doc::Text`]).
#[derive(Copy, Clone, Debug, PartialEq)]
enum Field<'t> {
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
    fn json_type(&self) -> JsonType {
        match self {
            Field::Null => JsonType::Null,
            Field::Bool => JsonType::Bool,
            Field::Str(_) => JsonType::String,
            Field::Int(_) | Field::Uint(_) | Field::Float(_) => JsonType::Number,
            Field::Object(_) => JsonType::Object,
            Field::Array(..) => JsonType::Array,
        }
    }

    fn from_node(nodes: &[Node<'t>], at: usize) -> Field<'t> {
        match nodes[at] {
            Node::String(s) => Field::Str(s),
            Node::Object { .. } => Field::Object(at),
            Node::Array { len, .. } => Field::Array(at, len),
            Node::Static(StaticNode::Null) => Field::Null,
            Node::Static(StaticNode::Bool(_)) => Field::Bool,
            Node::Static(StaticNode::I64(v)) => Field::Int(v),
            Node::Static(StaticNode::U64(v)) => Field::Uint(v),
            Node::Static(StaticNode::F64(v)) => Field::Float(v),
        }
    }
}

/// A parsed record as the classifier reads it: simd-json's tape, or the record's own bytes
/// after the on-demand scan validated them.
enum Doc<'t> {
    Tape(&'t [Node<'t>]),
    Text(ondemand::Text<'t>),
}

impl<'t> Doc<'t> {
    /// The top-level value; `None` for an empty tape.
    fn root(&self) -> Option<Field<'t>> {
        match self {
            Doc::Tape(nodes) => (!nodes.is_empty()).then(|| Field::from_node(nodes, 0)),
            Doc::Text(text) => Some(text.root()),
        }
    }

    /// The keys we read of the object at `at`.
    fn keys(&self, at: usize) -> Cow<'_, Keys<'t>> {
        match self {
            Doc::Tape(nodes) => Cow::Owned(Keys::scan(nodes, at)),
            Doc::Text(text) => text.keys(at),
        }
    }

    /// The value at `at`.
    fn field_at(&self, at: usize) -> Field<'t> {
        match self {
            Doc::Tape(nodes) => Field::from_node(nodes, at),
            Doc::Text(text) => text.field_at(at),
        }
    }

    /// Position of the first element of a non-empty array.
    fn first_element(&self, array: usize) -> usize {
        match self {
            Doc::Tape(_) => array + 1,
            Doc::Text(text) => text.first_element(array),
        }
    }

    /// Position of the element after the one at `at` (which is not the array's last).
    fn next_element(&self, at: usize) -> usize {
        match self {
            Doc::Tape(nodes) => at + span(&nodes[at]),
            Doc::Text(text) => text.next_element(at),
        }
    }
}

/// Turns simd-json's error into a dead-letter reason. simd-json's categories are coarse
/// (a truncated record is a `Syntax` error at byte 0), so the cold error path re-reads the
/// record to say what is actually wrong and where.
fn json_error(e: &simd_json::Error, raw: &[u8], max_depth: usize) -> ParseError {
    use simd_json::ErrorType as E;
    let (what, at) = match e.error() {
        E::DepthLimitExceeded => {
            return ParseError::new(
                ErrorKind::TooLarge,
                Place::Root,
                Problem::TooDeep { limit: max_depth },
            )
        }
        E::InvalidUtf8 => ("invalid UTF-8", e.index()),
        E::InvalidEscape | E::InvalidUnicodeEscape | E::InvalidUnicodeCodepoint => {
            ("invalid string escape", e.index())
        }
        E::InvalidNumber | E::InvalidExponent | E::Overflow => ("invalid number", e.index()),
        E::ExpectedObjectColon => ("expected `:` after an object key", e.index()),
        E::KeyMustBeAString | E::ExpectedObjectKey => ("object key must be a string", e.index()),
        _ => diagnose(raw).unwrap_or(("syntax error", e.index())),
    };
    ParseError::new(ErrorKind::InvalidJson, Place::Root, Problem::Json(what, at))
}

/// A structural reading of invalid JSON: strings, brackets and what follows the value.
/// Returns `None` when the structure looks sound (the problem is inside a token).
fn diagnose(raw: &[u8]) -> Option<(&'static str, usize)> {
    let mut stack = BracketStack::default();
    let mut in_string = None;
    let mut escaped = false;
    let mut value_done = false;
    for (i, &b) in raw.iter().enumerate() {
        if in_string.is_some() {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => {
                    in_string = None;
                    value_done = stack.is_empty();
                }
                0..=0x1f => return Some(("control character inside a string", i)),
                _ => {}
            }
            continue;
        }
        if b.is_ascii_whitespace() {
            continue;
        }
        if value_done {
            return Some(("trailing data after the JSON value", i));
        }
        match b {
            b'"' => in_string = Some(i),
            b'{' | b'[' => stack.push(b == b'{'),
            b'}' | b']' => {
                if stack.pop() != Some(b == b'}') {
                    return Some(("unexpected closing bracket", i));
                }
                value_done = stack.is_empty();
            }
            b',' | b':' if stack.is_empty() => return Some(("unexpected character", i)),
            b',' | b':' => {}
            b'-' | b'0'..=b'9' | b'a'..=b'z' | b'.' | b'+' | b'E' => {
                // A scalar; a top-level one ends at the next whitespace.
                if stack.is_empty() && raw.get(i + 1).is_none_or(u8::is_ascii_whitespace) {
                    value_done = true;
                }
            }
            _ => return Some(("unexpected character", i)),
        }
    }
    if let Some(start) = in_string {
        return Some(("unterminated string (record truncated?)", start));
    }
    match stack.last() {
        Some(true) => Some(("unclosed object (record truncated?)", raw.len())),
        Some(false) => Some(("unclosed array (record truncated?)", raw.len())),
        None if raw.iter().all(u8::is_ascii_whitespace) => Some(("empty record", 0)),
        None => None,
    }
}

/// Open brackets as bits (`true` = object), allocation-free: exact for the first 128 levels,
/// counted beyond (the depth limit is far lower).
#[derive(Default)]
struct BracketStack {
    bits: u128,
    depth: usize,
}

impl BracketStack {
    fn push(&mut self, object: bool) {
        if self.depth < 128 {
            self.bits = (self.bits << 1) | u128::from(object);
        }
        self.depth += 1;
    }

    fn last(&self) -> Option<bool> {
        (self.depth > 0).then_some(self.bits & 1 == 1)
    }

    fn pop(&mut self) -> Option<bool> {
        let top = self.last()?;
        self.depth -= 1;
        if self.depth < 128 {
            self.bits >>= 1;
        }
        Some(top)
    }

    fn is_empty(&self) -> bool {
        self.depth == 0
    }
}

/// Number of tape nodes a value occupies, itself included.
#[inline]
fn span(node: &Node<'_>) -> usize {
    match node {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}

/// The values of the keys we read in a record's object (last occurrence wins, as in
/// JavaScript's `JSON.parse`; null is the same as absent).
#[derive(Clone, Default)]
struct Keys<'t> {
    object: Option<Field<'t>>,
    kind: Option<Field<'t>>,
    data: Option<Field<'t>>,
    id: Option<Field<'t>>,
    status: Option<Field<'t>>,
    updated_at: Option<Field<'t>>,
    created_at: Option<Field<'t>>,
    expire_at: Option<Field<'t>>,
    abandon_at: Option<Field<'t>>,
    last_active_at: Option<Field<'t>>,
    user_id: Option<Field<'t>>,
    client_id: Option<Field<'t>>,
    actor: Option<Field<'t>>,
}

impl<'t> Keys<'t> {
    /// The slot of a key we read, dispatched on length first: most keys of a Clerk payload
    /// are not ours, and this rejects them with one comparison.
    #[inline]
    fn slot(&mut self, key: &[u8]) -> Option<&mut Option<Field<'t>>> {
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
    fn set(&mut self, key: &[u8], value: Field<'t>) {
        if let Some(slot) = self.slot(key) {
            *slot = (value != Field::Null).then_some(value);
        }
    }

    /// One pass over a tape object's keys; nested values are skipped in O(1).
    #[inline]
    fn scan(nodes: &[Node<'t>], object: usize) -> Keys<'t> {
        let mut keys = Keys::default();
        let Node::Object { len, .. } = nodes[object] else {
            return keys;
        };
        let mut at = object + 1;
        for _ in 0..len {
            let value = at + 1;
            if let Node::String(key) = nodes[at] {
                keys.set(key.as_bytes(), Field::from_node(nodes, value));
            }
            at = value + span(&nodes[value]);
        }
        keys
    }
}

/// Which shape of SPEC section 1 a record has, with every Session in it validated.
fn classify<'t>(doc: &Doc<'t>) -> Result<Body<'t>, ParseError> {
    match doc.root() {
        Some(Field::Object(at)) => classify_object(doc, &doc.keys(at)),
        Some(Field::Array(at, len)) => {
            validate_list(doc, at, len, Place::Element)?;
            Ok(Body::List(at, len))
        }
        Some(other) => Err(ParseError::new(
            ErrorKind::InvalidShape,
            Place::Root,
            Problem::UnknownShape(other.json_type()),
        )),
        None => Err(ParseError::new(
            ErrorKind::InvalidJson,
            Place::Root,
            Problem::UnknownShape(JsonType::Null),
        )),
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

fn classify_webhook<'t>(doc: &Doc<'t>, keys: &Keys<'t>) -> Result<Body<'t>, ParseError> {
    let kind = match keys.kind {
        None => {
            return Err(ParseError::new(
                ErrorKind::MissingField,
                Place::Root,
                Problem::Missing("type"),
            ))
        }
        Some(Field::Str(kind)) => kind,
        Some(other) => {
            return Err(ParseError::new(
                ErrorKind::WrongType,
                Place::Root,
                Problem::NotString("type", other.json_type()),
            ))
        }
    };
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
fn read_session<'t>(
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses one record into (observations, ignored) or the error.
    fn parse(raw: &str) -> Result<(Vec<Observation<'static>>, Option<Ignored>), ParseError> {
        let mut parser = Parser::default();
        parser.parse(raw.as_bytes(), |result| {
            result.map(|parsed| {
                let observations = parsed
                    .observations()
                    .map(|o| Observation {
                        id: leak(o.id),
                        status: leak(o.status),
                        user_id: o.user_id.map(leak),
                        client_id: o.client_id.map(leak),
                        ..o
                    })
                    .collect();
                (observations, parsed.ignored())
            })
        })
    }

    fn leak(s: &str) -> &'static str {
        Box::leak(s.to_owned().into_boxed_str())
    }

    fn error(raw: &str) -> (ErrorKind, String) {
        let e = parse(raw).expect_err(raw);
        (e.kind, e.to_string())
    }

    const SESSION: &str = r#"{"object":"session","id":"sess_1","status":"active","updated_at":1764000000000,"created_at":1764000000,"expire_at":null,"user_id":"user_1","client_id":null,"actor":{"sub":"user_2"},"user":{"id":"x"},"tasks":[]}"#;

    #[test]
    fn a_raw_session_is_one_observation_with_normalised_times() {
        let (obs, ignored) = parse(SESSION).unwrap();
        assert_eq!(ignored, None);
        assert_eq!(
            obs,
            vec![Observation {
                id: "sess_1",
                status: "active",
                updated_at: 1_764_000_000_000,
                created_at: Some(1_764_000_000_000),
                expire_at: None,
                abandon_at: None,
                user_id: Some("user_1"),
                client_id: None,
                impersonated: true,
            }]
        );
    }

    #[test]
    fn a_session_without_object_key_needs_id_and_status() {
        let (obs, _) = parse(r#"{"id":"s","status":"x-new","updated_at":5}"#).unwrap();
        assert_eq!((obs[0].status, obs[0].updated_at), ("x-new", 5000));
        assert_eq!(
            error(r#"{"id":"s","updated_at":5}"#).0,
            ErrorKind::InvalidShape
        );
    }

    #[test]
    fn webhook_envelopes_yield_their_data_or_are_ignored() {
        let hook = format!(
            r#"{{"object":"event","type":"session.ended","timestamp":1,"data":{SESSION}}}"#
        );
        assert_eq!(parse(&hook).unwrap().0.len(), 1);
        let other = r#"{"object":"event","type":"user.created","data":{"object":"user"}}"#;
        assert_eq!(
            parse(other).unwrap(),
            (vec![], Some(Ignored::NonSessionEvent))
        );
        assert_eq!(
            error(r#"{"object":"event","data":{}}"#).0,
            ErrorKind::MissingField
        );
        assert_eq!(
            error(r#"{"object":"event","type":7}"#).0,
            ErrorKind::WrongType
        );
        assert_eq!(
            error(r#"{"object":"event","type":"session.created"}"#).0,
            ErrorKind::MissingField
        );
        assert_eq!(
            error(r#"{"object":"event","type":"session.created","data":[1]}"#),
            (
                ErrorKind::WrongType,
                "`data` must be an object or null, got an array".into()
            )
        );
        assert_eq!(
            error(
                r#"{"object":"event","type":"session.created","data":{"object":"user","id":"u"}}"#
            )
            .0,
            ErrorKind::InvalidShape
        );
        let (kind, reason) = error(
            r#"{"object":"event","type":"session.created","data":{"object":"session","id":"s","status":"active"}}"#,
        );
        assert_eq!(kind, ErrorKind::MissingField);
        assert_eq!(reason, "`data.updated_at` is missing or null");
    }

    #[test]
    fn lists_yield_every_element_in_order_or_fail_whole() {
        let list = format!("[{SESSION},{}]", SESSION.replace("sess_1", "sess_2"));
        let ids: Vec<&str> = parse(&list).unwrap().0.iter().map(|o| o.id).collect();
        assert_eq!(ids, ["sess_1", "sess_2"]);
        let paginated = format!(r#"{{"data":[{SESSION}],"total_count":1}}"#);
        assert_eq!(parse(&paginated).unwrap().0.len(), 1);
        assert_eq!(parse("[]").unwrap(), (vec![], None));
        assert_eq!(
            error(&format!(r#"[{SESSION},{{"object":"session","id":""}}]"#)),
            (ErrorKind::InvalidValue, "`[1].id` must not be empty".into())
        );
        assert_eq!(
            error(&format!(r#"{{"data":[{SESSION},3]}}"#)),
            (
                ErrorKind::InvalidShape,
                "list element data[1] is not a Session".into()
            )
        );
    }

    #[test]
    fn other_clerk_objects_are_ignored() {
        assert_eq!(
            parse(r#"{"object":"organization","id":"org_1"}"#)
                .unwrap()
                .1,
            Some(Ignored::OtherObject)
        );
        assert_eq!(
            error(r#"{"object":5,"id":"s","status":"a"}"#).0,
            ErrorKind::WrongType
        );
    }

    #[test]
    fn each_field_error_has_its_kind_and_names_the_field() {
        let cases = [
            (
                r#"{"object":"session","status":"active","updated_at":1}"#,
                ErrorKind::MissingField,
                "`id` is missing or null",
            ),
            (
                r#"{"object":"session","id":7,"status":"active","updated_at":1}"#,
                ErrorKind::WrongType,
                "`id` must be a string, got a number",
            ),
            (
                r#"{"object":"session","id":"","status":"active","updated_at":1}"#,
                ErrorKind::InvalidValue,
                "`id` must not be empty",
            ),
            (
                r#"{"object":"session","id":"s","status":null,"updated_at":1}"#,
                ErrorKind::MissingField,
                "`status` is missing or null",
            ),
            (
                r#"{"object":"session","id":"s","status":true,"updated_at":1}"#,
                ErrorKind::WrongType,
                "`status` must be a string, got a boolean",
            ),
            (
                r#"{"object":"session","id":"s","status":"active"}"#,
                ErrorKind::MissingField,
                "`updated_at` is missing or null",
            ),
            (
                r#"{"object":"session","id":"s","status":"active","updated_at":"1"}"#,
                ErrorKind::WrongType,
                "`updated_at` must be an integer timestamp, got a string",
            ),
            (
                r#"{"object":"session","id":"s","status":"active","updated_at":1.5}"#,
                ErrorKind::InvalidValue,
                "`updated_at` must be an integer, got a fraction or exponent",
            ),
            (
                r#"{"object":"session","id":"s","status":"active","updated_at":-1}"#,
                ErrorKind::InvalidValue,
                "`updated_at` must not be negative, got -1",
            ),
            (
                r#"{"object":"session","id":"s","status":"active","updated_at":9223372036854775808}"#,
                ErrorKind::InvalidValue,
                "`updated_at` is beyond the range of a 64-bit integer",
            ),
            (
                r#"{"object":"session","id":"s","status":"active","updated_at":1,"expire_at":[]}"#,
                ErrorKind::WrongType,
                "`expire_at` must be an integer timestamp, got an array",
            ),
            (
                r#"{"object":"session","id":"s","status":"active","updated_at":1,"last_active_at":-3}"#,
                ErrorKind::InvalidValue,
                "`last_active_at` must not be negative, got -3",
            ),
            (
                r#"{"object":"session","id":"s","status":"active","updated_at":1,"user_id":1}"#,
                ErrorKind::WrongType,
                "`user_id` must be a string, got a number",
            ),
            (
                r#"{"object":"session","id":"s","status":"active","updated_at":1,"actor":"admin"}"#,
                ErrorKind::WrongType,
                "`actor` must be an object or null, got a string",
            ),
        ];
        for (raw, kind, reason) in cases {
            assert_eq!(error(raw), (kind, reason.to_string()), "{raw}");
        }
    }

    #[test]
    fn the_largest_i64_timestamp_is_accepted() {
        let raw = r#"{"id":"s","status":"a","updated_at":9223372036854775807}"#;
        assert_eq!(parse(raw).unwrap().0[0].updated_at, i64::MAX);
    }

    #[test]
    fn the_seconds_threshold_is_exact() {
        let at = |v: i64| {
            parse(&format!(r#"{{"id":"s","status":"a","updated_at":{v}}}"#))
                .unwrap()
                .0[0]
                .updated_at
        };
        assert_eq!(at(99_999_999_999), 99_999_999_999_000);
        assert_eq!(at(100_000_000_000), 100_000_000_000);
        assert_eq!(at(0), 0);
    }

    #[test]
    fn ids_and_statuses_longer_than_the_spec_allows_are_invalid_values() {
        let record = |id: &str, status: &str| {
            format!(r#"{{"id":"{id}","status":"{status}","updated_at":1764000000000}}"#)
        };
        let (id_256, status_64) = ("i".repeat(256), "s".repeat(64));
        assert!(parse(&record(&id_256, &status_64)).is_ok());
        let (kind, reason) = error(&record(&"i".repeat(257), "active"));
        assert_eq!(kind, ErrorKind::InvalidValue);
        assert_eq!(reason, "`id` is 257 bytes long, more than the 256 allowed");
        let (kind, reason) = error(&record("s", &"s".repeat(65)));
        assert_eq!(kind, ErrorKind::InvalidValue);
        assert_eq!(
            reason,
            "`status` is 65 bytes long, more than the 64 allowed"
        );
        // Bytes, not characters: 129 two-byte characters are 258 bytes.
        let (kind, _) = error(&record(&"\\u00e9".repeat(129), "active"));
        assert_eq!(kind, ErrorKind::InvalidValue);
        let (kind, _) = error(&record(&"é".repeat(129), "active"));
        assert_eq!(kind, ErrorKind::InvalidValue);
    }

    #[test]
    fn malformed_json_says_what_and_where() {
        let cases = [
            (
                r#"{"id":"s","status":"act"#,
                "unterminated string (record truncated?)",
            ),
            (r#"{"id":"s""#, "unclosed object (record truncated?)"),
            ("[1,2", "unclosed array (record truncated?)"),
            (r#"{"a":1}}"#, "trailing data after the JSON value"),
            (r#"{"a":[1}"#, "unexpected closing bracket"),
            (r#"{"a":1} x"#, "trailing data after the JSON value"),
            ("", "empty record"),
        ];
        for (raw, what) in cases {
            let (kind, reason) = error(raw);
            assert_eq!(kind, ErrorKind::InvalidJson, "{raw}");
            assert!(reason.contains(what), "{raw}: {reason}");
        }
        assert_eq!(error("\"just a string\"").0, ErrorKind::InvalidShape);
        assert_eq!(error("17").0, ErrorKind::InvalidShape);
    }

    #[test]
    fn oversized_and_deep_records_are_too_large() {
        let mut parser = Parser::new(Limits {
            max_record_bytes: 100,
            max_depth: 8,
        });
        let big = format!(
            r#"{{"id":"s","status":"a","updated_at":1,"pad":"{}"}}"#,
            "x".repeat(100)
        );
        let kind = parser.parse(big.as_bytes(), |r| r.err().map(|e| e.kind));
        assert_eq!(kind, Some(ErrorKind::TooLarge));
        let deep = format!("{}{}", "[".repeat(9), "]".repeat(9));
        let kind = parser.parse(deep.as_bytes(), |r| {
            r.err().map(|e| (e.kind, e.to_string()))
        });
        assert_eq!(
            kind,
            Some((
                ErrorKind::TooLarge,
                "JSON nested deeper than 8 levels".into()
            ))
        );
        let ok = format!("{}{}", "[".repeat(8), "]".repeat(8));
        let kind = parser.parse(ok.as_bytes(), |r| r.err().map(|e| e.kind));
        assert_eq!(kind, Some(ErrorKind::InvalidShape), "8 levels are allowed");
    }

    #[test]
    fn duplicate_keys_take_the_last_value() {
        let (obs, _) =
            parse(r#"{"id":"s","status":"active","status":"ended","updated_at":1}"#).unwrap();
        assert_eq!(obs[0].status, "ended");
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let (obs, _) = parse(r#"{"id":"s\u0041\"","status":"active","updated_at":1}"#).unwrap();
        assert_eq!(obs[0].id, "sA\"");
    }
}
