//! The configuration error every function's loader returns: it names the variable, never the
//! value (which may be a secret).

/// A configuration error naming the variable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is unset or empty.
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    /// A variable is set to an unusable value.
    #[error("environment variable {var} is invalid: {reason}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// What is wrong (never the value itself).
        reason: String,
    },
}

/// The one way every loader reads its variables: through a lookup (the process environment,
/// the stack's secret merged over it, or a test's map), values trimmed, empty meaning unset, and
/// every error naming the variable — never its value.
pub struct Env<F>(pub F);

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// The trimmed value, `None` when unset or empty.
    pub fn get(&self, var: &str) -> Option<String> {
        (self.0)(var).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    /// A variable that must be set.
    pub fn required(&self, var: &'static str) -> Result<String, ConfigError> {
        self.get(var).ok_or(ConfigError::Missing(var))
    }

    /// An optional integer in `range`, `default` when unset.
    pub fn bounded(
        &self,
        var: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<u64, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(v) => v.parse::<u64>().ok().filter(|n| range.contains(n)).ok_or_else(|| ConfigError::Invalid {
                var,
                reason: format!("must be an integer in {}..={}", range.start(), range.end()),
            }),
        }
    }

    /// A required http(s) URL.
    pub fn url(&self, var: &'static str) -> Result<String, ConfigError> {
        let v = self.required(var)?;
        if v.starts_with("https://") || v.starts_with("http://") {
            Ok(v)
        } else {
            Err(ConfigError::Invalid { var, reason: "must be an http(s) URL".into() })
        }
    }

    /// `LIMITER_RATE_PER_SEC` (2), `LIMITER_BURST` (40), `LIMITER_MIN_SPACING_MS` (140): the
    /// limiter every function that calls Cafe24 shares (the same values everywhere).
    pub fn limiter(&self) -> Result<crate::ratelimit::LimiterConfig, ConfigError> {
        let mut limiter = crate::ratelimit::LimiterConfig::default();
        if let Some(v) = self.get("LIMITER_RATE_PER_SEC") {
            limiter.rate_per_sec = v
                .parse()
                .map_err(|_| ConfigError::Invalid { var: "LIMITER_RATE_PER_SEC", reason: "must be a number".into() })?;
        }
        limiter.burst = self.bounded("LIMITER_BURST", limiter.burst.into(), 1..=10_000)? as u32;
        limiter.min_spacing_ms = self.bounded("LIMITER_MIN_SPACING_MS", limiter.min_spacing_ms, 0..=10_000)?;
        limiter.validate().map_err(|e| ConfigError::Invalid { var: "LIMITER_*", reason: e.to_string() })?;
        Ok(limiter)
    }

    /// `COMMAND_ALLOW` (unset: every request): the requests the app's commands and calls may
    /// make ([`crate::command::AllowList`]); the dispatcher and the call API read the same value.
    pub fn command_allow(&self) -> Result<crate::command::AllowList, ConfigError> {
        crate::command::AllowList::parse(&self.get("COMMAND_ALLOW").unwrap_or_default())
            .map_err(|reason| ConfigError::Invalid { var: "COMMAND_ALLOW", reason })
    }

    /// `RATE_LIMIT_KEY` (`mall` when unset): which limiter bucket a mall's calls share.
    pub fn key_scope(&self) -> Result<crate::ratelimit::KeyScope, ConfigError> {
        match self.get("RATE_LIMIT_KEY") {
            None => Ok(crate::ratelimit::KeyScope::Mall),
            Some(v) => crate::ratelimit::KeyScope::parse(&v).ok_or(ConfigError::Invalid {
                var: "RATE_LIMIT_KEY",
                reason: "must be mall, app:<client_id> or global:<name>".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> Env<impl Fn(&str) -> Option<String>> {
        Env(move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned()))
    }

    #[test]
    fn values_are_trimmed_empty_is_unset_and_errors_name_the_variable_not_the_value() {
        let e =
            env(&[("A", "  x "), ("EMPTY", "  "), ("N", "12"), ("BIG", "99"), ("NEG", "-1"), ("U", "ftp://secret")]);
        assert_eq!(e.get("A").as_deref(), Some("x"));
        assert_eq!(e.get("EMPTY"), None);
        assert_eq!(e.required("EMPTY"), Err(ConfigError::Missing("EMPTY")));
        assert_eq!(e.bounded("N", 5, 1..=20), Ok(12));
        assert_eq!(e.bounded("UNSET", 5, 1..=20), Ok(5));
        for bad in ["BIG", "NEG", "A"] {
            let err = e.bounded(bad, 5, 1..=20).unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains("1..=20"), "{err}");
        }
        let err = e.url("U").unwrap_err().to_string();
        assert!(err.contains("U ") && !err.contains("secret"), "{err}");
        assert_eq!(e.key_scope(), Ok(crate::ratelimit::KeyScope::Mall));
        assert!(env(&[("RATE_LIMIT_KEY", "shared!")]).key_scope().is_err());
    }
}
