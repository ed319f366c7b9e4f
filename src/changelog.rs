//! The state changelog's record format (SPEC section 6): one record per change of a
//! session's state, key = session id, value = the state after the change in a compact,
//! versioned binary form, a tombstone (no value) when the session is forgotten; plus one
//! watermark record per partition under a reserved key. Pure encoding and decoding; the
//! Kafka side writes and restores these. Format: docs/changelog.md.

use crate::engine::StateRecord;

/// Format version, the first byte of every value.
pub const VERSION: u8 = 1;
/// Key of a partition's watermark record: not a possible JSON-sourced session id in practice
/// (a NUL byte first), and never produced by the engine for a session.
pub const WATERMARK_KEY: &[u8] = b"\0sessionflow.watermark";

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
    #[error("changelog value of version {0} (this build reads version {VERSION})")]
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
        let len = text.len().min(u16::MAX as usize);
        out.extend_from_slice(&(len as u16).to_le_bytes());
        out.extend_from_slice(&text.as_bytes()[..len]);
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
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
        let len = u16::from_le_bytes([self.take(1)?[0], self.take(1)?[0]]) as usize;
        std::str::from_utf8(self.take(len)?).map_err(|_| ChangelogError::Utf8)
    }

    fn header(&mut self, kind: u8, name: &'static str) -> Result<u8, ChangelogError> {
        let head = self.take(3)?;
        if head[0] != VERSION {
            return Err(ChangelogError::Version(head[0]));
        }
        if head[1] != kind {
            return Err(ChangelogError::Kind(name));
        }
        Ok(head[2])
    }
}

/// Reads the value of a state record.
pub fn decode_state(bytes: &[u8]) -> Result<StateRecord<'_>, ChangelogError> {
    let mut r = Reader { bytes };
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
    let mut r = Reader { bytes };
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
            status: "active",
            since: i64::MAX,
            updated_at: 0,
            created_at: None,
            expire_at: None,
            abandon_at: None,
            user_id: None,
            client_id: None,
            impersonated: false,
            inferred: false,
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
}
