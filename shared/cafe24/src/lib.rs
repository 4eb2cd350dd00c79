//! # relay-cafe24 — the only way cafe24-relay talks to Cafe24
//!
//! - [`Cafe24`]: the Admin API client. Every call is admitted by the rate gate (the per-mall
//!   limiter) first and feeds the response's limit headers back to it; a 401 triggers one token
//!   refresh and one retry; responses map to a typed [`Cafe24Error`] taxonomy. No body, however
//!   malformed, panics.
//! - [`tokens`]: the OAuth token lifecycle — refresh ahead of expiry under a per-mall lease
//!   (conditional write), the new pair persisted before use, waiters re-read instead of calling
//!   Cafe24, `invalid_grant` → `needs_reauth`; code exchange for the install flow.
//!
//! ## Environment ([`Cafe24Config::from_lookup`])
//! | variable | required | default |
//! |---|---|---|
//! | `CAFE24_API_BASE_URL` | no | `https://{mall_id}.cafe24api.com` |
//! | `CAFE24_API_VERSION` | no | unset: no header, the app version set in the developer center (a pinned version that Cafe24 retires is a [`error::ConfigFault`]) |
//! | `CAFE24_CLIENT_ID` / `CAFE24_CLIENT_SECRET` | yes | — |
//! | `CAFE24_TIMEOUT_MS` | no | 10000 |
//! | `CAFE24_REFRESH_MARGIN_S` | no | 600 |
//! | `CAFE24_TOKEN_CACHE_S` | no | 60 (0..=600; 0 = no cache) |
//! | `RATE_LIMIT_KEY` | no | `mall` (`app:<client_id>`, `global:<name>`) |
//!
//! Token values and the client secret are `Secret`s: never in logs or `Debug`.

pub mod caps;
pub mod client;
pub mod command;
pub mod config;
pub mod deadline;
pub mod error;
pub mod fault;
pub mod idle;
pub mod model;
pub mod tokens;
pub mod turns;

pub use client::{Cafe24, ClientStats, Clock};
pub use config::Cafe24Config;
pub use error::{Cafe24Error, ConfigFault};

/// Percent-encodes a path segment or query value (RFC 3986 unreserved pass through).
pub fn encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
