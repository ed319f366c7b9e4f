//! Standard Webhooks (Svix) signatures, as Clerk sends them: HMAC-SHA256 over
//! `id.timestamp.body` keyed by the secret after `whsec_` (base64), checked against any of the
//! space-separated `v1,<base64>` signatures in constant time, with the timestamp within a
//! tolerance of the clock. Several secrets at once (rotation). Headers `svix-*` or the
//! unbranded `webhook-*`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Why a request was refused; the `reason` label of the refusal counter. Never carries
/// request data.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    MissingHeaders,
    MalformedTimestamp,
    TimestampTooOld,
    TimestampTooNew,
    MalformedSignature,
    BadSignature,
}

impl Refusal {
    pub const ALL: [Refusal; 6] = [
        Refusal::MissingHeaders,
        Refusal::MalformedTimestamp,
        Refusal::TimestampTooOld,
        Refusal::TimestampTooNew,
        Refusal::MalformedSignature,
        Refusal::BadSignature,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::MissingHeaders => "missing_headers",
            Refusal::MalformedTimestamp => "malformed_timestamp",
            Refusal::TimestampTooOld => "timestamp_too_old",
            Refusal::TimestampTooNew => "timestamp_too_new",
            Refusal::MalformedSignature => "malformed_signature",
            Refusal::BadSignature => "bad_signature",
        }
    }
}

/// A secret that cannot be used; names which one (by position), never its text.
#[derive(Debug, thiserror::Error)]
#[error(
    "webhook secret {position} is not `whsec_` followed by base64 (as Clerk's dashboard shows it)"
)]
pub struct BadSecret {
    pub position: usize,
}

/// The three signature headers of one request, as sent.
#[derive(Copy, Clone, Debug)]
pub struct SignedHeaders<'a> {
    pub id: &'a str,
    pub timestamp: &'a str,
    pub signatures: &'a str,
}

/// The decoded secrets, and how far a timestamp may be from the clock.
pub struct Verifier {
    keys: Vec<Vec<u8>>,
    tolerance_s: i64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys.len())
            .field("tolerance_s", &self.tolerance_s)
            .finish()
    }
}

impl Verifier {
    /// `secrets` as Clerk gives them (`whsec_…`; the bare base64 is accepted too).
    pub fn new<S: AsRef<str>>(secrets: &[S], tolerance_s: i64) -> Result<Self, BadSecret> {
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, secret)| {
                let secret = secret.as_ref().trim();
                let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
                STANDARD
                    .decode(encoded)
                    .ok()
                    .filter(|key| !key.is_empty())
                    .ok_or(BadSecret { position: i + 1 })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Verifier { keys, tolerance_s })
    }

    /// Checks one request at `now_s` (Unix seconds).
    pub fn verify(
        &self,
        headers: SignedHeaders<'_>,
        body: &[u8],
        now_s: i64,
    ) -> Result<(), Refusal> {
        let timestamp: i64 = headers
            .timestamp
            .trim()
            .parse()
            .map_err(|_| Refusal::MalformedTimestamp)?;
        // Saturating: a tolerance near `i64::MAX` (the configuration's clamp) would wrap the
        // window's ends round and refuse every request.
        if timestamp < now_s.saturating_sub(self.tolerance_s) {
            return Err(Refusal::TimestampTooOld);
        }
        if timestamp > now_s.saturating_add(self.tolerance_s) {
            return Err(Refusal::TimestampTooNew);
        }
        // Other versions (asymmetric `v1a`) and entries that do not decode may sit beside a
        // good one: skipped, as the Standard Webhooks libraries do; none usable is malformed.
        let offered: Vec<Vec<u8>> = headers
            .signatures
            .split_ascii_whitespace()
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .filter_map(|encoded| STANDARD.decode(encoded).ok())
            .collect();
        if offered.is_empty() {
            return Err(Refusal::MalformedSignature);
        }
        for key in &self.keys {
            let expected = sign(key, headers.id, headers.timestamp.trim(), body);
            // Every offered signature is compared, matched or not: the time taken does not
            // tell which one (or which byte) differed.
            let matched = offered.iter().fold(subtle::Choice::from(0), |any, o| {
                any | expected.as_slice().ct_eq(o)
            });
            if bool::from(matched) {
                return Ok(());
            }
        }
        Err(Refusal::BadSignature)
    }
}

/// HMAC-SHA256 of `id.timestamp.body` under `key`.
fn sign(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        // HMAC takes a key of any length; this branch cannot be reached.
        return Vec::new();
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// The `signatures` header value (`v1,<base64>`) for `body` under `secret` (`whsec_…`): what
/// Svix sends, for the load generator and tests.
pub fn signature_header(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, BadSecret> {
    let verifier = Verifier::new(&[secret], 0)?;
    let mac = sign(&verifier.keys[0], id, &timestamp.to_string(), body);
    Ok(format!("v1,{}", STANDARD.encode(mac)))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Standard Webhooks specification's example (also Svix's documentation's).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn headers(signatures: &str) -> SignedHeaders<'_> {
        SignedHeaders {
            id: ID,
            timestamp: "1614265330",
            signatures,
        }
    }

    #[test]
    fn the_specification_example_signs_and_verifies() {
        assert_eq!(
            signature_header(SECRET, ID, TIMESTAMP, BODY).unwrap(),
            SIGNATURE
        );
        let verifier = Verifier::new(&[SECRET], 300).unwrap();
        assert_eq!(verifier.verify(headers(SIGNATURE), BODY, TIMESTAMP), Ok(()));
        // Among others, and beside another scheme's signature.
        let several = format!("v1,AAAA v1a,Zm9v {SIGNATURE}");
        assert_eq!(
            verifier.verify(headers(&several), BODY, TIMESTAMP + 299),
            Ok(())
        );
    }

    #[test]
    fn tampering_another_secret_id_or_time_is_refused() {
        let verifier = Verifier::new(&[SECRET], 300).unwrap();
        let tampered = br#"{"test": 2432232315}"#;
        assert_eq!(
            verifier.verify(headers(SIGNATURE), tampered, TIMESTAMP),
            Err(Refusal::BadSignature)
        );
        let other = Verifier::new(&["whsec_c2VjcmV0LW9mLWFub3RoZXItYXBw"], 300).unwrap();
        assert_eq!(
            other.verify(headers(SIGNATURE), BODY, TIMESTAMP),
            Err(Refusal::BadSignature)
        );
        let other_id = SignedHeaders {
            id: "msg_other",
            ..headers(SIGNATURE)
        };
        assert_eq!(
            verifier.verify(other_id, BODY, TIMESTAMP),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verifier.verify(headers(SIGNATURE), BODY, TIMESTAMP + 301),
            Err(Refusal::TimestampTooOld)
        );
        assert_eq!(
            verifier.verify(headers(SIGNATURE), BODY, TIMESTAMP - 301),
            Err(Refusal::TimestampTooNew)
        );
        let bad_time = SignedHeaders {
            timestamp: "soon",
            ..headers(SIGNATURE)
        };
        assert_eq!(
            verifier.verify(bad_time, BODY, TIMESTAMP),
            Err(Refusal::MalformedTimestamp)
        );
        for malformed in ["", "v1", "v1,%%%", "v2,AAAA"] {
            assert_eq!(
                verifier.verify(headers(malformed), BODY, TIMESTAMP),
                Err(Refusal::MalformedSignature),
                "{malformed:?}"
            );
        }
    }

    /// A tolerance as large as the configuration takes (`ingest.tolerance_s` is clamped to
    /// `i64::MAX`) turns the time check off: the window's ends saturate instead of wrapping
    /// round, which refused every request as too new.
    #[test]
    fn the_largest_tolerance_accepts_a_request_at_any_clock_reading() {
        let verifier = Verifier::new(&[SECRET], i64::MAX).unwrap();
        for now in [TIMESTAMP, 0, i64::MAX, TIMESTAMP + 10_000_000_000] {
            assert_eq!(
                verifier.verify(headers(SIGNATURE), BODY, now),
                Ok(()),
                "now {now}"
            );
        }
    }

    /// The cases of the Standard Webhooks reference libraries' own tests
    /// (standard-webhooks/libraries/javascript/src/webhook.test.ts), on our verifier.
    #[test]
    fn the_standard_webhooks_library_cases() {
        let bare_secret = SECRET.strip_prefix("whsec_").unwrap();
        // Empty key raises an error.
        assert!(Verifier::new(&[""], 300).is_err());
        // With and without the `whsec_` prefix.
        for secret in [SECRET, bare_secret] {
            let verifier = Verifier::new(&[secret], 300).unwrap();
            assert_eq!(verifier.verify(headers(SIGNATURE), BODY, TIMESTAMP), Ok(()));
            assert_eq!(
                signature_header(secret, ID, TIMESTAMP, BODY).unwrap(),
                SIGNATURE
            );
        }
        // Their invalid, old and new timestamps are the cases of
        // `tampering_another_secret_id_or_time_is_refused`.
        let verifier = Verifier::new(&[SECRET], 300).unwrap();
        // Invalid, partial and empty signatures.
        for refused in ["v1,dawfeoifkpqwoekfpqoekf", &SIGNATURE[..8], "v1,"] {
            assert!(
                verifier.verify(headers(refused), BODY, TIMESTAMP).is_err(),
                "{refused:?}"
            );
        }
        // Several signatures, one of them valid, among another version's.
        let several = [
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            SIGNATURE,
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
        ]
        .join(" ");
        assert_eq!(verifier.verify(headers(&several), BODY, TIMESTAMP), Ok(()));
        // An entry that does not decode does not hide a good one beside it.
        let beside_garbage = format!("v1,%%% nonsense {SIGNATURE}");
        assert_eq!(
            verifier.verify(headers(&beside_garbage), BODY, TIMESTAMP),
            Ok(())
        );
    }

    #[test]
    fn during_a_rotation_either_secret_verifies() {
        let new_secret = "whsec_bmV3LXNlY3JldC1hZnRlci1yb3RhdGlvbg==";
        let verifier = Verifier::new(&[new_secret, SECRET], 300).unwrap();
        assert_eq!(verifier.verify(headers(SIGNATURE), BODY, TIMESTAMP), Ok(()));
        let signed_new = signature_header(new_secret, ID, TIMESTAMP, BODY).unwrap();
        assert_eq!(
            verifier.verify(headers(&signed_new), BODY, TIMESTAMP),
            Ok(())
        );
        assert!(Verifier::new(&["whsec_not base64!"], 300).is_err());
        let shown = format!("{verifier:?}");
        assert!(!shown.contains("MfKQ9r8G"), "{shown}");
    }
}
