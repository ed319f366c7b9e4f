//! The JSON floor of `scripts/bench-replay.sh`: reads an NDJSON file and validates every
//! line with sonic-rs (the fastest JSON parser measured here), doing nothing else. Replay
//! parses the same lines and also runs the engine and writes its outputs; its wall time
//! against this one is the replay ratio of docs/benchmarks.md.
//! Usage: `json_floor FILE [dom|skip]` — `dom` parses each line into a `sonic_rs::Value`;
//! `skip` (default) deserializes it into `IgnoredAny` (sonic-rs validates while skipping).
//! Prints lines, invalid lines, seconds and MB/s to stderr.

use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("FILE");
    let dom = matches!(args.next().as_deref(), Some("dom"));
    let started = Instant::now();
    let input = std::fs::read(&path)?;
    let parsing = Instant::now();
    let (mut lines, mut invalid) = (0u64, 0u64);
    for line in input.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        lines += 1;
        let valid = if dom {
            sonic_rs::from_slice::<sonic_rs::Value>(line)
                .map(std::hint::black_box)
                .is_ok()
        } else {
            sonic_rs::from_slice::<serde::de::IgnoredAny>(line).is_ok()
        };
        invalid += u64::from(!valid);
    }
    let (seconds, parse_seconds) = (
        started.elapsed().as_secs_f64(),
        parsing.elapsed().as_secs_f64(),
    );
    eprintln!(
        "json_floor ({}): {lines} lines, {invalid} invalid; {seconds:.3} s, {:.1} MB/s ({:.1} MB/s parsing alone)",
        if dom { "dom" } else { "skip" },
        input.len() as f64 / seconds / 1e6,
        input.len() as f64 / parse_seconds / 1e6
    );
    Ok(())
}
