//! # webhook-ingest — Cafe24 webhooks in, inbox FIFO messages out
//!
//! A `lambda_http` function behind a Lambda Function URL or an API Gateway HTTP API (payload
//! v2; both event shapes are accepted). It does as little as possible, fast, and never loses
//! what it accepted:
//!
//! | request | answer | queued |
//! |---|---|---|
//! | `POST /webhooks/cafe24`, wrong or missing `X-API-Key` | 403, empty body (as Cafe24 asks) | nothing |
//! | body larger than `MAX_BODY_BYTES` | 413 + JSON error | nothing |
//! | body not JSON / truncated | 400 + JSON error | nothing |
//! | JSON with usable `event_no` and `mall_id` | 200 after SQS accepted it | inbox, group = mall |
//! | authentic JSON without them | 200 after SQS accepted it | parking queue, group `_parked` |
//! | SQS failed or unreachable | 503 (Cafe24 retries) | nothing known |
//! | `GET /install?<Cafe24's signed App URL launch>` | 302 to Cafe24's authorize URL (signed, expiring, single-use `state`); 400 page without a valid, fresh Cafe24 `hmac` | — |
//! | `GET /oauth/callback?code&state` | 200 page after the code exchange and token storage; 400 page for a bad, expired or replayed state or an expired code | — |
//! | other path / method | 404 / 405 | nothing |
//!
//! The dedup id comes from `X-Trace-ID` when usable, else from the SHA-256 of the body (see
//! `docs/decisions/webhook-ingest.md` for the trade-off). One JSON log line per request, with ids and outcome,
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
//! | `CAFE24_CLIENT_ID` | no | — | set it to enable the install flow; then the rest of this table is required |
//! | `CAFE24_CLIENT_SECRET`, `CAFE24_API_VERSION`, `CAFE24_API_BASE_URL` | with install | see `relay-cafe24` | |
//! | `OAUTH_STATE_SECRET` | with install | — | HMAC key for `state`, ≥ 32 characters |
//! | `OAUTH_REDIRECT_URI` | no | `https://<request host>/oauth/callback` | public URL of `/oauth/callback` registered with Cafe24; set it behind a custom domain |
//! | `OAUTH_SCOPES` | no | read scopes for orders, products, customers, webhook logs, store | comma-separated `mall.read_*`/`mall.write_*`; the template adds `OAuthScopes` |
//! | `TOKEN_TABLE` | with install | — | DynamoDB token table (no limiter table: no Admin API call here) |
//! | `BACKFILL_ON_INSTALL_DAYS`, `WORK_QUEUE_URL` | no, with a backfill | 30, — | order history a new install backfills, and where the job goes |

pub mod config;
pub use relay_lambda::http_event as event;
pub mod handler;
pub mod install;

pub use config::{ConfigError, IngestConfig, Routes};
pub use handler::Ingest;
