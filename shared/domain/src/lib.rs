//! # relay-domain — the pure core of cafe24-relay
//!
//! Everything here is plain computation over values: identifiers, webhook parsing with
//! Cafe24's published quirks, the inbox envelope, deduplication ids, API-key verification, and
//! the *ports* (traits) through which the functions reach the outside world.
//!
//! ## What this crate must never do
//! - depend on an AWS SDK, `lambda_*`, `reqwest` or `tokio` (checked by `make check-purity`,
//!   which fails the build when one appears in this crate's dependency tree);
//! - read a clock or the environment: time and configuration are arguments;
//! - panic on any input (the workspace lints deny unwrapping and explicit panics outside tests).
//!
//! ## Invariants
//! - A [`DedupId`] is always 1..=128 characters from SQS's allowed set.
//! - A [`MallId`] is always a valid SQS `MessageGroupId`.
//! - The envelope carries the webhook body byte for byte; it is never re-serialised.

#![warn(missing_docs)]

pub mod app_launch;
pub mod auth;
pub mod backfill;
pub mod clock;
pub mod command;
pub mod config;
pub mod delivery;
pub mod envelope;
pub mod ids;
pub mod jobs;
pub mod oauth_state;
pub mod ports;
pub mod ratelimit;
pub mod reconcile;
pub mod routing;
pub mod tokens;
pub mod values;
pub mod webhook;

pub use auth::ApiKeyVerifier;
pub use envelope::{InboxEnvelope, ENVELOPE_VERSION};
pub use ids::{webhook_ids, DedupId, MallId, ShopNo, SnapshotKind, TraceId};
pub use webhook::{classify, Classified, EventNo, ParkReason};
