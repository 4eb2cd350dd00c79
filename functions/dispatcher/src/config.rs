//! Dispatcher configuration, read once per cold start: a bad value fails the cold start.

use relay_domain::ratelimit::KeyScope;
use relay_domain::routing::RoutingTable;

/// Configuration, read once per cold start.
#[derive(Clone, Debug)]
pub struct DispatcherConfig {
    /// Work queue.
    pub work_queue_url: String,
    /// The inbox (this function's source queue: deferrals change its messages' visibility).
    pub inbox_queue_url: String,
    /// Parking place (the inbox DLQ).
    pub parking_queue_url: String,
    /// Token table.
    pub token_table: String,
    /// The limiter's table: an applied uninstall fences the mall's item there, so warm workers
    /// stop using tokens they cached (`relay_aws::limiter::fence`).
    pub rate_limit_table: String,
    /// The event bus the app subscribes to (name or ARN).
    pub event_bus: String,
    /// The queue the app sends commands to (`COMMAND_QUEUE_ARN`; absent: no commands). A batch
    /// from it is commands, not webhooks.
    pub command_queue_arn: Option<String>,
    /// The requests commands may make (`COMMAND_ALLOW`; a command outside it fails `not_allowed`).
    pub command_allow: relay_domain::command::AllowList,
    /// Routing table (defaults + overrides).
    pub routing: RoutingTable,
    /// Rate-limit key derivation (= work queue group id).
    pub key_scope: KeyScope,
    /// Keep-alive window, ms.
    pub keepalive_window_ms: u64,
    /// Return the rest of a batch under this much remaining time, ms.
    pub min_time_left_ms: u64,
    /// The reconciliation schedule's period, ms (`RECONCILE_MINUTES`): one reconcile job per
    /// mall and period, whatever number of times the schedule fires in it.
    pub reconcile_interval_ms: u64,
    /// How often a quiet mall (no delivery in the last hour, no failure, reception on) is
    /// reconciled, ms (`RECONCILE_QUIET_MINUTES`, 60; never less than `RECONCILE_MINUTES`): the
    /// bound on how long any mall goes unchecked.
    pub reconcile_quiet_ms: u64,
}

pub use relay_lambda::config::ConfigError;

impl DispatcherConfig {
    /// Reads the environment through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = relay_domain::config::Env(lookup);
        let req = |k: &'static str| env.required(k);
        let routing = RoutingTable::with_overrides(env.get("ROUTING_OVERRIDES").as_deref())
            .map_err(|e| ConfigError::Invalid { var: "ROUTING_OVERRIDES", reason: e.to_string() })?;
        let key_scope = env.key_scope()?;
        let bounded = |var: &'static str, default: u64, range| env.bounded(var, default, range);
        let days = bounded("KEEPALIVE_DAYS", 3, 1..=13)?;
        let reconcile_minutes = bounded("RECONCILE_MINUTES", 10, 1..=1440)?;
        let quiet_minutes = bounded("RECONCILE_QUIET_MINUTES", 60, 1..=1440)?.max(reconcile_minutes);
        Ok(Self {
            reconcile_interval_ms: reconcile_minutes * 60_000,
            reconcile_quiet_ms: quiet_minutes * 60_000,
            work_queue_url: req("WORK_QUEUE_URL")?,
            inbox_queue_url: req("INBOX_QUEUE_URL")?,
            parking_queue_url: req("PARKING_QUEUE_URL")?,
            token_table: req("TOKEN_TABLE")?,
            rate_limit_table: req("RATE_LIMIT_TABLE")?,
            event_bus: req("EVENT_BUS_NAME")?,
            command_queue_arn: env.get("COMMAND_QUEUE_ARN").filter(|v| !v.trim().is_empty()),
            command_allow: env.command_allow()?,
            routing,
            key_scope,
            keepalive_window_ms: days * 86_400_000,
            min_time_left_ms: bounded("MIN_TIME_LEFT_MS", 3_000, 0..=600_000)?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const OK: &[(&str, &str)] = &[
        ("WORK_QUEUE_URL", "http://x/work.fifo"),
        ("INBOX_QUEUE_URL", "http://x/inbox.fifo"),
        ("PARKING_QUEUE_URL", "http://x/inbox-dlq.fifo"),
        ("TOKEN_TABLE", "tokens"),
        ("RATE_LIMIT_TABLE", "rl"),
        ("EVENT_BUS_NAME", "relay-events"),
    ];

    fn cfg(pairs: &[(&str, &str)]) -> Result<DispatcherConfig, ConfigError> {
        let owned: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        DispatcherConfig::from_lookup(move |k| owned.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults_missing_and_malformed_values() {
        let c = cfg(OK).unwrap();
        assert_eq!((c.keepalive_window_ms, c.reconcile_interval_ms), (3 * 86_400_000, 600_000));
        assert_eq!(c.reconcile_quiet_ms, 3_600_000);
        for k in [
            "WORK_QUEUE_URL",
            "INBOX_QUEUE_URL",
            "PARKING_QUEUE_URL",
            "TOKEN_TABLE",
            "RATE_LIMIT_TABLE",
            "EVENT_BUS_NAME",
        ] {
            let p: Vec<_> = OK.iter().copied().filter(|(n, _)| *n != k).collect();
            assert_eq!(cfg(&p).unwrap_err(), ConfigError::Missing(k));
        }
        for (k, v) in [
            ("KEEPALIVE_DAYS", "0"),
            ("KEEPALIVE_DAYS", "x"),
            ("RATE_LIMIT_KEY", "shop"),
            ("ROUTING_OVERRIDES", "{"),
            ("ROUTING_OVERRIDES", r#"{"90157":"publish"}"#),
            ("MIN_TIME_LEFT_MS", "soon"),
            ("RECONCILE_MINUTES", "0"),
            ("RECONCILE_QUIET_MINUTES", "0"),
            ("RECONCILE_QUIET_MINUTES", "hourly"),
            ("RECONCILE_MINUTES", "every"),
        ] {
            let mut p = OK.to_vec();
            p.push((k, v));
            assert!(matches!(cfg(&p), Err(ConfigError::Invalid { .. })), "{k}={v}");
        }
    }
}
