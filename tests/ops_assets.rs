//! The operations assets agree with the code: every metric a Grafana panel or an alerting
//! rule uses is one the code declares (`src/metrics.rs`), the dashboard is valid JSON with the
//! panels operators need, and docs/operations.md documents every configuration key of
//! config/sessionflow.toml and every metric.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

fn read(path: &str) -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Metric names in a text: `sessionflow_…`, without histogram series suffixes.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("sessionflow_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end] == b'_'
                || bytes[end].is_ascii_digit())
        {
            end += 1;
        }
        let mut name = &text[start..end];
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if sessionflow::metrics::is_declared(base) {
                    name = base;
                }
            }
        }
        names.insert(name.to_owned());
        i = end;
    }
    names
}

#[test]
fn dashboard_panels_use_only_declared_metrics() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/dashboards/sessionflow.json")).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    let mut used = BTreeSet::new();
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            used.extend(metric_names(target["expr"].as_str().unwrap()));
        }
    }
    for name in &used {
        assert!(
            sessionflow::metrics::is_declared(name),
            "dashboard uses undeclared {name}"
        );
    }
    for needed in [
        "sessionflow_transitions_total",
        "sessionflow_sessions",
        "sessionflow_session_lifetime_seconds",
        "sessionflow_consumer_lag_records",
        "sessionflow_watermark_lag_seconds",
        "sessionflow_dead_letters_total",
        "sessionflow_anomalies_total",
        "sessionflow_event_lag_seconds",
        "sessionflow_ingest_requests_total",
        "sessionflow_ingest_refusals_total",
        "sessionflow_ingest_write_seconds",
        "sessionflow_ingest_requests_in_flight",
    ] {
        assert!(used.contains(needed), "the dashboard shows {needed}");
    }
}

/// The dashboard travels: it picks its data source, job and instances from variables, and
/// its rates use Grafana's `$__rate_interval` (right for any scrape interval), not a fixed
/// window; nothing is tied to the compose stack's data source uid.
#[test]
fn the_dashboard_works_beyond_the_compose_stack() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/dashboards/sessionflow.json")).unwrap();
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(variables, ["datasource", "job", "instance"]);
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap_or("?");
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        for target in panel["targets"].as_array().unwrap() {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            let expr = target["expr"].as_str().unwrap();
            let selectors = expr.matches("sessionflow_").count() + expr.matches("process_").count();
            assert_eq!(
                expr.matches(r#"job=~"$job", instance=~"$instance""#)
                    .count(),
                selectors,
                "{title}: every series scoped to the chosen job and instances: {expr}"
            );
            assert!(
                !expr.contains("[5m]") && !expr.contains("[1m]"),
                "{title}: $__rate_interval, not a fixed window: {expr}"
            );
        }
    }
}

#[test]
fn alerting_rules_use_only_declared_metrics() {
    let rules = read("deploy/prometheus/alerts.yml");
    let used = metric_names(&rules);
    assert!(used.len() >= 5, "{used:?}");
    for name in &used {
        assert!(
            sessionflow::metrics::is_declared(name),
            "alerts use undeclared {name}"
        );
    }
}

#[test]
fn the_operations_guide_covers_every_key_and_metric() {
    let guide = read("docs/operations.md");
    let config = read("config/sessionflow.toml");
    let mut section = String::new();
    for line in config.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some((key, _)) = line.split_once(" = ").filter(|_| !line.starts_with('#')) {
            let full = if section.is_empty() {
                key.to_owned()
            } else {
                format!("{section}.{key}")
            };
            assert!(
                guide.contains(&format!("`{full}`")),
                "docs/operations.md documents `{full}`"
            );
        }
    }
    for name in sessionflow::metrics::ALL
        .iter()
        .chain(&sessionflow::metrics::INGEST)
    {
        assert!(guide.contains(name), "docs/operations.md documents {name}");
    }
    let undeclared: Vec<String> = metric_names(&guide)
        .into_iter()
        .filter(|n| !sessionflow::metrics::is_declared(n))
        .collect();
    assert!(
        undeclared.is_empty(),
        "docs/operations.md names undeclared metrics {undeclared:?}"
    );
}
