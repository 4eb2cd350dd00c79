//! The OAuth token lifecycle: refresh ahead of expiry under a per-mall lease, new pair persisted
//! before use, waiters re-read (never call Cafe24 themselves), `invalid_grant` → `needs_reauth`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::Engine as _;
use relay_domain::ports::{RateGate, StoreError};
use relay_domain::tokens::{LeaseOutcome, Secret, TokenPair, TokenRecord, TokenStatus, TokenStore};
use relay_domain::MallId;
use serde_json::Value;

use crate::client::Cafe24;
use crate::deadline;
use crate::error::{Cafe24Error, ConfigFault};

/// A store attempt that outlasted its share of `deadline::PERSIST_BUDGET`.
#[derive(Debug, thiserror::Error)]
#[error("storing the token pair took too long")]
struct PersistTimeout;

/// What the caller needs from the token record.
#[derive(Clone, Debug)]
pub enum Need {
    /// An access token with more than the refresh margin left.
    Fresh,
    /// A different access token than this one, which Cafe24 just refused (401).
    Replace(Secret),
    /// A refresh token that lives at least until this instant (scheduled keep-alive).
    RenewRefreshBefore(u64),
}

impl Need {
    fn satisfied(&self, rec: &TokenRecord, now: u64, margin: u64) -> bool {
        match self {
            Need::Fresh => rec.access_fresh(now, margin),
            Need::Replace(stale) => rec.pair.access_token != *stale && rec.access_usable(now),
            Need::RenewRefreshBefore(t) => rec.pair.refresh_expires_ms >= *t,
        }
    }
}

/// This process's copy of each mall's token record, with the instant it was read. It answers
/// only [`Need::Fresh`], only for an active record younger than `Cafe24Config::token_cache_ms`
/// whose access token is outside the refresh margin; everything else reads the store. A copy
/// is dropped when this process writes the record, and when Cafe24 refuses the token (401) or
/// says the app was deleted (403), so a revocation, re-install or uninstall costs at most one
/// refused call per process before the store is read again — and when the limiter reports an
/// uninstall applied after the copy was read (`RateGate::closed_since`), before any call.
#[derive(Debug, Default)]
pub(crate) struct TokenCache(std::sync::Mutex<std::collections::HashMap<MallId, (TokenRecord, u64)>>);

impl TokenCache {
    /// More malls than this in one process: start over (a bounded map, no eviction order).
    const MAX_MALLS: usize = 10_000;

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<MallId, (TokenRecord, u64)>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn fresh(&self, mall: &MallId, now: u64, ttl_ms: u64, margin_ms: u64) -> Option<Secret> {
        let map = self.lock();
        let (rec, read_at) = map.get(mall)?;
        let young = now.saturating_sub(*read_at) < ttl_ms;
        (young && rec.status == TokenStatus::Active && rec.access_fresh(now, margin_ms))
            .then(|| rec.pair.access_token.clone())
    }

    fn remember(&self, rec: &TokenRecord, now: u64, ttl_ms: u64) {
        if ttl_ms == 0 {
            return;
        }
        let mut map = self.lock();
        if rec.status != TokenStatus::Active {
            map.remove(&rec.mall_id);
            return;
        }
        if map.len() >= Self::MAX_MALLS && !map.contains_key(&rec.mall_id) {
            map.clear();
        }
        map.insert(rec.mall_id.clone(), (rec.clone(), now));
    }

    /// A copy of `mall`'s record is held that was read at or before `at_ms`.
    pub(crate) fn read_by(&self, mall: &MallId, at_ms: u64) -> bool {
        self.lock().get(mall).is_some_and(|(_, read_at)| *read_at <= at_ms)
    }

    pub(crate) fn forget(&self, mall: &MallId) {
        self.lock().remove(mall);
    }
}

/// Why the token endpoint refused.
#[derive(Debug)]
pub(crate) enum TokenEndpointError {
    /// `invalid_grant`: the refresh token (or code) is dead.
    InvalidGrant(String),
    /// Transient: issuance cap (429), 5xx, timeout, transport, unexpected body.
    Transient(&'static str),
    /// `invalid_client` and other permanent configuration errors.
    Client(String),
}

impl TokenEndpointError {
    /// The app's own credentials are refused (a rotated secret), not the mall's grant.
    fn is_client_rejected(&self) -> bool {
        matches!(self, Self::Client(code) if code == "invalid_client" || code == "unauthorized_client")
    }
}

pub use relay_domain::tokens::pair_from_response;

impl<G: RateGate, S: TokenStore> Cafe24<G, S> {
    /// POSTs to the token endpoint with Basic client auth.
    pub(crate) async fn token_endpoint(
        &self,
        mall: &MallId,
        form: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<TokenPair, TokenEndpointError> {
        let url = format!("{}/api/v2/oauth/token", self.cfg.base_url(mall));
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.cfg.client_id,
            self.secret.current().expose()
        ));
        self.stats.token_requests.fetch_add(1, Ordering::Relaxed);
        let resp = self
            .http
            .post(url)
            .header("Authorization", format!("Basic {basic}"))
            .timeout(timeout)
            .form(form)
            .send()
            .await
            .map_err(|e| TokenEndpointError::Transient(if e.is_timeout() { "timeout" } else { "transport" }))?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let error = body.get("error").and_then(Value::as_str).unwrap_or("").to_owned();
        match status {
            200..=299 => pair_from_response(&body, (self.clock)())
                .ok_or(TokenEndpointError::Transient("token response without tokens")),
            _ if error == "invalid_grant" => Err(TokenEndpointError::InvalidGrant(
                body.get("error_description").and_then(Value::as_str).unwrap_or("").to_owned(),
            )),
            429 | 500..=599 => {
                Err(TokenEndpointError::Transient(if status == 429 { "issuance_capped" } else { "server_error" }))
            }
            _ => Err(TokenEndpointError::Client(error)),
        }
    }

    /// The token request, once more with the secret read again when Cafe24 refuses the client
    /// and the secret has changed since (a rotation). Still refused: the fault holds in this
    /// process for `Cafe24Config::fault_probe_ms`.
    async fn token_request(
        &self,
        mall: &MallId,
        form: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<TokenPair, TokenEndpointError> {
        let first = self.token_endpoint(mall, form, timeout).await;
        let answer = match first {
            Err(e) if e.is_client_rejected() && self.secret.reload((self.clock)()).await => {
                tracing::warn!(mall_id = %mall, outcome = "secret_reloaded", "oauth: client refused; the secret changed, retrying once");
                self.token_endpoint(mall, form, timeout).await
            }
            other => other,
        };
        match &answer {
            Err(e) if e.is_client_rejected() => {
                self.faults.raise(ConfigFault::ClientRejected, (self.clock)(), self.cfg.fault_probe_ms);
                self.stats.config_faults.fetch_add(1, Ordering::Relaxed);
                tracing::error!(mall_id = %mall, outcome = "config_fault", fault = ConfigFault::ClientRejected.as_str(), "oauth: the token endpoint refuses the client");
            }
            Ok(_) => self.faults.clear(ConfigFault::ClientRejected),
            Err(_) => {}
        }
        answer
    }

    /// Exchanges an authorization code (install flow) and stores the pair.
    pub async fn install(&self, mall: &MallId, code: &str, redirect_uri: &str) -> Result<TokenPair, Cafe24Error> {
        let form = [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirect_uri)];
        let timeout = deadline::token_request_timeout(self.cfg.request_timeout).ok_or(Cafe24Error::OutOfTime)?;
        match self.token_request(mall, &form, timeout).await {
            Ok(pair) => {
                let stored = tokio::time::timeout(
                    deadline::PERSIST_BUDGET,
                    self.tokens.put_installed(mall, &pair, (self.clock)()),
                )
                .await
                .map_err(|_| Cafe24Error::Timeout)?;
                stored?;
                self.token_cache.forget(mall);
                tracing::info!(mall_id = %mall, outcome = "installed", "oauth");
                Ok(pair)
            }
            Err(TokenEndpointError::InvalidGrant(why)) => {
                Err(Cafe24Error::InvalidRequest { status: 401, code: "invalid_grant".into(), message: why })
            }
            Err(e) if e.is_client_rejected() => Err(Cafe24Error::Config(ConfigFault::ClientRejected)),
            Err(TokenEndpointError::Client(e)) => {
                Err(Cafe24Error::InvalidRequest { status: 400, code: e, message: String::new() })
            }
            Err(TokenEndpointError::Transient(_)) => Err(Cafe24Error::RefreshFailed),
        }
    }

    /// A token record that satisfies `need`, refreshing under the mall's lease when necessary.
    /// Only the lease holder calls Cafe24; everyone else re-reads the record (with short sleeps)
    /// until it changes, or gives up with `RefreshInProgress` after `refresh_wait_ms`.
    pub async fn token(&self, mall: &MallId, need: Need) -> Result<Secret, Cafe24Error> {
        let started = Instant::now();
        if matches!(need, Need::Fresh) {
            let now = (self.clock)();
            if let Some(t) = self.token_cache.fresh(mall, now, self.cfg.token_cache_ms, self.cfg.refresh_margin_ms) {
                self.stats.token_cache_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(t);
            }
        }
        loop {
            let Some(rec) = self.tokens.get(mall).await? else {
                self.token_cache.forget(mall);
                return Err(Cafe24Error::NotInstalled);
            };
            self.token_cache.remember(&rec, (self.clock)(), self.cfg.token_cache_ms);
            match rec.status {
                TokenStatus::Active => {}
                TokenStatus::NeedsReauth => return Err(Cafe24Error::NeedsReauth),
                TokenStatus::Uninstalled => return Err(Cafe24Error::Uninstalled),
            }
            let now = (self.clock)();
            if need.satisfied(&rec, now, self.cfg.refresh_margin_ms) {
                return Ok(rec.pair.access_token);
            }
            if rec.pair.refresh_expires_ms <= now {
                self.token_cache.forget(mall);
                self.tokens.set_status(mall, TokenStatus::NeedsReauth, now).await?;
                tracing::warn!(mall_id = %mall, outcome = "needs_reauth", reason = "refresh_token_expired", "oauth");
                return Err(Cafe24Error::NeedsReauth);
            }
            // Cafe24 refuses this app's credentials (seen by this process within the minute):
            // no mall asks again until the fault's probe, and a token that still works is used.
            if self.faults.holds(ConfigFault::ClientRejected, now) {
                self.stats.config_faults.fetch_add(1, Ordering::Relaxed);
                return if rec.access_usable(now) {
                    Ok(rec.pair.access_token)
                } else {
                    Err(Cafe24Error::Config(ConfigFault::ClientRejected))
                };
            }
            if rec.leased(now) {
                if matches!(need, Need::Fresh) && rec.access_usable(now) {
                    return Ok(rec.pair.access_token); // still works; the holder is renewing it
                }
                let waited = started.elapsed().as_millis() as u64;
                if waited >= self.cfg.refresh_wait_ms {
                    return Err(Cafe24Error::RefreshInProgress {
                        wait_ms: rec.lease_until_ms.saturating_sub(now).max(1),
                    });
                }
                self.stats.refresh_waits.fetch_add(1, Ordering::Relaxed);
                let pause = rec.lease_until_ms.saturating_sub(now).clamp(20, 200) + rand::random::<u64>() % 30;
                tokio::time::sleep(Duration::from_millis(pause)).await;
                continue;
            }
            // Only a refresh whose answer can also be stored before the deadline may start: a
            // pair issued and not stored is a mall locked out (its old refresh token is dead).
            let Some(timeout) = deadline::token_request_timeout(self.cfg.request_timeout) else {
                tracing::warn!(mall_id = %mall, outcome = "refresh_deferred", "oauth: too little time left to refresh");
                return Err(Cafe24Error::OutOfTime);
            };
            let until = now + self.cfg.lease_ms;
            // One owner per lease attempt, not per process: two tasks of one process must never
            // both read a retried lease write as their own.
            let owner = format!("{}.{:08x}", self.owner, rand::random::<u32>());
            let leased = match self.tokens.try_lease(mall, rec.version, &owner, now, until).await? {
                LeaseOutcome::Acquired(r) => r,
                LeaseOutcome::Lost(_) => {
                    tokio::time::sleep(Duration::from_millis(5 + rand::random::<u64>() % 20)).await;
                    continue;
                }
            };
            return self.refresh_holding_lease(mall, &owner, &leased, &rec, timeout).await;
        }
    }

    async fn refresh_holding_lease(
        &self,
        mall: &MallId,
        owner: &str,
        leased: &TokenRecord,
        before: &TokenRecord,
        timeout: Duration,
    ) -> Result<Secret, Cafe24Error> {
        let form = [("grant_type", "refresh_token"), ("refresh_token", leased.pair.refresh_token.expose())];
        self.stats.refreshes.fetch_add(1, Ordering::Relaxed);
        // Whatever the outcome, the next caller in this process reads what the store says.
        self.token_cache.forget(mall);
        match self.token_request(mall, &form, timeout).await {
            Ok(pair) => {
                // Persist before anything else: the old refresh token is already dead at Cafe24.
                // Attempts are bounded so that they fit in `deadline::PERSIST_BUDGET`.
                let persist_until = Instant::now() + deadline::PERSIST_BUDGET;
                for attempt in 0..4u64 {
                    let left = persist_until.saturating_duration_since(Instant::now());
                    let write = self.tokens.complete_refresh(mall, owner, leased.version, &pair, (self.clock)());
                    let result = match tokio::time::timeout(left.min(deadline::STORE_ATTEMPT), write).await {
                        Ok(r) => r,
                        Err(_) => Err(StoreError(Box::new(PersistTimeout))),
                    };
                    let last = attempt == 3
                        || persist_until.saturating_duration_since(Instant::now()) < Duration::from_millis(300);
                    match result {
                        Ok(true) => {
                            tracing::info!(mall_id = %mall, outcome = "refreshed", "oauth");
                            return Ok(pair.access_token);
                        }
                        Ok(false) => {
                            tracing::error!(mall_id = %mall, outcome = "lease_lost", "oauth: refreshed pair not stored, lease lost");
                            return Err(Cafe24Error::RefreshFailed);
                        }
                        Err(e) if !last => {
                            tracing::warn!(mall_id = %mall, attempt, error = %e, "oauth: storing refreshed pair failed; retrying");
                            tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
                        }
                        Err(e) => {
                            tracing::error!(mall_id = %mall, outcome = "persist_failed", "oauth: refreshed pair could not be stored");
                            return Err(e.into());
                        }
                    }
                }
                Err(Cafe24Error::RefreshFailed)
            }
            Err(TokenEndpointError::InvalidGrant(_)) => {
                self.tokens.set_status(mall, TokenStatus::NeedsReauth, (self.clock)()).await?;
                tracing::warn!(mall_id = %mall, outcome = "needs_reauth", reason = "invalid_grant", "oauth");
                Err(Cafe24Error::NeedsReauth)
            }
            // The refresh token was not spent (the client was refused before the grant was
            // read); the lease runs out by itself. A token that still works is used meanwhile.
            Err(e) if e.is_client_rejected() => {
                if before.access_usable((self.clock)()) {
                    Ok(before.pair.access_token.clone())
                } else {
                    Err(Cafe24Error::Config(ConfigFault::ClientRejected))
                }
            }
            Err(TokenEndpointError::Client(code)) => {
                tracing::error!(mall_id = %mall, outcome = "refresh_failed", code = %code, "oauth: token endpoint refused the request");
                Err(Cafe24Error::RefreshFailed)
            }
            Err(TokenEndpointError::Transient(why)) => {
                // The lease stays until it expires: at most one attempt per lease period.
                tracing::warn!(mall_id = %mall, outcome = "refresh_failed", reason = why, "oauth");
                let now = (self.clock)();
                if before.access_usable(now) {
                    Ok(before.pair.access_token.clone())
                } else {
                    Err(Cafe24Error::RefreshFailed)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_response_is_read_as_kst() {
        let body: Value =
            serde_json::from_str(include_str!("../../../tests/fixtures/cafe24-api/token-response.json")).unwrap();
        let p = pair_from_response(&body, 0).unwrap();
        assert_eq!(p.access_expires_ms, 1_614_581_400_000, "2021-03-01T15:50:00.000 KST");
        assert_eq!(p.scopes.len(), 3);
        assert!(pair_from_response(&json!({"access_token": "", "refresh_token": "r"}), 0).is_none());
        let fallback =
            pair_from_response(&json!({"access_token": "a", "refresh_token": "r", "expires_at": "soon"}), 1_000)
                .unwrap();
        assert!(
            fallback.access_expires_ms > 1_000
                && fallback.access_expires_ms < 1_000 + relay_domain::tokens::ACCESS_TTL_MS
        );
    }
}
