//! Memory per tracked session: applies N live sessions with Clerk-form ids (default
//! 1 000 000) to one engine and prints the peak-RSS growth divided by N.
//! Run: `cargo run --release --example session_memory [N]`.

use sessionflow::engine::{Engine, EngineConfig, EventSink};
use sessionflow::generate::clerk_id;
use sessionflow::model::{DerivedEvent, Observation, Source};

/// Drops events: only the state's memory is measured.
struct Discard;

impl EventSink for Discard {
    fn emit(&mut self, _: &DerivedEvent<'_>) {}
}

/// `VmRSS` or `VmHWM` of this process, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let sessions: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let t = 1_764_000_000_000_i64;
    let mut engine = Engine::new(EngineConfig::default());
    let (mut id, mut user, mut client) = (String::new(), String::new(), String::new());
    let before_rss = status_kib("VmRSS:");
    for i in 0..sessions {
        clerk_id(&mut id, "sess_", i);
        clerk_id(&mut user, "user_", i / 3);
        clerk_id(&mut client, "client_", i);
        let o = Observation {
            id: &id,
            status: if i % 7 == 0 { "pending" } else { "active" },
            updated_at: t + i as i64,
            created_at: Some(t + i as i64),
            expire_at: Some(t + 7 * 86_400_000 + i as i64),
            abandon_at: Some(t + 30 * 86_400_000 + i as i64),
            user_id: Some(&user),
            client_id: Some(&client),
            impersonated: false,
        };
        let source = Source {
            topic: "-",
            partition: 0,
            offset: i as i64,
        };
        engine.apply(&o, source, None, &mut Discard);
        engine.finish_record(&mut Discard);
    }
    let peak = status_kib("VmHWM:");
    assert_eq!(engine.len() as u64, sessions, "every session is held");
    let per_session = (peak - before_rss) as f64 * 1024.0 / sessions as f64;
    println!(
        "{sessions} live sessions: RSS before {before_rss} KiB, peak {peak} KiB, {per_session:.1} bytes per session"
    );
}
