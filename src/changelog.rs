//! The state changelog's record format (SPEC section 6): one record per change of a
//! session's state, key = session id, value = the state after the change in a compact,
//! versioned binary form, a tombstone (no value) when the session is forgotten; plus one
//! progress record per partition under a key no session id can be. Pure encoding and
//! decoding; the Kafka side writes and restores these. Format: docs/changelog.md.

use crate::engine::StateRecord;

/// Format version written, the first byte of every value. Version 2 carries string lengths
/// as u32 (version 1's u16 cut longer strings) and keeps progress under [`PROGRESS_KEY`];
/// version 1 values and keys are still read.
pub const VERSION: u8 = 2;
/// The oldest format version read.
pub const OLDEST_VERSION: u8 = 1;
/// Key of a partition's progress record. It is not UTF-8 (0xFF never occurs in UTF-8), and
/// every session id is (ids come from JSON strings), so no input can address it: sessions and
/// progress live in disjoint key spaces, also for compaction.
pub const PROGRESS_KEY: &[u8] = b"\xffsessionflow.progress";
/// Key of the progress record in version 1. A JSON id can spell it (`"\u0000sessionflow.
/// watermark"`), so a record under it is told apart by its value's kind: a watermark value is
/// version 1 progress, a state value or a tombstone is that session's.
pub const LEGACY_WATERMARK_KEY: &[u8] = b"\0sessionflow.watermark";

const KIND_STATE: u8 = 1;
const KIND_WATERMARK: u8 = 2;

const IMPERSONATED: u8 = 1;
const INFERRED: u8 = 1 << 1;
const CREATED: u8 = 1 << 2;
const EXPIRE: u8 = 1 << 3;
const ABANDON: u8 = 1 << 4;
const USER: u8 = 1 << 5;
const CLIENT: u8 = 1 << 6;

/// Why a changelog value cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangelogError {
    #[error(
        "changelog value of version {0} (this build reads versions {OLDEST_VERSION} to {VERSION})"
    )]
    Version(u8),
    #[error("changelog value is not a {0} record")]
    Kind(&'static str),
    #[error("changelog value ends early")]
    Truncated,
    #[error("changelog value holds a string that is not UTF-8")]
    Utf8,
    #[error("changelog key is not a UTF-8 session id")]
    KeyNotUtf8,
}

/// Appends the value of a state record.
pub fn encode_state(out: &mut Vec<u8>, s: &StateRecord<'_>) {
    let mut flags = 0;
    for (set, bit) in [
        (s.impersonated, IMPERSONATED),
        (s.inferred, INFERRED),
        (s.created_at.is_some(), CREATED),
        (s.expire_at.is_some(), EXPIRE),
        (s.abandon_at.is_some(), ABANDON),
        (s.user_id.is_some(), USER),
        (s.client_id.is_some(), CLIENT),
    ] {
        if set {
            flags |= bit;
        }
    }
    out.extend_from_slice(&[VERSION, KIND_STATE, flags]);
    out.extend_from_slice(&s.since.to_le_bytes());
    out.extend_from_slice(&s.updated_at.to_le_bytes());
    for t in [s.created_at, s.expire_at, s.abandon_at]
        .into_iter()
        .flatten()
    {
        out.extend_from_slice(&t.to_le_bytes());
    }
    for text in [Some(s.status), s.user_id, s.client_id]
        .into_iter()
        .flatten()
    {
        // Input limits keep every string far below 4 GiB (`limits.max_record_bytes`).
        let len = u32::try_from(text.len()).expect("a string under 4 GiB");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(text.as_bytes());
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    /// The value's format version, once its header is read.
    version: u8,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ChangelogError> {
        if self.bytes.len() < n {
            return Err(ChangelogError::Truncated);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn i64(&mut self) -> Result<i64, ChangelogError> {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(raw))
    }

    fn str(&mut self) -> Result<&'a str, ChangelogError> {
        let len = if self.version == 1 {
            let raw = self.take(2)?;
            u16::from_le_bytes([raw[0], raw[1]]) as usize
        } else {
            let raw = self.take(4)?;
            u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize
        };
        std::str::from_utf8(self.take(len)?).map_err(|_| ChangelogError::Utf8)
    }

    fn header(&mut self, kind: u8, name: &'static str) -> Result<u8, ChangelogError> {
        let head = self.take(3)?;
        if !(OLDEST_VERSION..=VERSION).contains(&head[0]) {
            return Err(ChangelogError::Version(head[0]));
        }
        self.version = head[0];
        if head[1] != kind {
            return Err(ChangelogError::Kind(name));
        }
        Ok(head[2])
    }
}

/// Reads the value of a state record.
pub fn decode_state(bytes: &[u8]) -> Result<StateRecord<'_>, ChangelogError> {
    let mut r = Reader { bytes, version: 0 };
    let flags = r.header(KIND_STATE, "state")?;
    let since = r.i64()?;
    let updated_at = r.i64()?;
    let optional = |bit: u8, r: &mut Reader<'_>| -> Result<Option<i64>, ChangelogError> {
        if flags & bit != 0 {
            r.i64().map(Some)
        } else {
            Ok(None)
        }
    };
    let created_at = optional(CREATED, &mut r)?;
    let expire_at = optional(EXPIRE, &mut r)?;
    let abandon_at = optional(ABANDON, &mut r)?;
    let status = r.str()?;
    let user_id = if flags & USER != 0 {
        Some(r.str()?)
    } else {
        None
    };
    let client_id = if flags & CLIENT != 0 {
        Some(r.str()?)
    } else {
        None
    };
    Ok(StateRecord {
        status,
        since,
        updated_at,
        created_at,
        expire_at,
        abandon_at,
        user_id,
        client_id,
        impersonated: flags & IMPERSONATED != 0,
        inferred: flags & INFERRED != 0,
    })
}

/// What a changelog record's key addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressed<'a> {
    /// The partition's progress record.
    Progress,
    /// A session's state (or its tombstone).
    Session(&'a str),
}

/// Tells what a changelog record is about, from its key and (for version 1's progress key,
/// which a session id can spell) its value's kind.
pub fn addressed<'a>(key: &'a [u8], value: Option<&[u8]>) -> Result<Addressed<'a>, ChangelogError> {
    if key == PROGRESS_KEY {
        return Ok(Addressed::Progress);
    }
    if key == LEGACY_WATERMARK_KEY && value.is_some_and(|v| v.get(1) == Some(&KIND_WATERMARK)) {
        return Ok(Addressed::Progress);
    }
    std::str::from_utf8(key)
        .map(Addressed::Session)
        .map_err(|_| ChangelogError::KeyNotUtf8)
}

/// A partition's progress, as its watermark record keeps it.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// `W_p`.
    pub watermark: Option<i64>,
    /// The largest event time seen.
    pub max_event_time: Option<i64>,
    /// The input offset through which every record's outputs were acknowledged and state
    /// written before this record: a restored partition skips input up to here.
    pub applied_through: Option<i64>,
}

/// Appends the value of a watermark record.
pub fn encode_watermark(out: &mut Vec<u8>, progress: &Progress) {
    let flags = u8::from(progress.watermark.is_some())
        | u8::from(progress.max_event_time.is_some()) << 1
        | u8::from(progress.applied_through.is_some()) << 2;
    out.extend_from_slice(&[VERSION, KIND_WATERMARK, flags]);
    for v in [
        progress.watermark,
        progress.max_event_time,
        progress.applied_through,
    ] {
        out.extend_from_slice(&v.unwrap_or(0).to_le_bytes());
    }
}

/// Reads the value of a watermark record.
pub fn decode_watermark(bytes: &[u8]) -> Result<Progress, ChangelogError> {
    let mut r = Reader { bytes, version: 0 };
    let flags = r.header(KIND_WATERMARK, "watermark")?;
    let (watermark, max_event_time, applied_through) = (r.i64()?, r.i64()?, r.i64()?);
    Ok(Progress {
        watermark: (flags & 1 != 0).then_some(watermark),
        max_event_time: (flags & 2 != 0).then_some(max_event_time),
        applied_through: (flags & 4 != 0).then_some(applied_through),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_records_round_trip() {
        let full = StateRecord {
            status: "quarantined",
            since: 1,
            updated_at: 2,
            created_at: Some(3),
            expire_at: Some(4),
            abandon_at: Some(5),
            user_id: Some("user_x"),
            client_id: Some("client_é"),
            impersonated: true,
            inferred: true,
        };
        let bare = StateRecord {
            since: i64::MAX,
            updated_at: 0,
            ..bare("active")
        };
        for record in [full, bare] {
            let mut bytes = Vec::new();
            encode_state(&mut bytes, &record);
            assert_eq!(decode_state(&bytes).unwrap(), record);
            for cut in 0..bytes.len() {
                assert!(decode_state(&bytes[..cut]).is_err(), "cut at {cut}");
            }
        }
    }

    #[test]
    fn watermarks_round_trip_and_kinds_are_checked() {
        for (watermark, max_event_time, applied_through) in [
            (None, None, None),
            (Some(-5), Some(7), Some(9)),
            (Some(i64::MIN + 1), None, Some(0)),
        ] {
            let progress = Progress {
                watermark,
                max_event_time,
                applied_through,
            };
            let mut bytes = Vec::new();
            encode_watermark(&mut bytes, &progress);
            assert_eq!(decode_watermark(&bytes).unwrap(), progress);
            assert_eq!(decode_state(&bytes), Err(ChangelogError::Kind("state")));
        }
        assert_eq!(
            decode_watermark(&[9, 2, 0]),
            Err(ChangelogError::Version(9))
        );
    }

    #[test]
    // The lint is the claim: the progress key can never be UTF-8.
    #[allow(invalid_from_utf8)]
    fn no_session_id_can_address_the_progress_record() {
        assert!(std::str::from_utf8(PROGRESS_KEY).is_err());
        assert_eq!(addressed(PROGRESS_KEY, None), Ok(Addressed::Progress));
        let mut progress = Vec::new();
        encode_watermark(&mut progress, &Progress::default());
        let mut state = Vec::new();
        encode_state(&mut state, &bare("active"));
        // Version 1's key: progress by its value, else the session a JSON id spelled.
        let hostile = std::str::from_utf8(LEGACY_WATERMARK_KEY).unwrap();
        assert_eq!(
            addressed(LEGACY_WATERMARK_KEY, Some(&progress)),
            Ok(Addressed::Progress)
        );
        assert_eq!(
            addressed(LEGACY_WATERMARK_KEY, Some(&state)),
            Ok(Addressed::Session(hostile))
        );
        assert_eq!(
            addressed(LEGACY_WATERMARK_KEY, None),
            Ok(Addressed::Session(hostile))
        );
        assert_eq!(addressed(b"sess_a", None), Ok(Addressed::Session("sess_a")));
        assert_eq!(addressed(&[0xfe], None), Err(ChangelogError::KeyNotUtf8));
    }

    fn bare(status: &str) -> StateRecord<'_> {
        StateRecord {
            status,
            since: 1,
            updated_at: 2,
            created_at: None,
            expire_at: None,
            abandon_at: None,
            user_id: None,
            client_id: None,
            impersonated: false,
            inferred: false,
        }
    }

    #[test]
    fn strings_of_any_length_round_trip_whole() {
        // Over version 1's 65 535-byte limit, with a two-byte character across it.
        let long_user = format!("{}é{}", "u".repeat(65_534), "x".repeat(10_000));
        let record = StateRecord {
            user_id: Some(&long_user),
            client_id: Some("client_é"),
            ..bare("ÿ-status")
        };
        let mut bytes = Vec::new();
        encode_state(&mut bytes, &record);
        assert_eq!(decode_state(&bytes).unwrap(), record);
    }

    #[test]
    fn version_1_values_are_still_read() {
        // Version 1: u16 string lengths. Kind state, flags user_id present.
        let mut v1 = vec![1, KIND_STATE, USER];
        v1.extend_from_slice(&10i64.to_le_bytes());
        v1.extend_from_slice(&20i64.to_le_bytes());
        for text in ["active", "user_1"] {
            v1.extend_from_slice(&(text.len() as u16).to_le_bytes());
            v1.extend_from_slice(text.as_bytes());
        }
        let state = decode_state(&v1).unwrap();
        assert_eq!((state.status, state.user_id), ("active", Some("user_1")));
        assert_eq!((state.since, state.updated_at), (10, 20));
        let mut watermark = vec![1, KIND_WATERMARK, 1];
        for v in [5i64, 0, 0] {
            watermark.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(decode_watermark(&watermark).unwrap().watermark, Some(5));
        assert_eq!(decode_state(&[3, 1, 0]), Err(ChangelogError::Version(3)));
    }
}
