//! The call API: the app's synchronous door to Cafe24 through the relay (docs/commands). The
//! same execution core as a command (`relay_cafe24::command::run`) — the mall's tokens, its
//! limiter, one request per `Idempotency-Key` — answered over HTTP instead of on the bus.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/call` | a command's fields as JSON (`mall_id`, `shop_no`, `method`, `path`, `query`, `body`), plus `wait_ms` (the budget for the limiter, ≤ `CALL_MAX_WAIT_MS`) and, for a GET, `max_age_s` (a stored snapshot that young answers without a call). Header `Idempotency-Key` is required for all but GET; a request repeated with it returns the recorded answer |
//! | `GET /v1/snapshots/{mall}/{kind}/{id}` | the stored snapshot (`?shop_no=` for another shop), decompressed |
//!
//! Answers: Cafe24's status and body; `503` with `Retry-After` when the budget is spent or the
//! relay must retry (never Cafe24's 429); `502` `uncertain` when a POST may have taken effect
//! without an answer; `400`/`403`/`404` with `{"error": {"code", "message"}}` for a refused
//! request. The header `X-Relay-Outcome` says `succeeded`, `failed`, `uncertain` or `snapshot`;
//! `X-Relay-Replayed: true` marks a recorded answer.
//!
//! ## Environment
//! | variable | required | default | meaning |
//! |---|---|---|---|
//! | `STATE_TABLE`, `TOKEN_TABLE`, `RATE_LIMIT_TABLE` | yes | — | the worker's tables (records and snapshots, tokens, limiter) |
//! | `CALL_MAX_WAIT_MS` | no | 10000 | longest budget a caller may ask for (0..=25000) |
//! | `CALL_DEFAULT_WAIT_MS` | no | 3000 | the budget when the caller names none (at most `CALL_MAX_WAIT_MS`) |
//! | `LIMITER_*`, `RATE_LIMIT_KEY`, `CAFE24_*` | | | as the worker's (the same limiter and client) |

pub mod config;
pub mod handler;

pub use config::CallApiConfig;
pub use handler::{AwsCallApi, CallApi};
