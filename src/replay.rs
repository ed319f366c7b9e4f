//! `sessionflow replay` (SPEC section 5): NDJSON records in, derived events out, through the
//! same parser, `apply` and engine as the live pipeline, as one partition (`"-"`, 0, offset =
//! 0-based line number). Reads in large blocks, parses each line in place, and writes as it
//! goes: memory stays bounded whatever the input (a line longer than the record limit is
//! never held whole).

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use crate::apply;
use crate::engine::{Engine, EngineConfig, EventSink};
use crate::model::{DerivedEvent, Source};
use crate::output::{write_dead_letter_line, write_event};
use crate::parse::{Limits, ParseError, Parser};
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

    /// Writes what is buffered through to the output (its own buffer included).
    fn flush_through(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        self.flush();
        if self.error.is_none() {
            if let Err(e) = self.out.flush() {
                self.error = Some(e);
            }
        }
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
    /// `max_record_bytes`: longer lines are dead-lettered with their first this many bytes.
    limit: usize,
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
            self.events.flush_if_full();
            self.dead.flush_if_full();
        }
        start.min(block.len())
    }

    /// A line of `bytes` bytes, over the record limit, of which only `head` was kept.
    fn oversized_line(&mut self, head: &[u8], bytes: usize) {
        let error = ParseError::too_large(bytes, self.limit);
        self.stats.count_invalid(&error);
        write_dead_letter_line(&mut self.dead.buf, self.lines, &error, head, bytes);
        self.dead.buf.push(b'\n');
        self.dead.flush_if_full();
        self.lines += 1;
    }

    /// Parses and applies one non-blank line (`line`: its 0-based number).
    fn apply_line(&mut self, line: u64, raw: &[u8]) {
        let limit = self.limit;
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
                let kept = &raw[..raw.len().min(limit)];
                write_dead_letter_line(&mut dead.buf, line, &error, kept, raw.len());
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
        limit: options.limits.max_record_bytes,
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
/// Errors only when input or output fails. Holds at most a block, or one line up to the
/// record limit, of input at a time.
pub fn replay(
    mut input: impl Read,
    output: impl Write,
    dlq: impl Write,
    options: &ReplayOptions,
) -> io::Result<ReplaySummary> {
    let started = Instant::now();
    let mut run = start(output, dlq, options);
    // A line may hold a record of the limit and its line ending; longer ones are skipped.
    let longest_line = options.limits.max_record_bytes.saturating_add(2);
    // Larger than the longest line: a full block without a line end holds an oversized line.
    let mut block: Vec<u8> = vec![0; READ_BLOCK.max(longest_line.saturating_add(1))];
    // `block[..filled]` holds bytes read but not yet consumed (an unfinished line).
    let mut filled = 0;
    let mut input_bytes: u64 = 0;
    loop {
        if filled == block.len() {
            // A line over the limit: keep its first bytes and read past the rest.
            let kept = options.limits.max_record_bytes;
            let (bytes, rest) = skip_line(&mut input, &mut block, kept, &mut input_bytes)?;
            run.oversized_line(&block[..kept], bytes);
            filled = rest.len();
            block.copy_within(rest, 0);
        }
        // What is there, not a full block: from a pipe, output follows input as it comes.
        let n = read_some(&mut input, &mut block[filled..])?;
        let short_read = filled + n < block.len();
        input_bytes += n as u64;
        filled += n;
        let eof = n == 0;
        let consumed = run.feed(&block[..filled], eof);
        block.copy_within(consumed..filled, 0);
        filled -= consumed;
        if eof {
            break;
        }
        if short_read {
            // A short read: the input paused (a pipe), so what it caused goes out now
            // rather than when the buffer fills. A file reads full blocks and skips this.
            run.events.flush_through();
            run.dead.flush_through();
        }
    }
    run.finish(options, input_bytes, started)
}

/// Reads past the rest of a line whose first `block.len()` bytes are in `block` (full),
/// overwriting everything after its first `kept` bytes; returns the line's whole length
/// (without its line ending) and where in `block` the input after it starts and ends.
fn skip_line(
    input: &mut impl Read,
    block: &mut [u8],
    kept: usize,
    input_bytes: &mut u64,
) -> io::Result<(usize, std::ops::Range<usize>)> {
    let mut length = block.len();
    // The byte before the next one read (a `\r` before the `\n` is the line ending's).
    let mut previous = block[block.len() - 1];
    loop {
        let n = read_full(input, &mut block[kept..])?;
        *input_bytes += n as u64;
        let read = &block[kept..kept + n];
        match memchr::memchr(b'\n', read) {
            Some(i) => {
                let before = if i == 0 { previous } else { read[i - 1] };
                length += i;
                length -= usize::from(before == b'\r');
                return Ok((length, kept + i + 1..kept + n));
            }
            None if n == 0 => return Ok((length, kept..kept)),
            None => {
                length += n;
                previous = read[n - 1];
            }
        }
    }
}

/// One read (retried when interrupted): 0 only at the end of the input.
fn read_some(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match input.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            result => return result,
        }
    }
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
