//! The live pipeline against a real Apache Kafka broker (`scripts/kafka-dev.sh run --`):
//! live output equals what replay derives per partition, dead letters are exactly the
//! malformed records with their headers, metrics agree with what was read back, SIGTERM
//! drains and commits exactly what was processed, and bad configuration fails clearly. Over
//! the broker's SASL_SSL listener: the same live-equals-replay check with SCRAM and a
//! password from a file that never shows in logs or metrics; a wrong password and an
//! untrusted certificate each stop start-up with an error that names the cause. Partitions
//! added to the input while running stop the instance, and its restart, with the cause named.

mod common;

use std::time::{Duration, Instant};

use common::*;

const PARTITIONS: i32 = 4;
/// Historical event times: no idle advance, no future check (SPEC section 3).
const HISTORICAL: [&str; 2] = [
    "lifecycle.idle_timeout_ms=0",
    "lifecycle.max_clock_skew_ms=0",
];

#[test]
fn live_output_equals_replay_per_partition_with_dead_letters_and_metrics() {
    let Some(bootstrap) = bootstrap() else { return };
    // Properties for one kind of client each, as `--set` spells them: librdkafka, whose
    // warnings reach the log, has nothing to say of a property given to the wrong client.
    let mut sets = HISTORICAL.to_vec();
    sets.extend([
        "kafka.producer.linger.ms=10",
        "kafka.consumer.fetch.wait.max.ms=100",
    ]);
    let (log, _) = live_equals_replay(&bootstrap, &bootstrap, &sets, &[]);
    assert!(!log.contains("will be ignored"), "{log}");
}

#[test]
fn spread_over_three_workers_live_output_equals_replay_per_partition() {
    let Some(bootstrap) = bootstrap() else { return };
    let mut sets = HISTORICAL.to_vec();
    // Small fetches per partition, so that some batches mix partitions and are spread.
    sets.extend([
        "pipeline.workers=3",
        "kafka.consumer.max.partition.fetch.bytes=16384",
    ]);
    let (_, metrics) = live_equals_replay(&bootstrap, &bootstrap, &sets, &[]);
    let by_worker: Vec<f64> = (0..3)
        .map(|w| {
            metric_sum(
                &metrics,
                "sessionflow_worker_records_total",
                &[&format!("worker=\"{w}\"")],
            )
        })
        .collect();
    // Each of the 100 000 input records taken by one worker, once (one instance, no restart).
    assert_eq!(by_worker.iter().sum::<f64>(), 100_000.0, "{by_worker:?}");
}

#[test]
fn over_sasl_ssl_live_output_equals_replay_and_the_password_stays_secret() {
    let Some(bootstrap) = bootstrap() else { return };
    let Some(secure) = secure() else { return };
    let mut sets: Vec<String> = HISTORICAL.iter().map(|s| s.to_string()).collect();
    sets.extend(secure.sets("SCRAM-SHA-512", &secure.ca));
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let env = [
        (
            "SESSIONFLOW__KAFKA__SASL_PASSWORD_FILE",
            secure.password_file.as_str(),
        ),
        // Everything sessionflow and its libraries log, to look for the secret in.
        ("RUST_LOG", "debug"),
    ];
    let (log, metrics) = live_equals_replay(&bootstrap, &secure.bootstrap, &sets, &env);
    let password = secure.password();
    assert!(log.contains("Consuming."), "{log}");
    assert!(!log.contains(&password), "the password is in the log");
    assert!(!metrics.contains(&password), "the password is in /metrics");
}

#[test]
fn a_wrong_password_stops_start_up_with_an_authentication_error() {
    let Some(bootstrap) = bootstrap() else { return };
    let Some(secure) = secure() else { return };
    let wrong = "wrong-Pa55word-never-shown";
    let log = failed_start(
        &bootstrap,
        &secure.bootstrap,
        &secure.sets("SCRAM-SHA-256", &secure.ca),
        &[("SESSIONFLOW__KAFKA__SASL_PASSWORD", wrong)],
    );
    assert!(
        log.contains("SASL authentication error") && log.contains("invalid credentials"),
        "{log}"
    );
    assert!(!log.contains(wrong), "the password is in the output: {log}");
}

#[test]
fn an_untrusted_certificate_stops_start_up_with_a_tls_error() {
    let Some(bootstrap) = bootstrap() else { return };
    let Some(secure) = secure() else { return };
    let password = secure.password();
    let log = failed_start(
        &bootstrap,
        &secure.bootstrap,
        &secure.sets("PLAIN", &secure.untrusted_ca),
        &[("SESSIONFLOW__KAFKA__SASL_PASSWORD", &password)],
    );
    assert!(
        log.contains("SSL handshake failed") && log.contains("certificate verify failed"),
        "{log}"
    );
    assert!(
        !log.contains(&password),
        "the password is in the output: {log}"
    );
}

/// Starts `sessionflow run` against `run_bootstrap` and expects it to exit non-zero within
/// a minute; returns its output.
fn failed_start(
    bootstrap: &str,
    run_bootstrap: &str,
    sets: &[String],
    env: &[(&str, &str)],
) -> String {
    let dir = tempfile::tempdir().unwrap();
    let input = unique("secure-fail-in");
    create_topics(bootstrap, &[&input], 1);
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let mut run = start_run_env(
        run_bootstrap,
        dir.path(),
        &unique("secure-fail-group"),
        &input,
        &unique("secure-fail-out"),
        &sets,
        env,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = run.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running after 60 s: {}",
            run.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let log = run.log_text();
    assert!(!status.success(), "a failed start exits non-zero: {log}");
    assert!(!log.contains("panicked"), "{log}");
    log
}

/// Generates 100 000 records, runs `sessionflow run` over them through `run_bootstrap`
/// (helpers read and write through `bootstrap`), and checks the outputs against `replay`.
/// Returns the run's log and its last `/metrics`.
fn live_equals_replay(
    bootstrap: &str,
    run_bootstrap: &str,
    sets: &[&str],
    env: &[(&str, &str)],
) -> (String, String) {
    let Some(scenario) = Scenario::new("live", PARTITIONS) else {
        panic!("no broker");
    };
    let input = scenario.input.clone();
    let prefix = scenario.prefix.clone();
    let dir = &scenario.dir;
    let bootstrap = bootstrap.to_owned();
    let total = 100_000;
    generate_into(&bootstrap, &input, total, 11);

    let mut run = scenario.start_via(run_bootstrap, sets, env);
    let mut scraped_mid_run = false;
    wait_until(
        "every input offset committed",
        Duration::from_secs(240),
        || {
            if let Some(text) = run.metrics() {
                scraped_mid_run |= text.contains("sessionflow_records_total");
            }
            let ends = end_offsets(&bootstrap, &input, PARTITIONS);
            scenario.committed() == ends
        },
    );
    assert!(scraped_mid_run, "/metrics answered during the run");
    assert!(http_get(run.port, "/readyz")
        .unwrap()
        .starts_with("HTTP/1.0 200"));
    // Counters are exported once a second: wait (bounded) until every record is counted.
    let mut metrics = String::new();
    wait_for_run(
        &run,
        "every record counted in /metrics",
        Duration::from_secs(60),
        || {
            metrics = run.metrics().unwrap_or_default();
            metric_sum(&metrics, "sessionflow_records_total", &[]) as u64 >= total
        },
    );
    // Caught up: the lag (end offset minus the consumer's position, once a second from
    // librdkafka's statistics) comes down to 0 on every partition, labelled with the input
    // topic and the group.
    let (topic_label, group_label) = (
        format!("topic=\"{input}\""),
        format!("group=\"{}\"", scenario.group),
    );
    wait_for_run(
        &run,
        "the consumer lag at 0",
        Duration::from_secs(60),
        || {
            let text = run.metrics().unwrap_or_default();
            let lag_series = text
                .lines()
                .filter(|l| {
                    l.starts_with("sessionflow_consumer_lag_records{")
                        && l.contains(&topic_label)
                        && l.contains(&group_label)
                })
                .count();
            lag_series == PARTITIONS as usize
                && metric_sum(&text, "sessionflow_consumer_lag_records", &[]) == 0.0
        },
    );
    let status = run.terminate();
    assert!(status.success(), "exit {status:?}: {}", run.log_text());

    let records = read_all(&bootstrap, &input);
    assert_eq!(records.values().map(Vec::len).sum::<usize>() as u64, total);
    let expected = expected_from_replay(&records, &input, dir.path(), &[]);
    let transitions = read_all(&bootstrap, &format!("{prefix}.transitions"));
    let anomalies = read_all(&bootstrap, &format!("{prefix}.anomalies"));
    let dead = read_all(&bootstrap, &format!("{prefix}.dlq"));
    let schemas = common::schemas::Schemas::load();
    let mut transitions_total = 0;
    for p in 0..PARTITIONS {
        let got = values(&transitions[&p]);
        assert_eq!(
            got.len(),
            expected.transitions[&p].len(),
            "partition {p}: transition count"
        );
        for (i, (g, e)) in got.iter().zip(&expected.transitions[&p]).enumerate() {
            assert_eq!(g, e, "partition {p}: transition {i}");
        }
        transitions_total += got.len();
        assert_eq!(
            values(&anomalies[&p]),
            expected.anomalies[&p],
            "partition {p}: anomalies"
        );
        for t in &transitions[&p] {
            assert_eq!(
                t.key.as_deref(),
                t.json()["session_id"].as_str().map(str::as_bytes)
            );
        }

        // Dead letters: exactly the malformed records, original key and value, SPEC headers.
        let dead_offsets: Vec<i64> = dead[&p]
            .iter()
            .map(|d| d.headers["sessionflow-source-offset"].parse().unwrap())
            .collect();
        assert_eq!(
            dead_offsets, expected.dead_letters[&p],
            "partition {p}: dead letters"
        );
        for d in &dead[&p] {
            let offset: i64 = d.headers["sessionflow-source-offset"].parse().unwrap();
            let original = records[&p].iter().find(|r| r.offset == offset).unwrap();
            assert_eq!(d.value, original.value);
            assert_eq!(d.key, original.key);
            assert_eq!(d.headers["sessionflow-source-topic"], input);
            assert_eq!(d.headers["sessionflow-source-partition"], p.to_string());
            let kind = d.headers["sessionflow-error-kind"].as_str();
            assert!(
                [
                    "invalid_json",
                    "invalid_shape",
                    "missing_field",
                    "wrong_type",
                    "invalid_value",
                    "too_large"
                ]
                .contains(&kind),
                "{kind}"
            );
            assert!(!d.headers["sessionflow-error"].is_empty());
            schemas.check_dead_letter_headers(&d.headers);
        }
        // What readers of the derived topics are promised (schemas/).
        for event in transitions[&p].iter().chain(&anomalies[&p]) {
            schemas.check_event(&event.json());
        }
    }
    assert!(
        transitions_total > 10_000,
        "a real workload: {transitions_total} transitions"
    );
    let dead_total: usize = expected.dead_letters.values().map(Vec::len).sum();
    assert!(
        dead_total > 0,
        "the generator's malformed share reached the dead-letter topic"
    );

    // Metrics agree with what was sent and read back.
    let observed = ["applied", "duplicate", "stale", "late"]
        .iter()
        .map(|o| {
            metric_sum(
                &metrics,
                "sessionflow_records_total",
                &[&format!("outcome=\"{o}\"")],
            )
        })
        .sum::<f64>();
    assert_eq!(
        observed as u64, expected.observations,
        "observation outcomes"
    );
    assert_eq!(
        metric_sum(
            &metrics,
            "sessionflow_records_total",
            &["outcome=\"invalid\""]
        ) as usize,
        dead_total
    );
    assert_eq!(
        metric_sum(
            &metrics,
            "sessionflow_records_total",
            &["outcome=\"ignored\""]
        ) as u64,
        expected.ignored
    );
    assert_eq!(
        metric_sum(&metrics, "sessionflow_dead_letters_total", &[]) as usize,
        dead_total
    );
    assert_eq!(
        metric_sum(&metrics, "sessionflow_transitions_total", &[]) as usize,
        transitions_total
    );
    // Each transition into a terminal status with a known session age is one observation of
    // the lifetime histogram, under that status.
    let mut lifetimes = 0;
    let terminal = sessionflow::model::KNOWN_STATUSES
        .into_iter()
        .filter(|s| sessionflow::model::StatusCode::known(s).is_some_and(|c| c.is_terminal()));
    for end in terminal {
        let ends = transitions
            .values()
            .flatten()
            .map(|t| t.json())
            .filter(|t| t["to"] == end && t["session_age_ms"].is_i64())
            .count();
        assert_eq!(
            metric_sum(
                &metrics,
                "sessionflow_session_lifetime_seconds_count",
                &[&format!("end=\"{end}\"")]
            ) as usize,
            ends,
            "lifetimes ending {end}"
        );
        lifetimes += ends;
    }
    assert!(lifetimes > 1000, "{lifetimes} sessions ended");
    for name in sessionflow::metrics::ALL {
        assert!(
            metrics.contains(&format!("# HELP {name}"))
                || metrics.contains(&format!("# TYPE {name}")),
            "{name} described"
        );
    }
    (run.log_text(), metrics)
}

#[test]
fn sigterm_mid_stream_drains_commits_what_was_processed_and_a_restart_continues() {
    let Some(scenario) = Scenario::new("stop", PARTITIONS) else {
        return;
    };
    let bootstrap = scenario.bootstrap.clone();
    let input = scenario.input.clone();
    let prefix = scenario.prefix.clone();
    let dir = &scenario.dir;
    let total: u64 = 100_000;

    // Input arrives at a steady 20 000 records/s while the processor runs, so SIGTERM lands
    // mid-stream.
    let mut first = scenario.start(&HISTORICAL);
    let mut generator = spawn_generator(&bootstrap, &input, total, 12, 20000);
    scenario.wait_committed_beyond("some progress", 10_000, Duration::from_secs(120));
    let status = first.terminate();
    assert!(generator.wait().unwrap().success());
    let ends = end_offsets(&bootstrap, &input, PARTITIONS);
    assert_eq!(ends.iter().sum::<i64>() as u64, total);
    assert!(status.success(), "exit {status:?}: {}", first.log_text());
    let stopped_at = scenario.committed();
    assert!(
        stopped_at.iter().sum::<i64>() < ends.iter().sum::<i64>(),
        "stopped mid-stream: {stopped_at:?} of {ends:?}"
    );

    // Committed offsets equal the processed input: every output of the first run comes from
    // a committed record, and every expected observed event of a committed record is there.
    let records = read_all(&bootstrap, &input);
    let expected = expected_from_replay(&records, &input, dir.path(), &[]);
    let after_first = read_all(&bootstrap, &format!("{prefix}.transitions"));
    for p in 0..PARTITIONS as usize {
        let committed_p = stopped_at[p].max(0);
        let got = values(&after_first[&(p as i32)]);
        for event in &got {
            if let Some(offset) = event["source"]["offset"].as_i64() {
                assert!(offset < committed_p, "partition {p}: output of uncommitted offset {offset} (committed {committed_p})");
            }
        }
        let observed_expected: Vec<&serde_json::Value> = expected.transitions[&(p as i32)]
            .iter()
            .filter(|e| {
                e["source"]["offset"]
                    .as_i64()
                    .is_some_and(|o| o < committed_p)
            })
            .collect();
        let observed_got: Vec<&serde_json::Value> =
            got.iter().filter(|e| !e["source"].is_null()).collect();
        assert_eq!(
            observed_got, observed_expected,
            "partition {p}: observed events up to the commit"
        );
    }

    // A restart continues from the committed offsets and finishes the input.
    let marks = end_offsets(&bootstrap, &format!("{prefix}.transitions"), PARTITIONS);
    let mut second = scenario.start(&HISTORICAL);
    wait_until("the rest committed", Duration::from_secs(240), || {
        scenario.committed() == ends
    });
    assert!(second.terminate().success());
    let all = read_all(&bootstrap, &format!("{prefix}.transitions"));
    for p in 0..PARTITIONS {
        if stopped_at[p as usize] >= ends[p as usize] {
            continue; // Finished by the first run.
        }
        let resumed: Vec<i64> = all[&p]
            .iter()
            .filter(|r| r.offset >= marks[p as usize])
            .filter_map(|r| r.json()["source"]["offset"].as_i64())
            .collect();
        assert!(
            !resumed.is_empty(),
            "partition {p}: the restart produced output"
        );
        let first_resumed = resumed.iter().min().unwrap();
        assert!(
            *first_resumed >= stopped_at[p as usize],
            "partition {p}: nothing before the commit was re-read"
        );
    }
}

#[test]
fn bad_configuration_fails_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str); 3] = [
        ("[lifecycle]\nallowed_lateness = 1\n", "allowed_lateness"),
        (
            "[lifecycle]\nidle_timeout_ms = \"later\"\n",
            "lifecycle.idle_timeout_ms",
        ),
        ("delivery = \"sometimes\"\n", "delivery"),
    ];
    for (text, needle) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(BIN)
            .args(["run", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{text}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{text}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // An unreachable broker: a clear error naming it, a non-zero exit, no panic.
    let out = std::process::Command::new(BIN)
        .args(["run", "--brokers", "127.0.0.1:1", "--http-listen"])
        .arg("127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_changelog_with_another_partition_count_stops_start_up() {
    let Some(bootstrap) = bootstrap() else { return };
    let input = unique("mismatch-in");
    let group = unique("mismatch-group");
    create_topics(&bootstrap, &[&input], PARTITIONS);
    create_topics(&bootstrap, &[&format!("{group}.state")], 2);
    let out = std::process::Command::new(BIN)
        .args([
            "run",
            "--brokers",
            &bootstrap,
            "--group-id",
            &group,
            "--input-topic",
            &input,
        ])
        .args(["--set", "topics.create_topics=true"])
        .arg("--http-listen")
        .arg("127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{group}.state"))
            && stderr.contains("has 2 partitions but the input has 4"),
        "{stderr}"
    );
}

#[test]
fn partitions_added_to_the_input_while_running_stop_the_instance_and_its_restart() {
    let Some(scenario) = Scenario::new("grow", 2) else {
        return;
    };
    generate_into(&scenario.bootstrap, &scenario.input, 3_000, 31);
    let mut run = scenario.start(&[
        "lifecycle.idle_timeout_ms=0",
        "lifecycle.max_clock_skew_ms=0",
        // librdkafka sees the new partitions at its next metadata refresh (5 minutes by
        // default); a short one keeps the test short, not its outcome.
        "kafka.\"topic.metadata.refresh.interval.ms\"=\"1000\"",
    ]);
    scenario.wait_all_committed(
        &run,
        "the 2 partitions' input committed",
        Duration::from_secs(180),
    );

    add_partitions(&scenario.bootstrap, &scenario.input, 4);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = run.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running 120 s after the input grew to 4 partitions; its log ends:\n{}",
            log_tail(&run.log_text(), 30)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = run.log_text();
    assert_eq!(status.code(), Some(1), "{}", log_tail(&log, 30));
    assert!(
        log.contains("had 2 partitions at start-up")
            && log.contains("partitions were added while running"),
        "the error names the cause: {}",
        log_tail(&log, 30)
    );
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        !log.contains("Restored partition state from the changelog. partition=2")
            && !log.contains("Restored partition state from the changelog. partition=3"),
        "no partition beyond the start-up count is restored: {log}"
    );

    // A restart is refused at start-up: the changelog kept the old count.
    let restart = std::process::Command::new(BIN)
        .args(["run", "--brokers", &scenario.bootstrap])
        .args(["--group-id", &scenario.group])
        .args(["--input-topic", &scenario.input])
        .args(["--http-listen", "127.0.0.1:0"])
        .args([
            "--set",
            &format!("topics.transitions={}.transitions", scenario.prefix),
        ])
        .args([
            "--set",
            &format!("topics.anomalies={}.anomalies", scenario.prefix),
        ])
        .args([
            "--set",
            &format!("topics.dead_letters={}.dlq", scenario.prefix),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&restart.stderr);
    assert!(!restart.status.success(), "{stderr}");
    assert!(
        stderr.contains("has 2 partitions but the input has 4")
            && stderr.contains("Changing the input's partition count"),
        "{stderr}"
    );
}
