//! Restart after a long quiet time (SPEC sections 3 and 6): sessions whose deadlines passed
//! while the processor was down are inferred expired once it is back, because the watermark
//! resumes from the changelog and the idle rule advances it with the wall clock. Sessions
//! seen before the stop are not sighted again.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn session(id: &str, updated_at: i64, expire_at: i64) -> String {
    format!(
        r#"{{"object":"session","id":"{id}","user_id":"user_q","client_id":"client_q","status":"active","updated_at":{updated_at},"created_at":{updated_at},"expire_at":{expire_at},"abandon_at":{}}}"#,
        expire_at + 3_600_000
    )
}

#[test]
fn deadlines_passed_while_down_are_inferred_after_the_restart() {
    let Some(scenario) = Scenario::new("quiet", 1) else {
        return;
    };
    let bootstrap = scenario.bootstrap.clone();
    let input = scenario.input.clone();
    let prefix = scenario.prefix.clone();
    let now = now_ms();
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let soon = now + 6_000;
    let later = now + 3_600_000;
    for (id, expire_at) in [("sess_soon", soon), ("sess_later", later)] {
        let value = session(id, now - 1_000, expire_at);
        producer
            .send(
                BaseRecord::<str, str>::to(&input)
                    .partition(0)
                    .key(id)
                    .payload(&value),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    let sets = [
        "lifecycle.allowed_lateness_ms=1000",
        "lifecycle.idle_timeout_ms=1000",
        "kafka.\"session.timeout.ms\"=\"6000\"",
    ];
    let mut first = scenario.start(&sets);
    wait_until("both sessions processed", Duration::from_secs(60), || {
        scenario.committed() == vec![2]
    });
    assert!(first.terminate().success(), "{}", first.log_text());
    let before = read_all(&bootstrap, &format!("{prefix}.transitions"));
    let inferred = |records: &[Record]| -> Vec<String> {
        records
            .iter()
            .map(Record::json)
            .filter(|e| e["cause"] == "inferred")
            .map(|e| e["session_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        inferred(&before[&0]),
        Vec::<String>::new(),
        "nothing due before the stop"
    );
    assert_eq!(before[&0].len(), 2, "two first sightings");

    // Down past sess_soon's deadline (plus the allowed lateness).
    while now_ms() < soon + 1_500 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut second = scenario.start(&sets);
    wait_until(
        "the expiry inferred after the restart",
        Duration::from_secs(60),
        || {
            inferred(&read_all(&bootstrap, &format!("{prefix}.transitions"))[&0])
                == vec!["sess_soon".to_owned()]
        },
    );
    let log = second.log_text();
    assert!(second.terminate().success(), "{log}");
    assert!(log.contains("Restored partition state"), "{log}");
    let after = read_all(&bootstrap, &format!("{prefix}.transitions"));
    let events: Vec<serde_json::Value> = after[&0].iter().map(Record::json).collect();
    assert_eq!(
        events.len(),
        3,
        "two first sightings before, one inference after: {events:#?}"
    );
    let expiry = &events[2];
    assert_eq!(expiry["from"], "active");
    assert_eq!(expiry["to"], "expired");
    assert_eq!(
        expiry["at"], soon,
        "inferred at the deadline, not at the restart"
    );
}
