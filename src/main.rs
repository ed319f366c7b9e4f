//! The `sessionflow` command line: parses flags, runs a subcommand, maps errors to exit codes.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser as ClapParser, Subcommand};

use sessionflow::engine::EngineConfig;
use sessionflow::generate::{GenerateOptions, Generator};
use sessionflow::parse::Limits;
use sessionflow::replay::{replay, replay_bytes, ReplayOptions};

#[derive(ClapParser)]
#[command(
    name = "sessionflow",
    version,
    about = "Clerk session lifecycle stream processor"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine over NDJSON records (one partition) and write derived events as NDJSON.
    Replay(ReplayArgs),
    /// Write realistic synthetic Clerk traffic as NDJSON (deterministic for a seed).
    Generate(GenerateArgs),
}

#[derive(clap::Args)]
struct GenerateArgs {
    /// Number of sessions to simulate (about five records each).
    #[arg(long, default_value_t = 1000)]
    sessions: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop after this many records (default: every record of every session).
    #[arg(long)]
    records: Option<u64>,
    /// Output NDJSON file, or - for standard output.
    #[arg(long, default_value = "-")]
    output: String,
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// Input NDJSON file, or - for standard input.
    #[arg(long, default_value = "-")]
    input: String,
    /// Output NDJSON file, or - for standard output.
    #[arg(long, default_value = "-")]
    output: String,
    /// Dead-letter NDJSON file (default: standard error).
    #[arg(long)]
    dlq: Option<PathBuf>,
    #[arg(long, default_value_t = 300_000)]
    allowed_lateness_ms: i64,
    /// Watermark at end of input (default: the largest updated_at seen).
    #[arg(long)]
    until_ms: Option<i64>,
    #[arg(long, default_value_t = 86_400_000)]
    terminal_retention_ms: i64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(args) => run_replay(args),
        Command::Generate(args) => run_generate(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sessionflow: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn open_output(path: &str) -> anyhow::Result<Box<dyn Write>> {
    if path == "-" {
        return Ok(Box::new(io::stdout().lock()));
    }
    let file = File::create(path).with_context(|| format!("cannot create output {path}"))?;
    Ok(Box::new(file))
}

fn run_replay(args: ReplayArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.allowed_lateness_ms >= 0,
        "--allowed-lateness-ms must be a non-negative integer"
    );
    anyhow::ensure!(
        args.terminal_retention_ms >= 0,
        "--terminal-retention-ms must be a non-negative integer"
    );
    let options = ReplayOptions {
        engine: EngineConfig {
            allowed_lateness_ms: args.allowed_lateness_ms,
            terminal_retention_ms: args.terminal_retention_ms,
            max_clock_skew_ms: 0,
        },
        until_ms: args.until_ms,
        limits: Limits::default(),
    };
    let output = open_output(&args.output)?;
    let dlq: Box<dyn Write> = match &args.dlq {
        Some(path) => Box::new(BufWriter::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(io::stderr().lock()),
    };
    // The clock includes opening and mapping the input.
    let started = std::time::Instant::now();
    let mut summary = if args.input == "-" {
        replay(io::stdin().lock(), output, dlq, &options)
    } else {
        let file =
            File::open(&args.input).with_context(|| format!("cannot open input {}", args.input))?;
        // SAFETY: the file is only read; if another process truncates it meanwhile, reads
        // of the vanished pages fault (the usual caveat of mapping files).
        // Populated up front: one call instead of a page fault every 4 KiB.
        match unsafe { memmap2::MmapOptions::new().populate().map(&file) } {
            Ok(map) => replay_bytes(&map, output, dlq, &options),
            // Not mappable (empty, a pipe, a special file): read it.
            Err(_) => replay(file, output, dlq, &options),
        }
    }
    .context("replay failed")?;
    summary.elapsed = started.elapsed();
    eprintln!("sessionflow {}", summary.line());
    Ok(())
}

fn run_generate(args: GenerateArgs) -> anyhow::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, open_output(&args.output)?);
    let mut generator = Generator::new(GenerateOptions::new(args.sessions, args.seed));
    let (mut record, mut key) = (Vec::new(), Vec::new());
    let mut records: u64 = 0;
    let limit = args.records.unwrap_or(u64::MAX);
    while records < limit && generator.next_record(&mut record, &mut key) {
        record.push(b'\n');
        out.write_all(&record).context("cannot write output")?;
        records += 1;
    }
    out.flush().context("cannot write output")?;
    eprintln!(
        "sessionflow generate: {records} records for {} sessions",
        args.sessions
    );
    Ok(())
}
