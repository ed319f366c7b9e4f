//! `sessionflow replay` (SPEC section 5): NDJSON records in, derived events out, through the
//! same parser, `apply` and engine as the live pipeline, as one partition (`"-"`, 0, offset =
//! 0-based line number). Reads in large blocks and parses each line in place.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use crate::apply;
use crate::engine::{Engine, EngineConfig, EventSink};
use crate::model::{DerivedEvent, Source};
use crate::output::{write_dead_letter_line, write_event};
use crate::parse::{Limits, Parser};
use crate::stats::{Stats, Summary};

/// Bytes read from the input at a time.
const READ_BLOCK: usize = 4 << 20;
/// Output is written once this much is buffered.
const FLUSH_AT: usize = 1 << 20;

/// The replay flags.
#[derive(Copy, Clone, Debug, Default)]
pub struct ReplayOptions {
    pub engine: EngineConfig,
    /// Where the watermark moves at end of input; default: the largest `updated_at` seen.
    pub until_ms: Option<i64>,
    pub limits: Limits,
}

/// What a replay did, for the summary line.
#[derive(Clone, Debug)]
pub struct ReplaySummary {
    pub lines: u64,
    pub input_bytes: u64,
    pub stats: Stats,
    pub sessions_held: usize,
    pub elapsed: Duration,
}

impl ReplaySummary {
    /// The one-line summary printed on stderr.
    pub fn line(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        format!(
            "replay: {} lines, {}; {:.3} s, {:.0} records/s, {:.1} MB/s",
            self.lines,
            Summary {
                stats: &self.stats,
                sessions_held: self.sessions_held as u64,
            },
            secs,
            self.stats.records as f64 / secs,
            self.input_bytes as f64 / secs / 1e6,
        )
    }
}

/// Serialises events as NDJSON into a buffer that is flushed in large writes.
struct NdjsonSink<W: Write> {
    out: W,
    buf: Vec<u8>,
    error: Option<io::Error>,
}

impl<W: Write> NdjsonSink<W> {
    fn flush_if_full(&mut self) {
        if self.buf.len() >= FLUSH_AT {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.error.is_none() {
            if let Err(e) = self.out.write_all(&self.buf) {
                self.error = Some(e);
            }
        }
        self.buf.clear();
    }

    fn finish(mut self) -> io::Result<()> {
        self.flush();
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()
    }
}

impl<W: Write> EventSink for NdjsonSink<W> {
    fn emit(&mut self, event: &DerivedEvent<'_>) {
        write_event(&mut self.buf, event);
        self.buf.push(b'\n');
    }
}

/// One replay in progress: the engine and everything it writes.
struct Run<W: Write, D: Write> {
    engine: Engine,
    parser: Parser,
    stats: Stats,
    events: NdjsonSink<W>,
    dead: NdjsonSink<D>,
    lines: u64,
}

impl<W: Write, D: Write> Run<W, D> {
    /// Processes every complete line of `block` (and a final unterminated one at `eof`);
    /// returns how many bytes were consumed.
    fn feed(&mut self, block: &[u8], eof: bool) -> usize {
        let mut start = 0;
        while start < block.len() {
            let end = match memchr::memchr(b'\n', &block[start..]) {
                Some(i) => start + i,
                None if eof => block.len(),
                None => break,
            };
            let mut line_end = end;
            if line_end > start && block[line_end - 1] == b'\r' {
                line_end -= 1;
            }
            if !block[start..line_end].iter().all(u8::is_ascii_whitespace) {
                self.apply_line(self.lines, &block[start..line_end]);
            }
            self.lines += 1;
            start = end + 1;
        }
        self.events.flush_if_full();
        self.dead.flush_if_full();
        start.min(block.len())
    }

    /// Parses and applies one non-blank line (`line`: its 0-based number).
    fn apply_line(&mut self, line: u64, raw: &[u8]) {
        let (engine, stats, events, dead) = (
            &mut self.engine,
            &mut self.stats,
            &mut self.events,
            &mut self.dead,
        );
        self.parser.parse(raw, |result| match result {
            Ok(parsed) => {
                let source = Source {
                    topic: "-",
                    partition: 0,
                    offset: line as i64,
                };
                apply::apply_record(engine, &parsed, source, None, stats, events);
            }
            Err(error) => {
                stats.count_invalid(&error);
                write_dead_letter_line(&mut dead.buf, line, &error, raw);
                dead.buf.push(b'\n');
            }
        });
    }

    /// The end-of-input flush, then the summary.
    fn finish(
        mut self,
        options: &ReplayOptions,
        input_bytes: u64,
        started: Instant,
    ) -> io::Result<ReplaySummary> {
        if let Some(to) = options.until_ms.or(self.engine.max_event_time()) {
            apply::advance_watermark(&mut self.engine, to, &mut self.stats, &mut self.events);
        }
        self.events.finish()?;
        self.dead.finish()?;
        Ok(ReplaySummary {
            lines: self.lines,
            input_bytes,
            sessions_held: self.engine.len(),
            stats: self.stats,
            elapsed: started.elapsed(),
        })
    }
}

fn start<W: Write, D: Write>(output: W, dlq: D, options: &ReplayOptions) -> Run<W, D> {
    Run {
        engine: Engine::new(options.engine),
        parser: Parser::new(options.limits),
        stats: Stats::new(),
        events: NdjsonSink {
            out: output,
            buf: Vec::with_capacity(FLUSH_AT * 2),
            error: None,
        },
        dead: NdjsonSink {
            out: dlq,
            buf: Vec::new(),
            error: None,
        },
        lines: 0,
    }
}

/// Runs the engine over NDJSON held in memory (a memory-mapped file, say).
pub fn replay_bytes(
    input: &[u8],
    output: impl Write,
    dlq: impl Write,
    options: &ReplayOptions,
) -> io::Result<ReplaySummary> {
    let started = Instant::now();
    let mut run = start(output, dlq, options);
    run.feed(input, true);
    run.finish(options, input.len() as u64, started)
}

/// Runs the engine over NDJSON `input`, writing events to `output` and dead letters to `dlq`.
/// Errors only when input or output fails.
pub fn replay(
    mut input: impl Read,
    output: impl Write,
    dlq: impl Write,
    options: &ReplayOptions,
) -> io::Result<ReplaySummary> {
    let started = Instant::now();
    let mut run = start(output, dlq, options);
    let mut block: Vec<u8> = vec![0; READ_BLOCK];
    // `block[..filled]` holds bytes read but not yet consumed (an unfinished line).
    let mut filled = 0;
    let mut input_bytes: u64 = 0;
    loop {
        if filled == block.len() {
            // A line longer than the block: grow it.
            block.resize(block.len() * 2, 0);
        }
        let n = read_full(&mut input, &mut block[filled..])?;
        input_bytes += n as u64;
        filled += n;
        let eof = n == 0;
        let consumed = run.feed(&block[..filled], eof);
        block.copy_within(consumed..filled, 0);
        filled -= consumed;
        if eof {
            break;
        }
    }
    run.finish(options, input_bytes, started)
}

/// Reads until `buf` is full or the input ends.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
