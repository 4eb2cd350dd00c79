//! # dispatcher — from webhooks to jobs
//!
//! Consumes the inbox FIFO queue (group = mall) with the shared FIFO batch driver. Each envelope
//! is planned by `relay_domain::routing`: jobs are sent to the work queue with
//! `SendMessageBatch` (≤ 10 per call; refused entries are retried; the inbox message is
//! acknowledged only when every one of its jobs was accepted), `MessageGroupId` = the rate-limit
//! key and `MessageDeduplicationId` = the job id (derived from the event's dedup id, the job kind
//! and the target, so a replayed inbox message makes the same jobs). 90077 marks the mall
//! uninstalled and removes its tokens (the worker then drops its queued work). Unknown events are
//! ignored and counted; unroutable envelopes are parked on the inbox DLQ with the reason.
//!
//! Scheduled mode (EventBridge): enqueue `RefreshToken` keep-alive jobs for malls whose refresh
//! token expires within `KEEPALIVE_DAYS`; malls needing re-authorization are reported.
//!
//! ## Environment
//! `WORK_QUEUE_URL`, `INBOX_QUEUE_URL` (its own source, for deferrals), `PARKING_QUEUE_URL` (the
//! inbox DLQ), `TOKEN_TABLE`, `RATE_LIMIT_TABLE` (an uninstall's fence) (required);
//! `ROUTING_OVERRIDES` (JSON `{"event_no":"route"}`), `RATE_LIMIT_KEY` (`mall`),
//! `KEEPALIVE_DAYS` (3), `MIN_TIME_LEFT_MS` (3000).

pub mod config;
pub mod handler;

pub use config::DispatcherConfig;
pub use handler::Dispatcher;

/// `source` of the scheduled event that starts reconciliation (the template's `Reconcile`
/// schedule); any other scheduled event runs the keep-alive.
pub const RECONCILE_SOURCE: &str = "cafe24-relay.reconcile";
