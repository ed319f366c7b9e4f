//! `sessionflow demo`: the real pipeline (same code path as `run`) on librdkafka's in-process
//! mock cluster, fed by the generator at a steady rate — its webhook events signed and posted
//! through `sessionflow ingest` (the same code path as the `ingest` command), the rest written
//! straight to the input topic — with a status line a second and a summary at the end. Needs
//! nothing but this binary.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use tokio_util::sync::CancellationToken;

use crate::app::Handles;
use crate::config::{self, Config};
use crate::engine::{DEFAULT_ALLOWED_LATENESS_MS, DEFAULT_TERMINAL_RETENTION_MS};
use crate::generate::webhooks::{Poster, WebhookTarget};
use crate::generate::{self, Compression, GenerateOptions};
use crate::kafka::lock;
use crate::model::Cause;
use crate::stats::Summary;

/// The demo's consumer group (its changelog is `<group>.state`).
const DEMO_GROUP: &str = "sessionflow-demo";
const INPUT: &str = "clerk.sessions";
const PARTITIONS: i32 = 4;
/// The embedded cluster's `message.max.bytes` (librdkafka's mock cluster: Kafka's default).
const MOCK_MAX_MESSAGE_BYTES: usize = 1_048_588;
/// The demo's webhook signing secret (base64 of "sessionflow-demo-signing-key"): printed in
/// the banner, so that a user can post signed webhooks of their own.
pub const DEMO_SECRET: &str = "whsec_c2Vzc2lvbmZsb3ctZGVtby1zaWduaW5nLWtleQ==";
/// Keep-alive connections the demo's webhooks are posted over.
const WEBHOOK_CONNECTIONS: usize = 16;

/// Where the demo listens.
#[derive(Clone, Debug)]
pub struct DemoListen {
    /// `/metrics`, `/healthz`, `/readyz` of the pipeline (and ingest's series beside them).
    pub http: String,
    /// `sessionflow ingest`'s `POST /webhooks/clerk`.
    pub ingest: String,
}

/// The embedded cluster, ingest, and the generator feeding both.
pub struct Demo {
    pub config: Config,
    /// The pipeline's `/metrics` port, bound at start; [`Demo::take_http_listener`] hands it
    /// to the HTTP server.
    http_listener: Option<tokio::net::TcpListener>,
    cluster: MockCluster<'static, DefaultProducerContext>,
    stop: Arc<AtomicBool>,
    generator: Option<JoinHandle<Arc<generate::webhooks::DeliveryCounts>>>,
    ingest: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    ingest_shutdown: CancellationToken,
}

impl Demo {
    /// Starts the mock cluster, creates the topics, starts ingest (its series on `metrics`)
    /// and the generator.
    pub async fn start(
        rate: u64,
        listen: &DemoListen,
        metrics: PrometheusHandle,
    ) -> anyhow::Result<Demo> {
        // Both ports are bound here and kept, so that an address in use is an error before
        // anything is printed or started, no other process can take a port between this
        // check and its use, and port 0 names the port chosen.
        let bind = |address: &str, flag: &str| {
            let parsed: SocketAddr = address.parse().with_context(|| {
                format!("{address} ({flag}) is not an address like 127.0.0.1:8080")
            })?;
            crate::http::bind(parsed, flag)
        };
        let http_listener = bind(&listen.http, "--http-listen")?;
        let ingest_listener = bind(&listen.ingest, "--ingest-listen")?;
        let http_listen = http_listener.local_addr()?;
        let ingest_listen = ingest_listener.local_addr()?;
        let cluster = MockCluster::new(1).context("starting the embedded Kafka")?;
        let bootstrap = cluster.bootstrap_servers();
        let defaults = config::RawConfig::default();
        // The changelog too: since the TLS/SASL build change the mock cluster's CreateTopics
        // (the admin API path the pipeline takes for a missing changelog) times out, while
        // its own create_topic works (cause not isolated; the real broker is unaffected).
        for topic in [
            INPUT,
            &defaults.topics.transitions,
            &defaults.topics.anomalies,
            &defaults.topics.dead_letters,
            &format!("{DEMO_GROUP}.state"),
        ] {
            cluster
                .create_topic(topic, PARTITIONS, 1)
                .with_context(|| format!("creating {topic}"))?;
        }
        // Event times start now and keep pace with the wall clock: Clerk's time runs
        // `factor` times faster (a day-long session lasts a minute or so), so that lifecycles
        // end, expire and are corrected within a short demo, while the watermark and latency
        // panels show real numbers. The lateness and retention are Clerk's defaults on the
        // same compressed scale.
        let script = GenerateOptions::new(u64::MAX / 8, 1);
        let compression = Compression::tracking_wall_clock(script, rate, crate::clock::now_ms());
        let mut config = config::load(
            None,
            &[
                ("brokers".into(), bootstrap.clone()),
                ("group_id".into(), DEMO_GROUP.into()),
                ("http.listen".into(), http_listen.to_string()),
                ("topics.input".into(), INPUT.into()),
                ("ingest.listen".into(), ingest_listen.to_string()),
                ("ingest.secrets".into(), DEMO_SECRET.into()),
                (
                    "lifecycle.allowed_lateness_ms".into(),
                    compression
                        .duration_ms(DEFAULT_ALLOWED_LATENESS_MS)
                        .max(1)
                        .to_string(),
                ),
                (
                    "lifecycle.terminal_retention_ms".into(),
                    compression
                        .duration_ms(DEFAULT_TERMINAL_RETENTION_MS)
                        .max(1)
                        .to_string(),
                ),
                // The future-time check and the idle advance keep their defaults: records
                // are sent when their event times come, never ahead of the clock.
            ],
        )?;
        // Created above with the cluster's defaults; the mock answers no DescribeConfigs.
        config.topics.dead_letters_max_message_bytes = Some(MOCK_MAX_MESSAGE_BYTES);
        let ingest_shutdown = CancellationToken::new();
        let mut ingest = tokio::spawn(crate::ingest::serve_on(
            ingest_listener,
            config.clone(),
            metrics,
            ingest_shutdown.clone(),
        ));
        wait_for_ingest(&ingest_listen.to_string(), &mut ingest).await?;
        let webhooks = WebhookTarget::parse(
            &format!("http://{ingest_listen}{}", crate::ingest::WEBHOOK_PATH),
            DEMO_SECRET,
            WEBHOOK_CONNECTIONS,
            None,
        )?;
        let stop = Arc::new(AtomicBool::new(false));
        let generator = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let options = GenerateOptions {
                    compression: Some(compression),
                    ..script
                };
                // Until ingest listens, its posts are retried (as Svix retries).
                let poster = Poster::start(webhooks, stop.clone());
                let sent =
                    generate::send_until(options, &bootstrap, INPUT, rate, &stop, Some(&poster));
                if let Err(error) = sent {
                    eprintln!("demo: generator stopped: {error:#}");
                }
                poster.finish()
            })
        };
        println!(
            "sessionflow demo: embedded Kafka at {} (topics {INPUT} → clerk.session.transitions, \
             clerk.session.anomalies, clerk.sessions.dlq; {PARTITIONS} partitions), {rate} records/s.",
            cluster.bootstrap_servers()
        );
        println!(
            "  event times start now; Clerk's clock runs {:.0}x (a day-long session lasts {:.0} s)",
            compression.factor,
            86_400.0 / compression.factor
        );
        println!(
            "  Clerk webhooks: the generator's session and user events are signed and posted to \
             sessionflow ingest at http://{}{} (secret {DEMO_SECRET}), the rest written to {INPUT}",
            ingest_listen,
            crate::ingest::WEBHOOK_PATH,
        );
        println!(
            "  metrics (pipeline and ingest): http://{http_listen}/metrics   readiness: http://{http_listen}/readyz"
        );
        println!(
            "  read the output while it runs: kcat -C -b {} -t clerk.session.transitions",
            cluster.bootstrap_servers()
        );
        Ok(Demo {
            config,
            http_listener: Some(http_listener),
            cluster,
            stop,
            generator: Some(generator),
            ingest: Some(ingest),
            ingest_shutdown,
        })
    }

    /// The listener of `config.http_listen`, bound at start (once).
    pub fn take_http_listener(&mut self) -> Option<tokio::net::TcpListener> {
        self.http_listener.take()
    }

    /// Stops the generator (its webhooks queued are posted), then ingest, then the cluster;
    /// prints what the webhooks met.
    pub async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let mut webhooks = None;
        if let Some(generator) = self.generator.take() {
            webhooks = tokio::task::spawn_blocking(move || generator.join().ok())
                .await
                .ok()
                .flatten();
        }
        self.ingest_shutdown.cancel();
        if let Some(ingest) = self.ingest.take() {
            match ingest.await {
                Ok(Err(error)) => eprintln!("demo: ingest stopped: {error:#}"),
                Err(error) => eprintln!("demo: ingest ended abnormally: {error}"),
                Ok(Ok(())) => {}
            }
        }
        if let Some(counts) = webhooks {
            println!(
                "webhooks: {} answered 200 by sessionflow ingest, {} retried after 503, {} given up",
                counts.accepted.load(Ordering::Relaxed),
                counts.retried.load(Ordering::Relaxed),
                counts.failed.load(Ordering::Relaxed),
            );
        }
        drop(self.cluster);
    }
}

/// Waits (30 s at most) until the embedded ingest answers `/readyz` with 200; its own error if
/// it ended (a port taken, the topic missing).
async fn wait_for_ingest(
    address: &str,
    ingest: &mut tokio::task::JoinHandle<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if ingest.is_finished() {
            return match ingest.await {
                Ok(Err(error)) => Err(error.context("starting the embedded sessionflow ingest")),
                _ => Err(anyhow::anyhow!(
                    "the embedded sessionflow ingest ended at start"
                )),
            };
        }
        let probe = async {
            let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
            let request =
                format!("GET /readyz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.ok()?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await.ok()?;
            Some(answer.starts_with(b"HTTP/1.1 200"))
        };
        let ready = tokio::time::timeout(Duration::from_secs(2), probe).await;
        if matches!(ready, Ok(Some(true))) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the embedded sessionflow ingest was not ready within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One line a second until `shutdown` (or `duration`, which then triggers it).
pub async fn print_status(
    handles: Handles,
    shutdown: CancellationToken,
    duration: Option<Duration>,
) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_records = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if duration.is_some_and(|d| started.elapsed() >= d) {
            shutdown.cancel();
            return;
        }
        let progress = lock(&handles.status).clone();
        let s = &progress.stats;
        if s.records == 0 && progress.partitions == 0 {
            // The embedded group coordinator delays the first assignment by about 3 s.
            println!(
                "{:>4}s  waiting for partitions to be assigned (the group's first rebalance)",
                started.elapsed().as_secs()
            );
            continue;
        }
        println!(
            "{:>4}s  {:>7} records/s  transitions: observed {} inferred {} correction {}  anomalies {}  dead letters {}  sessions held {}  lag {}",
            started.elapsed().as_secs(),
            s.records - last_records,
            s.transitions_by_cause(Cause::Observed),
            s.transitions_by_cause(Cause::Inferred),
            s.transitions_by_cause(Cause::Correction),
            s.anomalies_total(),
            s.invalid_total(),
            progress.sessions_held,
            progress.consumer_lag,
        );
        last_records = s.records;
    }
}

/// The closing summary.
pub fn print_summary(handles: &Handles) {
    let progress = lock(&handles.status).clone();
    println!(
        "summary: {}",
        Summary {
            stats: &progress.stats,
            sessions_held: progress.sessions_held,
        }
    );
}
