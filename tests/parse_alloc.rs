//! Steady-state parsing makes zero heap allocations per record: a counting global allocator
//! watches 10 000 parses of every fixture shape, one by one and in batches, after warm-up.
//! (One test in this binary, so no other test allocates concurrently.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use sessionflow::parse::Parser;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Only the measuring thread counts: the test harness allocates on its own threads.
    static MEASURED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn count() {
    if MEASURED.with(|m| m.get()) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let value: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    serde_json::to_vec(&value).unwrap()
}

/// Consumes a parse result the way the engine does: every observation's fields.
fn consume(result: Result<sessionflow::parse::Parsed<'_>, sessionflow::parse::ParseError>) -> u64 {
    match result {
        Ok(parsed) => parsed
            .observations()
            .map(|o| o.updated_at as u64 + o.id.len() as u64 + o.status.len() as u64)
            .sum(),
        Err(e) => e.kind as u64,
    }
}

#[test]
fn steady_state_parsing_allocates_nothing() {
    let raw = fixture("session_raw.json");
    let mut list = b"[".to_vec();
    list.extend_from_slice(&raw);
    list.push(b',');
    list.extend_from_slice(&raw);
    list.push(b']');
    let mut paginated = b"{\"data\":".to_vec();
    paginated.extend_from_slice(&list);
    paginated.extend_from_slice(b",\"total_count\":2}");
    let shapes: Vec<(&str, Vec<u8>)> = vec![
        ("raw session", raw.clone()),
        (
            "session.created webhook",
            fixture("session_created_webhook.json"),
        ),
        (
            "session.ended webhook",
            fixture("session_ended_webhook.json"),
        ),
        (
            "pending impersonated",
            fixture("session_pending_impersonated.json"),
        ),
        ("bare list", list),
        ("paginated list", paginated),
        (
            "ignored event",
            br#"{"object":"event","type":"user.created","data":{"object":"user","id":"u"}}"#
                .to_vec(),
        ),
        (
            "other object",
            br#"{"object":"organization","id":"org_1"}"#.to_vec(),
        ),
        (
            "wrong type",
            br#"{"object":"session","id":"s","status":"active","updated_at":"1"}"#.to_vec(),
        ),
        (
            "escaped string (tape path)",
            br#"{"object":"session","id":"s\u0031","status":"active","updated_at":1}"#.to_vec(),
        ),
        ("truncated", raw[..raw.len() / 2].to_vec()),
    ];
    let mut parser = Parser::default();
    let mut checksum = 0u64;
    MEASURED.with(|m| m.set(true));
    for (name, bytes) in &shapes {
        // Warm-up grows the reused buffers to this shape's size.
        for _ in 0..10 {
            checksum += parser.parse(bytes, consume);
        }
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for _ in 0..10_000 {
            checksum += parser.parse(bytes, consume);
        }
        let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
        assert_eq!(
            allocations, 0,
            "{name}: {allocations} allocations in 10 000 parses"
        );
    }

    // Batches of every shape mixed: the valid ones (on-demand scan) alone, and with the
    // truncated one (tape).
    let records: Vec<&[u8]> = shapes.iter().map(|(_, b)| b.as_slice()).collect();
    let valid: Vec<&[u8]> = records[..9].to_vec();
    for batch in [&valid, &records] {
        for _ in 0..10 {
            for record in batch.iter() {
                parser.parse(record, |r| checksum += consume(r));
            }
        }
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for _ in 0..10_000 / batch.len() + 1 {
            for record in batch.iter() {
                parser.parse(record, |r| checksum += consume(r));
            }
        }
        let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
        assert_eq!(
            allocations,
            0,
            "batch of {}: {allocations} allocations",
            batch.len()
        );
    }
    assert!(parser.path_stats().scan > 0 && parser.path_stats().tape > 0);
    assert!(checksum > 0);
}
