//! A log line's rate limit: one line of a kind per interval, the rest counted and reported
//! with the next line let through (a broker away fails every request alike, a fetch that
//! fails fails again at once, and one line each would bury the log).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Lets one line through per interval and counts the ones held back; shared between
/// threads without a lock.
#[derive(Debug)]
pub struct LogLimit {
    interval_ms: i64,
    last_ms: AtomicI64,
    held_back: AtomicU64,
}

impl LogLimit {
    pub fn new(interval: Duration) -> Self {
        LogLimit {
            interval_ms: interval.as_millis() as i64,
            last_ms: AtomicI64::new(i64::MIN / 2),
            held_back: AtomicU64::new(0),
        }
    }

    /// `Some(lines held back since the last one let through)` if this one may be logged;
    /// `now_ms` in milliseconds of any clock that does not go back.
    pub fn allow(&self, now_ms: i64) -> Option<u64> {
        let last = self.last_ms.load(Ordering::Relaxed);
        if now_ms - last >= self.interval_ms
            && self
                .last_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held_back.swap(0, Ordering::Relaxed));
        }
        self.held_back.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_the_rest_counted() {
        let limit = LogLimit::new(Duration::from_secs(10));
        assert_eq!(limit.allow(1_000), Some(0));
        assert_eq!(limit.allow(1_001), None);
        assert_eq!(limit.allow(10_999), None);
        assert_eq!(limit.allow(11_000), Some(2));
        assert_eq!(limit.allow(11_001), None);
        assert_eq!(limit.allow(30_000), Some(1));
    }
}
