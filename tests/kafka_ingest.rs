//! `sessionflow ingest` against a real Apache Kafka broker, over TCP with a plain HTTP client:
//! signed webhooks land in the input topic byte for byte with their key and headers; forged,
//! tampered, stale, unsigned, oversized and mistyped requests are refused and nothing of them
//! is written; a redelivery is answered without a second write; a slow client is dropped at
//! the head deadline; SIGTERM stops it cleanly.

mod common;

use common::proxy::FaultProxy;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use sessionflow::ingest::signature::signature_header;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

struct Ingest {
    running: Running,
}

impl Ingest {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/webhooks/clerk", self.running.port)
    }

    fn start(bootstrap: &str, topic: &str, dir: &std::path::Path) -> Ingest {
        Ingest::start_with(bootstrap, topic, dir, &[])
    }

    fn start_with(bootstrap: &str, topic: &str, dir: &std::path::Path, sets: &[&str]) -> Ingest {
        let ingest = Ingest::spawn(bootstrap, topic, dir, sets);
        let port = ingest.running.port;
        wait_for_run(
            &ingest.running,
            "/readyz 200 (broker reachable)",
            Duration::from_secs(60),
            || http_get(port, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.0 200")),
        );
        ingest
    }

    fn spawn(bootstrap: &str, topic: &str, dir: &std::path::Path, sets: &[&str]) -> Ingest {
        let log = dir.join(format!("{}.log", unique("ingest")));
        let child = Command::new(BIN)
            .args(["ingest", "--listen", "127.0.0.1:0"])
            .args(["--set", &format!("brokers={bootstrap}")])
            .args(["--set", &format!("topics.input={topic}")])
            .args(["--set", "ingest.max_body_bytes=65536"])
            .args(sets.iter().flat_map(|set| ["--set", set]))
            .env(
                "SESSIONFLOW__INGEST__SECRETS",
                format!("whsec_b2xkLXNlY3JldA== {SECRET}"),
            )
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Ingest {
            running: Running::once_listening(child, log, "Receiving Clerk webhooks"),
        }
    }

    /// Sends raw request bytes; the status code and the response.
    fn exchange(&self, request: &[u8]) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.running.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.write_all(request).unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, response)
    }

    fn post(&self, headers: &[(&str, String)], body: &[u8]) -> (u16, String) {
        let mut request = format!(
            "POST /webhooks/clerk HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        self.exchange(&bytes)
    }
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn session_event(kind: &str, session: &str, n: u32) -> Vec<u8> {
    format!(
        r#"{{"data":{{"object":"session","id":"{session}","status":"active","user_id":"user_1","client_id":"client_1","updated_at":{},"created_at":1764000000000,"expire_at":1764600000000,"abandon_at":1766000000000}},"object":"event","type":"{kind}","timestamp":{}}}"#,
        1_764_000_000_000u64 + u64::from(n),
        1_764_000_000_000u64 + u64::from(n)
    )
    .into_bytes()
}

/// Request headers, by name.
type Headers = Vec<(&'static str, String)>;

/// Svix's headers for `body` signed with `secret` at `timestamp`.
fn signed(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Headers {
    vec![
        ("Content-Type", "application/json".into()),
        ("svix-id", id.into()),
        ("svix-timestamp", timestamp.to_string()),
        (
            "svix-signature",
            signature_header(secret, id, timestamp, body).unwrap(),
        ),
    ]
}

/// Every record of `topic`, partition by partition.
/// `sessionflow_ingest_requests_total{outcome}` in a scrape.
fn requests(metrics: &str, outcome: &str) -> f64 {
    metric_sum(
        metrics,
        "sessionflow_ingest_requests_total",
        &[&format!("outcome=\"{outcome}\"")],
    )
}

fn all_records(bootstrap: &str, topic: &str) -> Vec<Record> {
    read_all(bootstrap, topic).into_values().flatten().collect()
}

/// A client that sends `first` and then nothing more is dropped by the server at its head
/// (or handshake) deadline of 5 s: the connection ends well before the client's own 30 s.
fn assert_dropped_by_the_deadline(port: u16, first: &[u8]) {
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client.write_all(first).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "dropped after {:?}",
        started.elapsed()
    );
}

fn total_records(bootstrap: &str, topic: &str) -> usize {
    read_all(bootstrap, topic).values().map(Vec::len).sum()
}

#[test]
fn signed_webhooks_are_written_unchanged_and_everything_else_is_refused() {
    let Some(bootstrap) = bootstrap() else { return };
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("ingest-in");
    create_topics(&bootstrap, &[&topic], 4);
    let mut ingest = Ingest::start(&bootstrap, &topic, dir.path());

    // Signed: 200 only once written; the topic holds exactly the posted bytes.
    let created = session_event("session.created", "sess_ingest_a", 1);
    let (status, response) = ingest.post(&signed(SECRET, "msg_a1", now_s(), &created), &created);
    assert_eq!(status, 200, "{response}");
    // The unbranded Standard Webhooks header names, and a non-session event keyed by its id.
    let user =
        br#"{"data":{"object":"user","id":"user_1"},"object":"event","type":"user.updated"}"#;
    let unbranded: Vec<(&str, String)> = signed(SECRET, "msg_u1", now_s(), user)
        .into_iter()
        .map(|(name, value)| {
            (
                name.strip_prefix("svix-").map_or(name, |_| match name {
                    "svix-id" => "webhook-id",
                    "svix-timestamp" => "webhook-timestamp",
                    _ => "webhook-signature",
                }),
                value,
            )
        })
        .collect();
    assert_eq!(ingest.post(&unbranded, user).0, 200);
    // A redelivery of msg_a1: answered 200, not written again.
    let (status, _) = ingest.post(&signed(SECRET, "msg_a1", now_s(), &created), &created);
    assert_eq!(status, 200);

    // Refused, and nothing written: tampered body, wrong secret, stale and future timestamps,
    // missing or malformed headers, another id's signature.
    let ended = session_event("session.ended", "sess_ingest_a", 2);
    let mut tampered = ended.clone();
    let at = tampered.len() - 3;
    tampered[at] = b'9';
    let refused: Vec<(Headers, Vec<u8>)> = vec![
        (signed(SECRET, "msg_t", now_s(), &ended), tampered),
        (
            signed(
                "whsec_c2VjcmV0LW9mLWFub3RoZXItYXBw",
                "msg_w",
                now_s(),
                &ended,
            ),
            ended.clone(),
        ),
        (
            signed(SECRET, "msg_old", now_s() - 301, &ended),
            ended.clone(),
        ),
        (
            signed(SECRET, "msg_new", now_s() + 301, &ended),
            ended.clone(),
        ),
        (
            signed(SECRET, "msg_m", now_s(), &ended)[..3].to_vec(),
            ended.clone(),
        ),
        (
            {
                let mut headers = signed(SECRET, "msg_x", now_s(), &ended);
                headers[3].1 = "v1,not-base64!".into();
                headers
            },
            ended.clone(),
        ),
        (
            {
                let mut headers = signed(SECRET, "msg_other", now_s(), &ended);
                headers[1].1 = "msg_y".into();
                headers
            },
            ended.clone(),
        ),
    ];
    for (i, (headers, body)) in refused.iter().enumerate() {
        let (status, response) = ingest.post(headers, body);
        assert_eq!(status, 401, "case {i}: {response}");
        assert!(
            !response.contains("sess_ingest"),
            "no echo of the input: {response}"
        );
    }
    // Oversized (65 536 bytes allowed here), wrong content type, signed but not an event.
    let big = vec![b' '; 70_000];
    assert_eq!(
        ingest
            .post(&signed(SECRET, "msg_big", now_s(), &big), &big)
            .0,
        413
    );
    let mut text = signed(SECRET, "msg_txt", now_s(), &ended);
    text[0].1 = "text/plain".into();
    assert_eq!(ingest.post(&text, &ended).0, 415);
    let broken = b"{\"type\":";
    assert_eq!(
        ingest
            .post(&signed(SECRET, "msg_b", now_s(), broken), broken)
            .0,
        400
    );

    // A client that never finishes its request head is dropped at the head deadline (5 s).
    assert_dropped_by_the_deadline(
        ingest.running.port,
        b"POST /webhooks/clerk HTTP/1.1\r\nHost: x\r\n",
    );

    // What the broker holds: the two accepted bodies, byte for byte, keyed and with headers.
    let records = all_records(&bootstrap, &topic);
    assert_eq!(records.len(), 2, "only the accepted requests, once each");
    let session = records
        .iter()
        .find(|r| r.headers.get("svix-id").map(String::as_str) == Some("msg_a1"))
        .unwrap();
    assert_eq!(session.value.as_deref(), Some(&created[..]));
    assert_eq!(session.key.as_deref(), Some(&b"sess_ingest_a"[..]));
    assert_eq!(session.headers["type"], "session.created");
    assert!(session.headers["svix-timestamp"].parse::<i64>().is_ok());
    let user_record = records
        .iter()
        .find(|r| r.headers.get("svix-id").map(String::as_str) == Some("msg_u1"))
        .unwrap();
    assert_eq!(user_record.value.as_deref(), Some(&user[..]));
    assert_eq!(user_record.key.as_deref(), Some(&b"msg_u1"[..]));

    let metrics = ingest.running.metrics().unwrap();
    let outcome = |o: &str| requests(&metrics, o);
    assert_eq!(outcome("accepted"), 2.0, "{metrics}");
    assert_eq!(outcome("duplicate"), 1.0);
    assert_eq!(outcome("refused"), 7.0);
    assert_eq!(outcome("too_large"), 1.0);
    assert_eq!(outcome("unsupported_media_type"), 1.0);
    assert_eq!(outcome("bad_request"), 1.0);
    for (reason, refused) in [
        ("bad_signature", 3.0),
        ("timestamp_too_old", 1.0),
        ("timestamp_too_new", 1.0),
        ("missing_headers", 1.0),
        ("malformed_signature", 1.0),
        ("malformed_timestamp", 0.0),
    ] {
        let label = format!("reason=\"{reason}\"");
        assert_eq!(
            metric_sum(&metrics, "sessionflow_ingest_refusals_total", &[&label]),
            refused,
            "{reason}"
        );
    }
    assert!(metric_sum(&metrics, "sessionflow_ingest_write_seconds_count", &[]) >= 2.0);
    // Its own series and the build info; none of the pipeline's.
    assert!(metrics.contains("sessionflow_build_info{"), "{metrics}");
    assert!(
        !metrics.contains("sessionflow_records_total")
            && !metrics.contains("sessionflow_transitions_total"),
        "{metrics}"
    );
    // Secrets never in /metrics or the log.
    let log = ingest.running.log_text();
    for shown in [&metrics, &log] {
        assert!(
            !shown.contains("MfKQ9r8G") && !shown.contains("b2xkLXNlY3JldA"),
            "a secret is shown"
        );
    }
    assert_eq!(total_records(&bootstrap, &topic), 2);
    let status = ingest.running.terminate();
    assert!(status.success(), "{status:?}: {log}");
}

/// The generator's webhooks over 50 keep-alive connections: every event answered 200 is in
/// the topic (redeliveries once), and `sessionflow run` over the topic derives what `replay`
/// derives from the same bodies.
#[test]
fn two_thousand_webhooks_over_fifty_connections_are_all_written_and_derive_as_replay_does() {
    let Some(scenario) = Scenario::new("ingest-load", 4) else {
        return;
    };
    let mut ingest = Ingest::start(&scenario.bootstrap, &scenario.input, scenario.dir.path());
    let out = Command::new(BIN)
        .args([
            "generate",
            "--sessions",
            "5000",
            "--seed",
            "5",
            "--records",
            "2000",
        ])
        .args([
            "--webhook",
            &ingest.url(),
            "--secret",
            SECRET,
            "--connections",
            "50",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("2000 webhooks answered 200"), "{stderr}");
    let metrics = ingest.running.metrics().unwrap();
    let outcome = |o: &str| requests(&metrics, o) as usize;
    assert_eq!(
        outcome("accepted") + outcome("duplicate"),
        2000,
        "{metrics}"
    );
    assert_eq!(outcome("refused"), 0);
    let input = read_all(&scenario.bootstrap, &scenario.input);
    let written: usize = input.values().map(Vec::len).sum();
    assert_eq!(
        written,
        outcome("accepted"),
        "every acknowledged webhook is in the topic, once"
    );
    assert!(ingest.running.terminate().success());

    scenario.run_to_end(&[]);
    let expected = expected_from_replay(&input, &scenario.input, scenario.dir.path(), &[]);
    let transitions = read_all(
        &scenario.bootstrap,
        &format!("{}.transitions", scenario.prefix),
    );
    let mut total = 0;
    for p in 0..scenario.partitions {
        let got = transitions.get(&p).map(|r| values(r)).unwrap_or_default();
        assert_eq!(got, expected.transitions[&p], "partition {p}");
        total += got.len();
    }
    assert!(total > 500, "a real workload: {total} transitions");
}

/// The broker goes away (the fault proxy refuses and cuts its connections) while webhooks
/// arrive: ingest answers 503 (the generator retries, as Svix does), and once the broker is
/// back every event that was answered 200 is in the topic.
#[test]
fn a_broker_away_mid_load_means_503s_and_no_acknowledged_webhook_is_lost() {
    let Some(bootstrap) = bootstrap() else { return };
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("ingest-away");
    create_topics(&bootstrap, &[&topic], 4);
    let proxy = FaultProxy::in_front_of_the_broker();
    let mut ingest = Ingest::start_with(
        &proxy.listen,
        &topic,
        dir.path(),
        &["ingest.request_timeout_ms=2000"],
    );
    const EVENTS: usize = 3000;
    let generator_log = dir.path().join("generate.log");
    let mut generator = Command::new(BIN)
        .args([
            "generate",
            "--sessions",
            "8000",
            "--seed",
            "9",
            "--records",
            &EVENTS.to_string(),
        ])
        .args([
            "--webhook",
            &ingest.url(),
            "--secret",
            SECRET,
            "--connections",
            "20",
            "--rate",
            "500",
        ])
        .stderr(std::fs::File::create(&generator_log).unwrap())
        .spawn()
        .unwrap();
    let outcome = |o: &str| requests(&ingest.running.metrics().unwrap_or_default(), o);
    wait_for_run(
        &ingest.running,
        "500 webhooks accepted",
        Duration::from_secs(120),
        || outcome("accepted") >= 500.0,
    );
    proxy.go_down();
    wait_for_run(
        &ingest.running,
        "503s while the broker is away",
        Duration::from_secs(120),
        || outcome("unavailable") >= 10.0,
    );
    proxy.resume();
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = generator.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the generator did not finish: {}",
            std::fs::read_to_string(&generator_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let generated = std::fs::read_to_string(&generator_log).unwrap_or_default();
    assert!(status.success(), "{generated}");
    assert!(
        generated.contains(&format!("{EVENTS} webhooks answered 200")),
        "{generated}"
    );

    // The events posted (each answered 200 in the end): the generator's first EVENTS webhook
    // events; redeliveries are the same event.
    let mut events = std::collections::HashSet::new();
    let mut stream =
        sessionflow::generate::Generator::new(sessionflow::generate::GenerateOptions::new(8000, 9));
    let (mut record, mut key) = (Vec::new(), Vec::new());
    let mut posted = 0;
    while posted < EVENTS && stream.next_record(&mut record, &mut key) {
        if record.starts_with(b"{\"data\":{") {
            events.insert(record.clone());
            posted += 1;
        }
    }
    let written: Vec<Record> = read_all(&bootstrap, &topic)
        .into_values()
        .flatten()
        .collect();
    let kept: std::collections::HashSet<Vec<u8>> =
        written.iter().filter_map(|r| r.value.clone()).collect();
    assert_eq!(
        kept, events,
        "every acknowledged webhook is in the topic, and nothing else"
    );
    let unavailable = outcome("unavailable");
    eprintln!(
        "broker away: {unavailable} answered 503, {} records written for {} distinct events",
        written.len(),
        events.len()
    );
    assert!(
        ingest.running.terminate().success(),
        "{}",
        ingest.running.log_text()
    );
}

fn tls_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls")
}

/// A client trusting only the test CA (tests/data/tls/ca.pem).
fn tls_client() -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(tls_dir().join("ca.pem")).unwrap()
    {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Sends raw request bytes over TLS (server name localhost); the response, if a handshake
/// and an answer happened.
fn https_exchange(port: u16, request: &[u8]) -> Option<String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(tls_client(), name).ok()?;
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    tls.write_all(request).ok()?;
    let mut response = Vec::new();
    // Bytes read before an end without close_notify are kept.
    let _ = tls.read_to_end(&mut response);
    (!response.is_empty()).then(|| String::from_utf8_lossy(&response).into_owned())
}

#[test]
fn over_tls_signed_webhooks_are_written_the_generator_posts_and_plain_or_silent_clients_are_not_served(
) {
    let Some(bootstrap) = bootstrap() else { return };
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("ingest-tls");
    create_topics(&bootstrap, &[&topic], 4);
    let cert = format!(
        "ingest.tls_cert_file={}",
        tls_dir().join("server.pem").display()
    );
    let key = format!(
        "ingest.tls_key_file={}",
        tls_dir().join("server.key").display()
    );
    let ingest = Ingest::spawn(&bootstrap, &topic, dir.path(), &[&cert, &key]);
    let port = ingest.running.port;
    let get_readyz = b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    wait_for_run(
        &ingest.running,
        "/readyz 200 over HTTPS",
        Duration::from_secs(60),
        || https_exchange(port, get_readyz).is_some_and(|r| r.starts_with("HTTP/1.1 200")),
    );

    let body = session_event("session.created", "sess_tls", 1);
    let mut request = format!(
        "POST /webhooks/clerk HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in signed(SECRET, "msg_tls", now_s(), &body) {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(&body);
    let response = https_exchange(port, &bytes).expect("an answer over TLS");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    // Plain HTTP to the TLS port: no HTTP answer, nothing handled.
    let (status, response) = ingest.post(&signed(SECRET, "msg_plain", now_s(), &body), &body);
    assert_ne!(status, 200, "{response}");
    assert!(!response.starts_with("HTTP/"), "{response}");

    // A client that connects and never starts its handshake is dropped at the head deadline.
    assert_dropped_by_the_deadline(port, b"");

    let records = all_records(&bootstrap, &topic);
    assert_eq!(records.len(), 1, "the one webhook posted over TLS");
    assert_eq!(records[0].value.as_deref(), Some(&body[..]));
    assert_eq!(records[0].key.as_deref(), Some(&b"sess_tls"[..]));

    // The generator over HTTPS: trusting the test CA it is answered; trusting only the
    // system's CAs it stops at the handshake.
    let url = format!("https://localhost:{port}/webhooks/clerk");
    let generate = |ca: Option<std::path::PathBuf>| {
        let mut command = Command::new(BIN);
        command
            .args(["generate", "--sessions", "100", "--seed", "9"])
            .args(["--records", "20", "--connections", "2"])
            .args(["--webhook", &url, "--secret", SECRET])
            .env_remove("SSL_CERT_FILE");
        if let Some(ca) = ca {
            command.arg("--webhook-ca").arg(ca);
        }
        command.output().unwrap()
    };
    let out = generate(Some(tls_dir().join("ca.pem")));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("20 webhooks answered 200"), "{stderr}");
    // /metrics is on the same listener: HTTPS too.
    let get_metrics = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let metrics = https_exchange(port, get_metrics).expect("/metrics over HTTPS");
    let outcome = |o: &str| requests(&metrics, o) as usize;
    assert_eq!(outcome("accepted") + outcome("duplicate"), 21, "{metrics}");
    assert_eq!(
        all_records(&bootstrap, &topic).len(),
        outcome("accepted"),
        "every webhook answered 200 and not a redelivery is in the topic"
    );
    let out = generate(None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");
}

#[test]
fn without_a_secret_ingest_refuses_to_start_with_a_configuration_error() {
    let out = Command::new(BIN)
        .args(["ingest", "--listen", "127.0.0.1:0"])
        .env_remove("SESSIONFLOW__INGEST__SECRETS")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ingest.secrets"), "{stderr}");

    // A TLS certificate without its key, or a key file that is not there: the key named.
    let cert = format!(
        "ingest.tls_cert_file={}",
        tls_dir().join("server.pem").display()
    );
    for (sets, named) in [
        (vec![cert.clone()], "ingest.tls_key_file"),
        (
            vec![
                cert,
                "ingest.tls_key_file=/nonexistent/server.key".to_owned(),
            ],
            "ingest.tls_key_file",
        ),
    ] {
        let out = Command::new(BIN)
            .args(["ingest", "--listen", "127.0.0.1:0"])
            .args(sets.iter().flat_map(|set| ["--set", set.as_str()]))
            .env("SESSIONFLOW__INGEST__SECRETS", SECRET)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{sets:?}: {stderr}");
        assert!(stderr.contains(named), "{sets:?}: {stderr}");
    }
}
