//! sessionflow: a stream processor for Clerk `Session` objects. It reads session snapshots
//! and webhook events, keeps each session's lifecycle, and derives status transitions,
//! inferred expiries and abandonments, and anomalies (see `docs/architecture.md`).
//!
//! # Layout
//!
//! - [`model`]: statuses, observations and derived events, all borrowed.
//! - [`parse`]: record bytes to observations (an on-demand scan, simd-json's tape for the
//!   rest); typed dead-letter errors, SPEC section 1 in `parse/classify.rs`.
//! - [`engine`]: the pure lifecycle rules, watermark and timers of one partition.
//! - [`apply`]: the one path from a parsed record into the engine, counting into [`stats`].
//! - [`stats`]: the plain counters and the one summary formatter.
//! - [`output`]: derived events and dead-letter lines as JSON.
//! - [`replay`]: the offline NDJSON run.
//! - [`schema`]: the published JSON Schemas of the outputs (`schemas/`).
//! - [`generate`]: realistic synthetic Clerk traffic.
//! - [`config`]: layered, strict configuration for the live pipeline.
//! - [`changelog`]: the state changelog's record format (encode, decode).
//! - [`kafka`]: `admin` (start-up checks), `source` (the consumer, rebalances, the changelog
//!   reader), `sink` (the producer, retries, sending), `offsets` (at-least-once bookkeeping).
//! - [`app`]: the live pipeline: the select loop and the batch step; `startup`, `outbox`,
//!   `at_least_once`, `exactly_once`, `assignment`, `restore`, `input_health` and `handles`
//!   beside it.
//! - [`demo`]: the pipeline on an embedded (mock) Kafka, fed by the generator.
//! - [`http`]: `/metrics`, `/healthz`, `/readyz`.
//! - [`ingest`]: Clerk's webhooks into the input topic (`sessionflow ingest`); `signature`
//!   checks the Standard Webhooks (Svix) signatures.
//! - [`log_limit`]: one log line of a kind per interval, the rest counted.
//! - [`clock`]: the wall clock in milliseconds, read by every layer.
//! - [`metrics`]: every metric name and label value, described once; the export.

pub mod app;
pub mod apply;
pub mod changelog;
pub mod clock;
pub mod config;
pub mod demo;
pub mod engine;
pub mod generate;
pub mod http;
pub mod ingest;
pub mod kafka;
pub mod log_limit;
pub mod metrics;
pub mod model;
pub mod output;
pub mod parse;
pub mod replay;
pub mod schema;
pub mod stats;
