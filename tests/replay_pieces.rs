//! Replay read in pieces: reading the input in pieces of any size, under any record limit,
//! writes exactly what replaying the same bytes held in memory writes (`fuzz/`'s `replay`
//! target, as a property over generated records). Its own test binary: the bounded-memory
//! tests of `replay_bounded.rs` read their children's peak resident size, and a child
//! started while this process is large counts this process's pages too.

use std::sync::OnceLock;

mod common;

use common::generated_ndjson;
use common::trickle::replayed;
use proptest::prelude::*;
use sessionflow::parse::Limits;
use sessionflow::replay::ReplayOptions;

/// Lines of generated records to draw inputs from: whole, and cut short (dead letters).
fn generated_lines() -> &'static [Vec<u8>] {
    static LINES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    LINES.get_or_init(|| {
        generated_ndjson(90, 30, 3)
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .flat_map(|line| [line.to_vec(), line[..line.len() / 2].to_vec()])
            .collect()
    })
}

/// An input of drawn lines, each ended by `\n` or `\r\n`, the last one maybe unended.
fn drawn_input() -> impl Strategy<Value = Vec<u8>> {
    let count = generated_lines().len();
    (
        prop::collection::vec((0..count, any::<bool>()), 0..40),
        any::<bool>(),
    )
        .prop_map(|(picks, unended)| {
            let mut input = Vec::new();
            for (pick, crlf) in picks {
                input.extend_from_slice(&generated_lines()[pick]);
                input.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            }
            if unended && input.last() == Some(&b'\n') {
                input.pop();
            }
            input
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_streamed_replay_writes_what_an_in_memory_replay_writes(
        input in drawn_input(),
        read_size in 1usize..4096,
        limit in prop_oneof![Just(None), (64usize..2048).prop_map(Some)],
    ) {
        let options = ReplayOptions {
            limits: Limits {
                max_record_bytes: limit.unwrap_or(Limits::default().max_record_bytes),
                ..Limits::default()
            },
            ..ReplayOptions::default()
        };
        prop_assert_eq!(
            replayed(&input, Some(read_size), &options),
            replayed(&input, None, &options)
        );
    }
}
