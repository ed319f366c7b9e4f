//! `sessionflow generate --webhook URL --secret S`: the generator's Clerk webhook events (the
//! records Clerk sends as webhooks: session and user events), signed as Svix signs them and
//! posted over keep-alive HTTP/1.1 connections, as a load for `sessionflow ingest`. A
//! redelivered event keeps its id (Svix's retries do); a 503 is retried, as Svix would.
//! `https://` URLs are posted over TLS (rustls), trusting the CA certificates of a PEM file.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use sha2::{Digest, Sha256};

use super::{GenerateOptions, Generator};
use crate::ingest::signature::signature_header;
use crate::kafka::lock;

/// Where and how to post.
#[derive(Clone, Debug)]
pub struct WebhookTarget {
    /// `host:port`
    pub address: String,
    pub path: String,
    pub secret: String,
    /// Keep-alive connections posting at once.
    pub connections: usize,
    /// For `https://`: the TLS client and the name the server's certificate must carry.
    tls: Option<Tls>,
}

#[derive(Clone, Debug)]
struct Tls {
    client: Arc<rustls::ClientConfig>,
    server_name: rustls::pki_types::ServerName<'static>,
}

/// Where `https://` targets find their trusted CAs without `--webhook-ca`: `SSL_CERT_FILE`,
/// else the Debian and Ubuntu system bundle.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

impl WebhookTarget {
    /// From `http://host[:port]/path` or `https://host[:port]/path` (ports 80 and 443 by
    /// default). For HTTPS the server's certificate must chain to a CA in `ca_file` (PEM),
    /// or in `SSL_CERT_FILE`'s or the system's bundle when none is given.
    pub fn parse(
        url: &str,
        secret: &str,
        connections: usize,
        ca_file: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let (rest, https) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(rest), _) => (rest, false),
            (_, Some(rest)) => (rest, true),
            _ => anyhow::bail!("--webhook {url:?}: expected http(s)://host[:port]/path"),
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/webhooks/clerk"),
        };
        anyhow::ensure!(!authority.is_empty(), "--webhook {url:?}: no host");
        let (host, address) = match authority.rsplit_once(':') {
            Some((host, _port)) if !authority.ends_with(']') => (host, authority.to_owned()),
            _ => (
                authority,
                format!("{authority}:{}", if https { 443 } else { 80 }),
            ),
        };
        signature_header(secret, "probe", 0, b"")
            .map_err(|_| anyhow::anyhow!("--secret is not whsec_ followed by base64"))?;
        let tls = if https {
            Some(Tls::new(host, ca_file)?)
        } else {
            anyhow::ensure!(
                ca_file.is_none(),
                "--webhook-ca is for https:// URLs; {url:?} is plain HTTP"
            );
            None
        };
        Ok(WebhookTarget {
            address,
            path: path.to_owned(),
            secret: secret.to_owned(),
            connections: connections.max(1),
            tls,
        })
    }
}

impl Tls {
    fn new(host: &str, ca_file: Option<&Path>) -> anyhow::Result<Self> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, ServerName};
        let bundle = match ca_file {
            Some(path) => path.to_owned(),
            None => std::env::var_os("SSL_CERT_FILE")
                .map_or_else(|| SYSTEM_CA_BUNDLE.into(), Into::into),
        };
        let mut roots = rustls::RootCertStore::empty();
        let certificates = CertificateDer::pem_file_iter(&bundle)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("reading CA certificates from {}", bundle.display()))?;
        let (added, _ignored) = roots.add_parsable_certificates(certificates);
        anyhow::ensure!(
            added > 0,
            "{}: no CA certificate in it (PEM, -----BEGIN CERTIFICATE-----)",
            bundle.display()
        );
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(host.to_owned())
            .with_context(|| format!("{host:?} is not a host name or address"))?;
        Ok(Tls {
            client: Arc::new(client),
            server_name,
        })
    }
}

/// What the posting got back.
#[derive(Debug, Default)]
pub struct Posted {
    /// Events answered 200.
    pub accepted: u64,
    /// Answers other than 200 and 503 (each event is then given up).
    pub failed: u64,
    /// 503s, each retried.
    pub retried: u64,
    /// Seconds from the first post to the last answer.
    pub seconds: f64,
    /// Request to response of the events answered 200 (their last attempt), 50th and 99th
    /// percentile, in milliseconds.
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// A webhook event of the generator: session and user events start `{"data":{` (a list
/// response starts `{"data":[`).
pub fn is_webhook(record: &[u8]) -> bool {
    record.starts_with(b"{\"data\":{")
}

/// The event's Svix id: the same for the same event, as Svix's redeliveries keep it.
fn event_id(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("msg_{hex}")
}

/// Posts the generator's webhook events (at most `limit`) at `rate` per second if given.
pub fn post(
    options: GenerateOptions,
    limit: u64,
    target: &WebhookTarget,
    rate: Option<u64>,
) -> anyhow::Result<Posted> {
    let generator = Mutex::new(Generator::new(options));
    let taken = AtomicU64::new(0);
    let counts = DeliveryCounts::default();
    let latencies_us: Mutex<Vec<u64>> = Mutex::new(Vec::new());
    let started = Instant::now();
    let next_event = || -> Option<(u64, Vec<u8>)> {
        let mut generator = lock(&generator);
        let (mut record, mut key) = (Vec::new(), Vec::new());
        loop {
            let n = taken.load(Ordering::Relaxed);
            if n >= limit || !generator.next_record(&mut record, &mut key) {
                return None;
            }
            if is_webhook(&record) {
                taken.store(n + 1, Ordering::Relaxed);
                return Some((n, record));
            }
        }
    };
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..target.connections)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    let mut connection: Option<Connection> = None;
                    while let Some((n, body)) = next_event() {
                        if let Some(rate) = rate.filter(|&r| r > 0) {
                            let due = started + Duration::from_secs_f64(n as f64 / rate as f64);
                            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                                std::thread::sleep(wait);
                            }
                        }
                        let answered = deliver(&mut connection, target, &body, &counts, None)?;
                        if let Some(latency) = answered {
                            lock(&latencies_us).push(latency.as_micros() as u64);
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        let mut last_report = Instant::now();
        while workers.iter().any(|w| !w.is_finished()) {
            std::thread::sleep(Duration::from_millis(50));
            if last_report.elapsed() >= Duration::from_secs(1) {
                last_report = Instant::now();
                let done = counts.accepted.load(Ordering::Relaxed);
                eprintln!(
                    "generate: {done} webhooks answered 200, {} retried after 503, {} refused, {:.0}/s",
                    counts.retried.load(Ordering::Relaxed),
                    counts.failed.load(Ordering::Relaxed),
                    done as f64 / started.elapsed().as_secs_f64()
                );
            }
        }
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("a posting thread panicked"))??;
        }
        Ok(())
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let mut latencies = latencies_us.into_inner().unwrap_or_else(|e| e.into_inner());
    latencies.sort_unstable();
    let percentile = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |&us| us as f64 / 1000.0)
    };
    Ok(Posted {
        accepted: counts.accepted.into_inner(),
        failed: counts.failed.into_inner(),
        retried: counts.retried.into_inner(),
        seconds,
        p50_ms: percentile(0.5),
        p99_ms: percentile(0.99),
    })
}

/// What the deliveries of events met (see [`deliver`]).
#[derive(Debug, Default)]
pub struct DeliveryCounts {
    /// Answered 200.
    pub accepted: AtomicU64,
    /// Given up: another answer than 200 or 503, or a 503 or an unreachable server once
    /// stopping.
    pub failed: AtomicU64,
    /// Attempts answered 503 (or, for the poster, not answered), each tried again.
    pub retried: AtomicU64,
}

/// Delivers one event as Svix does: a 503 is tried again after 200 ms. With `stop` (the
/// demo's poster) an unreachable server is tried again too, and retrying ends once `stop` is
/// set; without it (the load generator) retrying goes on while the answer is 503, and a
/// failed connection is an error. The request-to-answer time of the attempt answered 200.
fn deliver(
    connection: &mut Option<Connection>,
    target: &WebhookTarget,
    body: &[u8],
    counts: &DeliveryCounts,
    stop: Option<&AtomicBool>,
) -> anyhow::Result<Option<Duration>> {
    let id = event_id(body);
    loop {
        let sent_at = Instant::now();
        let retry = match (send(connection, target, &id, body), stop) {
            (Ok(200), _) => {
                counts.accepted.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(sent_at.elapsed()));
            }
            (Err(error), None) => return Err(error),
            (Ok(503), None) => true,
            (Ok(503) | Err(_), Some(stop)) => !stop.load(Ordering::Relaxed),
            (Ok(_), _) => false,
        };
        if !retry {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        counts.retried.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Posts the events handed to it in the background over a few keep-alive connections, as
/// Svix delivers: concurrently, a 503 or an unreachable server retried until it answers 200
/// (or the poster is stopping). `sessionflow demo` routes the generator's webhooks through it
/// to the embedded `sessionflow ingest`.
pub struct Poster {
    queue: Option<SyncSender<Vec<u8>>>,
    workers: Vec<JoinHandle<()>>,
    counts: Arc<DeliveryCounts>,
}

impl Poster {
    /// Starts `target.connections` posting threads; `stop` makes them give up retrying.
    pub fn start(target: WebhookTarget, stop: Arc<AtomicBool>) -> Poster {
        // Bounded: a server slower than the generator slows the generator down.
        let (queue, events) = sync_channel::<Vec<u8>>(target.connections * 64);
        let events = Arc::new(Mutex::new(events));
        let counts = Arc::new(DeliveryCounts::default());
        let target = Arc::new(target);
        let workers = (0..target.connections)
            .map(|_| {
                let (events, counts) = (events.clone(), counts.clone());
                let (target, stop) = (target.clone(), stop.clone());
                std::thread::spawn(move || post_queued(&events, &target, &counts, &stop))
            })
            .collect();
        Poster {
            queue: Some(queue),
            workers,
            counts,
        }
    }

    /// Hands an event over, waiting while the queue is full; false once every posting
    /// thread has ended.
    pub fn post(&self, body: Vec<u8>) -> bool {
        self.queue.as_ref().is_some_and(|q| q.send(body).is_ok())
    }

    /// Posts what is queued (giving up retries once stopping), then ends the threads.
    pub fn finish(mut self) -> Arc<DeliveryCounts> {
        drop(self.queue.take());
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        self.counts.clone()
    }
}

fn post_queued(
    events: &Mutex<Receiver<Vec<u8>>>,
    target: &WebhookTarget,
    counts: &DeliveryCounts,
    stop: &AtomicBool,
) {
    let mut connection: Option<Connection> = None;
    while let Ok(body) = lock(events).recv() {
        // With `stop`, every outcome is counted and none is an error.
        let _ = deliver(&mut connection, target, &body, counts, Some(stop));
    }
}

/// A connection's byte stream: TCP, or TLS over it.
trait Transport: Read + Write + Send {}

impl<T: Read + Write + Send> Transport for T {}

/// One keep-alive connection.
struct Connection {
    stream: BufReader<Box<dyn Transport>>,
}

impl Connection {
    fn open(target: &WebhookTarget) -> anyhow::Result<Connection> {
        let tcp = TcpStream::connect(&target.address)
            .with_context(|| format!("cannot connect to {}", target.address))?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
        let stream: Box<dyn Transport> = match &target.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let session =
                    rustls::ClientConnection::new(tls.client.clone(), tls.server_name.clone())
                        .context("starting a TLS session")?;
                Box::new(rustls::StreamOwned::new(session, tcp))
            }
        };
        Ok(Connection {
            stream: BufReader::new(stream),
        })
    }

    fn exchange(&mut self, request: &[u8]) -> std::io::Result<(u16, bool)> {
        let writer = self.stream.get_mut();
        writer.write_all(request)?;
        writer.flush()?;
        read_response(&mut self.stream)
    }
}

/// Posts one event, reconnecting once if the kept connection was closed; its status code.
fn send(
    connection: &mut Option<Connection>,
    target: &WebhookTarget,
    id: &str,
    body: &[u8],
) -> anyhow::Result<u16> {
    let timestamp = crate::clock::now_ms() / 1000;
    let signature = signature_header(&target.secret, id, timestamp, body)
        .map_err(|_| anyhow::anyhow!("--secret is not whsec_ followed by base64"))?;
    // Head and body in one write: two would go out as two segments (no Nagle delay), and
    // the server would wake for each.
    let mut request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nsvix-id: {id}\r\nsvix-timestamp: {timestamp}\r\nsvix-signature: {signature}\r\n\r\n",
        target.path,
        target.address,
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    for attempt in 0..2 {
        if connection.is_none() {
            *connection = Some(Connection::open(target)?);
        }
        let Some(open) = connection.as_mut() else {
            continue;
        };
        let exchanged = open.exchange(&request);
        match exchanged {
            Ok((status, keep_alive)) => {
                if !keep_alive {
                    *connection = None;
                }
                return Ok(status);
            }
            // The server closed a kept connection (its idle or lifetime bound): once more.
            Err(error) => {
                *connection = None;
                if attempt == 1 {
                    return Err(error).context("posting a webhook");
                }
                tracing::debug!(%error, "Webhook connection closed; reconnecting.");
            }
        }
    }
    anyhow::bail!("posting a webhook: no connection")
}

/// The status code of one response, its body read, and whether the connection stays open.
fn read_response(reader: &mut impl BufRead) -> std::io::Result<(u16, bool)> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no status line"))?;
    let (mut length, mut keep_alive) = (0usize, true);
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("connection") {
                keep_alive = !value.trim().eq_ignore_ascii_case("close");
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok((status, keep_alive))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn test_ca() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls/ca.pem")
    }

    #[test]
    fn urls_give_the_address_path_and_default_ports() {
        let plain = WebhookTarget::parse("http://127.0.0.1:8080/hooks", SECRET, 4, None).unwrap();
        assert_eq!(
            (plain.address.as_str(), plain.path.as_str()),
            ("127.0.0.1:8080", "/hooks")
        );
        assert!(plain.tls.is_none());
        let default_port = WebhookTarget::parse("http://ingest.local", SECRET, 4, None).unwrap();
        assert_eq!(default_port.address, "ingest.local:80");
        assert_eq!(default_port.path, "/webhooks/clerk");
        let secure =
            WebhookTarget::parse("https://localhost/x", SECRET, 4, Some(&test_ca())).unwrap();
        assert_eq!(secure.address, "localhost:443");
        let name = secure.tls.map(|tls| tls.server_name);
        assert_eq!(
            name,
            Some(rustls::pki_types::ServerName::try_from("localhost").unwrap())
        );
        let v6 = WebhookTarget::parse("http://[::1]:9000/", SECRET, 1, None).unwrap();
        assert_eq!(v6.address, "[::1]:9000");
    }

    #[test]
    fn wrong_schemes_secrets_and_ca_files_are_refused_with_the_reason() {
        let error = |url: &str, secret: &str, ca: Option<&Path>| {
            format!(
                "{:#}",
                WebhookTarget::parse(url, secret, 1, ca).expect_err(url)
            )
        };
        assert!(error("ftp://host/x", SECRET, None).contains("expected http(s)://"));
        assert!(error("http://host/x", "not-a-secret", None).contains("whsec_"));
        assert!(error("http://host/x", SECRET, Some(&test_ca())).contains("https://"));
        let missing = Path::new("/nonexistent/ca.pem");
        assert!(error("https://host/x", SECRET, Some(missing)).contains("/nonexistent/ca.pem"));
        let not_a_ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls/README");
        assert!(error("https://host/x", SECRET, Some(&not_a_ca)).contains("no CA certificate"));
    }
}
