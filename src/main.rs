//! The `sessionflow` command line: parses flags, runs a subcommand, maps errors to exit codes.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use anyhow::Context;
use clap::{Parser as ClapParser, Subcommand};

use sessionflow::engine::EngineConfig;
use sessionflow::generate::{GenerateOptions, Generator};
use sessionflow::parse::Limits;
use sessionflow::replay::{replay, ReplayOptions};

/// The per-record and per-request allocations (bodies, keys, headers, parse buffers) cost
/// less in mimalloc's thread-local pools than in glibc's arenas: measured through `ingest`
/// (docs/benchmarks.md, session 9).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Write realistic synthetic Clerk traffic as NDJSON, or send it to Kafka.
    Generate(GenerateArgs),
    /// Run the live pipeline on Kafka.
    Run(RunArgs),
    /// Run the real pipeline on an embedded Kafka (no external services) fed by the generator.
    Demo(DemoArgs),
    /// Receive Clerk's webhooks (Svix-signed) and write them to the input topic.
    Ingest(IngestArgs),
    /// Print the JSON Schema of an output (docs/consuming.md); without NAME, list them.
    Schema(SchemaArgs),
}

#[derive(clap::Args)]
struct SchemaArgs {
    /// The schema to print.
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(
        sessionflow::schema::SCHEMAS.iter().map(|s| s.name)
    ))]
    name: Option<String>,
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration: Option<u64>,
    /// Generated records per second.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// Address of /metrics, /healthz and /readyz (port 0: any free port, named in the banner).
    #[arg(long, default_value = "127.0.0.1:9464")]
    http_listen: String,
    /// Address of the embedded `sessionflow ingest` (POST /webhooks/clerk; port 0: any free
    /// port, named in the banner).
    #[arg(long, default_value = "127.0.0.1:9470")]
    ingest_listen: String,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Configuration file (TOML); see config/sessionflow.toml for every key.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Kafka bootstrap servers (the `brokers` key).
    #[arg(long)]
    brokers: Option<String>,
    /// Consumer group id (the `group_id` key).
    #[arg(long)]
    group_id: Option<String>,
    /// Input topic (the `topics.input` key).
    #[arg(long)]
    input_topic: Option<String>,
    /// Address of the HTTP listener (the `http.listen` key).
    #[arg(long)]
    http_listen: Option<String>,
    /// Any key, dotted: --set lifecycle.idle_timeout_ms=0 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(clap::Args)]
struct IngestArgs {
    /// Configuration file (TOML); the `[ingest]` section and `topics.input`, `brokers`, `[kafka]`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to receive webhooks on (the `ingest.listen` key).
    #[arg(long)]
    listen: Option<String>,
    /// Any key, dotted: --set ingest.tolerance_s=300 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(clap::Args)]
struct GenerateArgs {
    /// Number of sessions to simulate (about five records each).
    #[arg(long, default_value_t = 1000)]
    sessions: u64,
    /// Seed of the generator: the same seed and flags give the same records, byte for byte
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop after this many records (default: every record of every session).
    #[arg(long)]
    records: Option<u64>,
    /// Output NDJSON file, or - for standard output.
    #[arg(long, default_value = "-")]
    output: String,
    /// Send to Kafka at these bootstrap servers instead of writing NDJSON.
    #[arg(long, requires = "topic")]
    brokers: Option<String>,
    /// Topic to send to (with --brokers); records are keyed by session id.
    #[arg(long)]
    topic: Option<String>,
    /// Records per second when sending to Kafka (default: as fast as possible).
    #[arg(long)]
    rate: Option<u64>,
    /// Compression of the records sent to Kafka: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "lz4")]
    compression: String,
    /// Post the generated webhook events, Svix-signed, to this URL
    /// (http://host:port/webhooks/clerk: `sessionflow ingest`; https:// for TLS) instead.
    #[arg(long, requires = "secret", conflicts_with = "brokers")]
    webhook: Option<String>,
    /// CA certificates (PEM) an https:// --webhook's certificate must chain to (default:
    /// SSL_CERT_FILE, else /etc/ssl/certs/ca-certificates.crt).
    #[arg(long, requires = "webhook")]
    webhook_ca: Option<std::path::PathBuf>,
    /// The signing secret (whsec_…) for --webhook.
    #[arg(long)]
    secret: Option<String>,
    /// Keep-alive connections posting at once (with --webhook).
    #[arg(long, default_value_t = 8)]
    connections: usize,
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
    /// How far behind the largest event time the watermark trails, in milliseconds
    #[arg(long, default_value_t = sessionflow::engine::DEFAULT_ALLOWED_LATENESS_MS)]
    allowed_lateness_ms: i64,
    /// Watermark at end of input (default: the largest updated_at seen).
    #[arg(long)]
    until_ms: Option<i64>,
    /// How long a terminal session is kept (past its last status change, by the watermark)
    /// to recognise duplicates and resurrections, in milliseconds
    #[arg(long, default_value_t = sessionflow::engine::DEFAULT_TERMINAL_RETENTION_MS)]
    terminal_retention_ms: i64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(args) => run_replay(args),
        Command::Generate(args) => run_generate(args),
        Command::Run(args) => run_live(args),
        Command::Demo(args) => run_demo(args),
        Command::Ingest(args) => run_ingest(args),
        Command::Schema(args) => print_schema(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sessionflow: error: {e:#}");
            exit_code(&e)
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
            max_sessions: None,
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
    // The clock includes opening the input.
    let started = std::time::Instant::now();
    let mut expected_bytes = None;
    let mut summary = if args.input == "-" {
        replay(io::stdin().lock(), output, dlq, &options)
    } else {
        let file =
            File::open(&args.input).with_context(|| format!("cannot open input {}", args.input))?;
        expected_bytes = file
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        // Read, not memory-mapped: a file truncated during the run then ends it like any
        // other end of input instead of killing it with SIGBUS, and reading 4 MiB blocks
        // measured faster than a populated mapping (docs/benchmarks.md).
        replay(file, output, dlq, &options)
    }
    .context("replay failed")?;
    summary.elapsed = started.elapsed();
    eprintln!("sessionflow {}", summary.line());
    if let Some(expected) = expected_bytes.filter(|&size| summary.input_bytes < size) {
        anyhow::bail!(
            "input {} shrank while it was read: {} of its {} bytes were read, and the output covers only those",
            args.input,
            summary.input_bytes,
            expected
        );
    }
    Ok(())
}

fn print_schema(args: SchemaArgs) -> anyhow::Result<()> {
    use sessionflow::schema::{find, SCHEMAS};
    let Some(name) = args.name else {
        for schema in SCHEMAS {
            println!("{:<22} {}", schema.name, schema.describes);
        }
        return Ok(());
    };
    // The parser admits only known names (a usage error, exit 2, otherwise).
    let schema = find(&name).context("no such schema")?;
    print!("{}", schema.json);
    Ok(())
}

fn run_generate(args: GenerateArgs) -> anyhow::Result<()> {
    if let (Some(url), Some(secret)) = (&args.webhook, &args.secret) {
        let target = sessionflow::generate::webhooks::WebhookTarget::parse(
            url,
            secret,
            args.connections,
            args.webhook_ca.as_deref(),
        )?;
        let options = GenerateOptions::new(args.sessions, args.seed);
        let posted = sessionflow::generate::webhooks::post(
            options,
            args.records.unwrap_or(u64::MAX),
            &target,
            args.rate,
        )?;
        eprintln!(
            "sessionflow generate: {} webhooks answered 200, {} refused, {} retried after 503; {:.0}/s, latency p50 {:.2} ms, p99 {:.2} ms",
            posted.accepted,
            posted.failed,
            posted.retried,
            posted.accepted as f64 / posted.seconds.max(1e-9),
            posted.p50_ms,
            posted.p99_ms
        );
        anyhow::ensure!(
            posted.failed == 0,
            "{} webhooks were refused",
            posted.failed
        );
        return Ok(());
    }
    if let (Some(brokers), Some(topic)) = (&args.brokers, &args.topic) {
        let options = GenerateOptions::new(args.sessions, args.seed);
        let limit = args.records.unwrap_or(u64::MAX);
        let sent = sessionflow::generate::send_to_kafka(
            options,
            limit,
            brokers,
            topic,
            args.rate,
            &args.compression,
        )?;
        eprintln!("sessionflow generate: sent {sent} records to {topic}");
        return Ok(());
    }
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

/// The configuration from a file, flags that name a key, and `--set KEY=VALUE` pairs.
fn load_config(
    file: Option<&std::path::Path>,
    flags: impl IntoIterator<Item = (&'static str, Option<String>)>,
    sets: &[String],
) -> anyhow::Result<sessionflow::config::Config> {
    let mut overrides: Vec<(String, String)> = Vec::new();
    for (key, value) in flags {
        if let Some(value) = value {
            overrides.push((key.into(), value));
        }
    }
    for pair in sets {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("--set {pair:?}: expected KEY=VALUE"))?;
        overrides.push((key.trim().into(), value.trim().into()));
    }
    Ok(sessionflow::config::load(file, &overrides)?)
}

fn run_ingest(args: IngestArgs) -> anyhow::Result<()> {
    let config = load_config(
        args.config.as_deref(),
        [("ingest.listen", args.listen)],
        &args.set,
    )?;
    init_tracing(config.log_format);
    let runtime = runtime()?;
    let request_timeout = config.ingest.request_timeout;
    let result = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        spawn_signal_handler(shutdown.clone(), request_timeout);
        sessionflow::ingest::serve(config, shutdown).await
    });
    stop_runtime(runtime);
    result
}

fn run_live(args: RunArgs) -> anyhow::Result<()> {
    let config = load_config(
        args.config.as_deref(),
        [
            ("brokers", args.brokers),
            ("group_id", args.group_id),
            ("topics.input", args.input_topic),
            ("http.listen", args.http_listen),
        ],
        &args.set,
    )?;
    init_tracing(config.log_format);
    let runtime = runtime()?;
    let drain_timeout = config.drain_timeout;
    let result = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        spawn_signal_handler(shutdown.clone(), drain_timeout);
        let metrics = sessionflow::metrics::install(Duration::from_secs(10))?;
        serve_and_run(
            config,
            shutdown,
            sessionflow::app::Handles::default(),
            metrics,
            None,
        )
        .await
    });
    stop_runtime(runtime);
    result
}

/// Stops the runtime without waiting for a task still blocked in a client call (a metadata
/// request during start-up waits up to its timeout): what mattered has ended by now.
fn stop_runtime(runtime: tokio::runtime::Runtime) {
    runtime.shutdown_timeout(Duration::from_millis(500));
}

/// The HTTP listener and the pipeline, until `shutdown`.
/// `listener`: `http.listen` bound already (the demo's), or `None` to bind it here.
async fn serve_and_run(
    config: sessionflow::config::Config,
    shutdown: CancellationToken,
    handles: sessionflow::app::Handles,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    listener: Option<tokio::net::TcpListener>,
) -> anyhow::Result<()> {
    let listener = match listener {
        Some(listener) => listener,
        None => sessionflow::http::bind(config.http_listen, "http.listen")?,
    };
    let http = sessionflow::http::serve(
        listener,
        metrics,
        &handles,
        config.liveness_timeout,
        shutdown.clone(),
    );
    let result = sessionflow::app::run(config, shutdown.clone(), handles).await;
    shutdown.cancel();
    let _ = http.await;
    result
}

fn run_demo(args: DemoArgs) -> anyhow::Result<()> {
    init_tracing_at("warn", sessionflow::config::LogFormat::Text);
    let runtime = runtime()?;
    let result = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let listen = sessionflow::demo::DemoListen {
            http: args.http_listen,
            ingest: args.ingest_listen,
        };
        let metrics = sessionflow::metrics::install(Duration::from_secs(10))?;
        let mut demo = sessionflow::demo::Demo::start(args.rate, &listen, metrics.clone()).await?;
        let http_listener = demo.take_http_listener();
        spawn_signal_handler(shutdown.clone(), demo.config.drain_timeout);
        let handles = sessionflow::app::Handles::default();
        let status = tokio::spawn(sessionflow::demo::print_status(
            handles.clone(),
            shutdown.clone(),
            args.duration.map(Duration::from_secs),
        ));
        let result = serve_and_run(
            demo.config.clone(),
            shutdown.clone(),
            handles.clone(),
            metrics,
            http_listener,
        )
        .await;
        shutdown.cancel();
        let _ = status.await;
        demo.stop().await;
        // A run that failed says why instead (sessionflow: error: …), not an empty summary.
        if result.is_ok() {
            sessionflow::demo::print_summary(&handles);
        }
        result
    });
    stop_runtime(runtime);
    result
}

/// The live pipeline's runtime: two workers (the loop, and HTTP and signals beside it).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn init_tracing(format: sessionflow::config::LogFormat) {
    init_tracing_at("info", format);
}

/// Logs to stderr at `RUST_LOG`'s levels (`default` without it), as text or JSON lines.
fn init_tracing_at(default: &str, format: sessionflow::config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(false);
    match format {
        sessionflow::config::LogFormat::Text => builder.init(),
        sessionflow::config::LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

/// Exit codes: 0 clean stop, 1 a failure at run time, 2 usage or configuration (clap's usage
/// errors exit 2 too), 130 a shutdown cut short (a second signal, or past the grace).
const EXIT_CONFIGURATION: u8 = 2;

fn exit_code(error: &anyhow::Error) -> ExitCode {
    if error
        .chain()
        .any(|cause| cause.is::<sessionflow::config::ConfigError>())
    {
        ExitCode::from(EXIT_CONFIGURATION)
    } else {
        ExitCode::FAILURE
    }
}

/// How long past `drain_timeout_ms` a shutdown may take before the process exits anyway:
/// librdkafka's blocking calls (a commit, a transaction, closing a consumer) can each wait
/// for a broker that is away, and a stop must not wait for the broker.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Exit code of a shutdown cut short by [`SHUTDOWN_GRACE`] or a second signal.
const EXIT_UNDRAINED: i32 = 130;

/// First SIGTERM/SIGINT: drain and stop, within `drain_timeout` plus [`SHUTDOWN_GRACE`] (past
/// that the process exits without finishing: uncommitted input is read again on restart).
/// Second: exit at once.
fn spawn_signal_handler(shutdown: CancellationToken, drain_timeout: Duration) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(error) => {
                    tracing::warn!(%error, "Cannot listen for SIGTERM.");
                    return;
                }
            };
        for count in 0.. {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            if count == 0 {
                tracing::info!("Signal received: draining (a second signal exits at once).");
                shutdown.cancel();
                let bound = drain_timeout + SHUTDOWN_GRACE;
                std::thread::spawn(move || {
                    std::thread::sleep(bound);
                    tracing::error!(
                        bound_ms = bound.as_millis() as u64,
                        "Shutdown did not finish within drain_timeout_ms + 10 s (a broker away?); exiting. Uncommitted input is read again after a restart."
                    );
                    std::process::exit(EXIT_UNDRAINED);
                });
            } else {
                tracing::warn!("Second signal: exiting without draining.");
                std::process::exit(EXIT_UNDRAINED);
            }
        }
    });
}
