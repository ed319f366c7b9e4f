//! Property tests of the parser: it never panics, every result is a record or a classified
//! error with a one-line reason, and a batch gives exactly what each record gives alone,
//! including records that are JSON fragments mixed with valid ones.

use proptest::prelude::*;
use sessionflow::parse::{ErrorKind, ParseError, Parsed, Parser};

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

/// A record's result in a comparable form.
fn render(result: Result<Parsed<'_>, ParseError>) -> String {
    match result {
        Ok(parsed) => format!(
            "ok {:?} {:?}",
            parsed.ignored(),
            parsed.observations().collect::<Vec<_>>()
        ),
        Err(e) => format!("err {:?} {e}", e.kind),
    }
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

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(20_000), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_batch_gives_exactly_what_each_record_gives_alone(records in prop::collection::vec(batch_record(), 1..24)) {
        let mut parser = Parser::default();
        let alone: Vec<String> = records.iter().map(|r| parser.parse(r, render)).collect();
        let mut batched = Vec::new();
        parser.parse_batch(&records, |i, result| batched.push((i, render(result))));
        let indices: Vec<usize> = batched.iter().map(|(i, _)| *i).collect();
        prop_assert_eq!(indices, (0..records.len()).collect::<Vec<_>>());
        for ((_, b), a) in batched.iter().zip(&alone) {
            prop_assert_eq!(b, a);
        }
        // Records that are each one valid JSON value always go through in one call.
        if records.len() >= 2 && alone.iter().all(|r| !r.starts_with("err InvalidJson") && !r.starts_with("err TooLarge")) {
            prop_assert_eq!(parser.batch_stats().fallback, 0);
            prop_assert_eq!(parser.batch_stats().one_call, 1);
        }
    }

    #[test]
    fn batches_of_valid_values_mixed_with_merging_fragments_stay_exact(
        records in prop::collection::vec(prop_oneof![
            3 => (0..fixtures().len()).prop_map(|i| fixtures()[i].clone()),
            1 => prop::sample::select(vec![
                &b"{\"id\":\"s\",\"status\":\"active\",\"updated_at\":1,\"x\":[1"[..],
                b"2]}", b"\"~\"", b"1,2", b"{\"a\":1},{\"b\":2}", b"[{\"id\":\"u\",\"status\":\"ended\",\"updated_at\":3}",
                b"{}]},{\"id\":\"t\",\"status\":\"active\",\"updated_at\":2}",
                // With the two above, a merge and a split that cancel out: only the
                // sentinels' byte positions tell.
                b"{\"a\":1},\"~\",{\"id\":\"v\",\"status\":\"active\",\"updated_at\":4}",
            ]).prop_map(|b| b.to_vec()),
        ], 2..12)
    ) {
        let mut parser = Parser::default();
        let alone: Vec<String> = records.iter().map(|r| parser.parse(r, render)).collect();
        let mut batched = Vec::new();
        parser.parse_batch(&records, |_, result| batched.push(render(result)));
        prop_assert_eq!(batched, alone);
    }
}

#[test]
fn a_batch_takes_one_call_unless_it_holds_a_bad_record() {
    let mut records = fixtures();
    let mut parser = Parser::default();
    let mut seen = 0;
    parser.parse_batch(&records, |_, result| {
        assert!(result.is_ok());
        seen += 1;
    });
    assert_eq!(seen, records.len());
    assert_eq!(
        (parser.batch_stats().one_call, parser.batch_stats().fallback),
        (1, 0)
    );
    records.insert(2, b"{\"id\":".to_vec());
    let mut kinds = Vec::new();
    parser.parse_batch(&records, |_, result| {
        kinds.push(result.err().map(|e| e.kind))
    });
    assert_eq!(kinds.iter().filter(|k| k.is_some()).count(), 1);
    assert_eq!(kinds[2], Some(ErrorKind::InvalidJson));
    assert_eq!(
        (parser.batch_stats().one_call, parser.batch_stats().fallback),
        (1, 1)
    );
}

#[test]
fn nesting_at_the_limit_is_judged_the_same_alone_and_in_a_batch() {
    let limit = sessionflow::parse::DEFAULT_MAX_DEPTH;
    for depth in [limit - 1, limit, limit + 1] {
        let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let records = vec![
            deep.clone().into_bytes(),
            b"{\"id\":\"s\",\"status\":\"a\",\"updated_at\":1}".to_vec(),
        ];
        let mut parser = Parser::default();
        let alone = parser.parse(deep.as_bytes(), render);
        let mut batched = Vec::new();
        parser.parse_batch(&records, |_, r| batched.push(render(r)));
        assert_eq!(batched[0], alone, "depth {depth}");
    }
}
