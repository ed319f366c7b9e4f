//! The lifecycle rules of SPEC sections 2 and 3 for one input partition: per-session state,
//! the partition's watermark, inferred expiry/abandonment timers and terminal retention.
//!
//! Pure: event time and wall-clock time come in as arguments, derived events go out through
//! an [`EventSink`]; nothing here awaits, reads a clock or does I/O. The live pipeline runs
//! one `Engine` per assigned Kafka partition, replay runs one for its single partition.
//!
//! Memory: a session is a 120-byte [`Slot`] in a slab, a 4-byte entry in a hash table of
//! slab indices, a 4-byte stamp, and a 16-byte entry in a timer index (its deadline while
//! live, its forget time once terminal; stale entries at most double that).
//!
//! Inside: `ids` (session ids packed into slots), `statuses` (status texts by code), `sink`
//! (where events and state changes go), `timers` (the deadline and forget-time indexes),
//! `views` (owned copies for tools and tests). This file keeps the rules.

mod ids;
mod sink;
mod statuses;
mod timers;
mod views;

use std::hash::{BuildHasher, Hasher};

use hashbrown::{DefaultHashBuilder, HashTable};

pub use ids::CompactId;
use ids::{hash_lookup, pack, IdBuf, MAX_PACKED_LEN};
use sink::NoSink;
pub use sink::{EventSink, StateRecord};
use statuses::StatusTable;
use timers::{Stamps, TimerIndex};
pub use views::{OwnedEvent, SessionView};

use crate::model::{
    deadline_of, status_is_live, Anomaly, AnomalyKind, Cause, DerivedEvent, Observation, Outcome,
    Source, StatusCode, Transition, KNOWN_STATUSES,
};

/// The engine's settings (SPEC section 3 defaults).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    pub allowed_lateness_ms: i64,
    pub terminal_retention_ms: i64,
    /// 0 turns the future-event-time check off.
    pub max_clock_skew_ms: i64,
    /// Most sessions held; a new session beyond it evicts one (`Engine::evict_one`) and
    /// raises an `evicted` anomaly. `None`: no cap (the SPEC's behaviour).
    pub max_sessions: Option<usize>,
}

/// SPEC section 3 defaults, used by `config` and the replay CLI alike.
pub const DEFAULT_ALLOWED_LATENESS_MS: i64 = 300_000;
pub const DEFAULT_TERMINAL_RETENTION_MS: i64 = 86_400_000;
pub const DEFAULT_MAX_CLOCK_SKEW_MS: i64 = 300_000;

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            allowed_lateness_ms: DEFAULT_ALLOWED_LATENESS_MS,
            terminal_retention_ms: DEFAULT_TERMINAL_RETENTION_MS,
            max_clock_skew_ms: DEFAULT_MAX_CLOCK_SKEW_MS,
            max_sessions: None,
        }
    }
}

/// Timestamp field value meaning "unknown" (valid timestamps are never negative).
const UNKNOWN: i64 = i64::MIN;
const IMPERSONATED: u8 = 1;
const INFERRED: u8 = 2;

#[inline]
fn known(t: i64) -> Option<i64> {
    (t != UNKNOWN).then_some(t)
}

#[inline]
fn stored(t: Option<i64>) -> i64 {
    t.unwrap_or(UNKNOWN)
}

/// The state `S` of one session (SPEC section 2), compactly.
#[derive(Clone, Debug)]
struct Slot {
    key: CompactId,
    user_id: CompactId,
    client_id: CompactId,
    updated_at: i64,
    since: i64,
    created_at: i64,
    expire_at: i64,
    abandon_at: i64,
    status: StatusCode,
    flags: u8,
}

impl Slot {
    fn inferred(&self) -> bool {
        self.flags & INFERRED != 0
    }

    fn impersonated(&self) -> bool {
        self.flags & IMPERSONATED != 0
    }

    /// SPEC section 3 `deadline(S)`.
    fn deadline(&self) -> Option<i64> {
        if !self.status.is_live() {
            return None;
        }
        deadline_of(known(self.expire_at), known(self.abandon_at))
    }

    /// The status a timer infers: `expired` when `expire_at` is known and not after
    /// `abandon_at`, else `abandoned`.
    fn inferred_status(&self) -> StatusCode {
        match (known(self.expire_at), known(self.abandon_at)) {
            (Some(e), Some(a)) if e <= a => StatusCode::EXPIRED,
            (Some(_), None) => StatusCode::EXPIRED,
            _ => StatusCode::ABANDONED,
        }
    }

    /// "State from `o`" (SPEC section 2), keeping the key.
    fn take_all(&mut self, o: &Observation<'_>, status: StatusCode, since: i64) {
        self.take_refresh(o);
        self.status = status;
        self.since = since;
        self.flags = if o.impersonated { IMPERSONATED } else { 0 };
    }

    /// Rule 4's refresh: timestamps, deadlines and ids.
    fn take_refresh(&mut self, o: &Observation<'_>) {
        self.updated_at = o.updated_at;
        self.created_at = stored(o.created_at);
        self.expire_at = stored(o.expire_at);
        self.abandon_at = stored(o.abandon_at);
        if !self.user_id_is(o.user_id) {
            self.user_id = CompactId::optional(o.user_id);
        }
        if !self.client_id_is(o.client_id) {
            self.client_id = CompactId::optional(o.client_id);
        }
    }

    fn user_id_is(&self, id: Option<&str>) -> bool {
        same_id(&self.user_id, id)
    }

    fn client_id_is(&self, id: Option<&str>) -> bool {
        same_id(&self.client_id, id)
    }
}

/// A session id looked up in the table (see `Engine::lookup`).
struct Lookup {
    /// The id's packed form, when it has the Clerk shape.
    packed: Option<(u8, [u8; 21])>,
    hash: u64,
    /// Its slot, when the session is held.
    found: Option<u32>,
}

impl Lookup {
    /// The stored key of a new slot for `id`.
    fn key(&self, id: &str) -> CompactId {
        match self.packed {
            Some((prefix, body)) => CompactId::Packed { prefix, body },
            None => CompactId::Text(id.into()),
        }
    }
}

/// The table hash of a stored key, without decoding it.
fn stored_hash(hasher: &DefaultHashBuilder, key: &CompactId) -> u64 {
    let mut state = hasher.build_hasher();
    key.hash_stored(&mut state);
    state.finish()
}

/// Avoids re-boxing an unchanged id on every refresh.
fn same_id(stored: &CompactId, id: Option<&str>) -> bool {
    match id {
        None => *stored == CompactId::Absent,
        Some(id) => stored.matches(id, pack(id).as_ref()),
    }
}

/// The index keys a slot occupies: its deadline (live) and its forget time (terminal).
#[derive(Copy, Clone, PartialEq, Eq)]
struct IndexKeys {
    deadline: Option<i64>,
    forget_at: Option<i64>,
}

/// One partition's lifecycle engine.
pub struct Engine {
    config: EngineConfig,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Slab indices, hashed by session id text.
    table: HashTable<u32>,
    hasher: DefaultHashBuilder,
    /// Live sessions by (deadline, slot); ties are ordered by id when they fire.
    deadlines: TimerIndex,
    /// Terminal sessions by (since + retention, slot).
    forget_at: TimerIndex,
    /// The slots' stamps: which of their timer entries are current.
    stamps: Stamps,
    statuses: StatusTable,
    /// `W_p`; `i64::MIN` is minus infinity.
    watermark: i64,
    max_event_time: Option<i64>,
    /// Sessions held per status code (`FIRST_OTHER` counts every other status).
    by_status: [u64; StatusCode::FIRST_OTHER as usize + 1],
    /// Sessions held in a non-terminal status that are impersonations.
    impersonated_live: u64,
    /// Reused buffer of timers due in one advance.
    due: Vec<(i64, u32)>,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Self {
        Engine {
            config,
            slots: Vec::new(),
            free: Vec::new(),
            table: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            deadlines: TimerIndex::default(),
            forget_at: TimerIndex::default(),
            stamps: Stamps::default(),
            statuses: StatusTable::default(),
            watermark: i64::MIN,
            max_event_time: None,
            by_status: [0; StatusCode::FIRST_OTHER as usize + 1],
            impersonated_live: 0,
            due: Vec::new(),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Sessions held.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// `W_p`, or `None` while it is minus infinity.
    pub fn watermark(&self) -> Option<i64> {
        (self.watermark != i64::MIN).then_some(self.watermark)
    }

    /// The largest `updated_at` of any valid observation that moved the watermark.
    pub fn max_event_time(&self) -> Option<i64> {
        self.max_event_time
    }

    /// Sessions held by status label (`active` … `abandoned`, then `other`).
    pub fn sessions_by_status(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        KNOWN_STATUSES
            .iter()
            .copied()
            .chain(std::iter::once("other"))
            .zip(self.by_status.iter().copied())
    }

    /// Sessions held in a non-terminal status whose latest state came with an `actor`
    /// (impersonations: an administrator signed in as the user).
    pub fn impersonated_live_sessions(&self) -> u64 {
        self.impersonated_live
    }

    /// Applies one valid observation (SPEC section 2) and returns its outcome. With
    /// `wall_clock_ms` (live mode), an event time more than `max_clock_skew_ms` ahead of it
    /// raises a `future_event_time` anomaly and does not move the watermark. Timers fire in
    /// [`Engine::finish_record`], once the whole record is applied.
    pub fn apply(
        &mut self,
        o: &Observation<'_>,
        source: Source<'_>,
        wall_clock_ms: Option<i64>,
        sink: &mut impl EventSink,
    ) -> Outcome {
        let lookup = self.lookup(o.id);
        let found = lookup.found;
        let future = match wall_clock_ms {
            Some(now) if self.config.max_clock_skew_ms > 0 => {
                o.updated_at > now.saturating_add(self.config.max_clock_skew_ms)
            }
            _ => false,
        };
        if future {
            let status = found.map(|slot| self.statuses.name(self.slots[slot as usize].status));
            sink.emit(&DerivedEvent::Anomaly(Anomaly {
                kind: AnomalyKind::FutureEventTime,
                session_id: o.id,
                user_id: o.user_id,
                status,
                observed: o.status,
                at: o.updated_at,
                source: Some(source),
            }));
        } else {
            self.note_event_time(o.updated_at);
        }
        match found {
            None => {
                self.first_sighting(o, lookup, source, sink);
                Outcome::Applied
            }
            Some(slot) => self.apply_to(slot, o, source, sink),
        }
    }

    fn note_event_time(&mut self, updated_at: i64) {
        self.max_event_time = Some(
            self.max_event_time
                .map_or(updated_at, |m| m.max(updated_at)),
        );
        let candidate = updated_at.saturating_sub(self.config.allowed_lateness_ms);
        self.watermark = self.watermark.max(candidate);
    }

    fn first_sighting(
        &mut self,
        o: &Observation<'_>,
        lookup: Lookup,
        source: Source<'_>,
        sink: &mut impl EventSink,
    ) {
        if self
            .config
            .max_sessions
            .is_some_and(|max| self.table.len() >= max)
        {
            self.evict_one(o, source, sink);
        }
        let status = self.statuses.code(o.status);
        let slot = Slot {
            key: lookup.key(o.id),
            user_id: CompactId::optional(o.user_id),
            client_id: CompactId::optional(o.client_id),
            updated_at: o.updated_at,
            since: o.updated_at,
            created_at: stored(o.created_at),
            expire_at: stored(o.expire_at),
            abandon_at: stored(o.abandon_at),
            status,
            flags: if o.impersonated { IMPERSONATED } else { 0 },
        };
        let index = self.insert_slot(lookup.hash, slot);
        self.notify_observed(index, o, sink);
        sink.emit(&DerivedEvent::Transition(Transition {
            session_id: o.id,
            user_id: o.user_id,
            client_id: o.client_id,
            from: None,
            to: o.status,
            cause: Cause::Observed,
            at: o.updated_at,
            in_state_ms: None,
            session_age_ms: o.created_at.map(|c| o.updated_at - c),
            impersonated: o.impersonated,
            source: Some(source),
        }));
    }

    /// Makes room for the session `o` brings (at `max_sessions`): drops the terminal session
    /// nearest its forget time (it only guards against duplicates by then), else the live
    /// session nearest its deadline, else any; raises an `evicted` anomaly naming it, with
    /// the arriving observation's status, time and source.
    fn evict_one(&mut self, o: &Observation<'_>, source: Source<'_>, sink: &mut impl EventSink) {
        let earliest = self
            .forget_at
            .pop_first(&self.stamps)
            .or_else(|| self.deadlines.first(&self.stamps));
        let index = match earliest {
            Some((_, index)) => index,
            None => match self.table.iter().next() {
                Some(&index) => index,
                None => return,
            },
        };
        let slot = &self.slots[index as usize];
        let (mut id_buf, mut user_buf): (IdBuf, IdBuf) = ([0; MAX_PACKED_LEN], [0; MAX_PACKED_LEN]);
        sink.emit(&DerivedEvent::Anomaly(Anomaly {
            kind: AnomalyKind::Evicted,
            session_id: slot.key.as_str(&mut id_buf).unwrap_or(""),
            user_id: slot.user_id.as_str(&mut user_buf),
            status: Some(self.statuses.name(slot.status)),
            observed: o.status,
            at: o.updated_at,
            source: Some(source),
        }));
        self.remove(index, sink);
    }

    /// Unknown status texts interned: those held by sessions, and any not yet reclaimed.
    pub fn unknown_statuses(&self) -> usize {
        self.statuses.interned()
    }

    /// Rules 2 to 6 against an existing state.
    fn apply_to(
        &mut self,
        index: u32,
        o: &Observation<'_>,
        source: Source<'_>,
        sink: &mut impl EventSink,
    ) -> Outcome {
        let slot = &self.slots[index as usize];
        if o.updated_at < slot.updated_at {
            return Outcome::Stale;
        }
        let same_status = self.statuses.name(slot.status) == o.status;
        if slot.inferred() {
            let inferred_at = slot.since;
            if same_status {
                // Confirmation: Clerk agrees with the inference; keep `since`.
                let before = self.index_keys(index);
                let slot = &mut self.slots[index as usize];
                let (status, since) = (slot.status, slot.since);
                slot.take_all(o, status, since);
                self.reindex(index, Some(before));
                self.notify_observed(index, o, sink);
                return Outcome::Applied;
            }
            if status_is_live(o.status) {
                // No deadline counts as later than any inference.
                if o.deadline().is_none_or(|d| d > inferred_at) {
                    self.transition(index, o, Cause::Correction, source, sink);
                    return Outcome::Applied;
                }
                return Outcome::Late;
            }
            let cause = if o.updated_at < inferred_at {
                Cause::Correction
            } else {
                Cause::Observed
            };
            self.transition(index, o, cause, source, sink);
            return Outcome::Applied;
        }
        if same_status {
            if o.updated_at == slot.updated_at {
                return Outcome::Duplicate;
            }
            let before = self.index_keys(index);
            self.slots[index as usize].take_refresh(o);
            self.reindex(index, Some(before));
            self.notify_observed(index, o, sink);
            return Outcome::Applied;
        }
        if slot.status.is_terminal() && status_is_live(o.status) {
            sink.emit(&DerivedEvent::Anomaly(Anomaly {
                kind: AnomalyKind::Resurrection,
                session_id: o.id,
                user_id: o.user_id,
                status: Some(self.statuses.name(slot.status)),
                observed: o.status,
                at: o.updated_at,
                source: Some(source),
            }));
            return Outcome::Applied;
        }
        self.transition(index, o, Cause::Observed, source, sink);
        Outcome::Applied
    }

    /// Emits `S.status → o.status` and replaces the state with `o`'s.
    fn transition(
        &mut self,
        index: u32,
        o: &Observation<'_>,
        cause: Cause,
        source: Source<'_>,
        sink: &mut impl EventSink,
    ) {
        let before = self.index_keys(index);
        let to = self.statuses.code(o.status);
        let slot = &mut self.slots[index as usize];
        let (from, since, was_impersonated) = (slot.status, slot.since, slot.impersonated());
        slot.take_all(o, to, o.updated_at);
        self.count_out(from, was_impersonated);
        self.count_in(to, o.impersonated);
        self.reindex(index, Some(before));
        self.notify_observed(index, o, sink);
        sink.emit(&DerivedEvent::Transition(Transition {
            session_id: o.id,
            user_id: o.user_id,
            client_id: o.client_id,
            from: Some(self.statuses.name(from)),
            to: o.status,
            cause,
            at: o.updated_at,
            in_state_ms: Some((o.updated_at - since).max(0)),
            session_age_ms: o.created_at.map(|c| o.updated_at - c),
            impersonated: o.impersonated,
            source: Some(source),
        }));
    }

    /// Tells the sink the state of slot `index` changed (when it wants to know).
    fn notify(&self, index: u32, sink: &mut impl EventSink) {
        if !sink.wants_state() {
            return;
        }
        let mut texts = SlotTexts::default();
        let (id, record) = self.record(index, &mut texts);
        sink.state_changed(id.unwrap_or(""), Some(&record));
    }

    /// [`Engine::notify`] for a state just taken from `o`: the slot holds `o`'s ids, so
    /// their text is `o`'s and none is decoded from its packed form (a changelog write
    /// follows nearly every observation).
    fn notify_observed(&self, index: u32, o: &Observation<'_>, sink: &mut impl EventSink) {
        if !sink.wants_state() {
            return;
        }
        let slot = &self.slots[index as usize];
        debug_assert!(
            slot.key.matches(o.id, pack(o.id).as_ref())
                && slot.user_id_is(o.user_id)
                && slot.client_id_is(o.client_id)
        );
        let record = self.state_record(slot, o.user_id, o.client_id);
        sink.state_changed(o.id, Some(&record));
    }

    /// The one mapping of a slot to its state: the session id and the [`StateRecord`], their
    /// texts decoded into `texts`.
    fn record<'a>(
        &'a self,
        index: u32,
        texts: &'a mut SlotTexts,
    ) -> (Option<&'a str>, StateRecord<'a>) {
        let slot = &self.slots[index as usize];
        let SlotTexts { id, user, client } = texts;
        let record = self.state_record(
            slot,
            slot.user_id.as_str(user),
            slot.client_id.as_str(client),
        );
        (slot.key.as_str(id), record)
    }

    /// A slot's [`StateRecord`], given the text of its user and client ids.
    fn state_record<'a>(
        &'a self,
        slot: &Slot,
        user_id: Option<&'a str>,
        client_id: Option<&'a str>,
    ) -> StateRecord<'a> {
        StateRecord {
            status: self.statuses.name(slot.status),
            since: slot.since,
            updated_at: slot.updated_at,
            created_at: known(slot.created_at),
            expire_at: known(slot.expire_at),
            abandon_at: known(slot.abandon_at),
            user_id,
            client_id,
            impersonated: slot.impersonated(),
            inferred: slot.inferred(),
        }
    }

    /// Puts a session's state back as the changelog kept it (restore): no events, no
    /// watermark movement. Replaces any state held for the id.
    pub fn restore(&mut self, session_id: &str, state: &StateRecord<'_>) {
        let lookup = self.lookup(session_id);
        let status = self.statuses.code(state.status);
        let slot = Slot {
            key: lookup.key(session_id),
            user_id: CompactId::optional(state.user_id),
            client_id: CompactId::optional(state.client_id),
            updated_at: state.updated_at,
            since: state.since,
            created_at: stored(state.created_at),
            expire_at: stored(state.expire_at),
            abandon_at: stored(state.abandon_at),
            status,
            flags: (u8::from(state.impersonated) * IMPERSONATED)
                | (u8::from(state.inferred) * INFERRED),
        };
        match lookup.found {
            Some(index) => {
                let before = self.index_keys(index);
                let old = &self.slots[index as usize];
                self.count_out(old.status, old.impersonated());
                self.count_in(status, slot.impersonated());
                self.slots[index as usize] = slot;
                self.reindex(index, Some(before));
            }
            None => {
                self.insert_slot(lookup.hash, slot);
            }
        }
    }

    /// Stores a new session's slot (reusing a freed one), indexes it and counts it.
    fn insert_slot(&mut self, hash: u64, slot: Slot) -> u32 {
        let (status, impersonated) = (slot.status, slot.impersonated());
        let index = match self.free.pop() {
            Some(index) => {
                self.slots[index as usize] = slot;
                index
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.table.insert_unique(hash, index, |&i| {
            stored_hash(hasher, &slots[i as usize].key)
        });
        self.count_in(status, impersonated);
        self.reindex(index, None);
        index
    }

    /// Drops a session's state (a changelog tombstone during restore).
    pub fn forget(&mut self, session_id: &str) {
        if let Some(index) = self.lookup(session_id).found {
            if self.index_keys(index).forget_at.is_some() {
                self.forget_at.invalidated();
            }
            self.remove(index, &mut NoSink);
        }
    }

    /// Restores the watermark and the largest event time seen (never moves them back).
    pub fn restore_watermark(&mut self, watermark: Option<i64>, max_event_time: Option<i64>) {
        if let Some(w) = watermark {
            self.watermark = self.watermark.max(w);
        }
        if let Some(m) = max_event_time {
            self.max_event_time = Some(self.max_event_time.map_or(m, |x| x.max(m)));
        }
    }

    /// Fires the timers the watermark has passed and forgets terminal sessions past their
    /// retention. Call after each record.
    pub fn finish_record(&mut self, sink: &mut impl EventSink) {
        self.fire_due(sink);
        self.forget_expired(sink);
    }

    /// Moves the watermark to `to` if that is later (end-of-input flush, idle advance), then
    /// fires what is due.
    pub fn advance_watermark(&mut self, to: i64, sink: &mut impl EventSink) {
        self.watermark = self.watermark.max(to);
        self.finish_record(sink);
    }

    /// The idle-partition rule of SPEC section 3: `W_p` advances to `now − allowed_lateness`.
    /// The caller decides when the partition counts as idle and caught up.
    pub fn advance_idle(&mut self, wall_clock_ms: i64, sink: &mut impl EventSink) {
        self.advance_watermark(
            wall_clock_ms.saturating_sub(self.config.allowed_lateness_ms),
            sink,
        );
    }

    fn fire_due(&mut self, sink: &mut impl EventSink) {
        let mut due = std::mem::take(&mut self.due);
        while let Some(entry) = self.deadlines.pop_due(self.watermark, &self.stamps) {
            due.push(entry);
        }
        // Already in deadline order; only equal deadlines need the id tie-break.
        let slots = &self.slots;
        due.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| slots[a.1 as usize].key.cmp_text(&slots[b.1 as usize].key))
        });
        for &(deadline, index) in &due {
            self.fire(index, deadline, sink);
        }
        due.clear();
        self.due = due;
    }

    /// One inferred transition (SPEC section 3).
    fn fire(&mut self, index: u32, deadline: i64, sink: &mut impl EventSink) {
        let slot = &mut self.slots[index as usize];
        let from = slot.status;
        let to = slot.inferred_status();
        let at = deadline.max(slot.since);
        let in_state_ms = (at - slot.since).max(0);
        slot.status = to;
        slot.since = at;
        slot.flags |= INFERRED;
        let impersonated = slot.impersonated();
        self.count_out(from, impersonated);
        self.count_in(to, impersonated);
        // The deadline entry is already taken; only the retention entry is new.
        self.insert_index(
            index,
            IndexKeys {
                deadline: None,
                forget_at: self.forget_time(&self.slots[index as usize]),
            },
        );
        self.notify(index, sink);
        let slot = &self.slots[index as usize];
        let (mut id_buf, mut user_buf, mut client_buf): (IdBuf, IdBuf, IdBuf) = (
            [0; MAX_PACKED_LEN],
            [0; MAX_PACKED_LEN],
            [0; MAX_PACKED_LEN],
        );
        sink.emit(&DerivedEvent::Transition(Transition {
            session_id: slot.key.as_str(&mut id_buf).unwrap_or(""),
            user_id: slot.user_id.as_str(&mut user_buf),
            client_id: slot.client_id.as_str(&mut client_buf),
            from: Some(self.statuses.name(from)),
            to: self.statuses.name(to),
            cause: Cause::Inferred,
            at,
            in_state_ms: Some(in_state_ms),
            session_age_ms: known(slot.created_at).map(|c| at - c),
            impersonated: slot.impersonated(),
            source: None,
        }));
    }

    fn forget_expired(&mut self, sink: &mut impl EventSink) {
        while let Some((_, index)) = self.forget_at.pop_due(self.watermark, &self.stamps) {
            self.remove(index, sink);
        }
    }

    /// Drops a slot; its retention entry must already be taken or counted stale.
    fn remove(&mut self, index: u32, sink: &mut impl EventSink) {
        let slot = &self.slots[index as usize];
        if sink.wants_state() {
            let mut buf = [0u8; MAX_PACKED_LEN];
            sink.state_changed(slot.key.as_str(&mut buf).unwrap_or(""), None);
        }
        let hash = stored_hash(&self.hasher, &slot.key);
        if let Ok(entry) = self.table.find_entry(hash, |&i| i == index) {
            entry.remove();
        }
        let (status, impersonated) = (slot.status, slot.impersonated());
        if slot.deadline().is_some() {
            self.deadlines.invalidated();
        }
        self.stamps.renew(index);
        self.count_out(status, impersonated);
        let slot = &mut self.slots[index as usize];
        slot.key = CompactId::Absent;
        slot.user_id = CompactId::Absent;
        slot.client_id = CompactId::Absent;
        self.free.push(index);
    }

    /// Finds a session id: its compact form, its table hash, and its slot if held.
    #[inline]
    fn lookup(&self, id: &str) -> Lookup {
        let packed = pack(id);
        let mut state = self.hasher.build_hasher();
        hash_lookup(id, packed.as_ref(), &mut state);
        let hash = state.finish();
        let found = self
            .table
            .find(hash, |&i| {
                self.slots[i as usize].key.matches(id, packed.as_ref())
            })
            .copied();
        Lookup {
            packed,
            hash,
            found,
        }
    }

    /// A session entered status `code`: counted, and its text held.
    fn count_in(&mut self, code: StatusCode, impersonated: bool) {
        self.by_status[Self::bucket(code)] += 1;
        self.impersonated_live += u64::from(impersonated && !code.is_terminal());
        self.statuses.hold(code);
    }

    /// A session left status `code`.
    fn count_out(&mut self, code: StatusCode, impersonated: bool) {
        self.by_status[Self::bucket(code)] -= 1;
        self.impersonated_live -= u64::from(impersonated && !code.is_terminal());
        self.statuses.release(code);
    }

    fn bucket(status: StatusCode) -> usize {
        status.0.min(StatusCode::FIRST_OTHER) as usize
    }

    fn forget_time(&self, slot: &Slot) -> Option<i64> {
        slot.status
            .is_terminal()
            .then(|| slot.since.saturating_add(self.config.terminal_retention_ms))
    }

    fn index_keys(&self, index: u32) -> IndexKeys {
        let slot = &self.slots[index as usize];
        IndexKeys {
            deadline: slot.deadline(),
            forget_at: self.forget_time(slot),
        }
    }

    /// Moves a slot's index entries from `before` to what its state now implies.
    fn reindex(&mut self, index: u32, before: Option<IndexKeys>) {
        let after = self.index_keys(index);
        if let Some(before) = before {
            if before == after {
                return;
            }
            if before.deadline.is_some() {
                self.deadlines.invalidated();
            }
            if before.forget_at.is_some() {
                self.forget_at.invalidated();
            }
        }
        self.insert_index(index, after);
    }

    /// Sets a slot's timers, leaving any it had before stale.
    fn insert_index(&mut self, index: u32, keys: IndexKeys) {
        let stamp = self.stamps.renew(index);
        if let Some(d) = keys.deadline {
            self.deadlines.push(d, index, stamp);
            self.deadlines.sweep_if_stale(&self.stamps);
        }
        if let Some(f) = keys.forget_at {
            self.forget_at.push(f, index, stamp);
            self.forget_at.sweep_if_stale(&self.stamps);
        }
    }
}

/// Buffers a slot's packed ids are decoded into.
struct SlotTexts {
    id: IdBuf,
    user: IdBuf,
    client: IdBuf,
}

impl Default for SlotTexts {
    fn default() -> Self {
        SlotTexts {
            id: [0; MAX_PACKED_LEN],
            user: [0; MAX_PACKED_LEN],
            client: [0; MAX_PACKED_LEN],
        }
    }
}

#[cfg(test)]
mod tests;
