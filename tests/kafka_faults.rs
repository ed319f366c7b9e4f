//! Faults injected between sessionflow and a real broker (`common::proxy`), and faults of
//! its topics and clients (an output topic deleted, a corrupt changelog record, a producer
//! queue smaller than a transaction): nothing lost, nothing stalled, everything visible.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use common::proxy::{FaultProxy, Mode};
use common::restore_kit::sessions_sorted;
use common::*;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use sessionflow::app::restore::Restorer;
use sessionflow::apply;
use sessionflow::changelog::{decode_state, PROGRESS_KEY};
use sessionflow::config::OnCorrupt;
use sessionflow::engine::{self, Engine, EngineConfig, EventSink};
use sessionflow::kafka::source::ChangelogRecord;
use sessionflow::model::{DerivedEvent, Source};
use sessionflow::parse::Parser;
use sessionflow::stats::Stats;

const PARTITIONS: i32 = 2;
/// Historical event times: no idle advance, no future check (SPEC section 3).
const HISTORICAL_SETS: [&str; 2] = [
    "lifecycle.idle_timeout_ms=0",
    "lifecycle.max_clock_skew_ms=0",
];

/// The proxy's port is the broker's PROXIED listener's advertised one: one test at a time.
static PROXY: Mutex<()> = Mutex::new(());

fn proxy_alone() -> MutexGuard<'static, ()> {
    PROXY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sends SIGTERM and waits (up to `bound`) for the process to exit: its status, and how long
/// after the signal it exited.
fn terminate_timed(run: &mut Running, bound: Duration) -> (std::process::ExitStatus, Duration) {
    signal(run.child.id(), "TERM");
    let signalled = Instant::now();
    let mut status = None;
    wait_until("the process to exit after SIGTERM", bound, || {
        status = run.child.try_wait().unwrap();
        status.is_some()
    });
    (status.unwrap(), signalled.elapsed())
}

/// The broker becomes unreachable while a restarted instance restores its partitions from
/// the changelog. The restore is retried (counted, logged) instead of starting empty; each
/// partition's restored state holds exactly the sessions `replay` holds after the input
/// offset its progress record names (over 100 000 sessions in all: terminal sessions are kept
/// a week of event time); and once the broker is back the output holds every event `replay`
/// derives and none derived anew (duplicates, from records in flight at the first
/// instance's stop, are counted).
#[test]
fn the_broker_unreachable_during_a_restore_delays_it_and_loses_nothing() {
    let _alone = proxy_alone();
    let Some(scenario) = Scenario::new("restore-outage", PARTITIONS) else {
        return;
    };
    let total = 600_000;
    generate_into(&scenario.bootstrap, &scenario.input, total, 61);
    // Terminal sessions kept for a week of event time: the generated traffic (about two
    // days of it) then holds every session it started, some 107 000 after 400 000 records.
    let sets = [
        "lifecycle.idle_timeout_ms=0",
        "lifecycle.max_clock_skew_ms=0",
        "lifecycle.terminal_retention_ms=604800000",
    ];
    let config = EngineConfig {
        allowed_lateness_ms: engine::DEFAULT_ALLOWED_LATENESS_MS,
        terminal_retention_ms: 604_800_000,
        max_clock_skew_ms: 0,
        max_sessions: None,
    };

    // A first instance, straight to the broker, takes about two thirds of the input.
    let mut first = scenario.start(&sets);
    scenario.wait_committed_beyond(
        "the first instance's progress",
        400_000,
        Duration::from_secs(240),
    );
    assert!(first.terminate().success(), "{}", first.log_text());

    // The second reaches the broker only through the proxy, slowed so that its restore is
    // still running when the broker goes away.
    let proxy = FaultProxy::in_front_of_the_broker();
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
    // On a loaded machine the first instance may have committed all the input before it
    // stopped (it is signalled once 400 000 are seen committed and keeps processing until
    // then), so that every offset is committed before the second has restored every
    // partition (a CI run's log held one partition's restore of two): wait for the restores
    // first.
    wait_for_run(
        &second,
        "every partition restored",
        Duration::from_secs(300),
        || {
            let restored: BTreeSet<i32> = restores_logged(&second.log_text())
                .iter()
                .map(|r| r.partition)
                .collect();
            restored.len() == PARTITIONS as usize
        },
    );
    scenario.wait_all_committed(
        &second,
        "every input offset committed",
        Duration::from_secs(300),
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

    // Each partition's restore, checked against replay up to the offset it claims.
    let input = read_all(&scenario.bootstrap, &scenario.input);
    // The last restore of each partition counts.
    let restores: BTreeMap<i32, RestoreLogged> = restores_logged(&log)
        .into_iter()
        .map(|r| (r.partition, r))
        .collect();
    assert_eq!(
        restores.len(),
        PARTITIONS as usize,
        "one restore line per partition (the last counts): {restores:?}"
    );
    let mut restored = 0;
    for (&partition, restore) in &restores {
        let through = restore
            .applied_through
            .unwrap_or_else(|| panic!("partition {partition}: no progress restored: {restore:?}"));
        let records: Vec<Record> = input[&partition]
            .iter()
            .take_while(|r| r.offset <= through)
            .cloned()
            .collect();
        let reference = replayed_engine(config, &scenario.input, partition, &records);
        assert_eq!(
            restore.sessions,
            reference.len() as u64,
            "partition {partition}: sessions restored vs held by replay through offset {through}"
        );
        restored += restore.sessions;
    }
    assert!(restored >= 100_000, "sessions restored: {restored}");

    let expected = expected_from_replay(&input, &scenario.input, scenario.dir.path(), &[]);
    let transitions = read_all(
        &scenario.bootstrap,
        &format!("{}.transitions", scenario.prefix),
    );
    let duplicates = assert_at_least_once(&expected, &transitions, &input);
    eprintln!(
        "restore outage: {retries} failed changelog reads retried, {restored} sessions restored ({restores:?}), each equal to replay's at its progress offset; {duplicates} duplicate events, {} proxied connections",
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
    let proxy = FaultProxy::in_front_of_the_broker();
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
    let (status, took) = terminate_timed(&mut first, Duration::from_secs(60));
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
    scenario.wait_all_committed(
        &second,
        "every input offset committed",
        Duration::from_secs(240),
    );
    assert!(second.terminate().success(), "{}", second.log_text());
    let output = scenario.against_replay();
    if delivery == "exactly_once" {
        output.assert_exactly_once();
    } else {
        let duplicates = output.assert_at_least_once();
        eprintln!("{name}: {duplicates} duplicate events");
    }
}

/// `records` generated into the scenario's input, and the proxy in front of the broker
/// with its traffic slowed: records wait behind the fetch position and in the consumer, so
/// that a batch is in progress (its transaction open, in exactly-once) when a test stalls
/// the connections.
fn slowed_proxy_before_a_backlog(scenario: &Scenario, records: u64, seed: u64) -> FaultProxy {
    generate_into(&scenario.bootstrap, &scenario.input, records, seed);
    let proxy = FaultProxy::in_front_of_the_broker();
    proxy.set(Mode::Pass {
        latency: Duration::from_millis(20),
    });
    proxy
}

/// An input partition that cannot fetch (its broker connections stall: black-holed by the
/// proxy while records wait) is reported — `sessionflow_input_stalled_seconds` counts, the
/// log names the partition — and after `pipeline.input_stall_timeout_ms` the instance is
/// not ready. Once the connections pass again it is ready again, and the output holds every
/// event `replay` derives.
#[test]
fn an_input_partition_that_cannot_fetch_is_reported_and_unreadies_the_instance() {
    let _alone = proxy_alone();
    let Some(scenario) = Scenario::new("input-stall", PARTITIONS) else {
        return;
    };
    let proxy = slowed_proxy_before_a_backlog(&scenario, 200_000, 63);
    let sets = [
        "lifecycle.idle_timeout_ms=0",
        "lifecycle.max_clock_skew_ms=0",
        "pipeline.input_stall_timeout_ms=5000",
    ];
    let mut run = scenario.start_via(&proxy.listen, &sets, &[]);
    wait_for_run(&run, "ready", Duration::from_secs(120), || {
        http_get(run.port, "/readyz").is_some_and(|r| r.contains(" 200 "))
    });
    scenario.wait_committed_beyond("some progress", 10_000, Duration::from_secs(120));
    proxy.set(Mode::BlackHole);
    wait_for_run(
        &run,
        "the stalled partition making the instance not ready",
        Duration::from_secs(120),
        || http_get(run.port, "/readyz").is_some_and(|r| r.contains(" 503 ")),
    );
    let stalled = run.metrics().unwrap_or_default();
    let stalled_seconds = metric_sum(&stalled, "sessionflow_input_stalled_seconds", &[]);
    wait_for_run(&run, "the stall logged", Duration::from_secs(60), || {
        run.log_text()
            .contains("Input partition is not progressing")
    });
    proxy.cut();
    proxy.resume();
    wait_for_run(&run, "ready again", Duration::from_secs(180), || {
        http_get(run.port, "/readyz").is_some_and(|r| r.contains(" 200 "))
    });
    scenario.wait_all_committed(
        &run,
        "every input offset committed",
        Duration::from_secs(300),
    );
    let after = run.metrics().unwrap_or_default();
    let status = run.terminate();
    assert!(status.success(), "{}", run.log_text());
    assert!(
        stalled_seconds >= 5.0,
        "the stall is measured while it lasts: {stalled_seconds}"
    );
    assert_eq!(
        metric_sum(&after, "sessionflow_input_stalled_seconds", &[]),
        0.0,
        "and back to 0 once the partitions move"
    );

    let duplicates = scenario.against_replay().assert_at_least_once();
    eprintln!(
        "input stall: reported after {stalled_seconds} s stalled (summed over partitions), not ready, ready again; every expected event present, {duplicates} duplicates"
    );
}

/// At-least-once, a rebalance while only the first instance's producer is stalled (its
/// producer bootstrapped through the proxy, black-holed; its consumer reaches the broker
/// directly): the revocation's drain gives up after `drain_timeout_ms` with outputs
/// unacknowledged, so the revoked partition's offsets stay uncommitted and the second
/// instance derives its records again. The first instance is then killed (-9) with its
/// producer still stalled and the held connections cut, so nothing it did not get
/// acknowledged ever lands: the output holds every event `replay` derives, none derived anew,
/// only if no offset was committed past an unacknowledged output.
#[test]
fn a_rebalance_while_the_producer_is_stalled_loses_nothing() {
    let _alone = proxy_alone();
    let Some(scenario) = Scenario::new("producer-stall", PARTITIONS) else {
        return;
    };
    let proxy = FaultProxy::in_front_of_the_broker();
    let common = [
        "lifecycle.idle_timeout_ms=0",
        "lifecycle.max_clock_skew_ms=0",
        "kafka.consumer.\"session.timeout.ms\"=\"6000\"",
        "pipeline.drain_timeout_ms=3000",
    ];
    let through_proxy = format!("kafka.producer.\"bootstrap.servers\"=\"{}\"", proxy.listen);
    let first_sets: Vec<&str> = common
        .iter()
        .copied()
        .chain([through_proxy.as_str()])
        .collect();
    let mut first = scenario.start(&first_sets);
    let mut generator = spawn_generator(&scenario.bootstrap, &scenario.input, 120_000, 66, 20_000);
    scenario.wait_committed_beyond(
        "the first instance making progress",
        20_000,
        Duration::from_secs(120),
    );
    proxy.set(Mode::BlackHole);
    let committed_at_stall = scenario.committed();
    // Input for the stalled instance to process whatever the generator has reached (on a
    // slow start-up it may have finished): outputs it cannot get acknowledged.
    generate_into(&scenario.bootstrap, &scenario.input, 20_000, 67);
    let mut second = scenario.start(&common);
    wait_for_run(
        &first,
        "the first instance's revocation drain giving up",
        Duration::from_secs(120),
        || {
            first
                .log_text()
                .contains("Outputs not all acknowledged within drain_timeout_ms.")
        },
    );
    wait_for_run(
        &second,
        "the second instance restoring the partition it took over",
        Duration::from_secs(120),
        || !restores_logged(&second.log_text()).is_empty(),
    );
    // Killed while stalled, then its held connections cut: what it did not get
    // acknowledged is gone. Its other partition moves once its group session times out.
    signal(first.child.id(), "KILL");
    first.child.wait().unwrap();
    proxy.cut();
    proxy.resume();
    assert!(generator.wait().unwrap().success());
    scenario.wait_all_committed(
        &second,
        "every input offset committed by the second instance",
        Duration::from_secs(300),
    );
    let second_log = second.log_text();
    assert!(second.terminate().success(), "{second_log}");
    let output = scenario.against_replay();
    let duplicates = output.assert_at_least_once();
    eprintln!(
        "producer stalled through a rebalance: committed {committed_at_stall:?} when it stalled; every expected event present, {duplicates} duplicates"
    );
}

/// Exactly-once, the broker's connections stalled (black-holed by the proxy) with a
/// transaction open: past two transaction timeouts the transaction is given up on and the
/// producer replaced while the stall lasts (a CI run once saw librdkafka's coordinator
/// connection never come back after a broker restart, the same AddOffsetsToTxn timing out
/// for minutes). The replacement registers once the broker is reachable again, the
/// partitions rewind, and the read_committed output is exactly what `replay` derives.
#[test]
fn an_exactly_once_transaction_stuck_behind_a_stalled_broker_is_given_up_and_the_output_stays_exact(
) {
    let _alone = proxy_alone();
    let Some(scenario) = Scenario::new("stuck-txn", PARTITIONS) else {
        return;
    };
    let proxy = slowed_proxy_before_a_backlog(&scenario, 100_000, 64);
    let sets = [
        "lifecycle.idle_timeout_ms=0",
        "lifecycle.max_clock_skew_ms=0",
        "delivery=\"exactly_once\"",
        "kafka.\"transaction.timeout.ms\"=\"4000\"",
    ];
    let mut run = scenario.start_via(&proxy.listen, &sets, &[]);
    scenario.wait_committed_beyond("some progress", 10_000, Duration::from_secs(120));
    stall_until_the_transaction_is_given_up(&proxy, &run);
    scenario.wait_all_committed(&run, "caught up after the stall", Duration::from_secs(300));
    let log = run.log_text();
    assert!(run.terminate().success(), "{log}");

    scenario.against_replay().assert_exactly_once();
    eprintln!(
        "stuck transaction: given up on {} time(s), producer replaced, {} rewinds; read_committed output equals replay exactly",
        log.matches("neither committed nor aborted").count(),
        log.matches("Rewound to the last committed transaction").count()
    );
}

/// Exactly-once: stalls every connection of `run` to the broker (black-holed) until the open
/// transaction is given up on (two transaction timeouts), then cuts the held connections and
/// lets traffic pass again.
fn stall_until_the_transaction_is_given_up(proxy: &FaultProxy, run: &Running) {
    proxy.set(Mode::BlackHole);
    wait_for_run(
        run,
        "the stuck transaction given up on while the stall lasts",
        Duration::from_secs(120),
        || run.log_text().contains("neither committed nor aborted"),
    );
    proxy.cut();
    proxy.resume();
}

/// Exactly-once, an abort whose transaction touched only some of the partitions held: the
/// rewind restores and re-reads those alone, and the others keep the state they have. The
/// input is laid out so that it can be no other way: a first run takes records on all four
/// partitions; then a backlog waits on partitions 0 and 1 only, and a second run (its state
/// restored from the changelog) has a transaction of it stuck behind a stall (given up on,
/// the producer replaced); then all four get records again — among them partitions 2 and 3,
/// whose engines must still hold what the restore gave them. Every rewind names partitions
/// 0 and 1 alone, the second run restores partitions 2 and 3 once (at its start), and the
/// read_committed output is exactly what `replay` derives.
#[test]
fn an_exactly_once_abort_rewinds_only_the_partitions_its_transaction_touched() {
    let _alone = proxy_alone();
    const HELD: i32 = 4;
    let Some(scenario) = Scenario::new("subset-rewind", HELD) else {
        return;
    };
    let lines = generated_lines(160_000, 53_000, 71);
    let (before, rest) = lines.split_at(30_000);
    let (backlog, after) = rest.split_at(100_000);
    let sets = [
        "lifecycle.idle_timeout_ms=0",
        "lifecycle.max_clock_skew_ms=0",
        "delivery=\"exactly_once\"",
        "kafka.\"transaction.timeout.ms\"=\"4000\"",
        // Small fetches, so that the consumer's queue alternates between the two backlog
        // partitions and a step holds records of both (with the default, a step is mostly one
        // partition's fetch): a rewind that left one of them out would lose its events.
        "kafka.consumer.\"max.partition.fetch.bytes\"=\"65536\"",
    ];
    produce_lines(&scenario, before, |i| i as i32 % HELD);
    scenario.run_to_end(&sets);
    // As in the stuck-transaction test: the backlog waits before the run starts, and the
    // proxy slows the traffic, so that a transaction is open when the connections stall.
    produce_lines(&scenario, backlog, |i| i as i32 % 2);
    let proxy = FaultProxy::in_front_of_the_broker();
    proxy.set(Mode::Pass {
        latency: Duration::from_millis(20),
    });
    let mut run = scenario.start_via(&proxy.listen, &sets, &[]);
    scenario.wait_committed_beyond(
        "the backlog under way",
        before.len() as i64 + 10_000,
        Duration::from_secs(120),
    );
    stall_until_the_transaction_is_given_up(&proxy, &run);
    scenario.wait_all_committed(
        &run,
        "the backlog after the stall",
        Duration::from_secs(300),
    );
    produce_lines(&scenario, after, |i| i as i32 % HELD);
    scenario.wait_all_committed(&run, "the last records", Duration::from_secs(120));
    let log = run.log_text();
    assert!(run.terminate().success(), "{log}");

    let rewinds: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split("Rewound to the last committed transaction").nth(1))
        .filter_map(|rest| rest.split(" partitions=").nth(1))
        .collect();
    assert!(!rewinds.is_empty(), "no rewind after the abort:\n{log}");
    for named in &rewinds {
        assert!(
            ["[0, 1]", "[0]", "[1]"].contains(&named.trim()),
            "a rewind beyond the partitions the backlog touched: {named}"
        );
    }
    let restores = restores_logged(&log);
    for untouched in [2, 3] {
        let restores = restores.iter().filter(|r| r.partition == untouched).count();
        assert_eq!(restores, 1, "partition {untouched} restored again:\n{log}");
    }
    scenario.against_replay().assert_exactly_once();
    eprintln!(
        "subset rewind: rewinds of partitions {rewinds:?} only; read_committed output equals replay exactly"
    );
}

/// `records` generated records over `sessions` sessions (seed `seed`), one JSON document a
/// line.
fn generated_lines(records: u64, sessions: u64, seed: u64) -> Vec<String> {
    let lines: Vec<String> = String::from_utf8(generated_ndjson(records, sessions, seed))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len() as u64, records);
    lines
}

/// Writes `lines` to the scenario's input, line `i` to partition `partition_of(i)`, and waits
/// for every write to be acknowledged. Compressed as `generate_into` sends: through the
/// slowed proxy, a fetch of uncompressed records held too few for the consumer to stay ahead
/// of the pipeline, and a stall then found no transaction open.
fn produce_lines(scenario: &Scenario, lines: &[String], partition_of: impl Fn(usize) -> i32) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &scenario.bootstrap)
        .set("compression.type", "lz4")
        .set("linger.ms", "20")
        .create()
        .unwrap();
    for (i, line) in lines.iter().enumerate() {
        let record = BaseRecord::<(), str>::to(&scenario.input)
            .partition(partition_of(i))
            .payload(line.as_str());
        send_when_queued(&producer, record);
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

/// Deliveries fail while the broker is unreachable (at-least-once with `message.timeout.ms`
/// set to 3 s, so that queued outputs fail instead of waiting; changelog writes never time
/// out): every failed output is sent again, and no changelog write fails. The output holds
/// every event `replay` derives, none derived anew; and the changelog restores exactly the
/// state `replay` ends with, its progress record at the last input offset: no write landed
/// behind a later write of its partition (a stale state, or a progress record claiming a
/// write that came after it), other than librdkafka's in-order replay of unacknowledged
/// writes after an epoch bump, which ends on each session's newest state.
#[test]
fn writes_failed_while_the_broker_was_away_are_retried_in_order() {
    let _alone = proxy_alone();
    let Some(scenario) = Scenario::new("retry-order", PARTITIONS) else {
        return;
    };
    let proxy = FaultProxy::in_front_of_the_broker();
    let sets = [
        "lifecycle.idle_timeout_ms=0",
        "lifecycle.max_clock_skew_ms=0",
        "kafka.\"message.timeout.ms\"=\"3000\"",
    ];
    let mut run = scenario.start_via(&proxy.listen, &sets, &[]);
    let mut generator = spawn_generator(&scenario.bootstrap, &scenario.input, 200_000, 62, 20_000);
    scenario.wait_committed_beyond(
        "progress before the fault",
        20_000,
        Duration::from_secs(120),
    );
    proxy.go_down();
    wait_for_run(&run, "deliveries failing", Duration::from_secs(120), || {
        run.metrics()
            .is_some_and(|m| metric_sum(&m, "sessionflow_delivery_errors_total", &[]) > 0.0)
    });
    proxy.resume();
    assert!(generator.wait().unwrap().success());
    scenario.wait_all_committed(
        &run,
        "every input offset committed",
        Duration::from_secs(300),
    );
    let metrics = run.metrics().unwrap_or_default();
    let status = run.terminate();
    let log = run.log_text();
    assert!(status.success(), "{log}");
    let failed = metric_sum(&metrics, "sessionflow_delivery_errors_total", &[]);
    // Changelog writes never time out: a timed-out one, sent again, could land behind the
    // later writes librdkafka went on to deliver.
    let changelog_topic = format!("topic=\"{}.state\"", scenario.group);
    let failed_changelog_writes = log
        .lines()
        .filter(|line| line.contains("Output delivery failed") && line.contains(&changelog_topic))
        .count();
    assert_eq!(
        failed_changelog_writes, 0,
        "changelog writes timed out while the broker was away"
    );

    let output = scenario.against_replay();
    let duplicates = output.assert_at_least_once();

    let changelog = read_all(&scenario.bootstrap, &format!("{}.state", scenario.group));
    let config = EngineConfig {
        allowed_lateness_ms: engine::DEFAULT_ALLOWED_LATENESS_MS,
        terminal_retention_ms: engine::DEFAULT_TERMINAL_RETENTION_MS,
        max_clock_skew_ms: 0,
        max_sessions: None,
    };
    for (&partition, records) in &output.input {
        let reference = replayed_engine(config, &scenario.input, partition, records);
        let mut restorer = Restorer::new(Engine::new(config), OnCorrupt::Stop);
        // Per session: its newest state so far, every state written, and the last one.
        let mut written: HashMap<Vec<u8>, (i64, HashSet<i64>, i64)> = HashMap::new();
        for record in changelog.get(&partition).into_iter().flatten() {
            let key = record.key.clone().unwrap_or_default();
            match record.value.as_deref() {
                Some(value) if key != PROGRESS_KEY => {
                    let updated_at = decode_state(value).unwrap().updated_at;
                    let (newest, states, last) = written
                        .entry(key.clone())
                        .or_insert_with(|| (updated_at, HashSet::new(), updated_at));
                    // Older than a write before it: only as a copy of a write already in
                    // the log. An output that times out makes librdkafka bump the producer's
                    // epoch, and the changelog writes not yet acknowledged are then sent again
                    // in order under the new epoch, which the broker cannot tell from new
                    // ones: a replay of writes that may have landed (librdkafka's
                    // INTRODUCTION.md, "Message timeout considerations"; `debug = "eos"` logs
                    // "resetting epoch base seq" for the changelog's partitions). A failed
                    // write sent again by sessionflow after later ones would be a state the
                    // log never held before.
                    assert!(
                        updated_at >= *newest || states.contains(&updated_at),
                        "partition {partition}: session {} went back in time at changelog offset {} ({newest} -> {updated_at}), to a state not written before: a retried write landed behind a later one",
                        String::from_utf8_lossy(&key),
                        record.offset
                    );
                    *newest = (*newest).max(updated_at);
                    states.insert(updated_at);
                    *last = updated_at;
                }
                Some(_) => {}
                None => {
                    written.remove(&key);
                }
            }
            restorer
                .apply(ChangelogRecord {
                    offset: record.offset,
                    key: record.key.as_deref().unwrap_or_default(),
                    value: record.value.as_deref(),
                })
                .unwrap();
        }
        for (key, (newest, _, last)) in &written {
            assert_eq!(
                last,
                newest,
                "partition {partition}: session {}'s last changelog write is not its newest state",
                String::from_utf8_lossy(key)
            );
        }
        assert_eq!(
            restorer.progress.applied_through,
            records.last().map(|r| r.offset),
            "partition {partition}: the last progress record covers the whole input"
        );
        assert!(
            sessions_sorted(&restorer.engine) == sessions_sorted(&reference),
            "partition {partition}: the changelog restores the state replay ends with"
        );
    }
    eprintln!(
        "retry order: {failed} deliveries failed and were retried, no changelog write; every expected event present, {duplicates} duplicates; the changelog restores replay's final state"
    );
}

/// The engine `replay` ends with for one input partition.
fn replayed_engine(
    config: EngineConfig,
    topic: &str,
    partition: i32,
    records: &[Record],
) -> Engine {
    let (mut engine, mut parser, mut stats) =
        (Engine::new(config), Parser::default(), Stats::new());
    for record in records {
        let source = Source {
            topic,
            partition,
            offset: record.offset,
        };
        parser.parse(record.value.as_deref().unwrap_or_default(), |result| {
            if let Ok(parsed) = result {
                apply::apply_record(&mut engine, &parsed, source, None, &mut stats, &mut Discard);
            }
        });
    }
    engine
}

/// Events are not looked at here: only the state.
struct Discard;

impl EventSink for Discard {
    fn emit(&mut self, _event: &DerivedEvent<'_>) {}
}

/// SIGTERM while exactly-once start-up initialises transactions, with every chunk between
/// sessionflow and the broker held back 500 ms by the proxy (so that the call, several round
/// trips on new connections, takes seconds): the process stops without waiting for it.
#[test]
fn a_signal_while_transactions_initialise_stops_without_waiting_for_the_call() {
    let _alone = proxy_alone();
    let Some(scenario) = Scenario::new("sigterm-init-transactions", PARTITIONS) else {
        return;
    };
    let proxy = FaultProxy::in_front_of_the_broker();
    proxy.set(Mode::Pass {
        latency: Duration::from_millis(500),
    });
    let transactional_id = format!("pipeline.transactional_id={}", unique("txn"));
    let sets = ["delivery=\"exactly_once\"", transactional_id.as_str()];
    let mut run = scenario.start_via(&proxy.listen, &sets, &[]);
    wait_for_run(
        &run,
        "start-up to reach transaction initialisation",
        Duration::from_secs(300),
        || {
            run.log_text()
                .contains("Topics checked; initialising transactions")
        },
    );
    let before_signal = run.log_text();
    let (status, took) = terminate_timed(&mut run, Duration::from_secs(120));
    let log = run.log_text();
    proxy.resume();
    eprintln!("stopped {took:?} after SIGTERM during transaction initialisation");
    assert!(status.success(), "{log}");
    assert!(
        !before_signal.contains("Transactions initialised"),
        "the call had returned before the signal: the test did not reach its stage\n{log}"
    );
    // Initialising takes several round trips of 1 s here, and what follows it (the consumer,
    // the group, leaving it) several more; the stop must wait for none of them.
    assert!(took < Duration::from_millis(2500), "took {took:?}\n{log}");
}

#[test]
fn an_output_topic_deleted_while_running_holds_the_input_and_loses_nothing_at_least_once() {
    output_topic_deleted_while_running("at_least_once");
}

#[test]
fn an_output_topic_deleted_while_running_aborts_and_loses_nothing_exactly_once() {
    output_topic_deleted_while_running("exactly_once");
}

/// The transitions topic deleted under a running instance, input arriving meanwhile, then
/// made again: at-least-once pauses its input while the refused writes wait (they are sent
/// again once a tick, not each at once every tick), exactly-once waits within the transaction
/// and then aborts it; either way the log stays short, and once the topic is back the output
/// is what replay derives (exactly, for exactly-once).
fn output_topic_deleted_while_running(delivery: &str) {
    let Some(scenario) = Scenario::new(&format!("deleted-{}", &delivery[..5]), PARTITIONS) else {
        return;
    };
    let delivery_set = format!("delivery=\"{delivery}\"");
    let mut sets = HISTORICAL_SETS.to_vec();
    sets.extend([
        // Exactly-once gives a transaction up after two transaction timeouts: 2 x 5 s here.
        "kafka.producer.\"transaction.timeout.ms\"=\"5000\"",
        &delivery_set,
    ]);
    let run = scenario.start(&sets);
    let transitions = format!("{}.transitions", scenario.prefix);
    // Created by the run at start-up, before it is consuming.
    wait_for_run(&run, "consuming", Duration::from_secs(60), || {
        run.log_text().contains("Consuming.")
    });
    delete_topics(&scenario.bootstrap, &[&transitions]);
    generate_into(&scenario.bootstrap, &scenario.input, 6_000, 53);

    let (awaited_line, what) = if delivery == "at_least_once" {
        ("input paused until they are delivered", "the input paused")
    } else {
        ("Aborting the transaction.", "a transaction aborted")
    };
    wait_for_run(&run, what, Duration::from_secs(120), || {
        run.log_text().contains(awaited_line)
    });
    let held_at = Instant::now();
    // A few ticks with the topic still gone: the refused writes are sent again meanwhile.
    wait_for_run(
        &run,
        "delivery errors counted",
        Duration::from_secs(60),
        || {
            run.metrics()
                .is_some_and(|m| metric_sum(&m, "sessionflow_delivery_errors_total", &[]) > 0.0)
                && held_at.elapsed() >= Duration::from_secs(3)
        },
    );
    let log = run.log_text();
    let refusals_logged = log.matches("Could not send an output").count();
    assert!(
        refusals_logged <= 2 + held_at.elapsed().as_secs() as usize / 10 * 2,
        "refused sends are logged at most once per 10 s: {refusals_logged} lines\n{}",
        log_tail(&log, 30)
    );

    create_topics(&scenario.bootstrap, &[&transitions], PARTITIONS);
    let log = scenario.finish(
        run,
        "every input offset committed once the topic is back",
        Duration::from_secs(240),
    );
    assert!(!log.contains("panicked"), "{log}");
    let against = scenario.against_replay();
    if delivery == "at_least_once" {
        assert!(
            log.contains("Failed writes delivered: input resumed."),
            "{}",
            log_tail(&log, 30)
        );
        let duplicates = against.assert_at_least_once();
        eprintln!("output topic deleted (at-least-once): nothing lost, {duplicates} duplicates");
    } else {
        against.assert_exactly_once();
        eprintln!("output topic deleted (exactly-once): read_committed output equals replay");
    }
}

#[test]
fn an_exactly_once_transaction_larger_than_the_producer_queue_loses_nothing() {
    let Some(scenario) = Scenario::new("queue-full", PARTITIONS) else {
        return;
    };
    generate_into(&scenario.bootstrap, &scenario.input, 20_000, 59);
    // A transaction of up to 10 000 records holds more messages than this queue: sends meet
    // a full queue and must wait for room, not leave messages out of the transaction.
    let log = scenario.run_to_end(&[
        "delivery=\"exactly_once\"",
        "kafka.producer.\"queue.buffering.max.messages\"=\"500\"",
    ]);
    assert!(!log.contains("panicked"), "{log}");
    scenario.against_replay().assert_exactly_once();
}

#[test]
fn a_corrupt_changelog_record_stops_its_partition_alone_and_skip_restores_without_it() {
    let Some(scenario) = Scenario::new("corrupt", PARTITIONS) else {
        return;
    };
    generate_into(&scenario.bootstrap, &scenario.input, 4_000, 61);
    // The group's changelog, made beforehand with one record no decoder reads in partition 0.
    let changelog = format!("{}.state", scenario.group);
    create_topics_with(
        &scenario.bootstrap,
        &[&changelog],
        PARTITIONS,
        &[("cleanup.policy", "compact")],
    );
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &scenario.bootstrap)
        .create()
        .unwrap();
    let record = BaseRecord::<str, [u8]>::to(&changelog)
        .partition(0)
        .key("sess_corrupt")
        .payload(b"\x00not a session state".as_slice());
    send_when_queued(&producer, record);
    producer.flush(Duration::from_secs(60)).unwrap();

    let mut run = scenario.start(&HISTORICAL_SETS);
    let ends = scenario.end_offsets();
    wait_for_run(
        &run,
        "partition 1 committed, partition 0 stopped",
        Duration::from_secs(120),
        || {
            let stopped = run.metrics().is_some_and(|m| {
                metric_sum(
                    &m,
                    "sessionflow_state_corrupt_records_total",
                    &["action=\"stopped\""],
                ) == 1.0
            });
            stopped && scenario.committed()[1] == ends[1]
        },
    );
    let not_ready = http_get(run.port, "/readyz").unwrap();
    assert!(not_ready.starts_with("HTTP/1.0 503"), "{not_ready}");
    // Partition 1 is done while partition 0, stopped, has committed nothing.
    assert!(scenario.committed()[0] <= 0, "{:?}", scenario.committed());
    let log = run.log_text();
    assert!(
        log.contains("Corrupt state changelog record") && log.contains("offset=0"),
        "{}",
        log_tail(&log, 30)
    );
    let status = run.terminate();
    assert!(status.success(), "{}", log_tail(&run.log_text(), 30));

    // Skipped on request: the record is counted, and every partition is processed.
    let mut sets = HISTORICAL_SETS.to_vec();
    sets.push("state.on_corrupt=\"skip\"");
    let run = scenario.start(&sets);
    wait_for_run(
        &run,
        "the record counted as skipped",
        Duration::from_secs(60),
        || {
            run.metrics().is_some_and(|m| {
                metric_sum(
                    &m,
                    "sessionflow_state_corrupt_records_total",
                    &["action=\"skipped\""],
                ) == 1.0
            })
        },
    );
    let log = scenario.finish(
        run,
        "every input offset committed",
        Duration::from_secs(180),
    );
    assert!(
        log.contains("Skipping an unreadable changelog record"),
        "{}",
        log_tail(&log, 30)
    );
    scenario.against_replay().assert_at_least_once();
}
