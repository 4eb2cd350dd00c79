//! # relay-lambda — runtime glue shared by the functions
//!
//! - [`telemetry::init`]: flat JSON log lines (`timestamp`, `level`, `message` and the event's
//!   fields at the top level) that CloudWatch Logs Insights can query and Lambda's log-level
//!   controls understand.
//! - [`http`]: JSON responses, including the error envelope `{"error":{"code","message"}}`
//!   whose messages never carry internals.
//!
//! - [`fifo::drive`]: the FIFO batch driver (groups concurrently, records of a group in order,
//!   the rest of a group returned after a failure or deferral, a deadline check per record).
//!
//! Nothing here knows a particular function.

pub mod config;
pub mod fifo;
pub mod http;
pub mod telemetry;
