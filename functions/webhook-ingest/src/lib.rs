//! # webhook-ingest — Cafe24 webhooks in, inbox FIFO messages out
//!
//! A `lambda_http` function behind a Lambda Function URL or an API Gateway HTTP API (payload
//! v2; both event shapes are accepted). It does as little as possible, fast, and never loses
//! what it accepted:
//!
//! | request | answer | queued |
//! |---|---|---|
//! | `POST /webhooks/cafe24`, wrong or missing `X-API-Key` | 401, empty body | nothing |
//! | body larger than `MAX_BODY_BYTES` | 413 + JSON error | nothing |
//! | body not JSON / truncated | 400 + JSON error | nothing |
//! | JSON with usable `event_no` and `mall_id` | 200 after SQS accepted it | inbox, group = mall |
//! | authentic JSON without them | 200 after SQS accepted it | parking queue, group `_parked` |
//! | SQS failed or unreachable | 503 (Cafe24 retries) | nothing known |
//! | other path / method | 404 / 405 | nothing |
//!
//! The dedup id comes from `X-Trace-ID` when usable, else from the SHA-256 of the body (see
//! `ARCHITECTURE.md` for the trade-off). One JSON log line per request, with ids and outcome,
//! never the payload or the key.
//!
//! ## Environment
//! | variable | required | default | meaning |
//! |---|---|---|---|
//! | `WEBHOOK_API_KEY` | yes | — | Cafe24 "WebHook auth key" (current) |
//! | `WEBHOOK_API_KEY_PREVIOUS` | no | none | previous key, accepted during rotation |
//! | `INBOX_QUEUE_URL` | yes | — | inbox FIFO queue |
//! | `PARKING_QUEUE_URL` | yes | — | where unroutable webhooks go (the inbox DLQ in `infra/`) |
//! | `MAX_BODY_BYTES` | no | 261120 | body cap; at most the SQS limit minus envelope overhead |
//! | `AWS_ENDPOINT_URL` | no | AWS | e.g. moto locally |

pub mod config;
pub mod handler;

pub use config::{ConfigError, IngestConfig};
pub use handler::Ingest;
