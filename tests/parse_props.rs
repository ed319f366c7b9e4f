//! Property tests of the parser: it never panics, every result is a record or a classified
//! error with a one-line reason, a batch gives exactly what each record gives alone
//! (including records that are JSON fragments mixed with valid ones), and the on-demand scan
//! gives exactly what simd-json's tape gives.

use proptest::prelude::*;
use sessionflow::generate::{GenerateOptions, Generator};
use sessionflow::parse::{describe, ErrorKind, Limits, ParseError, Parsed, Parser, StageOne};

/// Cases per property; CI runs the default (100 000 for the single-record properties).
fn cases(default: u32) -> u32 {
    std::env::var("SESSIONFLOW_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let value: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    serde_json::to_vec(&value).unwrap()
}

fn fixtures() -> Vec<Vec<u8>> {
    let mut all: Vec<Vec<u8>> = [
        "session_raw.json",
        "session_created_webhook.json",
        "session_ended_webhook.json",
        "session_pending_impersonated.json",
    ]
    .iter()
    .map(|n| fixture(n))
    .collect();
    let raw = fixture("session_raw.json");
    let mut list = b"[".to_vec();
    list.extend_from_slice(&raw);
    list.push(b']');
    all.push(list);
    let mut paginated = b"{\"data\":[".to_vec();
    paginated.extend_from_slice(&raw);
    paginated.extend_from_slice(b"],\"total_count\":1}");
    all.push(paginated);
    all
}

fn check_classified(result: Result<Parsed<'_>, ParseError>) -> Result<(), TestCaseError> {
    if let Err(e) = result {
        prop_assert!(ErrorKind::ALL.contains(&e.kind));
        let reason = e.to_string();
        prop_assert!(!reason.is_empty() && !reason.contains('\n'), "{reason:?}");
    } else if let Ok(parsed) = result {
        for o in parsed.observations() {
            prop_assert!(!o.id.is_empty() && o.updated_at >= 0);
        }
    }
    Ok(())
}

/// A fixture with a few random edits: byte changes, deletions, insertions, truncation.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let pool = fixtures();
    let tokens: &[&[u8]] = &[
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b",",
        b":",
        b"null",
        b"-1",
        b"1.5",
        b"\\",
        b"\\u00",
        b"\xff",
        b"  ",
        b"99999999999999999999",
    ];
    (
        0..pool.len(),
        prop::collection::vec(
            (
                any::<u8>(),
                any::<prop::sample::Index>(),
                0..4u8,
                0..tokens.len(),
            ),
            1..5,
        ),
    )
        .prop_map(move |(which, edits)| {
            let mut bytes = pool[which].clone();
            for (byte, at, op, token) in edits {
                if bytes.is_empty() {
                    break;
                }
                let i = at.index(bytes.len());
                match op {
                    0 => bytes[i] = byte,
                    1 => {
                        bytes.remove(i);
                    }
                    2 => {
                        let t = tokens[token];
                        bytes.splice(i..i, t.iter().copied());
                    }
                    _ => bytes.truncate(i),
                }
            }
            bytes
        })
}

/// Records for batches: valid shapes, fragments that would merge or split inside a naive
/// batch, sentinel look-alikes, and mutated fixtures.
fn batch_record() -> impl Strategy<Value = Vec<u8>> {
    let valid = fixtures();
    let fragments: Vec<&'static [u8]> = vec![
        b"1,2",
        b"]",
        b"[",
        b"{\"a\":1},{\"b\":2}",
        b" ",
        b"",
        b"\t\r",
        b",",
        b"\"~\"",
        b",\"~\",",
        b"\"~\",{\"id\":\"s\",\"status\":\"active\",\"updated_at\":1}",
        b"{\"id\":\"s\",\"status\":\"active\",\"updated_at\":1,\"x\":[1",
        b"2]}",
        b"{}]},{\"id\":\"t\",\"status\":\"active\",\"updated_at\":2}",
        b"[{\"id\":\"u\",\"status\":\"ended\",\"updated_at\":3}",
        b"null",
        b"{\"object\":\"event\",\"type\":\"user.created\"}",
        b"{\"id\":\"s\",\"status\":\"active\",\"updated_at\":1}",
    ];
    prop_oneof![
        (0..valid.len()).prop_map(move |i| valid[i].clone()),
        (0..fragments.len()).prop_map(move |i| fragments[i].to_vec()),
        mutated(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(100_000), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_and_are_classified(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut parser = Parser::default();
        parser.parse(&bytes, check_classified)?;
    }

    #[test]
    fn mutated_fixtures_never_panic_and_are_classified(bytes in mutated()) {
        let mut parser = Parser::default();
        parser.parse(&bytes, check_classified)?;
    }
}

/// A JSON value for the differential properties: Session-like objects whose keys are the
/// ones the parser reads, with values of every type and number form, strings with and
/// without escapes or non-ASCII, nested containers, rendered with random whitespace.
fn json_value() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        (0u64..2_000_000_000_000).prop_map(|n| n.to_string()),
        prop::sample::select(vec![
            "0",
            "-0",
            "-0.0",
            "0.5",
            "1.0",
            "1e3",
            "1E+3",
            "2.5e-3",
            "-1.5",
            "01",
            "1.",
            ".5",
            "1716883200000.25",
            "12345678901234567",
            "123456789012345678",
            "1234567890123456789",
            "99999999999999999999",
            "9223372036854775807",
            "9223372036854775808",
            "18446744073709551616",
            "-9223372036854775808",
            "0.12345678901234567",
        ])
        .prop_map(str::to_string),
        prop::sample::select(vec![
            "\"active\"",
            "\"session\"",
            "\"event\"",
            "\"session.created\"",
            "\"user.created\"",
            "\"\"",
            "\"sess_2g7np7Hrk0SN6kj5EDMLDaKNL0S\"",
            "\"a\\\"b\"",
            "\"\\u0041ctive\"",
            "\"\\ud83d\\ude00\"",
            "\"caf\u{e9}\"",
            "\"\u{1F600}\"",
            "\"tab\\there\"",
            "\"\\/\"",
            "\"raw\u{1}control\"",
            "\"raw\ttab\"",
        ])
        .prop_map(str::to_string),
    ];
    let key = prop::sample::select(vec![
        "object",
        "id",
        "status",
        "updated_at",
        "created_at",
        "expire_at",
        "abandon_at",
        "last_active_at",
        "user_id",
        "client_id",
        "actor",
        "type",
        "data",
        "other",
        "user",
        "\u{e9}t\u{e9}",
        "i\\u0064",
    ]);
    // Now and then a control character that is not whitespace, between tokens: the scan
    // must refuse it as the tape does (one that took every byte up to the space for
    // whitespace would not).
    let space = prop_oneof![
        12 => prop::sample::select(vec!["", "", "", " ", "\n", "\t", "\r\n  "]),
        1 => prop::sample::select(vec!["\u{b}", "\u{c}", " \u{1f}", "\u{0}"]),
    ];
    scalar.prop_recursive(6, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec((key.clone(), inner.clone(), space.clone()), 0..10).prop_map(
                |members| {
                    let body: Vec<String> = members
                        .into_iter()
                        .map(|(k, v, s)| format!("{s}\"{k}\"{s}:{s}{v}{s}"))
                        .collect();
                    format!("{{{}}}", body.join(","))
                }
            ),
            prop::collection::vec((inner, space.clone()), 0..4).prop_map(|items| {
                let body: Vec<String> = items.into_iter().map(|(v, s)| format!("{s}{v}")).collect();
                format!("[{}]", body.join(","))
            }),
        ]
    })
}

/// A Session (or a webhook or list of them) built from the fixtures with one field's value
/// replaced by `json_value`'s kind of value: the inputs where the two readers' values meet.
fn session_with_field() -> impl Strategy<Value = Vec<u8>> {
    let fixtures = fixtures();
    (
        0..fixtures.len(),
        any::<prop::sample::Index>(),
        json_value(),
    )
        .prop_map(move |(which, field, value)| {
            let text = String::from_utf8(fixtures[which].clone()).unwrap();
            let keys: Vec<usize> = text.match_indices("\":").map(|(i, _)| i + 2).collect();
            let start = keys[field.index(keys.len())];
            // Replace a scalar value (up to the next comma or closing bracket).
            let end = text[start..]
                .find([',', '}', ']'])
                .map_or(text.len(), |e| start + e);
            if text[start..].starts_with(['{', '[']) {
                return text.into_bytes();
            }
            format!("{}{}{}", &text[..start], value, &text[end..]).into_bytes()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(20_000), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn one_parser_in_sequence_gives_exactly_what_a_fresh_parser_gives(records in prop::collection::vec(batch_record(), 1..24)) {
        // The parser reuses its buffers from record to record: nothing may carry over.
        let mut reused = Parser::default();
        for record in &records {
            let fresh = Parser::default().parse(record, describe);
            prop_assert_eq!(reused.parse(record, describe), fresh);
        }
    }
}

/// The on-demand scan under every stage-one kernel this CPU runs (portable, SSE2, AVX2,
/// AVX-512BW) gives what simd-json's tape gives for `bytes`.
fn every_kernel_agrees_with_the_tape(limits: Limits, bytes: &[u8]) -> Result<(), TestCaseError> {
    let tape = Parser::new(limits).parse_tape(bytes, describe);
    for kernel in StageOne::available() {
        let fast = Parser::new(limits)
            .with_stage_one(kernel)
            .parse(bytes, describe);
        prop_assert_eq!(
            &fast,
            &tape,
            "{:?}: {}",
            kernel,
            String::from_utf8_lossy(bytes)
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(50_000), failure_persistence: None, ..ProptestConfig::default() })]

    /// The on-demand scan and simd-json's tape give the same result (observations, ignored
    /// reason, or error kind and reason) for any input.
    #[test]
    fn scan_and_tape_agree_on_any_json(value in json_value()) {
        every_kernel_agrees_with_the_tape(Limits::default(), value.as_bytes())?;
    }

    /// With a low `max_depth` the scan must leave deep records to the tape's limit.
    #[test]
    fn scan_and_tape_agree_under_any_depth_limit(value in json_value(), max_depth in 1usize..8) {
        let limits = Limits { max_depth, ..Limits::default() };
        every_kernel_agrees_with_the_tape(limits, value.as_bytes())?;
    }

    #[test]
    fn scan_and_tape_agree_on_sessions_with_any_field_value(bytes in session_with_field()) {
        every_kernel_agrees_with_the_tape(Limits::default(), &bytes)?;
    }

    #[test]
    fn scan_and_tape_agree_on_mutated_fixtures_and_fragments(bytes in prop_oneof![mutated(), batch_record()]) {
        every_kernel_agrees_with_the_tape(Limits::default(), &bytes)?;
    }

    #[test]
    fn scan_and_tape_agree_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        every_kernel_agrees_with_the_tape(Limits::default(), &bytes)?;
    }
}

/// The differential properties above only mean something if the scan takes most inputs:
/// every fixture shape and the generator's valid records go through it.
#[test]
fn the_scan_takes_every_fixture_and_generated_valid_records() {
    let mut parser = Parser::default();
    for record in fixtures() {
        parser.parse(&record, |r| assert!(r.is_ok()));
    }
    assert_eq!(parser.path_stats().tape, 0, "{:?}", parser.path_stats());

    let mut generator = Generator::new(GenerateOptions::new(2_000, 11));
    let (mut record, mut key) = (Vec::new(), Vec::new());
    let mut parser = Parser::default();
    let mut invalid = 0u64;
    for _ in 0..6_000 {
        assert!(generator.next_record(&mut record, &mut key));
        parser.parse(&record, |r| {
            invalid += u64::from(r.is_err_and(|e| e.kind == ErrorKind::InvalidJson));
        });
    }
    let paths = parser.path_stats();
    // The invalid JSON (and what the scan leaves to the tape) took the tape; field errors
    // in valid JSON are the scan's.
    assert!(paths.scan + paths.tape == 6_000, "{paths:?}");
    assert!(paths.tape >= invalid, "{paths:?} invalid {invalid}");
    assert!(paths.tape <= invalid + 60, "{paths:?} invalid {invalid}");
}
