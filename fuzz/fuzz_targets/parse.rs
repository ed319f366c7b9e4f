//! The record parser on any bytes: it never panics, and the on-demand scan under every
//! stage-one kernel this CPU runs gives exactly what simd-json's tape gives (observations,
//! ignored reason, or error kind and reason), under the default limits and under a nesting
//! limit the input's first byte picks. The webhook route reader gives the same route under
//! every kernel.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sessionflow::parse::{describe, Limits, ParseError, Parser, StageOne, WebhookRoute};

/// A webhook route result as text, compared across kernels.
fn render_route(result: Result<WebhookRoute<'_>, ParseError>) -> String {
    match result {
        Ok(route) => format!("ok {:?} {:?}", route.kind, route.data_id),
        Err(e) => format!("err {:?} {e}", e.kind),
    }
}

fn agree(limits: Limits, bytes: &[u8]) {
    let tape = Parser::new(limits).parse_tape(bytes, describe);
    let mut first_route = None;
    for kernel in StageOne::available() {
        let mut parser = Parser::new(limits).with_stage_one(kernel);
        let scanned = parser.parse(bytes, describe);
        assert_eq!(scanned, tape, "{kernel:?} disagrees with the tape");
        let route = parser.webhook_route(bytes, render_route);
        let first = first_route.get_or_insert_with(|| route.clone());
        assert_eq!(&route, first, "{kernel:?} reads another webhook route");
    }
}

fuzz_target!(|bytes: &[u8]| {
    agree(Limits::default(), bytes);
    if let Some(&first) = bytes.first() {
        let limits = Limits {
            max_depth: 1 + usize::from(first % 8),
            ..Limits::default()
        };
        agree(limits, bytes);
    }
});
