//! Start-up checks against the cluster: topic metadata (with the connection error that
//! explains a failure), creation of missing topics, and the state changelog's partition count.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;

use super::{base_config, client_error, lock, KafkaSetupError};

/// Admin client context: keeps the last connection error librdkafka reported, so that a
/// failed start-up names the cause (wrong password, untrusted certificate) rather than a
/// bare transport failure.
#[derive(Default)]
pub struct SetupContext {
    last_error: Mutex<Option<String>>,
}

impl SetupContext {
    fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }
}

impl ClientContext for SetupContext {
    /// librdkafka reports authentication and TLS failures as log lines from its broker
    /// threads (the error events are not served during a blocking metadata request).
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        super::forward_log(level, facility, message);
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            *lock(&self.last_error) = Some(message.to_owned());
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "Kafka connection error.");
        *lock(&self.last_error) = Some(reason.to_owned());
    }
}

impl ConsumerContext for SetupContext {}

type Admin = AdminClient<SetupContext>;

/// Reads topic metadata with a client whose error events can be served afterwards: a failed
/// request then names what the broker connection reported.
struct MetadataProbe {
    client: BaseConsumer<SetupContext>,
    /// `bootstrap.servers`, for error messages.
    brokers: String,
}

impl MetadataProbe {
    fn new(properties: &BTreeMap<String, String>) -> Result<Self, KafkaSetupError> {
        let client = base_config(properties)
            .create_with_context(SetupContext::default())
            .map_err(|source| client_error("metadata client", source))?;
        let brokers = properties
            .get("bootstrap.servers")
            .cloned()
            .unwrap_or_default();
        Ok(MetadataProbe { client, brokers })
    }

    fn fetch(&self, topic: Option<&str>) -> Result<rdkafka::metadata::Metadata, KafkaSetupError> {
        self.client
            .fetch_metadata(topic, Duration::from_secs(10))
            .map_err(|source| {
                // Serve the queued error events (authentication, TLS) into the context.
                let _ = self.client.poll(Duration::from_millis(200));
                KafkaSetupError::Metadata {
                    brokers: self.brokers.clone(),
                    source: Box::new(source),
                    detail: self.client.context().last_error(),
                }
            })
    }
}

/// Checks the state changelog topic: it must have the input's partition count; created
/// compacted when missing.
pub async fn ensure_changelog(
    properties: &BTreeMap<String, String>,
    topic: &str,
    input_partitions: i32,
    replication: i32,
) -> Result<(), KafkaSetupError> {
    let admin = admin_client(properties)?;
    let probe = MetadataProbe::new(properties)?;
    let partitions = || -> Result<Option<i32>, KafkaSetupError> {
        let metadata = probe.fetch(Some(topic))?;
        Ok(metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
            .map(|t| t.partitions().len() as i32))
    };
    match partitions()? {
        Some(found) if found == input_partitions => return Ok(()),
        Some(found) => {
            return Err(KafkaSetupError::ChangelogPartitions {
                topic: topic.to_owned(),
                found,
                expected: input_partitions,
            })
        }
        None => {}
    }
    let new = NewTopic::new(
        topic,
        input_partitions,
        TopicReplication::Fixed(replication),
    )
    .set("cleanup.policy", "compact");
    create_topics(&admin, &[new]).await?;
    tracing::info!(
        topic,
        partitions = input_partitions,
        "Created the compacted state changelog."
    );
    for _ in 0..50 {
        if partitions()?.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn admin_client(properties: &BTreeMap<String, String>) -> Result<Admin, KafkaSetupError> {
    base_config(properties)
        .create_with_context(SetupContext::default())
        .map_err(|source| client_error("admin client", source))
}

/// Creates topics; one that already exists (another instance was quicker) is fine.
async fn create_topics(admin: &Admin, topics: &[NewTopic<'_>]) -> Result<(), KafkaSetupError> {
    let names = || topics.iter().map(|t| t.name).collect::<Vec<_>>().join(", ");
    let results = admin
        .create_topics(topics, &AdminOptions::new())
        .await
        .map_err(|e| KafkaSetupError::CreateTopic {
            topic: names(),
            reason: e.to_string(),
        })?;
    for result in results {
        if let Err((topic, code)) = result {
            if code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                return Err(KafkaSetupError::CreateTopic {
                    topic,
                    reason: code.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// How long a just-created topic may take to appear in the metadata.
const CREATED_TOPIC_VISIBLE_WITHIN: Duration = Duration::from_secs(10);

/// Partition counts of the topics the pipeline uses (every one of them is in the answer);
/// creates missing ones when allowed.
/// Outputs are created with the input's partition count (co-partitioned with it), and
/// accept messages of `max_message_bytes` (a dead letter carries a whole input record).
pub async fn ensure_topics(
    properties: &BTreeMap<String, String>,
    input: &str,
    outputs: &[&str],
    create: Option<(i32, i32)>,
    max_message_bytes: usize,
) -> Result<HashMap<String, i32>, KafkaSetupError> {
    let admin = admin_client(properties)?;
    let probe = MetadataProbe::new(properties)?;
    let counts = || -> Result<HashMap<String, i32>, KafkaSetupError> {
        let metadata = probe.fetch(None)?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
            .collect())
    };
    let mut known = counts()?;
    let missing_input = !known.contains_key(input);
    let missing: Vec<&str> = std::iter::once(input)
        .chain(outputs.iter().copied())
        .filter(|t| !known.contains_key(*t))
        .collect();
    if missing.is_empty() {
        return Ok(known);
    }
    let Some((partitions, replication)) = create else {
        return Err(KafkaSetupError::MissingTopic(missing[0].to_owned()));
    };
    let input_partitions = if missing_input {
        partitions
    } else {
        known[input]
    };
    let max_message = max_message_bytes.to_string();
    let new_topics: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|t| {
            NewTopic::new(t, input_partitions, TopicReplication::Fixed(replication))
                .set("max.message.bytes", &max_message)
        })
        .collect();
    create_topics(&admin, &new_topics).await?;
    tracing::info!(topics = ?missing, partitions = input_partitions, "Created missing topics.");
    // Metadata may lag creation briefly; every topic is in the answer, or it is an error.
    let waited = Instant::now();
    loop {
        known = counts()?;
        let still_missing = missing.iter().find(|t| !known.contains_key(**t));
        match still_missing {
            None => return Ok(known),
            Some(topic) if waited.elapsed() >= CREATED_TOPIC_VISIBLE_WITHIN => {
                return Err(KafkaSetupError::NotVisible(
                    (*topic).to_owned(),
                    CREATED_TOPIC_VISIBLE_WITHIN,
                ));
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The largest message `topic` accepts (its effective `max.message.bytes`), `None` when the
/// broker does not say (an old broker, or no permission to describe configurations).
pub async fn topic_max_message_bytes(
    properties: &BTreeMap<String, String>,
    topic: &str,
) -> Result<Option<usize>, KafkaSetupError> {
    let admin = admin_client(properties)?;
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &options)
        .await;
    let limit = match described {
        Ok(results) => results.into_iter().find_map(|result| {
            let resource = result.ok()?;
            resource
                .get("max.message.bytes")?
                .value
                .as_ref()?
                .parse()
                .ok()
        }),
        Err(error) => {
            tracing::warn!(topic, %error, "Could not read the topic's max.message.bytes.");
            None
        }
    };
    Ok(limit)
}
