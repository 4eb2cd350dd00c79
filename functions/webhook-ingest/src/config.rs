//! Typed configuration, read once per cold start. `from_lookup` takes any lookup function so
//! tests never touch the process environment.

use relay_domain::auth::ApiKeyVerifier;
use relay_domain::envelope::MAX_WEBHOOK_BODY_BYTES;

/// Everything webhook-ingest reads from its environment.
#[derive(Clone, Debug)]
pub struct IngestConfig {
    /// Verifies `X-API-Key` (holds digests only; `Debug` redacts).
    pub verifier: ApiKeyVerifier,
    /// Inbox FIFO queue URL.
    pub inbox_queue_url: String,
    /// Parking queue URL for unroutable webhooks.
    pub parking_queue_url: String,
    /// Largest accepted body, bytes.
    pub max_body_bytes: usize,
    /// Which routes this deployment serves (`INGEST_ROUTES`).
    pub routes: Routes,
}

/// The routes a deployment of webhook-ingest serves. The stack deploys the binary twice: Cafe24's
/// webhook deliveries on a URL and a reserved concurrency of their own, the merchants' browsers
/// (App URL launch, OAuth callback) on another — a flood of junk on the public browser-facing
/// URL must not turn into 429s for Cafe24's deliveries, which Cafe24 counts against reception.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routes {
    /// Both (`all`, the default: local runs and single-URL setups).
    All,
    /// `POST /webhooks/cafe24` only (`webhooks`).
    Webhooks,
    /// `/install` and `/oauth/callback` only (`app`).
    App,
}

impl Routes {
    /// Serves Cafe24's webhook deliveries.
    pub fn webhooks(self) -> bool {
        self != Self::App
    }

    /// Serves the browser-facing install flow.
    pub fn app(self) -> bool {
        self != Self::Webhooks
    }
}

pub use relay_lambda::config::ConfigError;

impl IngestConfig {
    /// Reads the configuration through `lookup` (e.g. `|k| std::env::var(k).ok()`).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = relay_domain::config::Env(lookup);
        let key = env.required("WEBHOOK_API_KEY")?;
        let previous = env.get("WEBHOOK_API_KEY_PREVIOUS");
        let verifier = ApiKeyVerifier::new(&key, previous.as_deref())
            .map_err(|e| ConfigError::Invalid { var: "WEBHOOK_API_KEY", reason: e.to_string() })?;

        let inbox_queue_url = env.url("INBOX_QUEUE_URL")?;
        let parking_queue_url = env.url("PARKING_QUEUE_URL")?;
        let max_body_bytes =
            env.bounded("MAX_BODY_BYTES", MAX_WEBHOOK_BODY_BYTES as u64, 1..=MAX_WEBHOOK_BODY_BYTES as u64)? as usize;
        let routes = match env.get("INGEST_ROUTES").as_deref().map(str::trim) {
            None | Some("" | "all") => Routes::All,
            Some("webhooks") => Routes::Webhooks,
            Some("app") => Routes::App,
            Some(_) => {
                return Err(ConfigError::Invalid { var: "INGEST_ROUTES", reason: "one of all, webhooks, app".into() })
            }
        };
        Ok(Self { verifier, inbox_queue_url, parking_queue_url, max_body_bytes, routes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    const OK: &[(&str, &str)] = &[
        ("WEBHOOK_API_KEY", "k1"),
        ("INBOX_QUEUE_URL", "http://127.0.0.1:1/q/inbox.fifo"),
        ("PARKING_QUEUE_URL", "http://127.0.0.1:1/q/inbox-dlq.fifo"),
    ];

    #[test]
    fn minimal_config_uses_defaults() {
        let c = IngestConfig::from_lookup(lookup(OK)).unwrap();
        assert_eq!(c.max_body_bytes, MAX_WEBHOOK_BODY_BYTES);
        assert!(c.verifier.verify(Some(b"k1")));
    }

    #[test]
    fn the_routes_are_all_by_default_and_a_bad_value_is_named() {
        assert_eq!(IngestConfig::from_lookup(lookup(OK)).unwrap().routes, Routes::All);
        for (v, want) in [("webhooks", Routes::Webhooks), ("app", Routes::App), (" all ", Routes::All)] {
            let mut pairs = OK.to_vec();
            pairs.push(("INGEST_ROUTES", v));
            assert_eq!(IngestConfig::from_lookup(lookup(&pairs)).unwrap().routes, want);
        }
        for bad in ["both", "WEBHOOKS", "install"] {
            let mut pairs = OK.to_vec();
            pairs.push(("INGEST_ROUTES", bad));
            let err = IngestConfig::from_lookup(lookup(&pairs)).unwrap_err();
            assert!(matches!(err, ConfigError::Invalid { var: "INGEST_ROUTES", .. }), "{bad}: {err:?}");
        }
    }

    #[test]
    fn each_missing_required_variable_is_named() {
        for var in ["WEBHOOK_API_KEY", "INBOX_QUEUE_URL", "PARKING_QUEUE_URL"] {
            let pairs: Vec<_> = OK.iter().copied().filter(|(k, _)| *k != var).collect();
            assert_eq!(IngestConfig::from_lookup(lookup(&pairs)).unwrap_err(), ConfigError::Missing(var));
            let mut blank = pairs.clone();
            blank.push((var, "   "));
            assert_eq!(IngestConfig::from_lookup(lookup(&blank)).unwrap_err(), ConfigError::Missing(var));
        }
    }

    #[test]
    fn malformed_values_are_refused_without_echoing_them() {
        for (var, val) in [
            ("MAX_BODY_BYTES", "lots"),
            ("MAX_BODY_BYTES", "0"),
            ("MAX_BODY_BYTES", "-1"),
            ("MAX_BODY_BYTES", "999999999"),
            ("INBOX_QUEUE_URL", "inbox.fifo"),
            ("PARKING_QUEUE_URL", "ftp://x"),
        ] {
            let mut pairs: Vec<_> = OK.iter().copied().filter(|(k, _)| *k != var).collect();
            pairs.push((var, val));
            match IngestConfig::from_lookup(lookup(&pairs)) {
                Err(ConfigError::Invalid { var: v, reason }) => {
                    assert_eq!(v, var);
                    assert!(val.len() < 3 || !reason.contains(val), "reason echoes the value: {reason}");
                }
                other => panic!("{var}={val}: {other:?}"),
            }
        }
    }

    #[test]
    fn previous_key_is_optional_and_accepted() {
        let mut pairs = OK.to_vec();
        pairs.push(("WEBHOOK_API_KEY_PREVIOUS", "k0"));
        let c = IngestConfig::from_lookup(lookup(&pairs)).unwrap();
        assert!(c.verifier.verify(Some(b"k0")) && c.verifier.verify(Some(b"k1")));
    }

    #[test]
    fn debug_output_redacts_the_keys() {
        let c = IngestConfig::from_lookup(lookup(&[
            ("WEBHOOK_API_KEY", "very-secret-1"),
            ("INBOX_QUEUE_URL", "http://x/q.fifo"),
            ("PARKING_QUEUE_URL", "http://x/p.fifo"),
        ]))
        .unwrap();
        assert!(!format!("{c:?}").contains("very-secret"));
    }
}
