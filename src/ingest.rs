//! `sessionflow ingest`: Clerk's webhooks (Svix, the Standard Webhooks scheme) into the input
//! topic. A request is verified before its body is parsed or written, and answered 200 only
//! once the broker acknowledged its write (idempotent producer, `acks=all`); 503 with
//! `Retry-After` when the broker is away or the queue is full, never later than
//! `ingest.request_timeout_ms`, so that Svix retries what was not written.

mod recent;
pub mod signature;
pub mod tls;

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use self::recent::RecentIds;
use self::signature::{Refusal, SignedHeaders, Verifier};
use crate::config::{Config, ConfigError};
use crate::http::ConnectionLimits;
use crate::http::ListenerLimits;
use crate::kafka::{base_config, client_error, lock, set_default};
use crate::log_limit::LogLimit;
use crate::metrics as m;
use crate::parse::{Limits, ParseError, Parser};

/// Where Clerk (Svix) posts.
pub const WEBHOOK_PATH: &str = "/webhooks/clerk";

/// Svix delivers from many addresses, an ingress from one: the per-client cap is the total.
fn listener_limits(config: &crate::config::Ingest) -> ListenerLimits {
    let connections = (config.max_concurrent_requests * 2).max(64);
    ListenerLimits {
        // A request head must fit; the body is read apart, bounded by max_body_bytes.
        max_buf_bytes: 64 * 1024,
        header_timeout: Duration::from_secs(5),
        connection_lifetime: Duration::from_secs(300),
        connections: ConnectionLimits {
            total: connections,
            per_client: connections,
            idle_timeout: Duration::from_secs(30),
        },
    }
}

/// What happened to one request: the `outcome` label of `sessionflow_ingest_requests_total`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Duplicate,
    Refused,
    TooLarge,
    UnsupportedMediaType,
    BadRequest,
    Timeout,
    Unavailable,
    Busy,
}

impl Outcome {
    pub const ALL: [Outcome; 9] = [
        Outcome::Accepted,
        Outcome::Duplicate,
        Outcome::Refused,
        Outcome::TooLarge,
        Outcome::UnsupportedMediaType,
        Outcome::BadRequest,
        Outcome::Timeout,
        Outcome::Unavailable,
        Outcome::Busy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Duplicate => "duplicate",
            Outcome::Refused => "refused",
            Outcome::TooLarge => "too_large",
            Outcome::UnsupportedMediaType => "unsupported_media_type",
            Outcome::BadRequest => "bad_request",
            Outcome::Timeout => "timeout",
            Outcome::Unavailable => "unavailable",
            Outcome::Busy => "busy",
        }
    }

    /// The response: a short fixed body, never an echo of the request.
    fn response(self) -> Response {
        let (status, body) = match self {
            Outcome::Accepted | Outcome::Duplicate => (StatusCode::OK, "ok\n"),
            Outcome::Refused => (StatusCode::UNAUTHORIZED, "invalid signature\n"),
            Outcome::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "body too large\n"),
            Outcome::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected application/json\n",
            ),
            Outcome::BadRequest => (StatusCode::BAD_REQUEST, "not a Clerk webhook event\n"),
            Outcome::Timeout => (StatusCode::REQUEST_TIMEOUT, "body not received in time\n"),
            Outcome::Unavailable | Outcome::Busy => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "5")],
                    "not written; retry\n",
                )
                    .into_response()
            }
        };
        (status, body).into_response()
    }
}

/// The ingest producer's context: librdkafka's log and statistics, as the pipeline's.
pub struct IngestContext;

impl ClientContext for IngestContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        crate::kafka::forward_log(level, facility, message);
    }

    fn stats(&self, statistics: rdkafka::statistics::Statistics) {
        crate::kafka::stats::export(crate::kafka::stats::ClientRole::Ingest, &statistics, None);
    }
}

struct Ingest {
    verifier: Verifier,
    producer: FutureProducer<IngestContext>,
    topic: String,
    max_body_bytes: usize,
    request_timeout: Duration,
    permits: Arc<Semaphore>,
    recent: Mutex<RecentIds>,
    broker_reachable: Arc<AtomicBool>,
    metrics: PrometheusHandle,
    requests: RequestMetrics,
    /// Broken signed payloads (400).
    broken_warnings: LogLimit,
    /// Writes not queued or failed (503).
    write_warnings: LogLimit,
}

/// Where a webhook's write goes, owned: what [`Parser::webhook_route`] read of its body.
struct Route {
    kind: String,
    session_id: Option<String>,
}

thread_local! {
    /// One parser per runtime thread, so its buffers are reused across requests. Bodies are
    /// bounded by `max_body_bytes` before they get here, so the size limit is the largest
    /// possible; nesting keeps the default limit.
    static ROUTE_PARSER: RefCell<Parser> = RefCell::new(Parser::new(Limits {
        max_record_bytes: usize::MAX,
        ..Limits::default()
    }));
}

/// Reads a signed body's route with the same readers as `run`.
fn route(body: &[u8]) -> Result<Route, ParseError> {
    ROUTE_PARSER.with_borrow_mut(|parser| {
        parser.webhook_route(body, |read| {
            read.map(|route| Route {
                kind: route.kind.to_owned(),
                session_id: route.data_id.map(str::to_owned),
            })
        })
    })
}

/// A signed header by its Svix name or its unbranded Standard Webhooks name.
fn signed_header<'h>(headers: &'h HeaderMap, [svix, unbranded]: [&str; 2]) -> Option<&'h str> {
    headers
        .get(svix)
        .or_else(|| headers.get(unbranded))
        .and_then(|v| v.to_str().ok())
}

const ID_HEADERS: [&str; 2] = ["svix-id", "webhook-id"];
const TIMESTAMP_HEADERS: [&str; 2] = ["svix-timestamp", "webhook-timestamp"];
const SIGNATURE_HEADERS: [&str; 2] = ["svix-signature", "webhook-signature"];

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// The per-request series, registered once: a lookup by name and labels per request would
/// cost more than the signature check.
struct RequestMetrics {
    by_outcome: [metrics::Counter; Outcome::ALL.len()],
    in_flight: metrics::Gauge,
    write_seconds: metrics::Histogram,
}

impl RequestMetrics {
    fn register() -> Self {
        for refusal in Refusal::ALL {
            metrics::counter!(m::INGEST_REFUSALS_TOTAL, "reason" => refusal.as_str()).increment(0);
        }
        let in_flight = metrics::gauge!(m::INGEST_REQUESTS_IN_FLIGHT);
        in_flight.set(0.0);
        RequestMetrics {
            by_outcome: Outcome::ALL.map(|outcome| {
                let counter =
                    metrics::counter!(m::INGEST_REQUESTS_TOTAL, "outcome" => outcome.as_str());
                counter.increment(0);
                counter
            }),
            in_flight,
            write_seconds: metrics::histogram!(m::INGEST_WRITE_SECONDS),
        }
    }
}

impl Ingest {
    fn count(&self, outcome: Outcome) -> Response {
        self.requests.by_outcome[outcome as usize].increment(1);
        outcome.response()
    }

    fn refuse(&self, refusal: Refusal) -> Response {
        metrics::counter!(m::INGEST_REFUSALS_TOTAL, "reason" => refusal.as_str()).increment(1);
        self.count(Outcome::Refused)
    }
}

/// Decrements the in-flight gauge however the request ends.
struct InFlight<'a>(&'a metrics::Gauge);

impl<'a> InFlight<'a> {
    fn start(gauge: &'a metrics::Gauge) -> Self {
        gauge.increment(1.0);
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

async fn receive(State(ingest): State<Arc<Ingest>>, request: Request) -> Response {
    let Ok(_permit) = ingest.permits.clone().try_acquire_owned() else {
        return ingest.count(Outcome::Busy);
    };
    let _in_flight = InFlight::start(&ingest.requests.in_flight);
    let deadline = Instant::now() + ingest.request_timeout;
    let (parts, body) = request.into_parts();
    let (Some(id), Some(timestamp), Some(signatures)) = (
        signed_header(&parts.headers, ID_HEADERS),
        signed_header(&parts.headers, TIMESTAMP_HEADERS),
        signed_header(&parts.headers, SIGNATURE_HEADERS),
    ) else {
        return ingest.refuse(Refusal::MissingHeaders);
    };
    if !is_json(&parts.headers) {
        return ingest.count(Outcome::UnsupportedMediaType);
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > ingest.max_body_bytes) {
        return ingest.count(Outcome::TooLarge);
    }
    let body = match tokio::time::timeout_at(
        deadline.into(),
        axum::body::to_bytes(body, ingest.max_body_bytes),
    )
    .await
    {
        Err(_) => return ingest.count(Outcome::Timeout),
        Ok(Err(_)) => return ingest.count(Outcome::TooLarge),
        Ok(Ok(body)) => body,
    };
    let signed = SignedHeaders {
        id,
        timestamp,
        signatures,
    };
    if let Err(refusal) = ingest
        .verifier
        .verify(signed, &body, crate::clock::now_ms() / 1000)
    {
        return ingest.refuse(refusal);
    }
    if lock(&ingest.recent).contains(id) {
        return ingest.count(Outcome::Duplicate);
    }
    let route = match route(&body) {
        Ok(route) => route,
        Err(error) => {
            // Signed by Clerk but not an event: the sender is trusted, the payload broken.
            if let Some(held_back) = ingest.broken_warnings.allow(crate::clock::now_ms()) {
                tracing::warn!(
                    webhook_id = id,
                    bytes = body.len(),
                    %error,
                    held_back,
                    "A signed webhook is not a Clerk event (a JSON object with a string type); refused with 400."
                );
            }
            return ingest.count(Outcome::BadRequest);
        }
    };
    let key = match (route.kind.starts_with("session."), &route.session_id) {
        (true, Some(session)) => session,
        (true, None) => {
            if let Some(held_back) = ingest.broken_warnings.allow(crate::clock::now_ms()) {
                tracing::warn!(webhook_id = id, kind = %route.kind, held_back, "A signed session webhook has no data.id (a string); refused with 400.");
            }
            return ingest.count(Outcome::BadRequest);
        }
        // Not a session event: its own id keeps redeliveries together.
        (false, _) => id,
    };
    write(&ingest, id, timestamp, &route.kind, key, &body, deadline).await
}

/// Writes the body unchanged and waits for the broker's acknowledgement, until `deadline`.
async fn write(
    ingest: &Ingest,
    id: &str,
    timestamp: &str,
    kind: &str,
    key: &str,
    body: &Bytes,
    deadline: Instant,
) -> Response {
    let headers = OwnedHeaders::new_with_capacity(3)
        .insert(Header {
            key: "svix-id",
            value: Some(id),
        })
        .insert(Header {
            key: "svix-timestamp",
            value: Some(timestamp),
        })
        .insert(Header {
            key: "type",
            value: Some(kind),
        });
    let record = FutureRecord::to(&ingest.topic)
        .payload(&body[..])
        .key(key)
        .headers(headers);
    let started = Instant::now();
    let delivery = match ingest.producer.send_result(record) {
        Ok(delivery) => delivery,
        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
            return ingest.count(Outcome::Unavailable)
        }
        Err((error, _)) => {
            if let Some(held_back) = ingest.write_warnings.allow(crate::clock::now_ms()) {
                tracing::warn!(%error, held_back, "A webhook could not be queued for writing; answered 503 (Svix retries).");
            }
            return ingest.count(Outcome::Unavailable);
        }
    };
    match tokio::time::timeout_at(deadline.into(), delivery).await {
        Ok(Ok(Ok(_))) => {
            ingest
                .requests
                .write_seconds
                .record(started.elapsed().as_secs_f64());
            lock(&ingest.recent).insert(id);
            ingest.count(Outcome::Accepted)
        }
        Ok(Ok(Err((error, _)))) => {
            if let Some(held_back) = ingest.write_warnings.allow(crate::clock::now_ms()) {
                tracing::warn!(%error, held_back, "A webhook's write failed; answered 503 (Svix retries).");
            }
            ingest.count(Outcome::Unavailable)
        }
        // Cancelled (the producer went away) or past the deadline: not known to be written.
        Ok(Err(_)) | Err(_) => ingest.count(Outcome::Unavailable),
    }
}

async fn render(State(ingest): State<Arc<Ingest>>) -> String {
    m::set_build_info();
    m::collect_process_metrics();
    ingest.metrics.render()
}

async fn readyz(State(ingest): State<Arc<Ingest>>) -> (StatusCode, &'static str) {
    if ingest.broker_reachable.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "broker not reachable\n")
    }
}

/// Every 2 s, whether the broker answers a metadata request for the topic (`/readyz`).
fn watch_broker(ingest: Arc<Ingest>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let probe = ingest.clone();
            let reachable = tokio::task::spawn_blocking(move || {
                probe
                    .producer
                    .client()
                    .fetch_metadata(Some(&probe.topic), Duration::from_secs(2))
                    .is_ok()
            })
            .await
            .unwrap_or(false);
            ingest.broker_reachable.store(reachable, Ordering::Relaxed);
        }
    });
}

fn producer(config: &Config) -> anyhow::Result<FutureProducer<IngestContext>> {
    let mut client = base_config(&config.kafka_producer);
    for (key, value) in [
        ("enable.idempotence", "true"),
        ("acks", "all"),
        ("compression.type", "lz4"),
        // 5 ms: fewer, larger produce requests for the broker; a request waits at most
        // that much longer (docs/benchmarks.md, session 9).
        ("linger.ms", "5"),
        ("statistics.interval.ms", "1000"),
    ] {
        set_default(&mut client, key, value);
    }
    // A write not acknowledged within the request bound is not waited for: its request has
    // been answered 503 by then.
    set_default(
        &mut client,
        "message.timeout.ms",
        &config.ingest.request_timeout.as_millis().to_string(),
    );
    Ok(client
        .create_with_context(IngestContext)
        .map_err(|e| client_error("ingest producer", e))?)
}

/// The input topic must exist before a webhook is accepted (a write to a missing topic would
/// fail every request with the same error).
async fn check_topic(
    producer: &FutureProducer<IngestContext>,
    config: &Config,
) -> anyhow::Result<()> {
    let topic = config.topics.input.clone();
    let client = producer.clone();
    let brokers = config
        .kafka
        .get("bootstrap.servers")
        .cloned()
        .unwrap_or_default();
    let metadata = tokio::task::spawn_blocking(move || {
        client
            .client()
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
    })
    .await?
    .map_err(|source| crate::kafka::KafkaSetupError::Metadata {
        brokers,
        source: Box::new(source),
        detail: None,
    })?;
    let found = metadata
        .topics()
        .first()
        .is_some_and(|t| t.error().is_none() && !t.partitions().is_empty());
    if !found {
        // Not created here: its partition count is the pipeline's to choose (`run` creates
        // it with topics.create_topics).
        anyhow::bail!(
            "topic {:?} (topics.input) does not exist: create it, or start `sessionflow run` \
             with topics.create_topics = true first",
            config.topics.input
        );
    }
    Ok(())
}

/// Serves `POST /webhooks/clerk` (and `/metrics`, `/healthz`, `/readyz`) until `shutdown`,
/// then finishes the requests in flight and flushes the producer.
pub async fn serve(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let metrics = m::install_for_ingest(Duration::from_secs(10))?;
    serve_with(config, None, metrics, shutdown).await
}

/// [`serve`] on a listener bound already, in a process whose metrics recorder is installed
/// already (`sessionflow demo`, where one `/metrics` shows the pipeline and ingest, and whose
/// ports are bound before it starts anything, so that it can name them, port 0 included).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    config: Config,
    metrics: PrometheusHandle,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    serve_with(config, Some(listener), metrics, shutdown).await
}

/// Serves on `listener`, or binds `ingest.listen` once the configuration is checked.
async fn serve_with(
    config: Config,
    listener: Option<tokio::net::TcpListener>,
    metrics: PrometheusHandle,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if config.ingest.secrets.is_empty() {
        return Err(ConfigError::Invalid {
            key: "ingest.secrets",
            problem: "is empty: set SESSIONFLOW__INGEST__SECRETS or ingest.secrets_file to the endpoint's signing secret (whsec_…)".into(),
        }
        .into());
    }
    let verifier =
        Verifier::new(&config.ingest.secrets, config.ingest.tolerance_s).map_err(|e| {
            ConfigError::Invalid {
                key: "ingest.secrets",
                problem: e.to_string(),
            }
        })?;
    let requests = RequestMetrics::register();
    let tls = config.ingest.tls.as_ref().map(tls::acceptor).transpose()?;
    let listen = config.ingest.listen;
    let listener = match listener {
        Some(listener) => listener,
        None => crate::http::bind(listen, "ingest.listen")?,
    };
    let permits = Arc::new(Semaphore::new(config.ingest.max_concurrent_requests));
    let producer = producer(&config)?;
    check_topic(&producer, &config).await?;
    let ingest = Arc::new(Ingest {
        verifier,
        producer,
        topic: config.topics.input.clone(),
        max_body_bytes: config.ingest.max_body_bytes,
        request_timeout: config.ingest.request_timeout,
        permits: permits.clone(),
        recent: Mutex::new(RecentIds::new(config.ingest.dedup_window)),
        broker_reachable: Arc::new(AtomicBool::new(false)),
        metrics,
        requests,
        broken_warnings: LogLimit::new(Duration::from_secs(10)),
        write_warnings: LogLimit::new(Duration::from_secs(10)),
    });
    watch_broker(ingest.clone(), shutdown.clone());
    let app = Router::new()
        .route(WEBHOOK_PATH, post(receive))
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(ingest.clone());
    let scheme = if tls.is_some() { "HTTPS" } else { "HTTP" };
    let listen = listener.local_addr().unwrap_or(listen);
    tracing::info!(%listen, topic = %config.topics.input, "Receiving Clerk webhooks on {WEBHOOK_PATH} ({scheme}).");
    let server = crate::http::serve_router_tls(
        listener,
        app,
        listener_limits(&config.ingest),
        tls,
        shutdown.clone(),
    );
    shutdown.cancelled().await;
    let _ = server.await;
    // Accepting no more; the requests in flight end within the request bound.
    let all = u32::try_from(config.ingest.max_concurrent_requests).unwrap_or(u32::MAX);
    let finished = tokio::time::timeout(
        config.ingest.request_timeout + Duration::from_secs(1),
        permits.acquire_many(all),
    )
    .await;
    if finished.is_err() {
        tracing::warn!("Requests still in flight at the end of the shutdown bound.");
    }
    let flushing = ingest.clone();
    let _ =
        tokio::task::spawn_blocking(move || flushing.producer.flush(Duration::from_secs(5))).await;
    tracing::info!("Stopped receiving webhooks.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_listed_in_declaration_order() {
        // RequestMetrics indexes its counters by `outcome as usize`.
        for (index, outcome) in Outcome::ALL.into_iter().enumerate() {
            assert_eq!(outcome as usize, index, "{outcome:?}");
        }
    }
}
