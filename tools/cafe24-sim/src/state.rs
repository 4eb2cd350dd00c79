//! The simulator's state and configuration. One mutex guards everything; it is never held
//! across an `.await`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::data::{DataSizes, MallData};
use crate::limits::{LeakyBucket, RateWindow, UsageQuota};
use crate::webhooks::WebhookLog;

/// Hours/days in ms.
pub const HOUR_MS: u64 = 3_600_000;
/// One day in ms.
pub const DAY_MS: u64 = 24 * HOUR_MS;

/// An app registered with the simulated Cafe24.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppConfig {
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: String,
    /// Scopes granted on install when the authorize request names none.
    pub scopes: Vec<String>,
}

/// Every knob, with Cafe24's real values as defaults.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct SimConfig {
    /// Bucket capacity (40).
    pub capacity: u32,
    /// Bucket drain, calls/s (2).
    pub leak_per_sec: f64,
    /// One bucket per mall shared by all apps (true), or one per app and mall. [unknown at Cafe24]
    pub shared_bucket: bool,
    /// Usage window, ms (10 minutes).
    pub usage_window_ms: u64,
    /// Calls per usage window (3,000, secondary source).
    pub call_quota: u64,
    /// Processing time per usage window, ms (600 s, secondary source).
    pub time_quota_ms: u64,
    /// Processing time charged per call, ms.
    pub processing_ms: u64,
    /// Lengthening of a usage block per call made during it, ms. [unknown at Cafe24]
    pub block_extension_ms: u64,
    /// Calls per second to one mall judged abnormal (10).
    pub abnormal_per_sec: u32,
    /// Access token lifetime (2 h).
    pub access_ttl_ms: u64,
    /// Refresh token lifetime (14 d).
    pub refresh_ttl_ms: u64,
    /// Authorization code lifetime (60 s).
    pub code_ttl_ms: u64,
    /// Token issuances allowed per mall per window (15, secondary source).
    pub issuance_cap: u32,
    /// Issuance window (2 h).
    pub issuance_window_ms: u64,
    /// Data seed.
    pub seed: u64,
    /// Orders per mall.
    pub orders_per_mall: u32,
    /// Generated orders are spread over this many days (a backfill's history).
    pub order_history_days: u32,
    /// Products per mall.
    pub products_per_mall: u32,
    /// Customers per mall.
    pub customers_per_mall: u32,
    /// Registered apps.
    pub apps: Vec<AppConfig>,
    /// Webhook delivery attempts after the first (automatic retries).
    pub webhook_retries: u32,
    /// Delay between webhook attempts, ms (real time).
    pub webhook_retry_delay_ms: u64,
    /// Webhook receiver timeout, ms.
    pub webhook_timeout_ms: u64,
    /// Whether an automatic retry keeps the delivery's trace id. [unknown at Cafe24]
    pub retry_keeps_trace_id: bool,
    /// Share of events (0..=1) lost on Cafe24's side: logged as failed, never delivered (the
    /// intermittent loss Cafe24 announced; reconciliation must recover them).
    pub webhook_drop_rate: f64,
    /// Behaviours Cafe24's documentation leaves open or its samples disagree on: each plausible
    /// one, selectable, so the relay is tested under all (docs/cafe24-conformance.md).
    pub variants: Variants,
    /// Multi-shop malls: mall id → number of shops (every other mall has shop 1 only). Shops
    /// hold different data; a call without `shop_no` answers for shop 1, as Cafe24's does.
    pub shops: BTreeMap<String, u32>,
    /// Endpoint families with a call limit of their own below `capacity` (Cafe24 documents
    /// 10 for `scripttags`); how it applies is [`Variants::endpoint_limit`].
    pub endpoint_limits: BTreeMap<String, u32>,
}

/// Which of the plausible behaviours the simulator shows where Cafe24's documentation is silent
/// or its published samples differ from a first reading. Defaults: as published.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Variants {
    /// `links` on list answers.
    pub links: Links,
    /// Order of `/webhooks/logs` results (not documented).
    pub log_order: LogOrder,
    /// Shape of `log_id` values.
    pub log_ids: LogIds,
    /// What a call naming a retired API version gets (see [`Sim::retire_versions_before`]).
    pub retired_version: RetiredVersion,
    /// Order of `/customersprivacy` members (not documented).
    pub member_order: MemberOrder,
    /// How an endpoint's own smaller limit applies (not documented).
    pub endpoint_limit: EndpointLimit,
}

/// How an endpoint's own call limit (`SimConfig::endpoint_limits`) applies: the documentation
/// lists a limit per endpoint and says nothing of how it relates to the mall's bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointLimit {
    /// One bucket per mall: a call to the endpoint is refused once the mall's bucket holds its
    /// limit; `X-Api-Call-Limit` shows the mall's level over the endpoint's limit.
    #[default]
    SharedLevel,
    /// A bucket of its own (same drain), apart from the mall's; the header shows that bucket.
    OwnBucket,
}

/// Order of `/customersprivacy` members from the `created_start_date` cursor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberOrder {
    /// Oldest join first (what a cursor implies).
    #[default]
    OldestFirst,
    /// Newest join first.
    NewestFirst,
}

/// What a call naming a retired `X-Cafe24-Api-Version` gets: the documentation can be read
/// either way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetiredVersion {
    /// HTTP 400 "… version you requested is not available …" (what implementers report).
    #[default]
    Refused,
    /// Runs on the oldest version still available, as if nothing happened.
    RunsOnOldest,
}

/// `links` on list answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Links {
    /// As Cafe24's published answers: orders carry `links`, products and webhook logs none.
    #[default]
    AsPublished,
    /// Every list answer carries `links` (a `next` one while more follow).
    Always,
    /// No list answer carries `links`.
    Never,
}

impl Links {
    /// Whether an answer of `endpoint` (`orders`, `products`, `webhooks/logs`) carries `links`.
    pub fn on(self, endpoint: &str) -> bool {
        match self {
            Self::AsPublished => endpoint == "orders",
            Self::Always => true,
            Self::Never => false,
        }
    }
}

/// Order of `/webhooks/logs` results.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogOrder {
    /// Newest request first (how Cafe24's log screens list them; the API's order is undocumented).
    #[default]
    NewestFirst,
    /// Oldest request first.
    OldestFirst,
}

/// Shape of `log_id` values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogIds {
    /// Random 20-character strings, like the published sample `zV7Ur3oBsq3B53njmYm-`.
    #[default]
    Opaque,
    /// `L000000000123`: sortable in the order written.
    Sortable,
}

/// Every read scope the simulator knows.
pub const ALL_READ_SCOPES: &[&str] = &[
    "mall.read_order",
    "mall.read_product",
    "mall.read_customer",
    "mall.read_application",
    "mall.read_store",
    "mall.read_privacy",
];

/// Every write scope the simulator's writes need.
pub const ALL_WRITE_SCOPES: &[&str] =
    &["mall.write_order", "mall.write_product", "mall.write_customer", "mall.write_mileage", "mall.write_application"];

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            capacity: 40,
            leak_per_sec: 2.0,
            shared_bucket: true,
            usage_window_ms: 600_000,
            call_quota: 3_000,
            time_quota_ms: 600_000,
            processing_ms: 20,
            block_extension_ms: 1_000,
            abnormal_per_sec: 10,
            access_ttl_ms: 2 * HOUR_MS,
            refresh_ttl_ms: 14 * DAY_MS,
            code_ttl_ms: 60_000,
            issuance_cap: 15,
            issuance_window_ms: 2 * HOUR_MS,
            seed: 24,
            orders_per_mall: 60,
            order_history_days: 120,
            products_per_mall: 40,
            customers_per_mall: 20,
            apps: vec![AppConfig {
                client_id: "sim-client".into(),
                client_secret: "sim-secret".into(),
                scopes: ALL_READ_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            }],
            webhook_retries: 2,
            webhook_retry_delay_ms: 200,
            webhook_timeout_ms: 3_000,
            retry_keeps_trace_id: true,
            webhook_drop_rate: 0.0,
            variants: Variants::default(),
            shops: BTreeMap::new(),
            endpoint_limits: [("scripttags".to_owned(), 10)].into(),
        }
    }
}

/// Per-endpoint counters.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EndpointStats {
    pub calls: u64,
    /// 429 answers.
    pub status_429: u64,
}

/// What Cafe24 saw of one mall.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MallStats {
    /// Admin API requests (every status).
    pub calls: u64,
    /// 2xx answers.
    pub ok: u64,
    /// 401 answers.
    pub status_401: u64,
    /// 403 answers.
    pub status_403: u64,
    /// 404 answers.
    pub status_404: u64,
    /// 422 answers.
    pub status_422: u64,
    /// 429 answers (bucket full, usage block, or forced).
    pub status_429: u64,
    /// 5xx answers (forced).
    pub status_5xx: u64,
    /// Calls refused because a usage block was in force.
    pub blocked_calls: u64,
    /// Highest bucket level reached.
    pub max_bucket_level: f64,
    /// Most requests in any 1 s window.
    pub max_calls_in_1s: u32,
    /// Abnormal-rate episodes (≥ threshold calls in 1 s).
    pub abnormal_detections: u32,
    /// Tokens issued (code exchanges and refreshes).
    pub token_issuances: u64,
    /// Authenticated requests to the token endpoint, whatever their answer.
    pub token_requests: u64,
    /// Refresh attempts with an already rotated refresh token.
    pub refresh_reuse_attempts: u64,
    /// `invalid_grant` answers.
    pub invalid_grants: u64,
    /// Token requests refused by the issuance cap.
    pub issuance_cap_refusals: u64,
    /// `X-Cafe24-Api-Version` values seen → count (`none` when absent).
    pub versions: BTreeMap<String, u64>,
    /// Per endpoint (`orders/{id}`, `orders`, …).
    pub endpoints: BTreeMap<String, EndpointStats>,
    /// Every write that took effect, in order (POST and PUT answered 2xx).
    pub effects: Vec<Effect>,
}

/// One write that took effect: what a test counts to tell one effect from two.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Effect {
    /// `POST` or `PUT`.
    pub method: String,
    /// The path under `/api/v2/admin/`.
    pub path: String,
    /// The request body as sent.
    pub body: serde_json::Value,
}

/// One Admin API call, for timelines.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CallRecord {
    /// When (sim clock, ms).
    pub at_ms: u64,
    pub mall: String,
    /// Endpoint name.
    pub endpoint: String,
    /// Status answered.
    pub status: u16,
    /// The `shop_no` the call named (`None`: none, which Cafe24 answers for shop 1).
    #[serde(default)]
    pub shop_no: Option<u32>,
}

/// State of a refresh token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshState {
    Live,
    /// Replaced by a newer one (rotation); reuse → invalid_grant.
    Rotated,
    /// Revoked (fault or uninstall).
    Revoked,
}

/// An issued access token.
#[derive(Clone, Debug)]
pub struct AccessToken {
    pub mall: String,
    pub client_id: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Expiry, ms.
    pub expires_ms: u64,
    /// Revoked by a fault or uninstall.
    pub revoked: bool,
}

/// An issued refresh token.
#[derive(Clone, Debug)]
pub struct RefreshToken {
    pub mall: String,
    pub client_id: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Expiry, ms.
    pub expires_ms: u64,
    /// Live, rotated or revoked.
    pub state: RefreshState,
}

/// An authorization code.
#[derive(Clone, Debug)]
pub struct AuthCode {
    pub mall: String,
    pub client_id: String,
    /// Redirect URI it was issued for.
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    /// Issued at, ms.
    pub issued_ms: u64,
    /// Already exchanged.
    pub used: bool,
}

/// Kinds of injected faults.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer this status (e.g. 500, 503, 504) with Cafe24's envelope.
    Status {
        /// HTTP status.
        status: u16,
    },
    /// Add latency before answering normally.
    Latency { ms: u64 },
    /// Never answer within any sane client timeout (holds the request for `ms`, default 60 s).
    Timeout {
        /// How long to hold the request.
        #[serde(default = "default_timeout_ms")]
        ms: u64,
    },
    /// Answer 429 regardless of the bucket.
    RateLimit,
}

fn default_timeout_ms() -> u64 {
    60_000
}

/// An injected fault.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Fault {
    /// Mall it applies to (`None` = every mall).
    #[serde(default)]
    pub mall: Option<String>,
    /// Endpoint prefix after `/api/v2/admin/` (`None` = every endpoint).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// What happens.
    #[serde(flatten)]
    pub kind: FaultKind,
    /// How many requests it affects (`None` = until cleared).
    #[serde(default)]
    pub remaining: Option<u32>,
}

/// Rate-limit state of one key.
#[derive(Clone, Debug)]
pub struct KeyLimits {
    /// The leaky bucket.
    pub bucket: LeakyBucket,
    /// Endpoint families' own buckets ([`EndpointLimit::OwnBucket`]).
    pub endpoints: std::collections::HashMap<String, LeakyBucket>,
    /// The usage quota.
    pub usage: UsageQuota,
}

/// One mall.
#[derive(Clone, Debug, Default)]
pub struct MallState {
    /// Data of shop 1, the default shop (generated on first touch).
    pub data: MallData,
    /// Data of the mall's other shops, by shop number (multi-shop malls only).
    pub other_shops: BTreeMap<u32, MallData>,
    /// Apps deleted from this mall (client ids).
    pub uninstalled: Vec<String>,
    /// Issuance times within the window.
    pub issuances: VecDeque<u64>,
    pub stats: MallStats,
    /// Arrival window for the abnormal-rate detector.
    pub window: RateWindow,
    /// Webhook reception switched off (as Cafe24 does after repeated failures): nothing is
    /// delivered, every event is logged as failed, `/webhooks/setting` says `F`.
    pub reception_off: bool,
}

impl MallState {
    /// The data of shop `n` (`None`: the mall has no such shop).
    pub fn shop(&self, n: u32) -> Option<&MallData> {
        if n == 1 {
            Some(&self.data)
        } else {
            self.other_shops.get(&n)
        }
    }

    /// [`Self::shop`], to change.
    pub fn shop_mut(&mut self, n: u32) -> Option<&mut MallData> {
        if n == 1 {
            Some(&mut self.data)
        } else {
            self.other_shops.get_mut(&n)
        }
    }

    /// The mall's shop numbers, in order.
    pub fn shop_numbers(&self) -> Vec<u32> {
        std::iter::once(1).chain(self.other_shops.keys().copied()).collect()
    }
}

/// Everything mutable.
#[derive(Default)]
pub struct Inner {
    /// Malls by id.
    pub malls: HashMap<String, MallState>,
    /// Rate-limit state by key.
    pub limits: HashMap<String, KeyLimits>,
    /// Access tokens by value.
    pub access: HashMap<String, AccessToken>,
    /// Refresh tokens by value.
    pub refresh: HashMap<String, RefreshToken>,
    /// Authorization codes by value.
    pub codes: HashMap<String, AuthCode>,
    /// Active faults.
    pub faults: Vec<Fault>,
    /// Webhook logs, in order.
    pub logs: Vec<WebhookLog>,
    /// Webhook target (URL, API key).
    pub webhook_target: Option<(String, String)>,
    /// Every Admin API call (for timelines; capped).
    pub calls: Vec<CallRecord>,
    /// Sequence for log ids.
    pub next_log: u64,
    /// The token endpoint answers this much later, *after* issuing (a slow network on the way
    /// back: Cafe24 has already rotated the refresh token when the client gets the answer).
    pub token_answer_delay_ms: u64,
    /// API versions before this one (`YYYY-MM-DD`) are retired.
    pub retired_before: Option<String>,
    /// Client secrets reissued since start, by client id (the configured one is dead then).
    pub reissued_secrets: HashMap<String, String>,
}

/// Most call records kept for timelines.
pub const MAX_CALL_RECORDS: usize = 2_000_000;

/// The simulator.
pub struct Sim {
    /// Configuration (fixed at start).
    pub config: SimConfig,
    pub clock: Clock,
    inner: Mutex<Inner>,
    /// HTTP client for webhook deliveries.
    pub http: reqwest::Client,
}

impl Sim {
    /// A simulator with `config` and `clock`.
    pub fn new(config: SimConfig, clock: Clock) -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_millis(config.webhook_timeout_ms))
            .build()
            .unwrap_or_default();
        Self { config, clock, inner: Mutex::new(Inner::default()), http }
    }

    /// Locks the state (a poisoned lock is still usable: counters cannot be left torn).
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The app with `client_id`.
    pub fn app(&self, client_id: &str) -> Option<&AppConfig> {
        self.config.apps.iter().find(|a| a.client_id == client_id)
    }

    /// Order `id` of shop `shop` as `GET /orders/{id}?embed=items` answers it now (`None`: no
    /// such order): what a current snapshot holds, for freshness checks (orders carry no
    /// modification time).
    pub fn order_json(&self, mall: &str, shop: u32, id: &str) -> Option<serde_json::Value> {
        let mut g = self.lock();
        let data = self.mall(&mut g, mall).shop(shop)?;
        Some(data.orders.get(id)?.to_json(true, &data.products))
    }

    /// The client secret that authenticates `client_id` now (the reissued one, if any).
    pub fn client_secret(&self, client_id: &str) -> Option<String> {
        if let Some(s) = self.lock().reissued_secrets.get(client_id) {
            return Some(s.clone());
        }
        self.app(client_id).map(|a| a.client_secret.clone())
    }

    /// Reissues `client_id`'s secret, as the developer center does: the old one is refused
    /// (`invalid_client`) from this instant.
    pub fn reissue_client_secret(&self, client_id: &str, new_secret: &str) {
        self.lock().reissued_secrets.insert(client_id.to_owned(), new_secret.to_owned());
    }

    /// Retires every API version before `version` (`YYYY-MM-DD`); `None` retires none.
    pub fn retire_versions_before(&self, version: Option<&str>) {
        self.lock().retired_before = version.map(str::to_owned);
    }

    /// The rate-limit key for a call by `client_id` to `mall`.
    pub fn rate_key(&self, mall: &str, client_id: &str) -> String {
        if self.config.shared_bucket {
            mall.to_owned()
        } else {
            format!("{mall}/{client_id}")
        }
    }

    /// The mall's state, generating its data on first touch.
    pub fn mall<'a>(&self, inner: &'a mut Inner, mall: &str) -> &'a mut MallState {
        let now = self.clock.now_ms();
        let sizes = DataSizes {
            orders: self.config.orders_per_mall,
            products: self.config.products_per_mall,
            customers: self.config.customers_per_mall,
            history_days: self.config.order_history_days,
        };
        let shops = self.config.shops.get(mall).copied().unwrap_or(1);
        inner.malls.entry(mall.to_owned()).or_insert_with(|| MallState {
            data: MallData::generate(self.config.seed, mall, sizes, now),
            other_shops: (2..=shops)
                .map(|n| (n, MallData::generate_shop(self.config.seed, mall, n, sizes, now)))
                .collect(),
            ..Default::default()
        })
    }

    /// The limits of a key, created on first use.
    pub fn limits<'a>(&self, inner: &'a mut Inner, key: &str) -> &'a mut KeyLimits {
        let now = self.clock.now_ms();
        let c = &self.config;
        inner.limits.entry(key.to_owned()).or_insert_with(|| KeyLimits {
            bucket: LeakyBucket::new(c.capacity, c.leak_per_sec, now),
            endpoints: std::collections::HashMap::new(),
            usage: UsageQuota::new(c.usage_window_ms, c.call_quota, c.time_quota_ms, c.block_extension_ms, now),
        })
    }

    /// A fresh random token value (22 alphanumerics, like Cafe24's).
    pub fn random_token() -> String {
        use rand::Rng as _;
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut r = rand::rng();
        (0..22).filter_map(|_| A.get(r.random_range(0..A.len())).map(|b| char::from(*b))).collect()
    }

    /// Issues an access/refresh pair without the OAuth dance (test set-up: "already installed").
    /// Does not count as an issuance.
    pub fn seed_tokens(&self, mall: &str, client_id: &str, scopes: Vec<String>) -> (String, String) {
        let now = self.clock.now_ms();
        let mut g = self.lock();
        self.mall(&mut g, mall);
        self.insert_pair(&mut g, mall, client_id, scopes, now)
    }

    /// Stores a new pair and returns (access, refresh).
    pub fn insert_pair(
        &self,
        g: &mut Inner,
        mall: &str,
        client_id: &str,
        scopes: Vec<String>,
        now: u64,
    ) -> (String, String) {
        let (a, r) = (Self::random_token(), Self::random_token());
        g.access.insert(
            a.clone(),
            AccessToken {
                mall: mall.to_owned(),
                client_id: client_id.to_owned(),
                scopes: scopes.clone(),
                expires_ms: now + self.config.access_ttl_ms,
                revoked: false,
            },
        );
        g.refresh.insert(
            r.clone(),
            RefreshToken {
                mall: mall.to_owned(),
                client_id: client_id.to_owned(),
                scopes,
                expires_ms: now + self.config.refresh_ttl_ms,
                state: RefreshState::Live,
            },
        );
        (a, r)
    }

    /// A copy of one mall's stats (default when never touched).
    pub fn stats(&self, mall: &str) -> MallStats {
        self.lock().malls.get(mall).map(|m| m.stats.clone()).unwrap_or_default()
    }

    /// Revokes every token of `mall` (all apps).
    pub fn revoke(&self, mall: &str) {
        let mut g = self.lock();
        for t in g.access.values_mut().filter(|t| t.mall == mall) {
            t.revoked = true;
        }
        for t in g.refresh.values_mut().filter(|t| t.mall == mall) {
            t.state = RefreshState::Revoked;
        }
    }

    /// Marks `client_id` deleted from `mall` and revokes its tokens.
    pub fn uninstall(&self, mall: &str, client_id: &str) {
        self.revoke(mall);
        let mut g = self.lock();
        let m = self.mall(&mut g, mall);
        if !m.uninstalled.iter().any(|c| c == client_id) {
            m.uninstalled.push(client_id.to_owned());
        }
    }
}
