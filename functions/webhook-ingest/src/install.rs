//! The OAuth install flow: `GET /install?<Cafe24's signed launch query>` and
//! `GET /oauth/callback?code&state`.
//!
//! `/install` is the app's App URL: it accepts only Cafe24's signed launch (`hmac` over the
//! query with the client secret, fresh `timestamp`; see `relay_domain::app_launch`), then
//! redirects the merchant's browser to Cafe24's authorize URL with a signed, expiring,
//! single-use `state`. Nobody else can start a flow, and code exchanges are bounded per mall
//! ([`MAX_EXCHANGES_PER_WINDOW`] per [`EXCHANGE_WINDOW_MS`]). `/oauth/callback` verifies the state (signature, expiry, then
//! consumes its nonce so a replay fails), exchanges the code — valid for one minute at Cafe24 —
//! and stores the tokens. Every failure is a 400 page with a message the merchant can act on.

use std::future::Future;

use relay_cafe24::{Cafe24, Cafe24Error};
use relay_domain::app_launch::{self, LaunchError};
use relay_domain::delivery::{mall_event, MallStatusEvent};
use relay_domain::oauth_state::{self, StateError};
use relay_domain::ports::{EventBus, MessageQueue, OnceStore, RateGate};
use relay_domain::tokens::{Secret, TokenStore};
use relay_domain::MallId;

use crate::config::ConfigError;

/// Install-flow settings.
#[derive(Clone, Debug)]
pub struct InstallConfig {
    /// HMAC key for `state` (≥ 32 characters).
    pub state_secret: Secret,
    /// Public URL of `/oauth/callback`, as registered with Cafe24; `None`: the URL the request
    /// came to (the Function URL's own host + `/oauth/callback`, see [`callback_url_for_host`]).
    pub redirect_uri: Option<String>,
    /// Scopes requested (comma-separated).
    pub scopes: String,
    /// How long an install link stays valid, ms.
    pub state_ttl_ms: u64,
    /// The event bus `mall.installed` goes to (name or ARN, `EVENT_BUS_NAME`).
    pub event_bus: String,
    /// Days of order history a new install backfills (`BACKFILL_ON_INSTALL_DAYS`, 0 = none).
    pub backfill_days: u64,
    /// The work queue the backfill job goes to (`WORK_QUEUE_URL`; required when
    /// `backfill_days` > 0).
    pub work_queue_url: Option<String>,
}

/// The callback URL on the host a request came to: `https://<host>/oauth/callback` (`http://` for
/// a loopback host, the local stack). On Lambda the host of a Function URL request is the
/// function's own URL domain — a request with another `Host` never reaches the function — so
/// the derived URL is the one to register with Cafe24. `None` for a missing or malformed host.
pub fn callback_url_for_host(host: Option<&str>) -> Option<String> {
    let h = host?.trim().to_ascii_lowercase();
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
        && !h.starts_with(['.', '-', ':']);
    if !ok {
        return None;
    }
    let loopback = h == "localhost" || h.starts_with("localhost:") || h.starts_with("127.0.0.1");
    Some(format!("{}://{h}/oauth/callback", if loopback { "http" } else { "https" }))
}

/// Oldest Cafe24 launch `/install` accepts (its `timestamp`), ms.
pub const LAUNCH_MAX_AGE_MS: u64 = 10 * 60_000;
/// Code exchanges allowed per mall in one [`EXCHANGE_WINDOW_MS`] window (Cafe24 reportedly caps
/// token issuance at 15 per 2 hours per mall: this keeps installs well inside it).
pub const MAX_EXCHANGES_PER_WINDOW: u32 = 5;
/// The window of [`MAX_EXCHANGES_PER_WINDOW`], ms.
pub const EXCHANGE_WINDOW_MS: u64 = 10 * 60_000;

/// The scopes the install asks for when `OAUTH_SCOPES` is unset or empty: the relay's own reads.
pub const DEFAULT_SCOPES: &str =
    "mall.read_order,mall.read_product,mall.read_customer,mall.read_application,mall.read_store";

/// `OAUTH_SCOPES` read: comma-separated `mall.read_*` / `mall.write_*` names (empty entries, as
/// the template's join leaves when the app adds none, are skipped; repeats are asked once).
/// Anything else is refused at cold start rather than sent to Cafe24's authorize page, which
/// would answer the merchant `invalid_scope`.
fn scopes(raw: Option<&str>) -> Result<String, ConfigError> {
    let mut out: Vec<&str> = Vec::new();
    for s in raw.unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let name = s.strip_prefix("mall.read_").or_else(|| s.strip_prefix("mall.write_"));
        if !name.is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')) {
            return Err(ConfigError::Invalid {
                var: "OAUTH_SCOPES",
                reason: format!("`{s}` is not a Cafe24 scope (mall.read_<resource> or mall.write_<resource>)"),
            });
        }
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(if out.is_empty() { DEFAULT_SCOPES.to_owned() } else { out.join(",") })
}

impl InstallConfig {
    /// Reads `OAUTH_STATE_SECRET`, `OAUTH_REDIRECT_URI`, `OAUTH_SCOPES`, `EVENT_BUS_NAME`,
    /// `BACKFILL_ON_INSTALL_DAYS` (30; 0..=730), `WORK_QUEUE_URL` (with a backfill).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = relay_domain::config::Env(lookup);
        let get = |k: &str| env.get(k);
        let secret = env.required("OAUTH_STATE_SECRET")?;
        if secret.len() < 32 {
            return Err(ConfigError::Invalid {
                var: "OAUTH_STATE_SECRET",
                reason: "must be at least 32 characters".into(),
            });
        }
        // Unset or empty: derived from each request's host, so a first deploy needs no second
        // one to learn its own Function URL.
        let redirect_uri = get("OAUTH_REDIRECT_URI");
        if let Some(u) = &redirect_uri {
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                return Err(ConfigError::Invalid {
                    var: "OAUTH_REDIRECT_URI",
                    reason: "must be an http(s) URL".into(),
                });
            }
        }
        let scopes = scopes(get("OAUTH_SCOPES").as_deref())?;
        let event_bus = env.required("EVENT_BUS_NAME")?;
        let backfill_days = env.bounded("BACKFILL_ON_INSTALL_DAYS", 30, 0..=730)?;
        let work_queue_url = if backfill_days > 0 { Some(env.url("WORK_QUEUE_URL")?) } else { None };
        Ok(Self {
            state_secret: Secret::new(secret),
            redirect_uri,
            scopes,
            state_ttl_ms: 10 * 60_000,
            event_bus,
            backfill_days,
            work_queue_url,
        })
    }
}

/// Why an install step failed; `Display` is the message shown to the merchant.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The install flow is not configured on this deployment.
    #[error("installation is not enabled on this endpoint")]
    NotConfigured,
    /// `mall_id` missing or invalid.
    #[error("mall_id is missing or not a valid Cafe24 mall id")]
    BadMall,
    /// `/install` was not opened by a valid, fresh Cafe24 launch.
    #[error("{0}")]
    Launch(LaunchError),
    /// Too many code exchanges for this mall just now.
    #[error(
        "too many installation attempts for this mall; wait 10 minutes and open the app from the Cafe24 admin again"
    )]
    TooManyAttempts,
    /// A callback parameter is missing.
    #[error("the callback is missing `{0}`")]
    Missing(&'static str),
    /// The state failed verification.
    #[error("{0}")]
    State(StateError),
    /// The state was already used.
    #[error("this installation link was already used; start again")]
    Replayed,
    /// Cafe24 refused the code as expired.
    #[error("the authorization code expired (Cafe24 codes are valid for 1 minute); start the installation again")]
    CodeExpired,
    /// Cafe24 refused the code.
    #[error("Cafe24 refused the authorization code; start the installation again")]
    CodeRejected,
    /// A store or Cafe24 failed; retrying may work.
    #[error("the installation could not be completed right now; try again in a minute")]
    Unavailable,
    /// No `OAUTH_REDIRECT_URI` and no usable `Host` to derive it from.
    #[error("this endpoint cannot tell its own address; set OAUTH_REDIRECT_URI")]
    NoRedirect,
}

impl InstallError {
    /// Stable class for logs.
    pub fn class(&self) -> &'static str {
        match self {
            Self::NotConfigured => "not_configured",
            Self::BadMall => "bad_mall",
            Self::Launch(e) => e.class(),
            Self::TooManyAttempts => "too_many_attempts",
            Self::Missing(_) => "missing_param",
            Self::State(StateError::Malformed) => "state_malformed",
            Self::State(StateError::Forged) => "state_forged",
            Self::State(StateError::Expired) => "state_expired",
            Self::Replayed => "state_replayed",
            Self::CodeExpired => "code_expired",
            Self::CodeRejected => "code_rejected",
            Self::Unavailable => "unavailable",
            Self::NoRedirect => "no_redirect_uri",
        }
    }
}

/// The two steps, as the HTTP handler needs them.
pub trait InstallFlow: Send + Sync {
    /// The authorize URL to redirect to, and the (verified, normalised) mall, for the raw query
    /// string of `/install` exactly as received and the `Host` it came to.
    fn start(&self, raw_query: Option<&str>, host: Option<&str>) -> Result<(String, MallId), InstallError>;
    /// Completes the install (the callback's `Host` gives the redirect URI when none is
    /// configured); returns the mall.
    fn finish(
        &self,
        code: Option<&str>,
        state: Option<&str>,
        host: Option<&str>,
    ) -> impl Future<Output = Result<MallId, InstallError>> + Send;
}

/// No install flow (webhook-only deployments).
pub struct NoInstall;

impl InstallFlow for NoInstall {
    fn start(&self, _: Option<&str>, _: Option<&str>) -> Result<(String, MallId), InstallError> {
        Err(InstallError::NotConfigured)
    }

    async fn finish(&self, _: Option<&str>, _: Option<&str>, _: Option<&str>) -> Result<MallId, InstallError> {
        Err(InstallError::NotConfigured)
    }
}

/// The real flow: Cafe24 client (code exchange, token store) + a one-time store for nonces +
/// the event bus that hears of each install + the work queue its history backfill goes to.
pub struct Installer<G, S, O, B, Q> {
    cafe24: Cafe24<G, S>,
    once: O,
    bus: B,
    work: Option<Q>,
    cfg: InstallConfig,
}

/// The install flow as deployed: no limiter (the flow makes no Admin API call), the token table
/// for tokens and single-use items.
pub type AwsInstaller = Installer<
    relay_domain::ports::NoAdminCalls,
    relay_aws::tokens::DynamoTokenStore,
    relay_aws::once::DynamoOnceStore,
    relay_aws::bus::EventBridgeBus,
    relay_aws::sqs::SqsQueue,
>;

impl AwsInstaller {
    /// The production wiring (the binary, the demo and the tests build through it).
    pub fn on_aws(
        aws: &relay_aws::Clients,
        token_table: &str,
        cafe24: relay_cafe24::Cafe24Config,
        cfg: InstallConfig,
        clock: relay_cafe24::Clock,
    ) -> Result<Self, Cafe24Error> {
        let ddb = &aws.ddb;
        let tokens = relay_aws::tokens::DynamoTokenStore::new(ddb.clone(), token_table.to_owned());
        let client = Cafe24::new(cafe24, relay_domain::ports::NoAdminCalls, tokens, clock)?;
        let once = relay_aws::once::DynamoOnceStore::new(ddb.clone(), token_table.to_owned());
        let bus = relay_aws::bus::EventBridgeBus::new(aws.events.clone(), cfg.event_bus.clone());
        let work = cfg.work_queue_url.clone().map(|url| relay_aws::sqs::SqsQueue::new(aws.sqs.clone(), url));
        Ok(Self::new(client, once, bus, work, cfg))
    }
}

impl<G: RateGate, S: TokenStore, O: OnceStore, B: EventBus, Q: MessageQueue> Installer<G, S, O, B, Q> {
    /// Wires the flow (`work`: where the install's backfill job goes; `None` = no backfill).
    pub fn new(cafe24: Cafe24<G, S>, once: O, bus: B, work: Option<Q>, cfg: InstallConfig) -> Self {
        Self { cafe24, once, bus, work, cfg }
    }

    /// Queues the backfill of the mall's last `backfill_days` of orders (a bulk job in the
    /// mall's bulk group, run by the worker through the mall's limiter). `Ok` when queued or
    /// when no backfill is configured.
    async fn queue_backfill(&self, mall: &MallId) -> Result<(), InstallError> {
        let (Some(work), days) = (&self.work, self.cfg.backfill_days) else { return Ok(()) };
        if days == 0 {
            return Ok(());
        }
        let now = self.now();
        let period = (now.saturating_sub(days * 86_400_000), now);
        let scope = &self.cafe24.config().key_scope;
        let (job, msg) = relay_domain::backfill::request(
            mall,
            None, // every shop of the mall
            relay_domain::backfill::Resource::Orders,
            period,
            now,
            scope,
            "install",
        )
        .map_err(|_| InstallError::Unavailable)?;
        match work.send(&msg).await {
            Ok(()) => {
                tracing::info!(mall_id = %mall, job_id = %job.job_id, days, outcome = "backfill_queued", "install");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(mall_id = %mall, error = %e, outcome = "backfill_not_queued", "install");
                Err(InstallError::Unavailable)
            }
        }
    }

    fn now(&self) -> u64 {
        (self.cafe24.clock())()
    }

    /// The configured redirect URI, or the one derived from the request's host.
    fn redirect_uri(&self, host: Option<&str>) -> Result<String, InstallError> {
        match &self.cfg.redirect_uri {
            Some(u) => Ok(u.clone()),
            None => callback_url_for_host(host).ok_or(InstallError::NoRedirect),
        }
    }

    /// One of the mall's [`MAX_EXCHANGES_PER_WINDOW`] code exchanges of the current window (one
    /// single-use item per slot, so concurrent callbacks cannot overrun it).
    async fn take_exchange_slot(&self, mall: &MallId) -> Result<(), InstallError> {
        let window = self.now() / EXCHANGE_WINDOW_MS;
        let expires = (window + 2) * EXCHANGE_WINDOW_MS;
        for slot in 0..MAX_EXCHANGES_PER_WINDOW {
            let id = format!("exchange#{}#{window}#{slot}", mall.as_str());
            match self.once.consume(&id, expires).await {
                Ok(true) => return Ok(()),
                Ok(false) => continue,
                Err(_) => return Err(InstallError::Unavailable),
            }
        }
        Err(InstallError::TooManyAttempts)
    }
}

fn enc(s: &str) -> String {
    relay_cafe24::encode_path(s)
}

impl<G: RateGate, S: TokenStore, O: OnceStore, B: EventBus, Q: MessageQueue> InstallFlow for Installer<G, S, O, B, Q> {
    fn start(&self, raw_query: Option<&str>, host: Option<&str>) -> Result<(String, MallId), InstallError> {
        let redirect_uri = self.redirect_uri(host)?;
        let secret = self.cafe24.config().client_secret.expose().as_bytes();
        let mall = app_launch::verify(secret, raw_query.unwrap_or(""), self.now(), LAUNCH_MAX_AGE_MS)
            .map_err(InstallError::Launch)?;
        let nonce = format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>());
        let state = oauth_state::issue(
            self.cfg.state_secret.expose().as_bytes(),
            &mall,
            self.now() + self.cfg.state_ttl_ms,
            &nonce,
        );
        let url = format!(
            "{}/api/v2/oauth/authorize?response_type=code&client_id={}&state={}&redirect_uri={}&scope={}",
            self.cafe24.config().base_url(&mall),
            enc(&self.cafe24.config().client_id),
            enc(&state),
            enc(&redirect_uri),
            enc(&self.cfg.scopes),
        );
        Ok((url, mall))
    }

    async fn finish(
        &self,
        code: Option<&str>,
        state: Option<&str>,
        host: Option<&str>,
    ) -> Result<MallId, InstallError> {
        let redirect_uri = self.redirect_uri(host)?;
        let state = state.filter(|s| !s.is_empty()).ok_or(InstallError::Missing("state"))?;
        let code = code.filter(|s| !s.is_empty()).ok_or(InstallError::Missing("code"))?;
        let v = oauth_state::verify(self.cfg.state_secret.expose().as_bytes(), state, self.now())
            .map_err(InstallError::State)?;
        // Before the nonce is spent: a callback that could be cut off between Cafe24 issuing the
        // pair and storing it answers "try again" with its state still usable.
        if relay_cafe24::deadline::token_request_timeout(self.cafe24.config().request_timeout).is_none() {
            return Err(InstallError::Unavailable);
        }
        match self.once.consume(&v.nonce, v.expires_ms).await {
            Ok(true) => {}
            Ok(false) => return Err(InstallError::Replayed),
            Err(_) => return Err(InstallError::Unavailable),
        }
        self.take_exchange_slot(&v.mall_id).await?;
        match self.cafe24.install(&v.mall_id, code, &redirect_uri).await {
            Ok(_) => {
                // The history backfill is queued, then the app hears of the install, before the
                // merchant is told it worked: if either is refused, the merchant is asked to try
                // again (opening the app from the Cafe24 admin once more stores a new pair,
                // queues the same job within the minute — SQS drops the copy — and publishes).
                self.queue_backfill(&v.mall_id).await?;
                let event = mall_event(&v.mall_id, MallStatusEvent::Installed, self.now());
                match self.bus.publish(std::slice::from_ref(&event)).await {
                    Ok(refused) if refused.is_empty() => Ok(v.mall_id),
                    Ok(_) | Err(_) => {
                        tracing::warn!(mall_id = %v.mall_id, event_id = %event.event_id, outcome = "publish_failed", "install");
                        Err(InstallError::Unavailable)
                    }
                }
            }
            Err(Cafe24Error::InvalidRequest { code, message, .. })
                if code == "invalid_grant" && message.contains("expired") =>
            {
                Err(InstallError::CodeExpired)
            }
            Err(Cafe24Error::InvalidRequest { .. }) => Err(InstallError::CodeRejected),
            Err(_) => Err(InstallError::Unavailable),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_callback_url_comes_from_a_host_name_and_nothing_else() {
        let url = |h: &str| callback_url_for_host(Some(h));
        assert_eq!(
            url("AbC.lambda-url.ap-northeast-2.on.aws").as_deref(),
            Some("https://abc.lambda-url.ap-northeast-2.on.aws/oauth/callback")
        );
        assert_eq!(url("127.0.0.1:8080").as_deref(), Some("http://127.0.0.1:8080/oauth/callback"));
        assert_eq!(url("localhost:3000").as_deref(), Some("http://localhost:3000/oauth/callback"));
        for bad in ["", " ", "evil.example/x", "a@b", "x y", "-x", ".x", "ex\u{e4}mple.com", &"a".repeat(254)] {
            assert_eq!(url(bad), None, "{bad:?}");
        }
        assert_eq!(callback_url_for_host(None), None);
    }

    #[test]
    fn oauth_scopes_are_cafe24_scope_names_and_the_templates_trailing_comma_is_ignored() {
        let env = |scopes: &'static str| {
            move |k: &str| match k {
                "OAUTH_STATE_SECRET" => Some("0123456789abcdef0123456789abcdef".to_owned()),
                "EVENT_BUS_NAME" => Some("bus".to_owned()),
                "OAUTH_SCOPES" => Some(scopes.to_owned()),
                "BACKFILL_ON_INSTALL_DAYS" => Some("0".to_owned()),
                _ => None,
            }
        };
        let read = |s: &'static str| InstallConfig::from_lookup(env(s)).map(|c| c.scopes);
        // What the template passes with OAuthScopes empty, and with the app's scopes added.
        assert_eq!(read("mall.read_order,mall.read_product,").unwrap(), "mall.read_order,mall.read_product");
        assert_eq!(
            read("mall.read_order, mall.write_mileage ,mall.write_mileage").unwrap(),
            "mall.read_order,mall.write_mileage"
        );
        assert_eq!(read("").unwrap(), DEFAULT_SCOPES);
        assert_eq!(read(" , ").unwrap(), DEFAULT_SCOPES);
        for bad in [
            "mall.read_order;mall.write_order",
            "read_order",
            "mall.read_",
            "mall.admin_order",
            "mall.write_Order",
            "mall.read_order scope=x",
            "mall.read_order&redirect_uri=https://evil.example",
        ] {
            let e = read(bad).unwrap_err().to_string();
            assert!(e.contains("OAUTH_SCOPES"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_redirect_uri_variable_is_optional_but_must_be_a_url_when_set() {
        let env = |redirect: Option<&'static str>| {
            move |k: &str| match k {
                "OAUTH_STATE_SECRET" => Some("0123456789abcdef0123456789abcdef".to_owned()),
                "EVENT_BUS_NAME" => Some("bus".to_owned()),
                "OAUTH_REDIRECT_URI" => redirect.map(str::to_owned),
                "WORK_QUEUE_URL" => Some("https://sqs.example/work.fifo".to_owned()),
                _ => None,
            }
        };
        assert_eq!(InstallConfig::from_lookup(env(None)).unwrap().redirect_uri, None);
        assert_eq!(InstallConfig::from_lookup(env(Some("  "))).unwrap().redirect_uri, None);
        assert_eq!(
            InstallConfig::from_lookup(env(Some("https://relay.example/oauth/callback")))
                .unwrap()
                .redirect_uri
                .as_deref(),
            Some("https://relay.example/oauth/callback")
        );
        assert!(matches!(
            InstallConfig::from_lookup(env(Some("relay.example/oauth/callback"))),
            Err(ConfigError::Invalid { var: "OAUTH_REDIRECT_URI", .. })
        ));
    }

    #[test]
    fn a_history_backfill_is_on_by_default_and_needs_the_work_queue() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| match k {
                "OAUTH_STATE_SECRET" => Some("0123456789abcdef0123456789abcdef".to_owned()),
                "EVENT_BUS_NAME" => Some("bus".to_owned()),
                _ => pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned()),
            }
        };
        let c = InstallConfig::from_lookup(env(&[("WORK_QUEUE_URL", "https://q/work.fifo")])).unwrap();
        assert_eq!((c.backfill_days, c.work_queue_url.as_deref()), (30, Some("https://q/work.fifo")));
        assert!(matches!(InstallConfig::from_lookup(env(&[])), Err(ConfigError::Missing("WORK_QUEUE_URL"))));
        let off = InstallConfig::from_lookup(env(&[("BACKFILL_ON_INSTALL_DAYS", "0")])).unwrap();
        assert_eq!((off.backfill_days, off.work_queue_url), (0, None));
        for bad in ["731", "-1", "a month"] {
            let pairs: &'static [(&'static str, &'static str)] = match bad {
                "731" => &[("BACKFILL_ON_INSTALL_DAYS", "731"), ("WORK_QUEUE_URL", "https://q")],
                "-1" => &[("BACKFILL_ON_INSTALL_DAYS", "-1"), ("WORK_QUEUE_URL", "https://q")],
                _ => &[("BACKFILL_ON_INSTALL_DAYS", "a month"), ("WORK_QUEUE_URL", "https://q")],
            };
            assert!(
                matches!(
                    InstallConfig::from_lookup(env(pairs)),
                    Err(ConfigError::Invalid { var: "BACKFILL_ON_INSTALL_DAYS", .. })
                ),
                "{bad}"
            );
        }
    }
}
