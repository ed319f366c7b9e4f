//! Faults injected between sessionflow and a real broker (`common::proxy`): nothing lost,
//! nothing stalled, everything visible.

mod common;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use common::proxy::{proxy_addresses, FaultProxy, Mode};
use common::*;

const PARTITIONS: i32 = 2;

/// The proxy's port is the broker's PROXIED listener's advertised one: one test at a time.
static PROXY: Mutex<()> = Mutex::new(());

fn proxy_alone() -> MutexGuard<'static, ()> {
    PROXY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The broker becomes unreachable while a restarted instance restores its partitions from
/// the changelog. The restore is retried (counted, logged) instead of starting empty, and
/// once the broker is back the output holds every event `replay` derives and none derived
/// anew (duplicates, from records in flight at the first instance's stop, are counted).
#[test]
fn the_broker_unreachable_during_a_restore_delays_it_and_loses_nothing() {
    let _alone = proxy_alone();
    let Some(scenario) = Scenario::new("restore-outage", PARTITIONS) else {
        return;
    };
    let (listen, upstream) = proxy_addresses().expect("scripts/kafka-dev.sh run exports the proxy");
    let total = 450_000;
    generate_into(&scenario.bootstrap, &scenario.input, total, 61);
    let sets = [
        "lifecycle.idle_timeout_ms=0",
        "lifecycle.max_clock_skew_ms=0",
    ];

    // A first instance, straight to the broker, takes about two thirds of the input.
    let mut first = scenario.start(&sets);
    scenario.wait_committed_beyond(
        "the first instance's progress",
        300_000,
        Duration::from_secs(240),
    );
    assert!(first.terminate().success(), "{}", first.log_text());

    // The second reaches the broker only through the proxy, slowed so that its restore is
    // still running when the broker goes away.
    let proxy = FaultProxy::start(&listen, &upstream);
    proxy.set(Mode::Pass {
        latency: Duration::from_millis(30),
    });
    let mut second = scenario.start_via(&proxy.listen, &sets, &[]);
    wait_for_run(
        &second,
        "the second instance restoring",
        Duration::from_secs(120),
        || second.log_text().contains("Partitions assigned."),
    );
    proxy.go_down();
    wait_for_run(
        &second,
        "a failed changelog read, retried",
        Duration::from_secs(120),
        || {
            second
                .log_text()
                .contains("Could not read the state changelog; retrying")
        },
    );
    let ready_while_down = http_get(second.port, "/readyz");
    proxy.resume();
    let ends = scenario.end_offsets();
    wait_for_run(
        &second,
        "every input offset committed",
        Duration::from_secs(300),
        || scenario.committed() == ends,
    );
    let metrics = second.metrics().unwrap_or_default();
    let status = second.terminate();
    let log = second.log_text();
    assert!(status.success(), "{log}");
    assert!(
        ready_while_down
            .as_ref()
            .is_none_or(|r| r.starts_with("HTTP/1.1 503") || r.starts_with("HTTP/1.0 503")),
        "not ready while restoring: {ready_while_down:?}"
    );
    assert!(!log.contains("starting empty"), "{log}");
    let retries = metric_sum(&metrics, "sessionflow_state_restore_retries_total", &[]);
    assert!(retries >= 1.0, "restore retries counted: {retries}");
    let restored = restored_sessions(&log);
    // The generator's traffic holds some 30 000 sessions at this point (sessions end and
    // are forgotten as fast as new ones start).
    assert!(restored >= 20_000, "sessions restored: {restored}");

    let input = read_all(&scenario.bootstrap, &scenario.input);
    let expected = expected_from_replay(&input, &scenario.input, scenario.dir.path(), &[]);
    let transitions = read_all(
        &scenario.bootstrap,
        &format!("{}.transitions", scenario.prefix),
    );
    let duplicates = assert_at_least_once(&expected, &transitions, &input);
    eprintln!(
        "restore outage: {retries} failed changelog reads retried, {restored} sessions restored, {duplicates} duplicate events, {} proxied connections",
        proxy.connections()
    );
}

#[test]
fn sigterm_at_least_once_with_the_broker_up_stops_within_the_bound() {
    sigterm("at_least_once", true);
}

#[test]
fn sigterm_at_least_once_with_the_broker_unreachable_stops_within_the_bound() {
    sigterm("at_least_once", false);
}

#[test]
fn sigterm_exactly_once_with_the_broker_up_stops_within_the_bound() {
    sigterm("exactly_once", true);
}

#[test]
fn sigterm_exactly_once_with_the_broker_unreachable_stops_within_the_bound() {
    sigterm("exactly_once", false);
}

/// `drain_timeout_ms` of the shutdown tests.
const DRAIN_TIMEOUT_MS: u64 = 3_000;

/// SIGTERM ends the process within `drain_timeout_ms` plus the shutdown grace (10 s), the
/// broker up or unreachable through the proxy (the bound is the process's own; the test
/// waits a minute before calling it stuck). Then a second instance, straight to the broker,
/// finishes the input, and the output holds every expected event (exactly-once: exactly).
fn sigterm(delivery: &str, broker_reachable: bool) {
    let _alone = proxy_alone();
    let name = format!(
        "sigterm-{delivery}-{}",
        if broker_reachable { "up" } else { "down" }
    );
    let Some(scenario) = Scenario::new(&name, PARTITIONS) else {
        return;
    };
    let (listen, upstream) = proxy_addresses().expect("scripts/kafka-dev.sh run exports the proxy");
    generate_into(&scenario.bootstrap, &scenario.input, 60_000, 71);
    let delivery_set = format!("delivery=\"{delivery}\"");
    let drain = format!("pipeline.drain_timeout_ms={DRAIN_TIMEOUT_MS}");
    let transactional_id = format!("pipeline.transactional_id={}", unique("txn"));
    let sets = [
        "lifecycle.idle_timeout_ms=0",
        "lifecycle.max_clock_skew_ms=0",
        delivery_set.as_str(),
        drain.as_str(),
        transactional_id.as_str(),
    ];
    let proxy = FaultProxy::start(&listen, &upstream);
    let mut first = scenario.start_via(&proxy.listen, &sets, &[]);
    wait_for_run(
        &first,
        "some input committed",
        Duration::from_secs(120),
        || scenario.committed_total() > 0,
    );
    if !broker_reachable {
        proxy.go_down();
    }
    signal(first.child.id(), "TERM");
    let signalled = Instant::now();
    let mut status = None;
    wait_until(
        "the process to exit after SIGTERM",
        Duration::from_secs(60),
        || {
            status = first.child.try_wait().unwrap();
            status.is_some()
        },
    );
    let took = signalled.elapsed();
    let status = status.unwrap();
    let log = first.log_text();
    eprintln!(
        "{name}: exited {:.1} s after SIGTERM ({status}; drain_timeout_ms {DRAIN_TIMEOUT_MS} + 10 s grace)",
        took.as_secs_f64()
    );
    if broker_reachable {
        assert!(status.success(), "{log}");
    }
    proxy.resume();
    drop(proxy);

    let mut second = scenario.start(&sets);
    let ends = scenario.end_offsets();
    wait_for_run(
        &second,
        "every input offset committed",
        Duration::from_secs(240),
        || scenario.committed() == ends,
    );
    assert!(second.terminate().success(), "{}", second.log_text());
    let input = read_all(&scenario.bootstrap, &scenario.input);
    let expected = expected_from_replay(&input, &scenario.input, scenario.dir.path(), &[]);
    let transitions = read_all(
        &scenario.bootstrap,
        &format!("{}.transitions", scenario.prefix),
    );
    if delivery == "exactly_once" {
        assert_exactly_once(&expected, &transitions);
    } else {
        let duplicates = assert_at_least_once(&expected, &transitions, &input);
        eprintln!("{name}: {duplicates} duplicate events");
    }
}
