//! The call API's configuration, read once per cold start.

use relay_domain::ratelimit::LimiterConfig;
pub use relay_lambda::config::ConfigError;

/// Configuration.
#[derive(Clone, Debug)]
pub struct CallApiConfig {
    /// Records and snapshots.
    pub state_table: String,
    /// Tokens.
    pub token_table: String,
    /// The limiter.
    pub rate_limit_table: String,
    /// The limiter's settings (the worker's).
    pub limiter: LimiterConfig,
    /// Longest budget a caller may ask for, ms.
    pub max_wait_ms: u64,
    /// The budget when the caller names none, ms.
    pub default_wait_ms: u64,
    /// The requests callers may make (`COMMAND_ALLOW`, as the dispatcher's).
    pub allow: relay_domain::command::AllowList,
}

impl CallApiConfig {
    /// Reads `STATE_TABLE`, `TOKEN_TABLE`, `RATE_LIMIT_TABLE`, `LIMITER_*`, `CALL_MAX_WAIT_MS`
    /// (10000, ≤ 25000: the function's timeout is 30 s), `CALL_DEFAULT_WAIT_MS` (3000),
    /// `COMMAND_ALLOW` (every request).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = relay_domain::config::Env(lookup);
        let max_wait_ms = env.bounded("CALL_MAX_WAIT_MS", 10_000, 0..=25_000)?;
        Ok(Self {
            state_table: env.required("STATE_TABLE")?,
            token_table: env.required("TOKEN_TABLE")?,
            rate_limit_table: env.required("RATE_LIMIT_TABLE")?,
            limiter: env.limiter()?,
            max_wait_ms,
            default_wait_ms: env.bounded("CALL_DEFAULT_WAIT_MS", 3_000.min(max_wait_ms), 0..=max_wait_ms)?,
            allow: env.command_allow()?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cfg(extra: &[(&str, &str)]) -> Result<CallApiConfig, ConfigError> {
        let base = [("STATE_TABLE", "s"), ("TOKEN_TABLE", "t"), ("RATE_LIMIT_TABLE", "rl")];
        let all: Vec<(String, String)> =
            base.iter().chain(extra).map(|(k, v)| (k.to_string(), v.to_string())).collect();
        CallApiConfig::from_lookup(move |k| all.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults_missing_and_malformed_values() {
        let c = cfg(&[]).unwrap();
        assert_eq!((c.max_wait_ms, c.default_wait_ms), (10_000, 3_000));
        assert_eq!(cfg(&[("CALL_MAX_WAIT_MS", "1000")]).unwrap().default_wait_ms, 1_000, "never above the maximum");
        for (k, v) in [
            ("CALL_MAX_WAIT_MS", "30000"),
            ("CALL_MAX_WAIT_MS", "soon"),
            ("CALL_DEFAULT_WAIT_MS", "20000"),
            ("CALL_DEFAULT_WAIT_MS", "-1"),
            ("LIMITER_BURST", "0"),
            ("LIMITER_RATE_PER_SEC", "fast"),
            ("STATE_TABLE", ""),
            ("COMMAND_ALLOW", "points"),
            ("COMMAND_ALLOW", "POST ../x"),
        ] {
            assert!(cfg(&[(k, v)]).is_err(), "{k}={v}");
        }
    }
}
