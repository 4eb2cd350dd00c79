//! # cafe24-sim — a faithful local stand-in for Cafe24
//!
//! Cafe24 cannot be reached from the development machines, and every claim this project makes
//! ("zero 429s", "one token issuance") is about what Cafe24 *would have seen*. This simulator
//! plays Cafe24 over real HTTP and counts what it saw.
//!
//! ## What it simulates
//! - **Admin API** under `http://HOST:PORT/{mall_id}/api/v2/admin/...` — so the project's
//!   `CAFE24_API_BASE_URL` template is `http://HOST:PORT/{mall_id}` — orders (one, list, count),
//!   products (one, list), customers, webhook logs, with deterministic data per mall.
//! - **Auth**: bearer tokens it issued; expired or unknown → 401; missing scope → 403; app deleted
//!   from the mall → 403; `X-Cafe24-Api-Version` recorded per call; Cafe24's error envelope.
//! - **Rate limits** per mall (or per mall and app): leaky bucket (40, 2/s) with
//!   `X-Api-Call-Limit: used/40` on every response and 429 when full; 10-minute usage quota with
//!   `X-Cafe24-Call-Usage`/`X-Cafe24-Time-Usage`, `*-Remain` and a block that lengthens when
//!   called; detection of ≥ 10 calls/s.
//! - **OAuth**: authorize (auto-approved redirect with `code` and `state`), token endpoint with
//!   Basic auth, 60 s codes, 2 h access / 14 d refresh tokens, KST timestamps without offset,
//!   rotation with `invalid_grant` on reuse, 15 issuances per 2 h per mall.
//! - **Webhooks**: a sender with `X-API-Key`/`X-Trace-ID`, retries, duplicates and drops, all
//!   visible in `/webhooks/logs`.
//! - **Faults** on demand, **stats** per mall and endpoint, and a **clock** tests can advance.
//!
//! Control endpoints live under `/sim/` (see [`control`]). Facts marked *unknown* in the
//! project's platform notes are configurable and documented where chosen.

pub mod admin;
pub mod clock;
pub mod control;
pub mod data;
pub mod kst;
pub mod limits;
pub mod oauth;
pub mod state;
pub mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;

pub use clock::Clock;
pub use state::{Sim, SimConfig};

/// Serves `sim` on `addr` (port 0 = any free port). Returns the bound address and the task.
pub async fn spawn(sim: Arc<Sim>, addr: SocketAddr) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = router(sim);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "cafe24-sim server stopped");
        }
    });
    Ok((local, task))
}

/// The full HTTP surface.
pub fn router(sim: Arc<Sim>) -> axum::Router {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/{mall}/api/v2/oauth/authorize", get(oauth::authorize))
        .route("/{mall}/api/v2/oauth/token", post(oauth::token))
        .route("/{mall}/api/v2/admin/{*rest}", get(admin::dispatch).post(admin::write).put(admin::write))
        .merge(control::routes())
        .with_state(sim)
}
