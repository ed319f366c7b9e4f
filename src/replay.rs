//! `sessionflow replay` (SPEC section 5): NDJSON records in, derived events out, through the
//! same parser, driver and engine as the live pipeline, as one partition (`"-"`, 0, offset =
//! 0-based line number). Reads in large blocks and parses lines in batches.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use crate::driver::{self, Stats};
use crate::engine::{Engine, EngineConfig, EventSink};
use crate::model::{Cause, DerivedEvent, Outcome, Source};
use crate::output::{write_dead_letter_line, write_event};
use crate::parse::{Limits, Parser};

/// Lines handed to the parser in one call.
const BATCH_LINES: usize = 64;
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
        let s = &self.stats;
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        format!(
            "replay: {} lines, {} records ({} ignored, {} invalid), {} observations \
             (applied {}, duplicate {}, stale {}, late {}); {} transitions (observed {}, \
             inferred {}, correction {}), {} anomalies; {} sessions held; {:.3} s, {:.0} records/s, {:.1} MB/s",
            self.lines,
            s.records,
            s.ignored,
            s.invalid_total(),
            s.observations,
            s.outcome(Outcome::Applied),
            s.outcome(Outcome::Duplicate),
            s.outcome(Outcome::Stale),
            s.outcome(Outcome::Late),
            s.transitions_total(),
            s.transitions_by_cause(Cause::Observed),
            s.transitions_by_cause(Cause::Inferred),
            s.transitions_by_cause(Cause::Correction),
            s.anomalies_total(),
            self.sessions_held,
            secs,
            s.records as f64 / secs,
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

/// Runs the engine over NDJSON `input`, writing events to `output` and dead letters to `dlq`.
/// Errors only when input or output fails.
pub fn replay(
    mut input: impl Read,
    output: impl Write,
    dlq: impl Write,
    options: &ReplayOptions,
) -> io::Result<ReplaySummary> {
    let started = Instant::now();
    let mut engine = Engine::new(options.engine);
    let mut parser = Parser::new(options.limits);
    let mut stats = Stats::new();
    let mut events = NdjsonSink {
        out: output,
        buf: Vec::with_capacity(FLUSH_AT * 2),
        error: None,
    };
    let mut dead = NdjsonSink {
        out: dlq,
        buf: Vec::new(),
        error: None,
    };

    let mut block: Vec<u8> = Vec::with_capacity(READ_BLOCK);
    let mut line_no: u64 = 0;
    let mut input_bytes: u64 = 0;
    let mut eof = false;
    // (line number, byte range in `block`) of the lines of the current batch.
    let mut batch: Vec<(u64, usize, usize)> = Vec::with_capacity(BATCH_LINES);
    while !eof {
        // Fill the block up to READ_BLOCK beyond what is left of an unfinished line.
        let kept = block.len();
        block.resize(kept + READ_BLOCK, 0);
        let n = read_full(&mut input, &mut block[kept..])?;
        block.truncate(kept + n);
        input_bytes += n as u64;
        eof = n == 0;

        let mut start = 0;
        loop {
            let end = match memchr::memchr(b'\n', &block[start..]) {
                Some(i) => start + i,
                None if eof && start < block.len() => block.len(),
                None => break,
            };
            let mut line_end = end;
            if line_end > start && block[line_end - 1] == b'\r' {
                line_end -= 1;
            }
            if !block[start..line_end].iter().all(u8::is_ascii_whitespace) {
                batch.push((line_no, start, line_end));
            }
            line_no += 1;
            start = end + 1;
            if batch.len() == BATCH_LINES {
                run_batch(
                    &mut parser,
                    &block,
                    &mut batch,
                    &mut engine,
                    &mut stats,
                    &mut events,
                    &mut dead,
                );
            }
            if start >= block.len() {
                break;
            }
        }
        run_batch(
            &mut parser,
            &block,
            &mut batch,
            &mut engine,
            &mut stats,
            &mut events,
            &mut dead,
        );
        events.flush_if_full();
        dead.flush_if_full();
        block.drain(..start.min(block.len()));
    }

    let end_watermark = options.until_ms.or(engine.max_event_time());
    if let Some(to) = end_watermark {
        driver::advance_watermark(&mut engine, to, &mut stats, &mut events);
    }
    events.finish()?;
    dead.finish()?;
    Ok(ReplaySummary {
        lines: line_no,
        input_bytes,
        sessions_held: engine.len(),
        stats,
        elapsed: started.elapsed(),
    })
}

/// Parses and applies the batched lines, then empties the batch.
#[allow(clippy::too_many_arguments)]
fn run_batch<W: Write, D: Write>(
    parser: &mut Parser,
    block: &[u8],
    batch: &mut Vec<(u64, usize, usize)>,
    engine: &mut Engine,
    stats: &mut Stats,
    events: &mut NdjsonSink<W>,
    dead: &mut NdjsonSink<D>,
) {
    if batch.is_empty() {
        return;
    }
    let slices: Vec<&[u8]> = batch.iter().map(|&(_, s, e)| &block[s..e]).collect();
    parser.parse_batch(&slices, |i, result| {
        let line = batch[i].0;
        match result {
            Ok(parsed) => {
                let source = Source {
                    topic: "-",
                    partition: 0,
                    offset: line as i64,
                };
                driver::apply_record(engine, &parsed, source, None, stats, events);
            }
            Err(error) => {
                stats.count_invalid(&error);
                write_dead_letter_line(&mut dead.buf, line, &error, slices[i]);
                dead.buf.push(b'\n');
            }
        }
    });
    batch.clear();
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
