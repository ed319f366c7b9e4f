//! What the pipeline shares with its host: readiness for `/readyz`, a heartbeat for
//! `/healthz`, and a status for the demo's status lines.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::now_ms;
use crate::stats::Stats;

/// Handles the pipeline shares with its host: readiness for `/readyz`, the loop's heartbeat
/// for `/healthz`, and a status for status lines.
#[derive(Clone, Default)]
pub struct Handles {
    pub ready: Arc<AtomicBool>,
    pub heartbeat: Heartbeat,
    pub status: Arc<Mutex<PipelineStatus>>,
}

/// When the processing loop last showed it is alive (a tick, a batch, or a wait it chose:
/// a restore or a transaction retrying against a broker that is away).
#[derive(Clone, Debug)]
pub struct Heartbeat(Arc<AtomicU64>);

impl Default for Heartbeat {
    fn default() -> Self {
        let beat = Heartbeat(Arc::default());
        beat.beat();
        beat
    }
}

impl Heartbeat {
    pub fn beat(&self) {
        self.beat_at(now_ms());
    }

    /// A beat at `at_ms` (milliseconds since the epoch).
    pub fn beat_at(&self, at_ms: i64) {
        self.0.store(at_ms.max(0) as u64, Ordering::Relaxed);
    }

    /// Time since the last beat.
    pub fn age(&self) -> Duration {
        let last = self.0.load(Ordering::Relaxed);
        Duration::from_millis((now_ms().max(0) as u64).saturating_sub(last))
    }
}

/// What the pipeline has done so far, refreshed once a second.
#[derive(Clone, Debug, Default)]
pub struct PipelineStatus {
    pub stats: Stats,
    pub sessions_held: u64,
    /// Records behind the high watermarks of the assigned partitions.
    pub consumer_lag: i64,
    /// Partitions assigned and restored.
    pub partitions: usize,
}
