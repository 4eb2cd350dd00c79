//! # worker — the rate-limited Cafe24 call happens here, inside the FIFO message group
//!
//! Consumes the work FIFO queue (`MessageGroupId` = rate-limit key). The Lambda makes the Cafe24
//! call itself, so a mall's group stays locked until its call is done and FIFO serialization
//! really throttles; nothing is handed to a state machine or a detached task.
//!
//! - FIFO batch driver (`relay_lambda::fifo`): groups concurrently, records of a group in
//!   order, the rest of a group returned after a failure or deferral, a deadline check per record.
//! - Waits: limiter waits up to `max_inline_wait_ms` are slept; longer ones **defer** the message
//!   and the rest of its group with `ChangeMessageVisibility` until the limiter's next credit
//!   (whole seconds, at least `DEFER_MIN_S`) and report them as batch item failures.
//!   Deferrals are not attempts.
//! - Real attempts are counted in DynamoDB; after `MAX_ATTEMPTS` the job goes to the DLQ with its
//!   reason and error class, and is acknowledged.
//! - Idempotency (Powertools design): a completed job never runs again; one in progress elsewhere
//!   is deferred; a crash leaves an in-progress claim that expires.
//! - Coalescing: a snapshot fetched after the job's event was received makes the call unnecessary
//!   (known without a read when this process stored or read such a version: [`memo`]).
//! - Outcomes: 200 → snapshot upsert (never older over newer); 401 → one refresh and retry (in the
//!   client); 403 app deleted → mall uninstalled, job dropped; 404 → tombstone; 429 → defer;
//!   5xx/timeout → backoff by visibility; other 4xx → DLQ with Cafe24's code and message.
//!
//! ## Environment
//! `WORK_QUEUE_URL`, `WORKER_DLQ_URL`, `STATE_TABLE`, `TOKEN_TABLE`, `RATE_LIMIT_TABLE` (required);
//! `MAX_ATTEMPTS` (5), `DEFER_MIN_S` (1), `MIN_TIME_LEFT_MS` (5000), `KEEPALIVE_DAYS` (3),
//! `LIMITER_RATE_PER_SEC` (2), `LIMITER_BURST` (40), `LIMITER_MIN_SPACING_MS` (140),
//! `WORKER_MAX_SLEEP_MS` (200, 0..=5000; a bad value fails the cold start), and the Cafe24 variables of `relay-cafe24`.

pub mod config;
pub mod handler;
pub mod memo;

pub use config::WorkerConfig;
pub use handler::{AwsWorker, JobOutcome, OnAws, Ports, Receipt, With, Worker};
