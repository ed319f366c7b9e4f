//! Restore time (docs/benchmarks.md): writes N session states (default 1 000 000, Clerk-form
//! ids, live, with deadlines) and a progress record into partition 0 of a fresh one-partition
//! changelog topic on a real broker, then times `app::restore_partition` reading them back.
//! Usage: `cargo run --release --example restore_bench -- BROKERS [N]`

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use sessionflow::app::restore::RestoreOutcome;
use sessionflow::changelog::{encode_state, encode_watermark, Progress, PROGRESS_KEY};
use sessionflow::engine::StateRecord;
use sessionflow::generate::clerk_id;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let brokers = args.next().expect("BROKERS");
    let sessions: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let group = format!("restore-bench-{}", std::process::id());
    let topic = format!("{group}.state");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()?;
    let new = NewTopic::new(&topic, 1, TopicReplication::Fixed(1)).set("cleanup.policy", "compact");
    admin.create_topics(&[new], &AdminOptions::new()).await?;

    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let t = 1_764_000_000_000_i64;
    let mut value = Vec::new();
    let (mut id, mut user, mut client) = (String::new(), String::new(), String::new());
    let write_started = Instant::now();
    for i in 0..sessions {
        clerk_id(&mut id, "sess_", i);
        clerk_id(&mut user, "user_", i);
        clerk_id(&mut client, "client_", i);
        value.clear();
        encode_state(
            &mut value,
            &StateRecord {
                status: "active",
                since: t + i as i64,
                updated_at: t + i as i64,
                created_at: Some(t + i as i64),
                expire_at: Some(t + 7 * 86_400_000),
                abandon_at: Some(t + 30 * 86_400_000),
                user_id: Some(&user),
                client_id: Some(&client),
                impersonated: false,
                inferred: false,
            },
        );
        loop {
            match producer.send(
                BaseRecord::<str, [u8]>::to(&topic)
                    .partition(0)
                    .key(&id)
                    .payload(&value),
            ) {
                Ok(()) => break,
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }
    value.clear();
    encode_watermark(
        &mut value,
        &Progress {
            watermark: Some(t),
            max_event_time: Some(t),
            applied_through: Some(0),
        },
    );
    producer
        .send(
            BaseRecord::<[u8], [u8]>::to(&topic)
                .partition(0)
                .key(PROGRESS_KEY)
                .payload(&value),
        )
        .ok();
    producer.flush(Duration::from_secs(120))?;
    println!(
        "wrote {sessions} states in {:.1} s",
        write_started.elapsed().as_secs_f64()
    );

    let config = sessionflow::config::load(
        None,
        &[
            ("brokers".into(), brokers.clone()),
            ("group_id".into(), group.clone()),
        ],
    )?;
    let started = Instant::now();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let outcome = sessionflow::app::restore::restore_partition(
        &config,
        0,
        &shutdown,
        &sessionflow::app::Heartbeat::default(),
    );
    let RestoreOutcome::Restored(engine, progress) = outcome else {
        anyhow::bail!("the changelog could not be restored");
    };
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        engine.len() as u64 == sessions,
        "restored {} of {sessions}",
        engine.len()
    );
    anyhow::ensure!(progress.applied_through == Some(0));
    println!(
        "restored {} sessions in {secs:.2} s ({:.0} sessions/s)",
        engine.len(),
        engine.len() as f64 / secs
    );
    Ok(())
}
