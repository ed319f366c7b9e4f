//! Replays an input streamed in pieces, as from a pipe, or held in memory, and keeps what
//! each wrote and counted: for the tests (and the fuzz target) that compare the two.

use std::io::{self, Read};

use sessionflow::replay::{replay, replay_bytes, ReplayOptions};
use sessionflow::stats::Stats;

/// Hands out `bytes` at most `most` at a time.
struct Trickle<'a> {
    bytes: &'a [u8],
    most: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.most).min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

/// What a replay wrote (events and dead letters, as text) and counted.
#[derive(Debug, PartialEq, Eq)]
pub struct Replayed {
    pub events: String,
    pub dead_letters: String,
    pub lines: u64,
    pub stats: Stats,
    pub sessions_held: usize,
}

/// Replays `input` read at most `read_size` bytes at a time (`replay`), or held in memory
/// when `read_size` is `None` (`replay_bytes`).
pub fn replayed(input: &[u8], read_size: Option<usize>, options: &ReplayOptions) -> Replayed {
    let (mut events, mut dead_letters) = (Vec::new(), Vec::new());
    let summary = match read_size {
        Some(most) => {
            let reader = Trickle { bytes: input, most };
            replay(reader, &mut events, &mut dead_letters, options)
        }
        None => replay_bytes(input, &mut events, &mut dead_letters, options),
    }
    .unwrap();
    Replayed {
        events: String::from_utf8_lossy(&events).into_owned(),
        dead_letters: String::from_utf8_lossy(&dead_letters).into_owned(),
        lines: summary.lines,
        stats: summary.stats,
        sessions_held: summary.sessions_held,
    }
}
