//! The Admin API client: every call admitted by the rate gate first, every response's limit
//! headers fed back to it, one transparent token refresh on 401.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use relay_domain::command::Method;
use relay_domain::ports::RateGate;
use relay_domain::ratelimit::{Acquire, Class, Feedback};
use relay_domain::tokens::TokenStore;
use relay_domain::{MallId, ShopNo};
use serde_json::Value;

use crate::config::Cafe24Config;
use crate::error::Cafe24Error;
use crate::model::{Customer, Order, Product, WebhookLogEntry};
use crate::tokens::Need;

/// A token copy read up to this long after an uninstall's fence was written is read again (the
/// fence carries the dispatcher's clock, the copy this process's).
const FENCE_SKEW_MS: u64 = 1_000;

pub use relay_domain::clock::Clock;

/// Counters for tests, benchmarks and metrics.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// Admin API requests sent.
    pub calls: AtomicU64,
    /// 429 answers received.
    pub status_429: AtomicU64,
    /// Milliseconds slept inside calls waiting for the limiter (billed waiting).
    pub inline_sleep_ms: AtomicU64,
    /// Short limiter waits slept inside calls.
    pub inline_sleeps: AtomicU64,
    /// Long limiter waits handed back as `Throttled` (the caller defers).
    pub throttled: AtomicU64,
    /// Token refreshes attempted (this instance held the lease).
    pub refreshes: AtomicU64,
    /// Token endpoint requests.
    pub token_requests: AtomicU64,
    /// Re-reads while another instance held the refresh lease.
    pub refresh_waits: AtomicU64,
    /// Fresh access tokens answered from this process's copy of the token record (no read).
    pub token_cache_hits: AtomicU64,
    /// Calls and token requests refused for a configuration fault (by Cafe24, or by this
    /// process while the fault holds).
    pub config_faults: AtomicU64,
}

/// The Cafe24 client. Build once per cold start; cheap to share by reference.
pub struct Cafe24<G, S> {
    pub(crate) cfg: Cafe24Config,
    pub(crate) http: reqwest::Client,
    pub(crate) gate: G,
    pub(crate) tokens: S,
    pub(crate) clock: Clock,
    pub(crate) owner: String,
    /// Per mall, the token record last read (or written) by this process and when.
    pub(crate) token_cache: crate::tokens::TokenCache,
    /// Configuration faults seen by this process, and how long they hold.
    pub(crate) faults: crate::fault::FaultLatch,
    /// The client secret, re-readable after a rotation.
    pub(crate) secret: crate::fault::SecretSource,
    /// Endpoints whose own call limit is below the mall's bucket (`crate::caps`).
    pub(crate) caps: crate::caps::EndpointCaps,
    pub stats: ClientStats,
}

/// Does a 400 say the requested API version is not available? Implementers report "… version
/// you requested is not available. The default value for the app version is …"; the exact
/// wording is not documented, so any message naming the version as unavailable, expired or
/// unsupported counts.
fn reads_as_version_unavailable(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("version")
        && ["not available", "unavailable", "expired", "not supported", "no longer"].iter().any(|k| m.contains(k))
}

/// Does a 403 body say the app was deleted from the mall? Cafe24's exact wording is not
/// documented; the 90077 webhook remains the authoritative signal.
fn reads_as_app_deleted(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ["deleted", "uninstall", "not installed", "app has been removed"].iter().any(|k| m.contains(k))
}

fn error_fields(body: &Value) -> (String, String) {
    let e = body.get("error");
    let code = match e.and_then(|e| e.get("code")) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let message = e.and_then(|e| e.get("message")).and_then(Value::as_str).unwrap_or("").chars().take(300).collect();
    (code, message)
}

impl<G: RateGate, S: TokenStore> Cafe24<G, S> {
    /// Wires the client. `clock` is epoch ms (use the system clock in production).
    pub fn new(cfg: Cafe24Config, gate: G, tokens: S, clock: Clock) -> Result<Self, Cafe24Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.request_timeout)
            .user_agent("cafe24-relay")
            .build()
            .map_err(Cafe24Error::Transport)?;
        let owner = format!("{:016x}", rand::random::<u64>());
        let secret = crate::fault::SecretSource::fixed(cfg.client_secret.clone());
        Ok(Self {
            secret,
            faults: crate::fault::FaultLatch::default(),
            cfg,
            http,
            gate,
            tokens,
            clock,
            owner,
            token_cache: crate::tokens::TokenCache::default(),
            caps: crate::caps::EndpointCaps::default(),
            stats: ClientStats::default(),
        })
    }

    /// The call limit this process knows for an endpoint family (`crate::caps`), if it has one.
    pub fn endpoint_cap(&self, family: &str) -> Option<u32> {
        self.caps.cap(family)
    }

    /// Where the client secret can be read again after a rotation (Secrets Manager on AWS).
    pub fn with_secret_reader(mut self, reader: crate::fault::SecretReader) -> Self {
        self.set_secret_reader(reader);
        self
    }

    /// [`Self::with_secret_reader`] on a client already in place.
    pub fn set_secret_reader(&mut self, reader: crate::fault::SecretReader) {
        self.secret = crate::fault::SecretSource::fixed(self.cfg.client_secret.clone()).with_reader(reader);
    }

    /// The configuration fault that holds in this process now, if any.
    pub fn config_fault(&self) -> Option<crate::error::ConfigFault> {
        use crate::error::ConfigFault::*;
        let now = (self.clock)();
        [ApiVersionUnavailable, ClientRejected].into_iter().find(|f| self.faults.holds(*f, now))
    }

    /// The configuration.
    pub fn config(&self) -> &Cafe24Config {
        &self.cfg
    }

    /// The clock (epoch ms).
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The token store.
    pub fn token_store(&self) -> &S {
        &self.tokens
    }

    /// The rate gate.
    pub fn gate(&self) -> &G {
        &self.gate
    }

    /// How long a `class` call to `mall` would wait, by what this process last saw of the
    /// mall's limiter, when that is longer than a wait it would sleep (no I/O): the caller can
    /// defer before doing anything else for the call. `None`: no such wait is known.
    /// Asked in the group's order (see `turns`): it first waits until every earlier job of the
    /// group has had the gate's answer, so a job behind one just refused knows it.
    pub async fn known_deferral(&self, mall: &MallId, class: Class) -> Option<u64> {
        crate::turns::before_asking().await;
        let key = self.cfg.key_scope.key(mall);
        self.gate.known_wait(key.as_str(), class).filter(|&w| w > self.cfg.max_inline_wait_ms)
    }

    /// Waits for the rate gate: short waits are slept (and counted), longer ones are returned as
    /// `Throttled` so the caller can defer without being billed for waiting.
    async fn admit(&self, key: &str, class: Class, cap: Option<u32>) -> Result<(), Cafe24Error> {
        // In the group's order when jobs of a group overlap (see `turns`); passed on any answer.
        crate::turns::before_asking().await;
        let answer = self.admit_now(key, class, cap).await;
        crate::turns::asked();
        answer
    }

    async fn admit_now(&self, key: &str, class: Class, cap: Option<u32>) -> Result<(), Cafe24Error> {
        for _ in 0..20 {
            match self.gate.acquire_within(key, class, cap).await? {
                Acquire::Admitted => return Ok(()),
                Acquire::Wait(ms) if ms <= self.cfg.max_inline_wait_ms => {
                    self.stats.inline_sleep_ms.fetch_add(ms, Ordering::Relaxed);
                    self.stats.inline_sleeps.fetch_add(1, Ordering::Relaxed);
                    crate::idle::waiting(tokio::time::sleep(Duration::from_millis(ms))).await;
                }
                Acquire::Wait(ms) => {
                    self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                    return Err(Cafe24Error::Throttled { wait_ms: ms });
                }
            }
        }
        self.stats.throttled.fetch_add(1, Ordering::Relaxed);
        Err(Cafe24Error::Throttled { wait_ms: self.cfg.max_inline_wait_ms.max(1) })
    }

    /// GETs `path_and_query` under `/api/v2/admin/` for `mall`, returning the JSON body.
    pub async fn get_json(&self, mall: &MallId, path_and_query: &str, class: Class) -> Result<Value, Cafe24Error> {
        let sent = std::future::ready(Ok(()));
        self.send(mall, Method::Get, path_and_query, None, class, sent).await.map(|(_, body)| body)
    }

    /// Sends `method` `path_and_query` (under `/api/v2/admin/`) with `payload` for `mall` — a
    /// command's request — and returns Cafe24's 2xx status and JSON body; every other answer is
    /// an error as for [`Cafe24::get_json`]. `before_sending` is awaited once, after the
    /// limiter admitted the call and right before the request first leaves (a command notes
    /// there that a request may be out); when it fails, nothing is sent. A 401 is answered by
    /// one refresh and the same request again (Cafe24 applied nothing).
    pub async fn send(
        &self,
        mall: &MallId,
        method: Method,
        path_and_query: &str,
        payload: Option<&Value>,
        class: Class,
        before_sending: impl std::future::Future<Output = Result<(), relay_domain::ports::StoreError>>,
    ) -> Result<(u16, Value), Cafe24Error> {
        let mut before_sending = Some(before_sending);
        let key = self.cfg.key_scope.key(mall);
        let key = key.as_str();
        let url = format!("{}/api/v2/admin/{}", self.cfg.base_url(mall), path_and_query.trim_start_matches('/'));
        let family = crate::caps::family(path_and_query);
        let version_fault = crate::error::ConfigFault::ApiVersionUnavailable;
        if self.faults.holds(version_fault, (self.clock)()) {
            self.stats.config_faults.fetch_add(1, Ordering::Relaxed);
            return Err(Cafe24Error::Config(version_fault));
        }
        let mut token = self.token(mall, Need::Fresh).await?;
        let mut refreshed = false;
        loop {
            // Checked before the limiter, so a call that cannot finish spends no credit, and
            // again after it (an admission may wait inline).
            let timeout = || {
                crate::deadline::call_timeout(self.cfg.request_timeout, self.cfg.call_margin, self.cfg.min_call_wait)
            };
            if timeout().is_none() {
                return Err(Cafe24Error::OutOfTime);
            }
            self.admit(key, class, self.caps.cap(family)).await?;
            // An uninstall applied after this process read the token (learnt by the admission
            // itself, see `relay_aws::limiter`): read the record again before calling with it.
            // Clocks of two Lambda hosts may differ by a little: a copy read just after the
            // fence is read again too.
            if let Some(off) = self.gate.closed_since(key) {
                if self.token_cache.read_by(mall, off.saturating_add(FENCE_SKEW_MS)) {
                    self.token_cache.forget(mall);
                    token = self.token(mall, Need::Fresh).await?;
                }
            }
            let timeout = timeout().unwrap_or(self.cfg.min_call_wait);
            if let Some(note) = before_sending.take() {
                note.await?;
            }
            self.stats.calls.fetch_add(1, Ordering::Relaxed);
            let verb = match method {
                Method::Get => reqwest::Method::GET,
                Method::Post => reqwest::Method::POST,
                Method::Put => reqwest::Method::PUT,
                Method::Delete => reqwest::Method::DELETE,
            };
            let mut request = self
                .http
                .request(verb, &url)
                .timeout(timeout)
                .bearer_auth(token.expose())
                .header("Content-Type", "application/json");
            if let Some(v) = &self.cfg.api_version {
                request = request.header("X-Cafe24-Api-Version", v);
            }
            if let Some(b) = payload {
                request = request.body(b.to_string());
            }
            let sent = request.send().await;
            let resp = match sent {
                Ok(r) => r,
                Err(e) if e.is_timeout() => return Err(Cafe24Error::Timeout),
                Err(e) => return Err(Cafe24Error::Transport(e)),
            };
            let status = resp.status().as_u16();
            let fb = Feedback::from_headers(
                status,
                resp.headers().iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))),
            );
            if let Some((_, limit)) = fb.call_limit {
                self.caps.learn(family, limit);
            }
            if let Err(e) = self.gate.feedback(key, &fb).await {
                // The call itself happened; losing one feedback only delays the correction.
                tracing::warn!(mall_id = %mall, error = %e, "limiter feedback not stored");
            }
            let bytes = match resp.bytes().await {
                Ok(b) => b,
                Err(e) if e.is_timeout() => return Err(Cafe24Error::Timeout),
                Err(e) => return Err(Cafe24Error::Transport(e)),
            };
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return match status {
                200..=299 if body.is_object() => Ok((status, body)),
                200..=299 => Err(Cafe24Error::Decode("2xx body is not a JSON object".into())),
                401 if !refreshed => {
                    refreshed = true;
                    token = self.token(mall, Need::Replace(token)).await?;
                    continue;
                }
                401 => {
                    self.token_cache.forget(mall);
                    Err(Cafe24Error::Unauthorized)
                }
                403 => {
                    let (_, message) = error_fields(&body);
                    if reads_as_app_deleted(&message) {
                        self.token_cache.forget(mall);
                        Err(Cafe24Error::AppDeleted)
                    } else {
                        Err(Cafe24Error::Forbidden { message })
                    }
                }
                404 => Err(Cafe24Error::NotFound),
                429 => {
                    self.stats.status_429.fetch_add(1, Ordering::Relaxed);
                    Err(Cafe24Error::RateLimited { feedback: fb })
                }
                500..=599 => Err(Cafe24Error::Server { status }),
                _ => {
                    let (code, message) = error_fields(&body);
                    if status == 400 && reads_as_version_unavailable(&message) {
                        self.faults.raise(version_fault, (self.clock)(), self.cfg.fault_probe_ms);
                        self.stats.config_faults.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(
                            outcome = "config_fault",
                            fault = version_fault.as_str(),
                            "Cafe24 refuses the API version"
                        );
                        return Err(Cafe24Error::Config(version_fault));
                    }
                    Err(Cafe24Error::InvalidRequest { status, code, message })
                }
            };
        }
    }

    /// `GET /orders/{order_id}?embed=items` in `shop`'s view (every call names its shop:
    /// without `shop_no` Cafe24 answers for shop 1).
    pub async fn order_with_items(
        &self,
        mall: &MallId,
        shop: ShopNo,
        order_id: &str,
        class: Class,
    ) -> Result<Order, Cafe24Error> {
        let id = crate::encode_path(order_id);
        Order::from_body(&self.get_json(mall, &format!("orders/{id}?shop_no={shop}&embed=items"), class).await?)
    }

    /// `GET /products/{product_no}` in `shop`'s view.
    pub async fn product(
        &self,
        mall: &MallId,
        shop: ShopNo,
        product_no: u64,
        class: Class,
    ) -> Result<Product, Cafe24Error> {
        Product::from_body(&self.get_json(mall, &format!("products/{product_no}?shop_no={shop}"), class).await?)
    }

    /// `GET /customers?member_id=…` (non-personal fields) in `shop`'s view.
    pub async fn customers(
        &self,
        mall: &MallId,
        shop: ShopNo,
        member_ids: &[&str],
        class: Class,
    ) -> Result<Vec<Customer>, Cafe24Error> {
        let ids: Vec<String> = member_ids.iter().map(|m| crate::encode_path(m)).collect();
        let path = format!("customers?shop_no={shop}&member_id={}", ids.join(","));
        Customer::list_from_body(&self.get_json(mall, &path, class).await?)
    }

    /// `GET /webhooks/logs` with already-encoded query parameters.
    pub async fn webhook_logs(
        &self,
        mall: &MallId,
        query: &str,
        class: Class,
    ) -> Result<Vec<WebhookLogEntry>, Cafe24Error> {
        WebhookLogEntry::list_from_body(&self.get_json(mall, &format!("webhooks/logs?{query}"), class).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retired_version_is_recognised_from_its_wording() {
        assert!(reads_as_version_unavailable(
            "The version you requested is not available. The default value for the app version is 2025-06-01."
        ));
        assert!(reads_as_version_unavailable("API version 2024-03-01 has expired."));
        for other in ["start_date is invalid.", "The search period cannot exceed 3 months.", "version", ""] {
            assert!(!reads_as_version_unavailable(other), "{other}");
        }
    }

    #[test]
    fn app_deleted_is_recognised_only_from_its_wording() {
        assert!(reads_as_app_deleted("The app has been deleted from this mall."));
        assert!(!reads_as_app_deleted("Insufficient scope: mall.read_order is required."));
        assert_eq!(
            error_fields(&serde_json::json!({"error": {"code": 422, "message": "bad"}})),
            ("422".into(), "bad".into())
        );
        assert_eq!(error_fields(&Value::Null), (String::new(), String::new()));
    }
}
