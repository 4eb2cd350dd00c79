//! Client configuration, read once per cold start.

use std::time::Duration;

use relay_domain::ratelimit::KeyScope;
use relay_domain::tokens::Secret;

/// Everything the Cafe24 client and token manager need.
#[derive(Clone, Debug)]
pub struct Cafe24Config {
    /// Base URL template with `{mall_id}` (default `https://{mall_id}.cafe24api.com`).
    pub base_url_template: String,
    /// `X-Cafe24-Api-Version` to send (e.g. `2025-12-01`); `None` sends no header, so calls run
    /// on the app version set in Cafe24's developer center.
    pub api_version: Option<String>,
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret (redacted in `Debug`).
    pub client_secret: Secret,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// Refresh the access token when it has less than this left.
    pub refresh_margin_ms: u64,
    /// How long a refresh lease lasts (one refresh attempt per lease period at most).
    pub lease_ms: u64,
    /// How long a caller waits for another caller's refresh before giving up (deferring).
    pub refresh_wait_ms: u64,
    /// Limiter waits up to this are slept inside a call; longer ones return `Throttled`.
    pub max_inline_wait_ms: u64,
    /// How the rate-limit key is derived.
    pub key_scope: KeyScope,
    /// How long this process answers "a fresh access token" from the token record it last read
    /// (0 = read the store every time). A 401 or an app-deleted 403 drops the copy at once.
    pub token_cache_ms: u64,
    /// After a configuration fault, how long the process stops asking Cafe24 (and a job waits)
    /// before one call probes again ([`crate::fault::PROBE_EVERY_MS`]; tests shorten it).
    pub fault_probe_ms: u64,
    /// Time an Admin API call leaves before the invocation's deadline, for what follows it
    /// ([`crate::deadline::CALL_MARGIN`]; tests with in-memory stores and 1 s invocations shorten it).
    pub call_margin: Duration,
    /// The least time worth giving an Admin API call ([`crate::deadline::MIN_CALL_WAIT`]).
    pub min_call_wait: Duration,
}

pub use relay_domain::config::ConfigError;

impl Cafe24Config {
    /// Reads `CAFE24_API_BASE_URL`, `CAFE24_API_VERSION`, `CAFE24_CLIENT_ID`,
    /// `CAFE24_CLIENT_SECRET`, `CAFE24_TIMEOUT_MS`, `CAFE24_REFRESH_MARGIN_S`,
    /// `CAFE24_TOKEN_CACHE_S`, `RATE_LIMIT_KEY`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = relay_domain::config::Env(lookup);
        let get = |k: &str| env.get(k);
        let base = get("CAFE24_API_BASE_URL").unwrap_or_else(|| "https://{mall_id}.cafe24api.com".to_owned());
        if !base.contains("{mall_id}") || !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(ConfigError::Invalid {
                var: "CAFE24_API_BASE_URL",
                reason: "must be an http(s) URL containing {mall_id}".into(),
            });
        }
        let api_version = get("CAFE24_API_VERSION");
        if let Some(version) = &api_version {
            let v = version.as_bytes();
            if v.len() != 10
                || v.get(4) != Some(&b'-')
                || v.get(7) != Some(&b'-')
                || !version.replace('-', "").bytes().all(|c| c.is_ascii_digit())
            {
                return Err(ConfigError::Invalid { var: "CAFE24_API_VERSION", reason: "must be YYYY-MM-DD".into() });
            }
        }
        let client_id = env.required("CAFE24_CLIENT_ID")?;
        let client_secret = Secret::new(env.required("CAFE24_CLIENT_SECRET")?);
        let timeout_ms = env.bounded("CAFE24_TIMEOUT_MS", 10_000, 1..=120_000)?;
        let margin_s = env.bounded("CAFE24_REFRESH_MARGIN_S", 600, 1..=3_600)?;
        let cache_s = env.bounded("CAFE24_TOKEN_CACHE_S", 60, 0..=600)?;
        let key_scope = env.key_scope()?;
        Ok(Self {
            base_url_template: base.trim_end_matches('/').to_owned(),
            api_version,
            client_id,
            client_secret,
            connect_timeout: Duration::from_millis(timeout_ms.min(3_000)),
            request_timeout: Duration::from_millis(timeout_ms),
            refresh_margin_ms: margin_s * 1000,
            lease_ms: 30_000,
            refresh_wait_ms: 5_000,
            max_inline_wait_ms: 1_000,
            key_scope,
            token_cache_ms: cache_s * 1000,
            fault_probe_ms: crate::fault::PROBE_EVERY_MS,
            call_margin: crate::deadline::CALL_MARGIN,
            min_call_wait: crate::deadline::MIN_CALL_WAIT,
        })
    }

    /// The base URL for a mall.
    pub fn base_url(&self, mall: &relay_domain::MallId) -> String {
        self.base_url_template.replace("{mall_id}", mall.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Cafe24Config, ConfigError> {
        let owned: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Cafe24Config::from_lookup(move |k| owned.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    const OK: &[(&str, &str)] =
        &[("CAFE24_API_VERSION", "2025-12-01"), ("CAFE24_CLIENT_ID", "cid"), ("CAFE24_CLIENT_SECRET", "csecret")];

    #[test]
    fn defaults_point_at_cafe24() {
        let c = cfg(OK).unwrap();
        assert_eq!(c.base_url(&relay_domain::MallId::parse("shop1").unwrap()), "https://shop1.cafe24api.com");
        assert_eq!(c.key_scope, KeyScope::Mall);
        assert!(!format!("{c:?}").contains("csecret"), "client secret must not print");
    }

    #[test]
    fn malformed_values_are_refused_by_name() {
        for (k, v) in [
            ("CAFE24_API_BASE_URL", "https://example.com"),
            ("CAFE24_API_BASE_URL", "ftp://{mall_id}.x"),
            ("CAFE24_API_VERSION", "latest"),
            ("CAFE24_API_VERSION", "2025-1-01"),
            ("CAFE24_TIMEOUT_MS", "0"),
            ("CAFE24_TIMEOUT_MS", "soon"),
            ("CAFE24_REFRESH_MARGIN_S", "99999"),
            ("CAFE24_TOKEN_CACHE_S", "601"),
            ("CAFE24_TOKEN_CACHE_S", "-1"),
            ("RATE_LIMIT_KEY", "shop"),
        ] {
            let mut p: Vec<(&str, &str)> = OK.iter().copied().filter(|(n, _)| *n != k).collect();
            p.push((k, v));
            match cfg(&p) {
                Err(ConfigError::Invalid { var, .. }) => assert_eq!(var, k),
                other => panic!("{k}={v}: {other:?}"),
            }
        }
        for k in ["CAFE24_CLIENT_ID", "CAFE24_CLIENT_SECRET"] {
            let p: Vec<(&str, &str)> = OK.iter().copied().filter(|(n, _)| *n != k).collect();
            assert_eq!(cfg(&p).unwrap_err(), ConfigError::Missing(k));
        }
    }

    #[test]
    fn the_api_version_is_optional_and_kept_when_set() {
        assert_eq!(cfg(OK).unwrap().api_version.as_deref(), Some("2025-12-01"));
        for unset in [None, Some(""), Some("  ")] {
            let mut p: Vec<(&str, &str)> = OK.iter().copied().filter(|(n, _)| *n != "CAFE24_API_VERSION").collect();
            if let Some(v) = unset {
                p.push(("CAFE24_API_VERSION", v));
            }
            assert_eq!(cfg(&p).unwrap().api_version, None, "{unset:?}: no header, the developer center's version");
        }
    }
}
