//! sessionflow: a stream processor for Clerk `Session` objects. It reads session snapshots
//! and webhook events, keeps each session's lifecycle, and derives status transitions,
//! inferred expiries and abandonments, and anomalies (see `docs/architecture.md`).
//!
//! # Layout
//!
//! - [`model`]: statuses, observations and derived events, all borrowed.
//! - [`parse`]: record bytes to observations (an on-demand scan, simd-json's tape for the
//!   rest); typed dead-letter errors.
//! - [`engine`]: the pure lifecycle rules, watermark and timers of one partition.
//! - [`driver`]: the one path from a parsed record into the engine, with counters.
//! - [`output`]: derived events and dead-letter lines as JSON.
//! - [`replay`]: the offline NDJSON driver.
//! - [`generate`]: realistic synthetic Clerk traffic.
//! - [`config`]: layered, strict configuration for the live pipeline.
//! - [`kafka`]: clients, rebalance and delivery callbacks, offset tracking, topic checks.
//! - [`changelog`]: the state changelog's record format (encode, decode).
//! - [`app`]: the live pipeline's select loop and shutdown.
//! - [`demo`]: the pipeline on an embedded (mock) Kafka, fed by the generator.
//! - [`http`]: `/metrics`, `/healthz`, `/readyz`.
//! - [`metrics`]: every metric name, described once.

pub mod app;
pub mod apply;
pub mod changelog;
pub mod config;
pub mod demo;
pub mod engine;
pub mod generate;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod model;
pub mod output;
pub mod parse;
pub mod replay;
pub mod stats;
