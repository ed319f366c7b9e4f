//! Realistic synthetic Clerk traffic, deterministic for a seed: sessions created active or
//! pending, refreshes that move `abandon_at`, ends by every terminal status, sessions left to
//! expire or be abandoned, webhook envelopes with `user` objects next to raw snapshots and
//! lists, webhook retries, reordered and late deliveries, ignored objects and a small share
//! of malformed records.
//!
//! Each session's events are scripted when it starts and delivered through a heap ordered by
//! delivery time (event time plus a delivery delay), which is what reorders them.

pub mod webhooks;

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::output::write_str;

/// Event time of the first session (2025-11-24T16:00:00Z).
pub const DEFAULT_START_MS: i64 = 1_764_000_000_000;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// What to generate.
#[derive(Copy, Clone, Debug)]
pub struct GenerateOptions {
    pub sessions: u64,
    pub seed: u64,
    pub start_ms: i64,
    /// Mean gap between session starts, in event time.
    pub mean_arrival_gap_ms: i64,
    /// Event times as written: the script's own (historical, from `start_ms`), or mapped
    /// near the wall clock (the demo).
    pub compression: Option<Compression>,
}

/// Maps the script's event times onto a compressed timeline that starts at `anchor_ms`: a
/// script time `t` is written as `anchor_ms + (t - start_ms) / factor`. Order is kept, every
/// duration shrinks by `factor` (a day-long session lasts 86 s at 1 000x). Sent with
/// compression, each record waits for its delivery time on that timeline, so event times
/// stay beside the wall clock; [`Compression::tracking_wall_clock`] picks the factor that
/// makes that pace a given rate.
#[derive(Copy, Clone, Debug)]
pub struct Compression {
    pub anchor_ms: i64,
    pub factor: f64,
}

impl Compression {
    /// The compression under which `options`' traffic, each record sent at its delivery
    /// time, comes at `rate` records per second. The script's records per unit of its time
    /// grow while sessions accumulate and settle within half a script day (measured: 1.48
    /// records per script second in its first 6 hours, 1.85–1.95 from hour 12 on): the
    /// density is measured from hour 12 to 24 (deterministic for a seed), so the first
    /// moments of a run come somewhat slower than `rate`.
    pub fn tracking_wall_clock(options: GenerateOptions, rate: u64, anchor_ms: i64) -> Self {
        let mut generator = Generator::new(GenerateOptions {
            compression: None,
            ..options
        });
        let (mut record, mut key) = (Vec::new(), Vec::new());
        let (from, to) = (options.start_ms + 12 * HOUR, options.start_ms + 24 * HOUR);
        let mut counted = 0u64;
        while generator.next_record(&mut record, &mut key) && generator.delivered_at < to {
            counted += u64::from(generator.delivered_at >= from);
        }
        let script_ms_per_record = (to - from) as f64 / counted.max(1) as f64;
        Compression {
            anchor_ms,
            factor: (script_ms_per_record * rate.max(1) as f64 / 1000.0).max(1.0),
        }
    }

    /// A script time on the compressed timeline.
    fn map(self, start_ms: i64, t: i64) -> i64 {
        self.anchor_ms + ((t - start_ms) as f64 / self.factor).round() as i64
    }

    /// A script duration on the compressed timeline.
    pub fn duration_ms(self, script_ms: i64) -> i64 {
        (script_ms as f64 / self.factor).round() as i64
    }
}

impl GenerateOptions {
    pub fn new(sessions: u64, seed: u64) -> Self {
        GenerateOptions {
            sessions,
            seed,
            start_ms: DEFAULT_START_MS,
            mean_arrival_gap_ms: 2_000,
            compression: None,
        }
    }
}

/// How one event is written.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Format {
    Raw,
    Webhook(&'static str),
    BareList,
    PaginatedList,
    /// Timestamps in seconds (older Clerk payloads).
    RawSeconds,
    Malformed(Corruption),
    IgnoredUserEvent,
    IgnoredObject,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Corruption {
    Truncated,
    StringTimestamp,
    MissingId,
    NegativeDeadline,
    MissingStatus,
    BadListElement,
}

/// The session snapshot an event carries.
#[derive(Copy, Clone, Debug)]
struct Snapshot {
    status: &'static str,
    updated_at: i64,
    last_active_at: i64,
    expire_at: i64,
    abandon_at: i64,
}

#[derive(Clone, Debug)]
struct Pending {
    deliver_at: i64,
    seq: u64,
    session: u32,
    snapshot: Snapshot,
    format: Format,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.deliver_at, self.seq) == (other.deliver_at, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.deliver_at, self.seq).cmp(&(other.deliver_at, other.seq))
    }
}

/// Identity of one synthetic session.
#[derive(Clone, Debug)]
struct SessionInfo {
    id: [u8; 27],
    user: [u8; 27],
    client: [u8; 27],
    created_at: i64,
    impersonated: bool,
}

/// Streams generated records in delivery order.
pub struct Generator {
    options: GenerateOptions,
    rng: fastrand::Rng,
    sessions: Vec<SessionInfo>,
    next_start: i64,
    heap: BinaryHeap<Reverse<Pending>>,
    seq: u64,
    /// When the last record is delivered, in script time.
    delivered_at: i64,
}

impl Generator {
    pub fn new(options: GenerateOptions) -> Self {
        Generator {
            options,
            rng: fastrand::Rng::with_seed(options.seed),
            sessions: Vec::new(),
            next_start: options.start_ms,
            heap: BinaryHeap::new(),
            seq: 0,
            delivered_at: options.start_ms,
        }
    }

    /// Writes the next record into `out` (cleared first) and its key (the session id) into
    /// `key`; false when done.
    pub fn next_record(&mut self, out: &mut Vec<u8>, key: &mut Vec<u8>) -> bool {
        while (self.sessions.len() as u64) < self.options.sessions
            && self
                .heap
                .peek()
                .is_none_or(|Reverse(p)| p.deliver_at >= self.next_start)
        {
            self.start_session();
        }
        let Some(Reverse(event)) = self.heap.pop() else {
            return false;
        };
        out.clear();
        key.clear();
        self.delivered_at = event.deliver_at;
        let info = &self.sessions[event.session as usize];
        key.extend_from_slice(b"sess_");
        key.extend_from_slice(&info.id);
        match self.options.compression {
            None => write_record(out, info, &event),
            Some(compression) => {
                let map = |t: i64| compression.map(self.options.start_ms, t);
                let snapshot = Snapshot {
                    updated_at: map(event.snapshot.updated_at),
                    last_active_at: map(event.snapshot.last_active_at),
                    expire_at: map(event.snapshot.expire_at),
                    abandon_at: map(event.snapshot.abandon_at),
                    ..event.snapshot
                };
                let info = SessionInfo {
                    created_at: map(info.created_at),
                    ..info.clone()
                };
                write_record(out, &info, &Pending { snapshot, ..event });
            }
        }
        true
    }

    /// With compression: when the last record is due, on the compressed timeline (its
    /// event times are at most this).
    pub fn due_ms(&self) -> Option<i64> {
        let compression = self.options.compression?;
        Some(compression.map(self.options.start_ms, self.delivered_at))
    }

    fn body(&mut self) -> [u8; 27] {
        let mut id = [0u8; 27];
        for c in &mut id {
            *c = BASE62[self.rng.usize(..62)];
        }
        id
    }

    fn push(&mut self, session: u32, snapshot: Snapshot, format: Format, delay: i64) {
        self.seq += 1;
        self.heap.push(Reverse(Pending {
            deliver_at: snapshot.updated_at + delay,
            seq: self.seq,
            session,
            snapshot,
            format,
        }));
    }

    /// A delivery delay: mostly immediate, sometimes seconds, rarely minutes (late).
    fn delay(&mut self) -> i64 {
        match self.rng.u32(..100) {
            0..=79 => self.rng.i64(0..200),
            80..=97 => self.rng.i64(200..20_000),
            _ => self.rng.i64(MINUTE..15 * MINUTE),
        }
    }

    /// How a snapshot (not a webhook) is written.
    fn snapshot_format(&mut self) -> Format {
        match self.rng.u32(..100) {
            0..=79 => Format::Raw,
            80..=88 => Format::BareList,
            89..=97 => Format::PaginatedList,
            _ => Format::RawSeconds,
        }
    }

    /// Sends `snapshot` as `format`, sometimes twice (a webhook retry), sometimes with a
    /// malformed or ignored record next to it.
    fn emit(&mut self, session: u32, snapshot: Snapshot, format: Format) {
        let delay = self.delay();
        self.push(session, snapshot, format, delay);
        if matches!(format, Format::Webhook(_)) && self.rng.u32(..100) < 5 {
            let retry = delay + self.rng.i64(1_000..5 * MINUTE);
            self.push(session, snapshot, format, retry);
        }
        let roll = self.rng.u32(..1000);
        if roll < 5 {
            let corruption = match self.rng.u32(..6) {
                0 => Corruption::Truncated,
                1 => Corruption::StringTimestamp,
                2 => Corruption::MissingId,
                3 => Corruption::NegativeDeadline,
                4 => Corruption::MissingStatus,
                _ => Corruption::BadListElement,
            };
            self.push(session, snapshot, Format::Malformed(corruption), delay + 1);
        } else if roll < 15 {
            let ignored = if roll < 10 {
                Format::IgnoredUserEvent
            } else {
                Format::IgnoredObject
            };
            self.push(session, snapshot, ignored, delay + 1);
        }
    }

    /// Scripts one session's whole life and queues its events.
    fn start_session(&mut self) {
        let session = self.sessions.len() as u32;
        let created_at = self.next_start;
        let gap = self.options.mean_arrival_gap_ms.max(1);
        self.next_start += self.rng.i64(0..2 * gap + 1);
        let impersonated = self.rng.u32(..100) < 2;
        let info = SessionInfo {
            id: self.body(),
            user: self.body(),
            client: self.body(),
            created_at,
            impersonated,
        };
        self.sessions.push(info);

        // Lifetime settings: maximum lifetime (expire_at) and an inactivity horizon that
        // moves with activity (abandon_at).
        let expire_at = created_at
            + if impersonated {
                30 * MINUTE
            } else {
                [DAY, 7 * DAY][self.rng.usize(..2)]
            };
        let inactivity = [2 * HOUR, 12 * HOUR, 30 * DAY][self.rng.usize(..3)];
        let mut snap = Snapshot {
            status: if self.rng.u32(..100) < 15 {
                "pending"
            } else {
                "active"
            },
            updated_at: created_at,
            last_active_at: created_at,
            expire_at,
            abandon_at: (created_at + inactivity).min(created_at + 30 * DAY),
        };
        let created_format = if self.rng.bool() {
            Format::Webhook(if snap.status == "pending" {
                "session.pending"
            } else {
                "session.created"
            })
        } else {
            self.snapshot_format()
        };
        self.emit(session, snap, created_format);

        if snap.status == "pending" {
            if self.rng.u32(..100) < 70 {
                snap.updated_at += self.rng.i64(10_000..5 * MINUTE);
                snap.last_active_at = snap.updated_at;
                snap.status = "active";
                let format = self.snapshot_format();
                self.emit(session, snap, format);
            } else {
                return self.fade_out(session, snap);
            }
        }

        self.refresh(session, &mut snap, inactivity, created_at);
        self.end_or_fade(session, snap);
    }

    /// Activity: refreshes move last_active_at and abandon_at; a few arrive late.
    fn refresh(&mut self, session: u32, snap: &mut Snapshot, inactivity: i64, created_at: i64) {
        for _ in 0..self.rng.u32(..5) {
            let next = snap.updated_at + self.rng.i64(5 * MINUTE..90 * MINUTE);
            if next >= snap.expire_at.min(snap.abandon_at) {
                break;
            }
            let old_deadline = snap.expire_at.min(snap.abandon_at);
            snap.updated_at = next;
            snap.last_active_at = next;
            snap.abandon_at = (next + inactivity).min(created_at + 30 * DAY);
            let format = self.snapshot_format();
            if self.rng.u32(..100) < 3 && snap.abandon_at > old_deadline {
                // Delivered only after the old deadline passed: the inference it undoes
                // has already been made (a correction).
                let delay = old_deadline - next + self.rng.i64(10 * MINUTE..40 * MINUTE);
                self.push(session, *snap, format, delay);
            } else {
                self.emit(session, *snap, format);
            }
        }
    }

    /// The session's end: signed out, removed or revoked (some with a webhook), replaced, or
    /// left to expire or be abandoned.
    fn end_or_fade(&mut self, session: u32, mut snap: Snapshot) {
        let end = snap.updated_at + self.rng.i64(MINUTE..60 * MINUTE);
        let fate = self.rng.u32(..100);
        if fate >= 60 || end >= snap.expire_at.min(snap.abandon_at) {
            return self.fade_out(session, snap);
        }
        snap.updated_at = end;
        let (status, webhook) = match fate {
            0..=29 => ("ended", Some("session.ended")),
            30..=39 => ("removed", Some("session.removed")),
            40..=49 => ("revoked", Some("session.revoked")),
            _ => ("replaced", None),
        };
        snap.status = status;
        let format = match webhook {
            Some(kind) if self.rng.u32(..100) < 70 => Format::Webhook(kind),
            _ => self.snapshot_format(),
        };
        self.emit(session, snap, format);
        if status == "ended" && self.rng.u32(..100) < 30 {
            // Signed out, later removed from the client.
            snap.updated_at += self.rng.i64(MINUTE..HOUR);
            snap.status = "removed";
            self.emit(session, snap, Format::Webhook("session.removed"));
        }
    }

    /// A session left alone: Clerk expires or abandons it without a webhook; a later poll
    /// sometimes shows the terminal status.
    fn fade_out(&mut self, session: u32, mut snap: Snapshot) {
        if self.rng.u32(..100) < 30 {
            let deadline = snap.expire_at.min(snap.abandon_at);
            snap.status = if snap.expire_at <= snap.abandon_at {
                "expired"
            } else {
                "abandoned"
            };
            snap.updated_at = deadline + self.rng.i64(MINUTE..6 * HOUR);
            let format = self.snapshot_format();
            self.emit(session, snap, format);
        }
    }
}

/// Writes into `buf` a deterministic Clerk-form id for `n`: `prefix` plus 27 base62
/// characters (for benchmarks and examples that need many distinct ids).
pub fn clerk_id(buf: &mut String, prefix: &str, n: u64) {
    buf.clear();
    buf.push_str(prefix);
    let mut n = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for _ in 0..27 {
        buf.push(BASE62[(n % 62) as usize] as char);
        n = n.rotate_left(7).wrapping_mul(31).wrapping_add(17);
    }
}

/// Sends generated records at `rate` records per second until `stop` (the embedded demo);
/// the webhook events through `webhooks` if given, the rest straight to `topic`.
pub fn send_until(
    options: GenerateOptions,
    brokers: &str,
    topic: &str,
    rate: u64,
    stop: &std::sync::atomic::AtomicBool,
    webhooks: Option<&webhooks::Poster>,
) -> anyhow::Result<u64> {
    let sink = Sink {
        brokers,
        topic,
        compression: "lz4",
        webhooks,
    };
    send(options, u64::MAX, &sink, Some(rate), Some(stop), false)
}

/// Sends generated records to `topic`, keyed by session id, at `rate` records per second if
/// given; prints a progress line every second. Returns how many were sent.
pub fn send_to_kafka(
    options: GenerateOptions,
    limit: u64,
    brokers: &str,
    topic: &str,
    rate: Option<u64>,
    compression: &str,
) -> anyhow::Result<u64> {
    let sink = Sink {
        brokers,
        topic,
        compression,
        webhooks: None,
    };
    send(options, limit, &sink, rate, None, true)
}

/// Where generated records go.
struct Sink<'a> {
    brokers: &'a str,
    topic: &'a str,
    /// The producer's `compression.type`.
    compression: &'a str,
    /// Where webhook events go instead, if anywhere.
    webhooks: Option<&'a webhooks::Poster>,
}

fn send(
    options: GenerateOptions,
    limit: u64,
    sink_to: &Sink<'_>,
    rate: Option<u64>,
    stop: Option<&std::sync::atomic::AtomicBool>,
    progress: bool,
) -> anyhow::Result<u64> {
    use crate::kafka::sink::{self, OutgoingRef};
    use rdkafka::producer::Producer;
    use std::time::{Duration, Instant};

    let producer = sink::load_producer(sink_to.brokers, sink_to.compression)?;
    let topic = sink_to.topic;
    let mut generator = Generator::new(options);
    let (mut record, mut key) = (Vec::new(), Vec::new());
    let started = Instant::now();
    let mut last_report = started;
    let mut sent: u64 = 0;
    while sent < limit
        && !stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
        && generator.next_record(&mut record, &mut key)
    {
        if let Some(due_ms) = generator.due_ms() {
            // Compressed event times: each record when the wall clock reaches its delivery.
            let wait_ms = due_ms - crate::clock::now_ms();
            if wait_ms > 0 {
                std::thread::sleep(Duration::from_millis(wait_ms as u64));
            }
        } else if let Some(rate) = rate.filter(|&r| r > 0) {
            // Steady pacing: record n is due at n / rate seconds.
            let due = started + Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        if let Some(poster) = sink_to.webhooks.filter(|_| webhooks::is_webhook(&record)) {
            anyhow::ensure!(
                poster.post(record.clone()),
                "every webhook posting thread has ended"
            );
            sent += 1;
            continue;
        }
        sink::send_blocking(
            &producer,
            OutgoingRef {
                topic,
                partition: sink::ANY_PARTITION,
                key: Some(&key),
                payload: Some(&record),
                headers: None,
                opaque: 0,
            },
        )?;
        sent += 1;
        if progress && last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "generate: {sent} records sent, {:.0} records/s",
                sent as f64 / secs
            );
        }
    }
    producer.flush(Duration::from_secs(if stop.is_some() { 2 } else { 60 }))?;
    Ok(sent)
}

fn write_id(out: &mut Vec<u8>, prefix: &str, body: &[u8; 27]) {
    out.push(b'"');
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(body);
    out.push(b'"');
}

fn write_int(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// The Session object; `seconds` writes timestamps in seconds.
fn write_session(out: &mut Vec<u8>, info: &SessionInfo, snap: &Snapshot, seconds: bool) {
    let ts = |v: i64| if seconds { v / 1000 } else { v };
    out.extend_from_slice(b"{\"object\":\"session\",\"id\":");
    write_id(out, "sess_", &info.id);
    out.extend_from_slice(b",\"user_id\":");
    write_id(out, "user_", &info.user);
    out.extend_from_slice(b",\"client_id\":");
    write_id(out, "client_", &info.client);
    if info.impersonated {
        out.extend_from_slice(b",\"actor\":{\"sub\":\"user_2OEpKhcCN1Lat9NQ0G6puh7q5Rb\"}");
    } else {
        out.extend_from_slice(b",\"actor\":null");
    }
    out.extend_from_slice(b",\"status\":");
    write_str(out, snap.status);
    out.extend_from_slice(b",\"last_active_organization_id\":null,\"last_active_at\":");
    write_int(out, ts(snap.last_active_at));
    out.extend_from_slice(
        b",\"latest_activity\":{\"object\":\"session_activity\",\"id\":\"activity_",
    );
    out.extend_from_slice(&info.client);
    out.extend_from_slice(b"\",\"device_type\":\"desktop\",\"is_mobile\":false,\"browser_name\":\"Chrome\",\"browser_version\":\"128.0.0.0\",\"ip_address\":\"192.168.1.100\",\"city\":\"San Francisco\",\"country\":\"US\"}");
    out.extend_from_slice(b",\"expire_at\":");
    write_int(out, ts(snap.expire_at));
    out.extend_from_slice(b",\"abandon_at\":");
    write_int(out, ts(snap.abandon_at));
    out.extend_from_slice(b",\"updated_at\":");
    write_int(out, ts(snap.updated_at));
    out.extend_from_slice(b",\"created_at\":");
    write_int(out, ts(info.created_at));
    out.extend_from_slice(b",\"tasks\":null}");
}

/// The `user` object Clerk puts into session webhook `data`.
fn write_user(out: &mut Vec<u8>, info: &SessionInfo) {
    out.extend_from_slice(b"{\"object\":\"user\",\"id\":");
    write_id(out, "user_", &info.user);
    out.extend_from_slice(b",\"external_id\":null,\"primary_email_address_id\":\"idn_");
    out.extend_from_slice(&info.user);
    out.extend_from_slice(b"\",\"primary_phone_number_id\":null,\"primary_web3_wallet_id\":null,\"username\":null,\"first_name\":\"John\",\"last_name\":\"Doe\",\"profile_image_url\":\"https://img.clerk.com/xxxxxx\",\"image_url\":\"https://img.clerk.com/xxxxxx\",\"has_image\":true,\"public_metadata\":{},\"private_metadata\":{},\"unsafe_metadata\":{},\"email_addresses\":[{\"id\":\"idn_");
    out.extend_from_slice(&info.user);
    out.extend_from_slice(b"\",\"object\":\"email_address\",\"email_address\":\"user-");
    out.extend_from_slice(&info.user[..8]);
    out.extend_from_slice(b"@example.com\",\"reserved\":false,\"verification\":{\"status\":\"verified\",\"strategy\":\"email_code\",\"attempts\":1,\"expire_at\":null},\"linked_to\":[]}],\"phone_numbers\":[],\"web3_wallets\":[],\"passkeys\":[],\"password_enabled\":true,\"two_factor_enabled\":false,\"totp_enabled\":false,\"backup_code_enabled\":false,\"mfa_enabled_at\":null,\"mfa_disabled_at\":null,\"external_accounts\":[],\"saml_accounts\":[],\"enterprise_accounts\":[],\"last_sign_in_at\":");
    write_int(out, info.created_at);
    out.extend_from_slice(b",\"banned\":false,\"locked\":false,\"lockout_expires_in_seconds\":null,\"verification_attempts_remaining\":null,\"updated_at\":");
    write_int(out, info.created_at);
    out.extend_from_slice(b",\"created_at\":");
    write_int(out, info.created_at - 90 * DAY);
    out.extend_from_slice(b",\"delete_self_enabled\":true,\"create_organization_enabled\":true,\"create_organizations_limit\":null,\"last_active_at\":");
    write_int(out, info.created_at);
    out.extend_from_slice(b",\"legal_accepted_at\":null}");
}

fn write_record(out: &mut Vec<u8>, info: &SessionInfo, event: &Pending) {
    let snap = &event.snapshot;
    match event.format {
        Format::Raw => write_session(out, info, snap, false),
        Format::RawSeconds => write_session(out, info, snap, true),
        Format::BareList => {
            out.push(b'[');
            write_session(out, info, snap, false);
            out.push(b']');
        }
        Format::PaginatedList => {
            out.extend_from_slice(b"{\"data\":[");
            write_session(out, info, snap, false);
            out.extend_from_slice(b"],\"total_count\":1}");
        }
        Format::Webhook(kind) => {
            out.extend_from_slice(b"{\"data\":");
            // The session object with the `user` key spliced in before its closing brace.
            write_session(out, info, snap, false);
            out.pop();
            out.extend_from_slice(b",\"user\":");
            write_user(out, info);
            out.extend_from_slice(b"},\"event_attributes\":{\"http_request\":{\"client_ip\":\"192.168.1.100\",\"user_agent\":\"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 Safari/537.36\"}},\"instance_id\":\"ins_2g7np7Hrk0SN6kj5EDMLDaKNL0S\",\"object\":\"event\",\"timestamp\":");
            write_int(out, snap.updated_at);
            out.extend_from_slice(b",\"type\":");
            write_str(out, kind);
            out.push(b'}');
        }
        Format::IgnoredUserEvent => {
            out.extend_from_slice(b"{\"data\":");
            write_user(out, info);
            out.extend_from_slice(b",\"object\":\"event\",\"timestamp\":");
            write_int(out, snap.updated_at);
            out.extend_from_slice(b",\"type\":\"user.updated\"}");
        }
        Format::IgnoredObject => {
            out.extend_from_slice(b"{\"object\":\"client\",\"id\":");
            write_id(out, "client_", &info.client);
            out.extend_from_slice(b",\"session_ids\":[");
            write_id(out, "sess_", &info.id);
            out.extend_from_slice(b"],\"updated_at\":");
            write_int(out, snap.updated_at);
            out.push(b'}');
        }
        Format::Malformed(corruption) => write_malformed(out, info, snap, corruption),
    }
}

fn write_malformed(out: &mut Vec<u8>, info: &SessionInfo, snap: &Snapshot, c: Corruption) {
    match c {
        Corruption::Truncated => {
            write_session(out, info, snap, false);
            let keep = out.len() / 2;
            out.truncate(keep);
        }
        Corruption::StringTimestamp => {
            out.extend_from_slice(b"{\"object\":\"session\",\"id\":");
            write_id(out, "sess_", &info.id);
            out.extend_from_slice(b",\"status\":\"active\",\"updated_at\":\"");
            write_int(out, snap.updated_at);
            out.extend_from_slice(b"\"}");
        }
        Corruption::MissingId => {
            out.extend_from_slice(b"{\"object\":\"session\",\"status\":");
            write_str(out, snap.status);
            out.extend_from_slice(b",\"updated_at\":");
            write_int(out, snap.updated_at);
            out.push(b'}');
        }
        Corruption::NegativeDeadline => {
            out.extend_from_slice(b"{\"object\":\"session\",\"id\":");
            write_id(out, "sess_", &info.id);
            out.extend_from_slice(b",\"status\":\"active\",\"expire_at\":-1,\"updated_at\":");
            write_int(out, snap.updated_at);
            out.push(b'}');
        }
        Corruption::MissingStatus => {
            out.extend_from_slice(b"{\"object\":\"session\",\"id\":");
            write_id(out, "sess_", &info.id);
            out.extend_from_slice(b",\"status\":null,\"updated_at\":");
            write_int(out, snap.updated_at);
            out.push(b'}');
        }
        Corruption::BadListElement => {
            out.push(b'[');
            write_session(out, info, snap, false);
            out.extend_from_slice(b",{\"object\":\"session\",\"id\":");
            write_id(out, "sess_", &info.id);
            out.extend_from_slice(b",\"status\":7,\"updated_at\":1}]");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(sessions: u64, seed: u64) -> Vec<Vec<u8>> {
        let mut generator = Generator::new(GenerateOptions::new(sessions, seed));
        let (mut out, mut key) = (Vec::new(), Vec::new());
        let mut records = Vec::new();
        while generator.next_record(&mut out, &mut key) {
            records.push(out.clone());
        }
        records
    }

    /// The newest `updated_at` (milliseconds) a record names.
    fn newest_updated_at(record: &[u8]) -> Option<i64> {
        let text = std::str::from_utf8(record).ok()?;
        text.match_indices("\"updated_at\":")
            .filter_map(|(at, key)| {
                let digits: String = text[at + key.len()..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                let value: i64 = digits.parse().ok()?;
                // Older payloads count seconds.
                Some(if value < 100_000_000_000 {
                    value * 1000
                } else {
                    value
                })
            })
            .max()
    }

    #[test]
    fn compressed_event_times_keep_pace_with_the_wall_clock_at_the_sending_rate() {
        const ANCHOR: i64 = 1_800_000_000_000;
        const RATE: u64 = 5_000;
        let script = GenerateOptions::new(u64::MAX / 8, 1);
        let compression = Compression::tracking_wall_clock(script, RATE, ANCHOR);
        assert!(compression.factor > 100.0, "{compression:?}");
        let mut generator = Generator::new(GenerateOptions {
            compression: Some(compression),
            ..script
        });
        let (mut out, mut key) = (Vec::new(), Vec::new());
        let mut previous_due = ANCHOR;
        for n in 1..=400_000u64 {
            assert!(generator.next_record(&mut out, &mut key));
            let due = generator.due_ms().unwrap();
            assert!(due >= previous_due, "delivery times keep their order");
            previous_due = due;
            // Sent when due: no event time ahead of the wall clock.
            if let Some(t) = newest_updated_at(&out) {
                assert!(
                    t <= due,
                    "record {n}: event time {t} after its delivery {due}"
                );
            }
            if n % 100_000 == 0 {
                // Past the first moments, n records take about n / RATE seconds.
                let seconds = (due - ANCHOR) as f64 / 1000.0;
                let expected = n as f64 / RATE as f64;
                assert!(
                    (seconds / expected - 1.0).abs() < 0.2,
                    "record {n} due {seconds:.1} s after the start, {expected:.1} s at {RATE}/s"
                );
            }
        }
        // Durations shrink by the factor: Clerk's day is 86 400 s / factor here.
        assert_eq!(
            compression.duration_ms(86_400_000),
            (86_400_000.0 / compression.factor).round() as i64
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_records() {
        assert_eq!(run(200, 7), run(200, 7));
        assert_ne!(run(200, 7), run(200, 8));
    }

    #[test]
    fn every_generated_record_is_valid_json_except_the_malformed_share() {
        let records = run(2_000, 1);
        let invalid = records
            .iter()
            .filter(|r| serde_json::from_slice::<serde_json::Value>(r).is_err())
            .count();
        assert!(records.len() > 2_000 * 3);
        // Truncated records are one of six corruptions of 0.5% of events.
        assert!(
            invalid < records.len() / 100,
            "{invalid} of {}",
            records.len()
        );
    }
}
