//! Record bytes to validated [`Observation`]s (SPEC section 1): steady-state parsing
//! allocates nothing, and every failure is a typed, non-allocating [`ParseError`] with one of
//! the SPEC's dead-letter kinds.
//!
//! Two readers share one classifier. The on-demand scan (`ondemand`) validates a record in
//! one pass over its own bytes and keeps only the values a Session needs; it takes the
//! ordinary records. What it is not sure about (escapes, exponents, deep nesting, every
//! invalid record) goes to simd-json's tape with reused buffers, which also words the JSON
//! errors. The classifier reads either through [`Doc`], so both give the same answer.
//!
//! Inside: `error` (the vocabulary), `fields` (what the classifier reads), `tape`
//! (simd-json's tape and the cold error diagnosis), `ondemand` (the scan, its stage one in
//! `ondemand/stage_one`), `doc` (either reader's record), `classify` (SPEC section 1). This
//! file keeps the [`Parser`] and the choice of reader.

use simd_json::{Buffers, Tape, INPUT_PADDING};

use crate::model::Observation;

mod classify;
mod doc;
mod error;
mod fields;
mod ondemand;
mod tape;

use self::classify::{classify, read_session, Body};
pub use self::classify::{MAX_ID_BYTES, MAX_STATUS_BYTES};
use self::doc::Doc;
pub use self::error::{ErrorKind, JsonType, ParseError, Place, Problem};
pub use self::ondemand::StageOne;

/// Default largest record accepted, in bytes (larger ones are `too_large`).
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Default deepest JSON nesting accepted (deeper records are `too_large`). Clerk's webhook
/// payloads nest about six levels.
pub const DEFAULT_MAX_DEPTH: usize = 64;

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

/// Where a webhook event belongs, as [`Parser::webhook_route`] reads it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct WebhookRoute<'t> {
    /// The event's `type`.
    pub kind: &'t str,
    /// `data.id`, when `data` is an object whose `id` is a string.
    pub data_id: Option<&'t str>,
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

/// A parse result in full as one line of text: the observations and the ignored reason, or
/// the error's kind and reason. What the tests and fuzz targets compare between the
/// on-demand scan and the tape.
#[doc(hidden)]
pub fn describe(result: Result<Parsed<'_>, ParseError>) -> String {
    match result {
        Ok(parsed) => format!(
            "ok {:?} {:?}",
            parsed.ignored(),
            parsed.observations().collect::<Vec<_>>()
        ),
        Err(e) => format!("err {:?} {e}", e.kind),
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
    /// The scan's stage-one kernel: the widest this CPU runs at full speed ([`StageOne::detect`]).
    stage_one: StageOne,
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
            stage_one: StageOne::detect(),
            paths: PathStats::default(),
        }
    }

    /// The same parser with its scan's stage one forced to `kernel`, which must be one of
    /// [`StageOne::available`] (for the tests that run every kernel).
    #[doc(hidden)]
    pub fn with_stage_one(mut self, kernel: StageOne) -> Self {
        assert!(
            StageOne::available().contains(&kernel),
            "{kernel:?} does not run on this CPU"
        );
        self.stage_one = kernel;
        self
    }

    /// The scan's stage-one kernel.
    pub fn stage_one(&self) -> StageOne {
        self.stage_one
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
        self.read(raw, scan, |doc| {
            f(doc.and_then(|doc| classify(&doc).map(|body| Parsed { doc, body })))
        })
    }

    /// Where a signed webhook goes (`sessionflow ingest`): its `type` and `data.id`, read
    /// by the same readers as [`Parser::parse`], so ingest and `run` agree on what a body
    /// holds (duplicate keys included: the last one counts). An error when the body is not
    /// JSON, not an object, or has no string `type`; `data` is not validated (a broken
    /// Session is `run`'s to dead-letter).
    pub fn webhook_route<R>(
        &mut self,
        raw: &[u8],
        f: impl FnOnce(Result<WebhookRoute<'_>, ParseError>) -> R,
    ) -> R {
        self.read(raw, true, |doc| {
            f(doc.and_then(|doc| classify::webhook_route(&doc)))
        })
    }

    /// Reads `raw` with the on-demand scan (when `scan`) or, when the scan is not sure,
    /// simd-json's tape, and hands the document to `f`.
    fn read<R>(
        &mut self,
        raw: &[u8],
        scan: bool,
        f: impl FnOnce(Result<Doc<'_>, ParseError>) -> R,
    ) -> R {
        if let Err(e) = self.check_size(raw) {
            return f(Err(e));
        }
        let mut keys = ondemand::ScannedKeys::default();
        let scanned = scan
            .then(|| {
                ondemand::scan(
                    raw,
                    self.scan_depth,
                    self.stage_one,
                    &mut self.quotes,
                    &mut keys,
                )
            })
            .flatten();
        if let Some(text) = scanned {
            self.paths.scan += 1;
            return f(Ok(Doc::Text(text)));
        }
        self.paths.tape += 1;
        self.scratch.clear();
        self.scratch.extend_from_slice(raw);
        self.scratch.resize(raw.len() + INPUT_PADDING, b' ');
        let mut tape = std::mem::replace(&mut self.tape, Tape(Vec::new())).reset();
        let filled =
            simd_json::fill_tape_padded(&mut self.scratch, raw.len(), &mut self.buffers, &mut tape);
        let out = match filled {
            Ok(()) => f(Ok(Doc::Tape(&tape.0))),
            Err(e) => f(Err(tape::json_error(&e, raw, self.limits.max_depth))),
        };
        self.tape = tape.reset();
        out
    }

    fn check_size(&self, raw: &[u8]) -> Result<(), ParseError> {
        if raw.len() > self.limits.max_record_bytes {
            return Err(ParseError::too_large(
                raw.len(),
                self.limits.max_record_bytes,
            ));
        }
        Ok(())
    }
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

    /// `Parser::webhook_route` on `raw`, owned: (type, data.id) or the error's kind and words.
    fn route(raw: &str) -> Result<(String, Option<String>), (ErrorKind, String)> {
        Parser::default().webhook_route(raw.as_bytes(), |read| {
            read.map(|r| (r.kind.to_owned(), r.data_id.map(str::to_owned)))
                .map_err(|e| (e.kind, e.to_string()))
        })
    }

    #[test]
    fn a_webhook_route_is_its_type_and_data_id_from_either_reader() {
        let created = r#"{"data":{"id":"sess_1","status":"active"},"object":"event","type":"session.created"}"#;
        let owned = |kind: &str, id: Option<&str>| Ok((kind.to_owned(), id.map(str::to_owned)));
        assert_eq!(route(created), owned("session.created", Some("sess_1")));
        // An escape sends the body to the tape; the strings come back unescaped.
        assert_eq!(
            route(r#"{"type":"session\u002eended","data":{"id":"sess_\u0032"}}"#),
            owned("session.ended", Some("sess_2"))
        );
        // The last of duplicate keys counts, as in `run`'s parse.
        assert_eq!(
            route(r#"{"type":"user.created","data":{"id":"a","id":"b"},"type":"session.ended"}"#),
            owned("session.ended", Some("b"))
        );
        // `data` is not validated: only a string `id` in an object routes.
        for data in [
            r#"null"#,
            r#"[{"id":"s"}]"#,
            r#"{"id":7}"#,
            r#"{"object":"user"}"#,
        ] {
            let raw = format!(r#"{{"type":"session.created","data":{data}}}"#);
            assert_eq!(route(&raw), owned("session.created", None), "{raw}");
        }
        assert_eq!(
            route(r#"{"type":"email.created"}"#),
            owned("email.created", None)
        );
    }

    #[test]
    fn a_body_without_a_string_type_has_no_route() {
        assert_eq!(
            route(r#"{"data":{"id":"s"}}"#),
            Err((ErrorKind::MissingField, "`type` is missing or null".into()))
        );
        assert_eq!(
            route(r#"{"type":null}"#).unwrap_err().0,
            ErrorKind::MissingField
        );
        assert_eq!(route(r#"{"type":1}"#).unwrap_err().0, ErrorKind::WrongType);
        assert_eq!(
            route(r#"["session.created"]"#).unwrap_err().0,
            ErrorKind::InvalidShape
        );
        assert_eq!(
            route(r#""session.created""#).unwrap_err().0,
            ErrorKind::InvalidShape
        );
        for broken in [r#"{"type":"#, "", "{\"type\":\"a\"} x", "\u{1}"] {
            assert_eq!(
                route(broken).unwrap_err().0,
                ErrorKind::InvalidJson,
                "{broken:?}"
            );
        }
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
    fn bad_escapes_and_invalid_utf8_are_placed_at_the_byte_at_fault() {
        let head = r#"{"id":"s","status":"a","updated_at":1,"pad":"abcdefgh"#;
        let at = head.len();
        let cases: [(&[u8], &str); 5] = [
            (br#"\ud800""#, "unpaired surrogate"),
            (br#"\udc00\u0041""#, "unpaired surrogate"),
            (br#"\ud800\u0041""#, "unpaired surrogate"),
            (br#"\u12G4""#, "four hex digits"),
            (br#"\q""#, "invalid string escape"),
        ];
        let mut parser = Parser::new(Limits::default());
        for (tail, what) in cases {
            let raw = [head.as_bytes(), tail, b"}"].concat();
            let reason = parser.parse(&raw, |r| r.err().map(|e| e.to_string()).unwrap_or_default());
            let text = String::from_utf8_lossy(&raw).into_owned();
            assert!(reason.contains(what), "{text}: {reason}");
            assert!(
                reason.contains(&format!("near byte {at}:")),
                "{text}: {reason}"
            );
        }
        // A valid pair and escaped backslashes before a `u` are not errors.
        let fine = [head.as_bytes(), br#"\ud83d\ude00\\u12G4""#, b"}"].concat();
        assert!(parser.parse(&fine, |r| r.is_ok()));
        let raw = [head.as_bytes(), b"\xff\"}"].concat();
        let reason = parser.parse(&raw, |r| r.err().map(|e| e.to_string()).unwrap_or_default());
        assert!(
            reason.contains(&format!("near byte {at}: invalid UTF-8")),
            "{reason}"
        );
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
