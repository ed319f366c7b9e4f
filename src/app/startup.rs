//! Start-up of the live pipeline: the topics checked (and created when allowed), the
//! producer, the delivery mode and the consumer built, the input subscribed.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use anyhow::Context;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::ThreadedProducer;
use tokio_util::sync::CancellationToken;

use super::at_least_once::{AtLeastOnce, Overlapped};
use super::exactly_once::{self, ExactlyOnce};
use super::input_health::InputHealth;
use super::lanes::Lanes;
use super::outbox::{DeadLetterLimits, Route, Routes};
use super::{Clients, Handles, Mode, Pipeline};
use crate::config::{Config, Delivery};
use crate::kafka::admin;
use crate::kafka::sink::{self, DeliveryState, OutputContext};
use crate::kafka::source::{self, InputContext};
use crate::metrics::CounterExport;
use crate::stats::Stats;

/// Builds the pipeline, ready to run; `None` when `shutdown` came first.
pub(super) async fn start(
    config: Config,
    shutdown: &CancellationToken,
    handles: Handles,
) -> anyhow::Result<Option<Pipeline>> {
    // On a task of its own: the metadata calls block their thread for up to their timeout,
    // and a signal during start-up must not wait for them.
    let checking = tokio::spawn({
        let config = config.clone();
        async move { check_topics(&config).await }
    });
    let (routes, dead_letter_limits) = tokio::select! {
        checked = checking => checked.context("checking topics")??,
        () = shutdown.cancelled() => return Ok(None),
    };
    let delivery = DeliveryState::new();
    let exactly_once = config.delivery == Delivery::ExactlyOnce;
    let producer = Arc::new(sink::output_producer(
        &config.kafka_producer,
        delivery.clone(),
        config.limits.max_record_bytes,
        exactly_once.then_some(config.transactional_id.as_str()),
        dead_letter_limits.topic_max_message_bytes,
    )?);
    let mode = if exactly_once {
        tracing::info!(transactional_id = %config.transactional_id, "Topics checked; initialising transactions.");
        if !exactly_once::init_transactions(&producer, &config, shutdown).await? {
            return Ok(None);
        }
        Mode::ExactlyOnce(ExactlyOnce::new(
            &config,
            shutdown.clone(),
            handles.heartbeat.clone(),
        ))
    } else {
        Mode::AtLeastOnce(Overlapped::new(AtLeastOnce::new(
            &producer,
            &routes.changelog.topic,
        )?))
    };
    let consumer = subscribed_consumer(&config, &delivery, &mode, &producer)?;

    let input_health = InputHealth::new(&config.topics.input, config.input_stall_timeout);
    Ok(Some(Pipeline {
        lanes: Lanes::new(config.workers, config.limits, dead_letter_limits),
        clients: Arc::new(Clients {
            config,
            consumer,
            producer,
            delivery,
            routes,
            producer_batch_bytes: dead_letter_limits.topic_max_message_bytes,
        }),
        mode,
        partitions: HashMap::new(),
        stats: Stats::new(),
        counters: CounterExport::new(),
        handles,
        stopped: BTreeSet::new(),
        shutdown: shutdown.clone(),
        fatal: None,
        input_health,
        hold: Default::default(),
        leave_unclosed: false,
        latency: Default::default(),
    }))
}

/// The input consumer, subscribed; at-least-once drains outputs when partitions are revoked.
fn subscribed_consumer(
    config: &Config,
    delivery: &Arc<DeliveryState>,
    mode: &Mode,
    producer: &Arc<ThreadedProducer<OutputContext>>,
) -> anyhow::Result<Arc<StreamConsumer<InputContext>>> {
    let context = InputContext {
        topic: config.topics.input.clone(),
        group: config.group_id.clone(),
        changes: Default::default(),
        lag: Default::default(),
        fetch: Default::default(),
        read_committed: matches!(mode, Mode::ExactlyOnce(_)),
        delivery: delivery.clone(),
        drain: Default::default(),
    };
    let consumer = Arc::new(source::input_consumer(config, context)?);
    // Exactly-once has nothing to drain on revocation: each batch's transaction has ended
    // before the consumer is polled again.
    if let Mode::AtLeastOnce(alo) = mode {
        AtLeastOnce::install_revocation_drain(
            &consumer,
            producer.clone(),
            alo.in_flight(),
            config.drain_timeout,
        );
    }
    consumer
        .subscribe(&[&config.topics.input])
        .context("subscribing to the input topic")?;
    tracing::info!(topic = %config.topics.input, group = %config.group_id, "Consuming.");
    Ok(consumer)
}

/// Checks (and, when allowed, creates) the input, output and changelog topics; returns where
/// each output goes, and how large a dead letter may be.
async fn check_topics(config: &Config) -> anyhow::Result<(Routes, DeadLetterLimits)> {
    let topics = &config.topics;
    let create = topics
        .create
        .then_some((topics.create_partitions, topics.create_replication_factor));
    let outputs = [
        topics.transitions.as_str(),
        topics.anomalies.as_str(),
        topics.dead_letters.as_str(),
    ];
    let counts = admin::ensure_topics(
        &config.kafka,
        &topics.input,
        &outputs,
        create,
        sink::max_message_bytes(config.limits.max_record_bytes),
    )
    .await
    .context("checking topics")?;
    // `ensure_topics` answers for every topic it was given; no index can panic here.
    let partitions_of = |topic: &String| {
        counts
            .get(topic)
            .copied()
            .ok_or_else(|| crate::kafka::KafkaSetupError::MissingTopic(topic.clone()))
    };
    let input_partitions = partitions_of(&topics.input)?;
    admin::ensure_changelog(
        &config.kafka,
        &topics.changelog,
        input_partitions,
        topics.create_replication_factor,
    )
    .await
    .context("checking the state changelog")?;
    let route = |topic: &String| -> Result<Route, crate::kafka::KafkaSetupError> {
        Ok(Route {
            topic: topic.clone(),
            partitions: partitions_of(topic)?,
        })
    };
    let dead_letter_limits = DeadLetterLimits {
        max_record_bytes: config.limits.max_record_bytes,
        topic_max_message_bytes: match topics.dead_letters_max_message_bytes {
            Some(known) => Some(known),
            None => admin::topic_max_message_bytes(&config.kafka, &topics.dead_letters)
                .await
                .context("reading the dead-letter topic's configuration")?,
        },
    };
    if let Some(max) = dead_letter_limits.topic_max_message_bytes {
        if max < sink::max_message_bytes(config.limits.max_record_bytes) {
            tracing::warn!(
                topic = %topics.dead_letters,
                max_message_bytes = max,
                "The dead-letter topic accepts less than max_record_bytes: larger dead letters are cut to fit (header sessionflow-original-bytes)."
            );
        }
    }
    let routes = Routes {
        input_topic: topics.input.clone(),
        transitions: route(&topics.transitions)?,
        anomalies: route(&topics.anomalies)?,
        dead_letters: route(&topics.dead_letters)?,
        changelog: Route {
            topic: topics.changelog.clone(),
            partitions: input_partitions,
        },
    };
    Ok((routes, dead_letter_limits))
}
