//! The HTTP listener's open connections: which client holds each, whether a request is in
//! progress on it, and since when it has been idle. A new connection is always taken: when a
//! client is at its cap, or all slots are used, the connection idle the longest (of that
//! client, or of anyone) is closed to make room. A client holding many idle connections can
//! therefore never keep a probe or a scrape from being answered.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Bounds on the open connections.
#[derive(Copy, Clone, Debug)]
pub struct ConnectionLimits {
    /// Open connections at most.
    pub total: usize,
    /// Open connections of one client address at most.
    pub per_client: usize,
    /// A connection without a request in progress for this long is closed.
    pub idle_timeout: Duration,
}

/// One open connection.
struct Entry {
    peer: IpAddr,
    /// A request is being answered.
    busy: bool,
    /// When the connection was opened or last finished a request.
    idle_since: Instant,
    close: CancellationToken,
}

/// The open connections, shared by the accept loop and the connections' tasks.
pub struct Connections {
    limits: ConnectionLimits,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Entry>,
}

/// A connection taken: its id, and the token that closes it when it is evicted.
pub struct Admitted {
    pub id: u64,
    pub close: CancellationToken,
}

/// Why a connection was refused: every connection it could displace is answering a request.
#[derive(Debug, PartialEq, Eq)]
pub struct AllBusy;

impl Connections {
    pub fn new(limits: ConnectionLimits) -> Self {
        Connections {
            limits,
            table: Mutex::new(Table::default()),
        }
    }

    /// Takes a connection from `peer`, closing the longest-idle connection of the same client
    /// (at its cap) or of anyone (all slots used) to make room.
    pub fn admit(&self, peer: IpAddr, now: Instant) -> Result<Admitted, AllBusy> {
        let mut table = crate::kafka::lock(&self.table);
        let of_peer = table.open.values().filter(|e| e.peer == peer).count();
        if of_peer >= self.limits.per_client {
            table.evict_longest_idle(|e| e.peer == peer)?;
        } else if table.open.len() >= self.limits.total {
            table.evict_longest_idle(|_| true)?;
        }
        let id = table.next_id;
        table.next_id += 1;
        let close = CancellationToken::new();
        table.open.insert(
            id,
            Entry {
                peer,
                busy: false,
                idle_since: now,
                close: close.clone(),
            },
        );
        Ok(Admitted { id, close })
    }

    /// A request started on connection `id`.
    pub fn busy(&self, id: u64) {
        if let Some(entry) = crate::kafka::lock(&self.table).open.get_mut(&id) {
            entry.busy = true;
        }
    }

    /// A request on connection `id` was answered at `now`.
    pub fn idle(&self, id: u64, now: Instant) {
        if let Some(entry) = crate::kafka::lock(&self.table).open.get_mut(&id) {
            entry.busy = false;
            entry.idle_since = now;
        }
    }

    /// Connection `id` ended.
    pub fn remove(&self, id: u64) {
        crate::kafka::lock(&self.table).open.remove(&id);
    }

    /// Closes the connections idle past the idle timeout at `now`; returns how many.
    pub fn close_idle(&self, now: Instant) -> usize {
        let timeout = self.limits.idle_timeout;
        let mut table = crate::kafka::lock(&self.table);
        let before = table.open.len();
        table.open.retain(|_, entry| {
            let expired = !entry.busy && now.saturating_duration_since(entry.idle_since) >= timeout;
            if expired {
                entry.close.cancel();
            }
            !expired
        });
        before - table.open.len()
    }

    /// Open connections.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        crate::kafka::lock(&self.table).open.len()
    }
}

impl Table {
    /// Closes the connection idle the longest among those `eligible`.
    fn evict_longest_idle(&mut self, eligible: impl Fn(&Entry) -> bool) -> Result<(), AllBusy> {
        let victim = self
            .open
            .iter()
            .filter(|(_, e)| !e.busy && eligible(e))
            .min_by_key(|(&id, e)| (e.idle_since, id))
            .map(|(&id, _)| id)
            .ok_or(AllBusy)?;
        if let Some(entry) = self.open.remove(&victim) {
            entry.close.cancel();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            total: 4,
            per_client: 2,
            idle_timeout: Duration::from_secs(10),
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn a_client_at_its_cap_displaces_its_own_longest_idle_connection() {
        let connections = Connections::new(limits());
        let t0 = Instant::now();
        let first = connections.admit(ip(1), t0).unwrap();
        let second = connections
            .admit(ip(1), t0 + Duration::from_secs(1))
            .unwrap();
        let other = connections.admit(ip(2), t0).unwrap();
        let third = connections
            .admit(ip(1), t0 + Duration::from_secs(2))
            .unwrap();
        assert!(
            first.close.is_cancelled(),
            "the client's oldest idle one closed"
        );
        assert!(!second.close.is_cancelled() && !third.close.is_cancelled());
        assert!(
            !other.close.is_cancelled(),
            "another client's connection is not touched"
        );
        assert_eq!(connections.len(), 3);
    }

    #[test]
    fn when_all_slots_are_used_the_longest_idle_of_anyone_goes_and_busy_ones_stay() {
        let connections = Connections::new(limits());
        let t0 = Instant::now();
        let a = connections.admit(ip(1), t0).unwrap();
        let b = connections
            .admit(ip(2), t0 + Duration::from_secs(1))
            .unwrap();
        let c = connections
            .admit(ip(3), t0 + Duration::from_secs(2))
            .unwrap();
        let d = connections
            .admit(ip(4), t0 + Duration::from_secs(3))
            .unwrap();
        connections.busy(a.id);
        let e = connections
            .admit(ip(5), t0 + Duration::from_secs(4))
            .unwrap();
        assert!(
            !a.close.is_cancelled(),
            "a connection answering a request is kept"
        );
        assert!(b.close.is_cancelled(), "the longest idle one goes");
        assert!(!c.close.is_cancelled() && !d.close.is_cancelled() && !e.close.is_cancelled());
        // Finishing a request makes the connection idle from then on.
        connections.idle(a.id, t0 + Duration::from_secs(5));
        connections
            .admit(ip(6), t0 + Duration::from_secs(6))
            .unwrap();
        assert!(c.close.is_cancelled() && !a.close.is_cancelled());
        for x in [&a, &d, &e] {
            connections.busy(x.id);
        }
        let f = connections.admit(ip(7), t0 + Duration::from_secs(7));
        // Only the newest idle one (from ip 6) is left to displace.
        assert!(f.is_ok());
        let all = [a.id, d.id, e.id, f.unwrap().id];
        for id in all {
            connections.busy(id);
        }
        assert_eq!(
            connections.admit(ip(8), t0 + Duration::from_secs(8)).err(),
            Some(AllBusy)
        );
    }

    #[test]
    fn idle_connections_close_after_the_idle_timeout_but_busy_ones_do_not() {
        let connections = Connections::new(limits());
        let t0 = Instant::now();
        let idle = connections.admit(ip(1), t0).unwrap();
        let busy = connections.admit(ip(2), t0).unwrap();
        connections.busy(busy.id);
        assert_eq!(connections.close_idle(t0 + Duration::from_secs(9)), 0);
        assert_eq!(connections.close_idle(t0 + Duration::from_secs(10)), 1);
        assert!(idle.close.is_cancelled() && !busy.close.is_cancelled());
        connections.remove(busy.id);
        assert_eq!(connections.len(), 0);
    }
}
