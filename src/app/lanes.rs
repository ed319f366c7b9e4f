//! The batch step's processing lanes (`pipeline.workers`): a batch's partitions are spread
//! over N lanes, each partition on one lane in its order, and the lanes parse and apply their
//! records at once — lane 0 on the loop's thread, the others on threads of their own for the
//! length of the batch. Each lane has its parser and its outbox; the delivery modes then send
//! the outboxes one after the other, so each partition's outputs, changelog writes and
//! progress record keep their order (SPEC section 6 holds per partition).
//! With one lane (the default) or a batch too small to spread, lane 0 takes the batch in its
//! order, with no plan and no threads.

use std::collections::HashMap;
use std::time::Instant;

use rdkafka::message::{BorrowedMessage, Message};

use super::outbox::{DeadLetterLimits, Outbox};
use crate::apply;
use crate::changelog;
use crate::engine::Engine;
use crate::metrics as m;
use crate::model::Source;
use crate::parse::{Limits, ParseError, Parser};
use crate::stats::Stats;

/// A batch with fewer records than this stays on the loop's thread: starting threads would
/// cost more than its records take (a few microseconds each).
const MIN_RECORDS_TO_SPREAD: usize = 64;

/// State of one assigned partition.
pub struct PartitionState {
    pub engine: Engine,
    pub last_message: Instant,
    /// The offset of the last record applied.
    pub last_offset: Option<i64>,
    /// Input up to here is already in the restored state: skipped, not applied again.
    pub skip_through: Option<i64>,
    /// The progress record last queued for the changelog.
    pub written: changelog::Progress,
}

impl PartitionState {
    pub fn new(engine: Engine, restored: changelog::Progress) -> Self {
        PartitionState {
            engine,
            last_message: Instant::now(),
            last_offset: restored.applied_through,
            skip_through: restored.applied_through,
            written: restored,
        }
    }

    pub fn progress(&self) -> changelog::Progress {
        changelog::Progress {
            watermark: self.engine.watermark(),
            max_event_time: self.engine.max_event_time(),
            applied_through: self.last_offset,
        }
    }

    /// Queues this partition's progress record into `outbox` (after its records) when it
    /// moved since the one last written.
    pub fn queue_progress(&mut self, partition: i32, outbox: &mut Outbox) {
        let progress = self.progress();
        outbox.queue_progress(partition, progress, &mut self.written);
    }
}

/// What every record of a batch shares.
#[derive(Copy, Clone)]
pub struct BatchClock {
    /// The wall clock (ms) the engine's future-event-time check compares with.
    pub wall_clock: i64,
    /// When the batch was taken from the consumer (a partition's last sign of input).
    pub received: Instant,
}

/// The lanes' parsers and outboxes, kept across batches (their buffers are reused).
pub struct Lanes {
    parsers: Vec<Parser>,
    outboxes: Vec<Outbox>,
    /// The counts of lanes 1 and up; lane 0 counts in the pipeline's own, and these are
    /// moved there after each batch.
    stats: Vec<Stats>,
    /// `sessionflow_worker_records_total`, by lane.
    records: Vec<metrics::Counter>,
    /// What new outboxes are made with.
    dead_letter_limits: DeadLetterLimits,
}

/// One lane's share of a batch: its partitions' states (sorted by partition) and records
/// (in batch order).
struct LaneWork<'s, 'm, 'b> {
    states: Vec<(i32, &'s mut PartitionState)>,
    messages: Vec<&'m BorrowedMessage<'b>>,
}

impl Lanes {
    pub fn new(workers: usize, limits: Limits, dead_letter_limits: DeadLetterLimits) -> Self {
        let workers = workers.max(1);
        Lanes {
            parsers: (0..workers).map(|_| Parser::new(limits)).collect(),
            outboxes: (0..workers)
                .map(|_| Outbox::new(dead_letter_limits))
                .collect(),
            stats: (1..workers).map(|_| Stats::new()).collect(),
            records: (0..workers)
                .map(
                    |lane| metrics::counter!(m::WORKER_RECORDS_TOTAL, "worker" => lane.to_string()),
                )
                .collect(),
            dead_letter_limits,
        }
    }

    /// Takes every lane's outbox (to be sent while the next batch fills others), leaving
    /// `empty` in their place (outboxes handed back after an earlier send, their buffers
    /// kept), or new ones.
    pub fn take_outboxes(&mut self, empty: Option<Vec<Outbox>>) -> Vec<Outbox> {
        let replacement = empty.unwrap_or_else(|| {
            (0..self.outboxes.len())
                .map(|_| Outbox::new(self.dead_letter_limits))
                .collect()
        });
        std::mem::replace(&mut self.outboxes, replacement)
    }

    /// Every lane's outbox, in lane order: what the delivery modes send.
    pub fn outboxes(&self) -> &[Outbox] {
        &self.outboxes
    }

    /// Lane 0's outbox, after [`Lanes::clear`]: for what the loop derives itself (idle
    /// partitions' timers).
    pub fn loop_outbox(&mut self) -> &mut Outbox {
        &mut self.outboxes[0]
    }

    /// Empties every outbox (a new batch).
    pub fn clear(&mut self) {
        self.outboxes.iter_mut().for_each(Outbox::clear);
    }

    /// Parses and applies `batch` into the outboxes (cleared first), then queues the
    /// progress record of each partition it touched after that partition's records. Records
    /// of partitions not in `partitions` are skipped (`apply_changes` keeps them out).
    pub fn apply_batch(
        &mut self,
        batch: &[BorrowedMessage<'_>],
        partitions: &mut HashMap<i32, PartitionState>,
        stats: &mut Stats,
        input_topic: &str,
        clock: BatchClock,
    ) {
        self.clear();
        if self.parsers.len() == 1 || batch.len() < MIN_RECORDS_TO_SPREAD {
            // All on lane 0 (the default of one worker): no plan, no threads.
            let applied = apply_in_order(
                batch,
                partitions,
                &mut self.parsers[0],
                &mut self.outboxes[0],
                stats,
                input_topic,
                clock,
            );
            if applied > 0 {
                self.records[0].increment(applied);
            }
            return;
        }
        let mut work = plan(batch, partitions, self.parsers.len());
        for (lane, counter) in work.iter().zip(&self.records) {
            if !lane.messages.is_empty() {
                counter.increment(lane.messages.len() as u64);
            }
        }
        let (first, rest) = work.split_first_mut().expect("one lane at least");
        let (parser, other_parsers) = self.parsers.split_first_mut().expect("one lane at least");
        let (outbox, other_outboxes) = self.outboxes.split_first_mut().expect("one lane at least");
        // Lanes whose thread could not be started run here after the others.
        let mut not_started = Vec::new();
        std::thread::scope(|scope| {
            let lanes = rest
                .iter_mut()
                .zip(other_parsers.iter_mut())
                .zip(other_outboxes.iter_mut())
                .zip(self.stats.iter_mut())
                .enumerate();
            for (index, (((work, parser), outbox), stats)) in lanes {
                if work.messages.is_empty() {
                    continue;
                }
                let started = std::thread::Builder::new()
                    .name(format!("sessionflow-worker-{}", index + 1))
                    .spawn_scoped(scope, move || {
                        run_lane(work, parser, outbox, stats, input_topic, clock)
                    });
                if let Err(error) = started {
                    tracing::warn!(%error, "Could not start a processing thread; its lane runs on the loop's.");
                    not_started.push(index);
                }
            }
            run_lane(first, parser, outbox, stats, input_topic, clock);
        });
        for index in not_started {
            run_lane(
                &mut rest[index],
                &mut other_parsers[index],
                &mut other_outboxes[index],
                stats,
                input_topic,
                clock,
            );
        }
        for lane_stats in &mut self.stats {
            stats.absorb(lane_stats);
        }
    }
}

/// Each record's lane: the batch's partitions spread over the lanes.
fn plan<'s, 'm, 'b>(
    batch: &'m [BorrowedMessage<'b>],
    partitions: &'s mut HashMap<i32, PartitionState>,
    lanes: usize,
) -> Vec<LaneWork<'s, 'm, 'b>> {
    let lane_of = assign_lanes(batch.iter().map(|m| m.partition()), lanes);
    let mut work: Vec<LaneWork> = (0..lanes)
        .map(|_| LaneWork {
            states: Vec::new(),
            messages: Vec::new(),
        })
        .collect();
    for (&partition, state) in partitions.iter_mut() {
        if let Some(&lane) = lane_of.get(&partition) {
            work[lane].states.push((partition, state));
        }
    }
    for lane in &mut work {
        lane.states
            .sort_unstable_by_key(|&(partition, _)| partition);
    }
    for message in batch {
        if let Some(&lane) = lane_of.get(&message.partition()) {
            work[lane].messages.push(message);
        }
    }
    work
}

/// The lane of each partition of a batch (given as its records' partitions): the busiest
/// partition first onto the least loaded lane. A small batch, or one of a single partition,
/// goes all to lane 0.
fn assign_lanes(record_partitions: impl Iterator<Item = i32>, lanes: usize) -> HashMap<i32, usize> {
    let mut records_of: HashMap<i32, usize> = HashMap::new();
    let mut records = 0;
    for partition in record_partitions {
        *records_of.entry(partition).or_default() += 1;
        records += 1;
    }
    if lanes < 2 || records_of.len() < 2 || records < MIN_RECORDS_TO_SPREAD {
        return records_of
            .into_keys()
            .map(|partition| (partition, 0))
            .collect();
    }
    let mut busiest_first: Vec<(i32, usize)> = records_of.into_iter().collect();
    busiest_first.sort_unstable_by_key(|&(partition, records)| (usize::MAX - records, partition));
    let mut load = vec![0usize; lanes];
    busiest_first
        .into_iter()
        .map(|(partition, records)| {
            let lane = (0..lanes).min_by_key(|&l| (load[l], l)).unwrap_or(0);
            load[lane] += records;
            (partition, lane)
        })
        .collect()
}

/// Lane 0 with the whole batch: what [`run_lane`] does, without a plan. Returns how many
/// records were of assigned partitions.
fn apply_in_order(
    batch: &[BorrowedMessage<'_>],
    partitions: &mut HashMap<i32, PartitionState>,
    parser: &mut Parser,
    outbox: &mut Outbox,
    stats: &mut Stats,
    input_topic: &str,
    clock: BatchClock,
) -> u64 {
    let mut touched: Vec<i32> = Vec::new();
    let mut applied = 0;
    // A batch holds runs of one partition's records: its state is looked up once per run.
    let mut current: Option<(i32, &mut PartitionState)> = None;
    for (i, message) in batch.iter().enumerate() {
        prefetch_ahead(batch.get(i + 1), batch.get(i + 2));
        let partition = message.partition();
        if current.as_ref().map(|&(p, _)| p) != Some(partition) {
            current = partitions
                .get_mut(&partition)
                .map(|state| (partition, state));
            if current.is_some() && !touched.contains(&partition) {
                touched.push(partition);
            }
        }
        let Some((_, state)) = current.as_mut() else {
            continue;
        };
        apply_message(state, parser, outbox, stats, message, input_topic, clock);
        applied += 1;
    }
    touched.sort_unstable();
    for partition in touched {
        if let Some(state) = partitions.get_mut(&partition) {
            state.queue_progress(partition, outbox);
        }
    }
    applied
}

/// Parses and applies one lane's records in order, then queues its partitions' progress
/// records.
fn run_lane(
    work: &mut LaneWork<'_, '_, '_>,
    parser: &mut Parser,
    outbox: &mut Outbox,
    stats: &mut Stats,
    input_topic: &str,
    clock: BatchClock,
) {
    for (i, message) in work.messages.iter().enumerate() {
        prefetch_ahead(
            work.messages.get(i + 1).copied(),
            work.messages.get(i + 2).copied(),
        );
        let partition = message.partition();
        let Ok(index) = work.states.binary_search_by_key(&partition, |&(p, _)| p) else {
            continue;
        };
        let state = &mut *work.states[index].1;
        apply_message(state, parser, outbox, stats, message, input_topic, clock);
    }
    for (partition, state) in &mut work.states {
        state.queue_progress(*partition, outbox);
    }
}

/// Starts loading what the next records need while this one is processed: the message
/// struct librdkafka filled on one of its threads (two records ahead: its first read was a
/// cache miss, about 3% of the loop thread's time) and the next record's first bytes (whose
/// address that struct gives, loaded by the prefetch a record before).
#[inline]
fn prefetch_ahead(next: Option<&BorrowedMessage<'_>>, after_next: Option<&BorrowedMessage<'_>>) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        if let Some(message) = after_next {
            // SAFETY: a prefetch only hints the cache; it never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(message.ptr().cast::<i8>()) };
        }
        if let Some(payload) = next.and_then(BorrowedMessage::payload) {
            // SAFETY: as above.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(payload.as_ptr().cast::<i8>()) };
        }
    }
}

/// Parses and applies one input record into `outbox`.
fn apply_message(
    state: &mut PartitionState,
    parser: &mut Parser,
    outbox: &mut Outbox,
    stats: &mut Stats,
    message: &BorrowedMessage<'_>,
    input_topic: &str,
    clock: BatchClock,
) {
    let (partition, offset) = (message.partition(), message.offset());
    state.last_message = clock.received;
    if state.skip_through.is_some_and(|through| offset <= through) {
        // Already applied before a restart: its outputs were acknowledged and its state
        // written. Applying it again against newer state could derive anew.
        outbox.close_record(partition, Some(offset));
        return;
    }
    state.last_offset = Some(offset);
    match message.payload() {
        None => {
            let error = ParseError::no_value();
            stats.count_invalid(&error);
            outbox.dead_letter(partition, offset, message.key(), None, &error);
        }
        Some(payload) => {
            let source = Source {
                topic: input_topic,
                partition,
                offset,
            };
            let record = InputRecord {
                source,
                key: message.key(),
                value: payload,
            };
            apply_value(
                &mut state.engine,
                parser,
                outbox,
                stats,
                record,
                clock.wall_clock,
            );
        }
    }
    outbox.close_record(partition, Some(offset));
}

/// One input record as read: where it came from, its key and its value.
#[derive(Copy, Clone)]
pub struct InputRecord<'a> {
    pub source: Source<'a>,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
}

/// Parses a record's value and applies it to its partition's engine, its outputs into
/// `outbox`, or queues it as a dead letter: the batch step's work on a record once the
/// message is read (`benches/live_apply.rs` times it). The caller closes the record.
pub fn apply_value(
    engine: &mut Engine,
    parser: &mut Parser,
    outbox: &mut Outbox,
    stats: &mut Stats,
    record: InputRecord<'_>,
    wall_clock: i64,
) {
    let InputRecord { source, key, value } = record;
    parser.parse(value, |result| match result {
        Ok(parsed) => apply::apply_record(
            engine,
            &parsed,
            source,
            Some(wall_clock),
            stats,
            &mut outbox.partition(source.partition),
        ),
        Err(error) => {
            stats.count_invalid(&error);
            outbox.dead_letter(source.partition, source.offset, key, Some(value), &error);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `counts[p]` records of partition `p`, interleaved.
    fn batch(counts: &[usize]) -> Vec<i32> {
        let mut left = counts.to_vec();
        let mut partitions = Vec::new();
        while left.iter().any(|&n| n > 0) {
            for (p, n) in left.iter_mut().enumerate() {
                if *n > 0 {
                    *n -= 1;
                    partitions.push(p as i32);
                }
            }
        }
        partitions
    }

    fn loads(lane_of: &HashMap<i32, usize>, counts: &[usize], lanes: usize) -> Vec<usize> {
        let mut load = vec![0; lanes];
        for (&p, &lane) in lane_of {
            load[lane] += counts[p as usize];
        }
        load
    }

    #[test]
    fn small_or_single_partition_batches_and_one_lane_stay_on_lane_zero() {
        for (counts, lanes) in [(vec![10, 10, 10], 4), (vec![600], 4), (vec![300, 300], 1)] {
            let lane_of = assign_lanes(batch(&counts).into_iter(), lanes);
            assert_eq!(lane_of.len(), counts.len());
            assert!(lane_of.values().all(|&l| l == 0), "{counts:?} over {lanes}");
        }
    }

    #[test]
    fn partitions_spread_busiest_first_onto_the_least_loaded_lane() {
        let counts = [400, 100, 100, 100, 100, 30];
        let lane_of = assign_lanes(batch(&counts).into_iter(), 2);
        // 400 on lane 0, the four 100s on lane 1 (never more loaded than lane 0), and the 30
        // on the first of the two tied lanes.
        assert_eq!(loads(&lane_of, &counts, 2), vec![430, 400]);
        let lane_of = assign_lanes(batch(&[128, 128, 128, 128]).into_iter(), 4);
        let mut lanes: Vec<usize> = lane_of.values().copied().collect();
        lanes.sort_unstable();
        assert_eq!(lanes, vec![0, 1, 2, 3], "one partition each");
        // More lanes than partitions: the extra lanes get nothing.
        let lane_of = assign_lanes(batch(&[50, 50]).into_iter(), 8);
        assert_eq!(
            loads(&lane_of, &[50, 50], 8)
                .iter()
                .filter(|&&n| n > 0)
                .count(),
            2
        );
        // The same batch, the same plan.
        assert_eq!(
            assign_lanes(batch(&counts).into_iter(), 3),
            assign_lanes(batch(&counts).into_iter(), 3)
        );
    }
}
