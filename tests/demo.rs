//! `sessionflow demo --duration 10` needs nothing but the binary (librdkafka's in-process mock
//! cluster) and runs the real pipeline, fed in part through the embedded `sessionflow ingest`:
//! its summary shows records processed, transitions of every cause and dead letters, and every
//! webhook answered 200.

use std::process::Command;

/// The number after `label` in `text`.
fn number_after(text: &str, label: &str) -> u64 {
    let at = text
        .find(label)
        .unwrap_or_else(|| panic!("{label:?} in {text}"))
        + label.len();
    text[at..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a number after {label:?} in {text}"))
}

#[test]
fn the_demo_runs_the_pipeline_on_an_embedded_kafka() {
    // Port 0: the demo binds both ports before it starts anything and names them in its
    // banner (no port picked here and released, which another process could take).
    let out = Command::new(env!("CARGO_BIN_EXE_sessionflow"))
        .args([
            "demo",
            "--duration",
            "10",
            "--http-listen",
            "127.0.0.1:0",
            "--ingest-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = number_after(&stdout, "metrics (pipeline and ingest): http://127.0.0.1:");
    let ingest_port = number_after(&stdout, "sessionflow ingest at http://127.0.0.1:");
    assert!(
        port > 0 && ingest_port > 0 && port != ingest_port,
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("http://127.0.0.1:{port}/metrics")),
        "{stdout}"
    );
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("summary:"))
        .expect("a summary line");
    assert!(number_after(summary, "summary:") > 1000, "{summary}");
    assert!(number_after(summary, "observed") > 0, "{summary}");
    assert!(number_after(summary, "inferred") > 0, "{summary}");
    assert!(number_after(summary, "correction") > 0, "{summary}");
    assert!(
        number_after(summary, "ignored,") > 0 || summary.contains("ignored"),
        "{summary}"
    );
    let dead = summary
        .split("ignored, ")
        .nth(1)
        .map(|s| number_after(s, ""))
        .unwrap_or(0);
    assert!(dead > 0, "dead letters in {summary}");
    // `   3s  …`: counts, or waiting for the first assignment.
    let status_lines = stdout
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .and_then(|w| w.strip_suffix('s'))
                .is_some_and(|n| n.parse::<u64>().is_ok())
        })
        .count();
    assert!(status_lines >= 8, "one status line a second: {stdout}");
    // The whole loop: the generator's webhooks went through ingest, every one answered 200.
    assert!(
        stdout.contains(&format!("http://127.0.0.1:{ingest_port}/webhooks/clerk")),
        "{stdout}"
    );
    let webhooks = stdout
        .lines()
        .find(|l| l.starts_with("webhooks:"))
        .expect("a webhooks line");
    assert!(number_after(webhooks, "webhooks:") > 100, "{webhooks}");
    assert_eq!(number_after(webhooks, "503,"), 0, "{webhooks}");
}

/// An address in use is an error before anything starts: no banner, no all-zero summary.
#[test]
fn a_port_in_use_fails_before_the_banner() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    for (flag, other) in [
        ("--http-listen", "--ingest-listen"),
        ("--ingest-listen", "--http-listen"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sessionflow"))
            .args(["demo", "--duration", "5", flag, &address, other, &free])
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(1), "{flag}: {stdout}{stderr}");
        assert!(
            stdout.is_empty(),
            "{flag}: nothing printed before the error: {stdout}"
        );
        assert!(
            stderr.contains("cannot listen on")
                && stderr.contains(&address)
                && stderr.contains(flag),
            "{stderr}"
        );
    }
}
