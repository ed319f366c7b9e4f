//! The wall clock in milliseconds since the epoch: what event times are compared with, and the
//! time base of the log limits. A module of its own because every layer reads it (the
//! pipeline, the Kafka layer, ingest, the generator), and none of them should reach into
//! another for it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the epoch by the wall clock (0 if the clock is set before it).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
