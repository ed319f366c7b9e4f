//! Each assigned input partition's own queue, split from the consumer's (`pipeline.workers`
//! above 1, at-least-once): librdkafka fills the consumer's one queue a fetch at a time, so with the large
//! fetches throughput needs, a batch taken from it holds one partition and the lanes would
//! have nothing to spread. Taken in turns, the partitions' queues give batches of every
//! partition that has records.
//!
//! Order per partition: what was fetched before a partition's queue was split stays in the
//! consumer's queue and is older than anything in the partition's; the loop therefore drains
//! the consumer's queue first, always.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::FutureExt;
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::StreamConsumer;
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;

use crate::kafka::source::InputContext;

type InputQueue = StreamPartitionQueue<InputContext>;

/// Records taken from one partition's queue before the next partition's turn.
const TURN: usize = 64;

/// The split queues of the assigned partitions (none when the feature is off).
pub struct PartitionQueues {
    enabled: bool,
    queues: BTreeMap<i32, Arc<InputQueue>>,
}

impl PartitionQueues {
    pub fn new(enabled: bool) -> Self {
        PartitionQueues {
            enabled,
            queues: BTreeMap::new(),
        }
    }

    /// Splits the queues of newly assigned `partitions` (no-op when off).
    pub fn split(
        &mut self,
        consumer: &Arc<StreamConsumer<InputContext>>,
        topic: &str,
        partitions: &[i32],
    ) {
        if !self.enabled {
            return;
        }
        for &partition in partitions {
            match consumer.split_partition_queue(topic, partition) {
                Some(queue) => {
                    self.queues.insert(partition, Arc::new(queue));
                }
                // Its records keep coming through the consumer's queue.
                None => tracing::warn!(partition, "Could not split the partition's queue."),
            }
        }
    }

    /// Revoked partitions: their queues (and what they hold, uncommitted) go.
    pub fn forget(&mut self, partitions: &[i32]) {
        for partition in partitions {
            self.queues.remove(partition);
        }
    }

    /// The queues as they are now, for one step of the loop (its messages borrow them).
    pub fn snapshot(&self) -> Vec<Arc<InputQueue>> {
        self.queues.values().cloned().collect()
    }
}

/// The first message of any of `queues` (never ready when there are none).
pub async fn first_of(queues: &[Arc<InputQueue>]) -> Result<BorrowedMessage<'_>, KafkaError> {
    if queues.is_empty() {
        return std::future::pending().await;
    }
    let (message, _, _) =
        futures_util::future::select_all(queues.iter().map(|queue| Box::pin(queue.recv()))).await;
    message
}

/// Adds the messages ready in `queues` to `batch` until it holds `limit`, taking up to
/// [`TURN`] of each queue in turns; an error ends its queue's part in this batch.
pub fn fill<'q>(
    queues: &'q [Arc<InputQueue>],
    batch: &mut Vec<BorrowedMessage<'q>>,
    limit: usize,
    mut on_error: impl FnMut(&KafkaError),
) {
    let mut open: Vec<&InputQueue> = queues.iter().map(Arc::as_ref).collect();
    while batch.len() < limit && !open.is_empty() {
        open.retain(|queue| {
            for _ in 0..TURN {
                if batch.len() >= limit {
                    return true;
                }
                match queue.recv().now_or_never() {
                    Some(Ok(message)) => batch.push(message),
                    Some(Err(error)) => {
                        on_error(&error);
                        return false;
                    }
                    None => return false,
                }
            }
            true
        });
    }
}
