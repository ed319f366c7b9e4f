//! Loading and validating configuration: layering, strictness, every key's checks, secrets.

use super::*;

fn write(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

#[test]
fn the_shipped_file_is_complete_and_matches_the_defaults() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/sessionflow.toml");
    let from_file: RawConfig = Figment::new().merge(Toml::file(shipped)).extract().unwrap();
    let defaults = RawConfig::default();
    assert_eq!(
        serde_json::to_value(&from_file).unwrap(),
        serde_json::to_value(&defaults).unwrap()
    );
}

#[test]
fn an_unknown_key_is_an_error_naming_it() {
    let file = write("[lifecycle]\nallowed_lateness = 5\n");
    let error = load(Some(file.path()), &[]).unwrap_err().to_string();
    assert!(error.contains("allowed_lateness"), "{error}");
    assert!(error.contains("unknown field"), "{error}");
}

#[test]
fn a_wrong_type_names_the_key_and_the_expected_form() {
    let file = write("[lifecycle]\nidle_timeout_ms = \"soon\"\n");
    let error = load(Some(file.path()), &[]).unwrap_err().to_string();
    assert!(error.contains("lifecycle.idle_timeout_ms"), "{error}");
    assert!(
        error.contains("u64") || error.contains("integer"),
        "{error}"
    );
}

#[test]
fn overrides_beat_the_file_and_kafka_properties_pass_through() {
    let file = write("brokers = \"a:1\"\n[kafka]\n\"linger.ms\" = \"5\"\n");
    let config = load(
        Some(file.path()),
        &[
            ("lifecycle.idle_timeout_ms".into(), "0".into()),
            ("topics.input".into(), "in.topic".into()),
        ],
    )
    .unwrap();
    assert_eq!(config.idle_timeout, None);
    assert_eq!(config.topics.input, "in.topic");
    assert_eq!(config.kafka["bootstrap.servers"], "a:1");
    assert_eq!(config.kafka["linger.ms"], "5");
}

#[test]
fn kafka_consumer_and_producer_tables_reach_only_their_kind_of_client() {
    let file = write(
        "[kafka]\n\"linger.ms\" = 7\n\"client.rack\" = \"r1\"\n[kafka.consumer]\n\"fetch.min.bytes\" = 1024\n\"client.rack\" = \"r2\"\n[kafka.producer]\n\"batch.size\" = 65536\n",
    );
    let config = load(
        Some(file.path()),
        &[
            ("kafka.producer.linger.ms".into(), "20".into()),
            ("kafka.consumer.\"fetch.wait.max.ms\"".into(), "50".into()),
        ],
    )
    .unwrap();
    assert_eq!(config.kafka["linger.ms"], "7");
    assert!(!config.kafka.contains_key("fetch.min.bytes"));
    assert!(!config.kafka.contains_key("batch.size"));
    assert_eq!(config.kafka_consumer["fetch.min.bytes"], "1024");
    assert_eq!(config.kafka_consumer["fetch.wait.max.ms"], "50");
    assert_eq!(
        config.kafka_consumer["client.rack"], "r2",
        "the kind's own value wins"
    );
    assert_eq!(config.kafka_consumer["bootstrap.servers"], "127.0.0.1:9092");
    assert!(!config.kafka_consumer.contains_key("batch.size"));
    assert_eq!(config.kafka_producer["batch.size"], "65536");
    assert_eq!(config.kafka_producer["linger.ms"], "20");
    assert_eq!(config.kafka_producer["client.rack"], "r1");
    assert!(!config.kafka_producer.contains_key("fetch.min.bytes"));

    let stray = write("[kafka.admin]\n\"x\" = 1\n");
    let error = load(Some(stray.path()), &[]).unwrap_err().to_string();
    assert!(error.contains("kafka.admin"), "{error}");
    assert!(error.contains("[kafka.consumer]"), "{error}");
}

#[test]
fn kafka_properties_take_dotted_names_numbers_and_booleans() {
    let file = write("[kafka]\n\"linger.ms\" = 7\n\"enable.idempotence\" = true\n\"sticky.partitioning.linger.ms\" = 2.5\n");
    let config = load(
        Some(file.path()),
        &[
            ("kafka.batch.size".into(), "65536".into()),
            ("kafka.\"acks\"".into(), "\"all\"".into()),
            ("kafka.enable.auto.commit".into(), "false".into()),
            ("kafka.client.id".into(), "sessionflow-a".into()),
        ],
    )
    .unwrap();
    assert_eq!(config.kafka["linger.ms"], "7");
    assert_eq!(config.kafka["enable.idempotence"], "true");
    assert_eq!(config.kafka["sticky.partitioning.linger.ms"], "2.5");
    assert_eq!(config.kafka["batch.size"], "65536");
    assert_eq!(config.kafka["acks"], "all");
    assert_eq!(config.kafka["enable.auto.commit"], "false");
    assert_eq!(config.kafka["client.id"], "sessionflow-a");
    // An override wins over the file for a property too.
    let config = load(Some(file.path()), &[("kafka.linger.ms".into(), "9".into())]).unwrap();
    assert_eq!(config.kafka["linger.ms"], "9");
}

#[test]
fn secrets_come_from_files_and_the_environment_and_debug_hides_them() {
    let secret = "s3cr3t-Pa55word";
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("{secret}\n")).unwrap();
    let config = load(
        None,
        &[(
            "kafka.\"sasl.password_file\"".into(),
            file.path().display().to_string(),
        )],
    )
    .unwrap();
    assert_eq!(config.kafka["sasl.password"], secret);
    assert!(!config.kafka.contains_key("sasl.password_file"));
    let shown = format!("{config:?}");
    assert!(!shown.contains(secret), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");

    let from_env = kafka_from_env(
        [
            (
                "SESSIONFLOW__KAFKA__SASL_PASSWORD_FILE",
                "/run/secrets/kafka",
            ),
            ("SESSIONFLOW__KAFKA__SECURITY_PROTOCOL", "SASL_SSL"),
            ("SESSIONFLOW__KAFKA__CONSUMER__FETCH_MIN_BYTES", "1024"),
            ("SESSIONFLOW__BROKERS", "b:1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let shared = &from_env[&None];
    assert_eq!(shared["sasl.password_file"], "/run/secrets/kafka");
    assert_eq!(shared["security.protocol"], "SASL_SSL");
    assert_eq!(shared.len(), 2);
    assert_eq!(
        from_env[&Some("consumer".into())]["fetch.min.bytes"],
        "1024"
    );
    assert_eq!(from_env.len(), 2);

    let missing = load(
        None,
        &[(
            "kafka.\"ssl.key.password_file\"".into(),
            "/nonexistent/key".into(),
        )],
    )
    .unwrap_err()
    .to_string();
    assert!(missing.contains("ssl.key.password_file"), "{missing}");
}

#[test]
fn bad_values_name_the_key() {
    for (key, value, needle) in [
        ("delivery", "\"twice\"", "delivery"),
        ("http.listen", "\"nowhere\"", "http.listen"),
        ("pipeline.batch_size", "0", "pipeline.batch_size"),
        ("pipeline.workers", "0", "pipeline.workers"),
        ("pipeline.workers", "65", "pipeline.workers"),
        ("group_id", "\"\"", "group_id"),
    ] {
        let error = load(None, &[(key.into(), value.into())])
            .unwrap_err()
            .to_string();
        assert!(error.contains(needle), "{key}: {error}");
    }
}

#[test]
fn a_config_path_that_is_not_a_readable_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let error = load(Some(dir.path()), &[]).unwrap_err().to_string();
    assert!(error.contains("is not a file"), "{error}");
}

#[test]
fn an_output_topic_equal_to_the_input_topic_is_an_error() {
    for key in [
        "topics.transitions",
        "topics.anomalies",
        "topics.dead_letters",
        "topics.changelog",
    ] {
        let error = load(
            None,
            &[
                ("topics.input".into(), "clerk.sessions".into()),
                (key.into(), "clerk.sessions".into()),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains(key) && error.contains("input topic"),
            "{error}"
        );
    }
}

#[test]
fn no_configuration_error_shows_a_value_under_a_secret_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sessionflow.toml");
    for value in ["[12345678]", "{ inner = 12345678 }", "[\"s3cr3t\"]"] {
        std::fs::write(&file, format!("[kafka]\n\"sasl.password\" = {value}\n")).unwrap();
        let error = load(Some(&file), &[]).unwrap_err().to_string();
        assert!(
            !error.contains("12345678") && !error.contains("s3cr3t"),
            "{error}"
        );
        assert!(error.contains("sasl.password"), "names the key: {error}");
    }
}

#[test]
fn the_log_format_is_text_or_json() {
    let json = load(None, &[("log.format".into(), "json".into())]).unwrap();
    assert_eq!(json.log_format, LogFormat::Json);
    assert_eq!(load(None, &[]).unwrap().log_format, LogFormat::Text);
    let error = load(None, &[("log.format".into(), "xml".into())])
        .unwrap_err()
        .to_string();
    assert!(error.contains("log.format"), "{error}");
}
