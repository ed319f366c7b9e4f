//! The `[ingest]` section: `sessionflow ingest`'s listener, secrets, bounds and TLS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{positive, ConfigError};

/// `sessionflow ingest`: the webhook receiver.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawIngest {
    pub listen: String,
    /// Space-separated `whsec_…` secrets; better from SESSIONFLOW__INGEST__SECRETS or a file.
    pub secrets: String,
    /// A file of secrets, one per line (a mounted Kubernetes secret).
    pub secrets_file: String,
    pub tolerance_s: u64,
    pub max_body_bytes: u64,
    pub max_concurrent_requests: u64,
    pub request_timeout_ms: u64,
    pub dedup_window: u64,
    /// PEM certificate chain for serving HTTPS directly; empty: plain HTTP (TLS in front).
    pub tls_cert_file: String,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: String,
}

impl Default for RawIngest {
    fn default() -> Self {
        RawIngest {
            listen: "127.0.0.1:9470".into(),
            secrets: String::new(),
            secrets_file: String::new(),
            tolerance_s: 300,
            max_body_bytes: 1_048_576,
            max_concurrent_requests: 512,
            request_timeout_ms: 10_000,
            dedup_window: 100_000,
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
        }
    }
}

impl std::fmt::Debug for RawIngest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawIngest")
            .field("listen", &self.listen)
            .field("secrets", &"<redacted>")
            .field("secrets_file", &self.secrets_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .finish_non_exhaustive()
    }
}

/// Where the certificate chain and its key are (read when ingest starts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// `sessionflow ingest` (the `[ingest]` section), validated.
#[derive(Clone)]
pub struct Ingest {
    pub listen: SocketAddr,
    /// `whsec_…` secrets, from `ingest.secrets` and `ingest.secrets_file` (empty: ingest
    /// refuses to start). Never logged or shown.
    pub secrets: Vec<String>,
    pub tolerance_s: i64,
    pub max_body_bytes: usize,
    pub max_concurrent_requests: usize,
    /// The longest a request waits (its body, then its write's acknowledgement).
    pub request_timeout: Duration,
    /// Webhook ids remembered after their write, to answer a redelivery without writing.
    pub dedup_window: usize,
    /// HTTPS served directly, or plain HTTP behind an ingress (`None`).
    pub tls: Option<IngestTls>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("listen", &self.listen)
            .field("secrets", &format!("<{} redacted>", self.secrets.len()))
            .field("tolerance_s", &self.tolerance_s)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_concurrent_requests", &self.max_concurrent_requests)
            .field("request_timeout", &self.request_timeout)
            .field("dedup_window", &self.dedup_window)
            .field("tls", &self.tls)
            .finish()
    }
}

impl RawIngest {
    pub(super) fn validate(self) -> Result<Ingest, ConfigError> {
        let listen = self.listen.parse().map_err(|_| ConfigError::Invalid {
            key: "ingest.listen",
            problem: format!("{:?} is not an address:port", self.listen),
        })?;
        let mut secrets: Vec<String> = self.secrets.split_whitespace().map(str::to_owned).collect();
        if !self.secrets_file.trim().is_empty() {
            let path = self.secrets_file.trim();
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::Load(format!(
                    "invalid configuration (key `ingest.secrets_file`): cannot read {path}: {e}"
                ))
            })?;
            secrets.extend(text.split_whitespace().map(str::to_owned));
        }
        let tls = match (self.tls_cert_file.trim(), self.tls_key_file.trim()) {
            ("", "") => None,
            (cert, key) if !cert.is_empty() && !key.is_empty() => Some(IngestTls {
                cert_file: cert.into(),
                key_file: key.into(),
            }),
            (_, "") => {
                return Err(ConfigError::Invalid {
                    key: "ingest.tls_key_file",
                    problem: "is empty while ingest.tls_cert_file is set: give both, or neither for plain HTTP".into(),
                })
            }
            _ => {
                return Err(ConfigError::Invalid {
                    key: "ingest.tls_cert_file",
                    problem: "is empty while ingest.tls_key_file is set: give both, or neither for plain HTTP".into(),
                })
            }
        };
        Ok(Ingest {
            listen,
            secrets,
            tolerance_s: i64::try_from(self.tolerance_s).unwrap_or(i64::MAX),
            max_body_bytes: positive("ingest.max_body_bytes", self.max_body_bytes)? as usize,
            max_concurrent_requests: positive(
                "ingest.max_concurrent_requests",
                self.max_concurrent_requests,
            )? as usize,
            request_timeout: Duration::from_millis(positive(
                "ingest.request_timeout_ms",
                self.request_timeout_ms,
            )?),
            dedup_window: self.dedup_window as usize,
            tls,
        })
    }
}
