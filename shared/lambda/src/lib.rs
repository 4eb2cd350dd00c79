//! # relay-lambda — runtime glue shared by the functions
//!
//! - [`telemetry::init`]: flat JSON log lines with one schema for every line (`timestamp`,
//!   `level`, `message`, `function`, `request_id`, `mall_id`, `event_no`, `trace_id`, `dedup_id`,
//!   `job`, `outcome`, `latency_ms`), filled from context spans, that CloudWatch Logs Insights can
//!   query and Lambda's log-level controls understand.
//! - [`metrics`]: CloudWatch Embedded Metric Format lines (dimension `function` only).
//! - [`http`]: JSON responses, including the error envelope `{"error":{"code","message"}}`
//!   whose messages never carry internals.
//!
//! - [`fifo::drive`]: the FIFO batch driver (groups concurrently, records of a group in order,
//!   the rest of a group returned after a failure or deferral, a deadline check per record);
//!   [`fifo::drive_overlapping`] lets records of a group that commute run side by side.
//!
//! Nothing here knows a particular function.

pub mod clock;
pub mod config;
pub mod fifo;
pub mod http;
pub mod http_event;
pub mod metrics;
pub mod telemetry;
