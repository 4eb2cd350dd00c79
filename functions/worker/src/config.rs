//! Worker configuration, read once per cold start.

use relay_domain::ratelimit::LimiterConfig;

/// What the worker reads from its environment (besides `relay_cafe24::Cafe24Config`).
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The work queue (for visibility changes).
    pub work_queue_url: String,
    /// The inbox, where reconciliation re-injects webhooks Cafe24 failed to deliver.
    pub inbox_queue_url: String,
    /// Reconciliation leaves webhook logs younger than this for the next run (Cafe24 may
    /// still be retrying them), ms.
    pub reconcile_settle_ms: u64,
    /// How far back a mall's first reconciliation reads the webhook logs, ms.
    pub reconcile_lookback_ms: u64,
    /// Backfills of customers by join date (`/customersprivacy`: personal data, scope
    /// `mall.read_privacy`) are allowed: `CUSTOMER_BACKFILL=on` (template `CustomerBackfill`).
    pub customer_backfill: bool,
    /// The worker's FIFO DLQ.
    pub dlq_url: String,
    /// State table (idempotency, attempts, snapshots).
    pub state_table: String,
    /// Token table.
    pub token_table: String,
    /// Rate-limit table.
    pub rate_limit_table: String,
    /// The event bus the app subscribes to (name or ARN).
    pub event_bus: String,
    /// Real failed attempts before a job goes to the DLQ.
    pub max_attempts: u32,
    /// Shortest deferral, seconds: long enough for the limiter to accrue a batch's worth of
    /// calls, so a returning group runs without waiting.
    pub defer_min_s: u32,
    /// Return the rest of a batch when less than this is left of the invocation, ms.
    pub min_time_left_ms: u64,
    /// Longest limiter wait slept inside an invocation, ms (`WORKER_MAX_SLEEP_MS`, 0..=5000);
    /// longer waits defer the message instead of billing the sleep.
    pub max_sleep_ms: u64,
    /// Jobs of one mall's group in flight at once in an invocation (`JOBS_IN_FLIGHT`, 1..=8,
    /// default 2): above 1, sync jobs of different entities overlap (the mall's calls can keep
    /// to the limiter's spacing while each job's Cafe24 and DynamoDB round trips run), asking
    /// the rate gate in the group's order; anything else runs alone. Why 2:
    /// docs/decisions/worker.md.
    pub jobs_in_flight: usize,
    /// How long a completed job is remembered, ms.
    pub idempotency_ttl_ms: u64,
    /// Keep-alive: renew refresh tokens expiring within this many ms.
    pub keepalive_window_ms: u64,
    /// Limiter settings.
    pub limiter: LimiterConfig,
}

pub use relay_lambda::config::ConfigError;

impl WorkerConfig {
    /// Reads `WORK_QUEUE_URL`, `WORKER_DLQ_URL`, `STATE_TABLE`, `TOKEN_TABLE`, `RATE_LIMIT_TABLE`,
    /// `EVENT_BUS_NAME`, `INBOX_QUEUE_URL`, `RECONCILE_SETTLE_S` (300), `RECONCILE_LOOKBACK_HOURS` (24),
    /// `MAX_ATTEMPTS` (5), `DEFER_MIN_S` (1), `MIN_TIME_LEFT_MS` (5000), `KEEPALIVE_DAYS` (3),
    /// `LIMITER_RATE_PER_SEC` (2), `LIMITER_BURST` (40), `LIMITER_MIN_SPACING_MS` (140),
    /// `WORKER_MAX_SLEEP_MS` (200), `JOBS_IN_FLIGHT` (2), `CUSTOMER_BACKFILL` (`off`; `on`).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = relay_domain::config::Env(lookup);
        let req = |k: &'static str| env.required(k);
        let num = |k: &'static str, default: u64, min: u64, max: u64| env.bounded(k, default, min..=max);
        let limiter = env.limiter()?;
        Ok(Self {
            work_queue_url: req("WORK_QUEUE_URL")?,
            inbox_queue_url: req("INBOX_QUEUE_URL")?,
            reconcile_settle_ms: num("RECONCILE_SETTLE_S", 300, 0, 86_400)? * 1_000,
            reconcile_lookback_ms: num("RECONCILE_LOOKBACK_HOURS", 24, 1, 24 * 90)? * 3_600_000,
            customer_backfill: match env.get("CUSTOMER_BACKFILL").as_deref() {
                None | Some("off") => false,
                Some("on") => true,
                Some(_) => {
                    return Err(ConfigError::Invalid { var: "CUSTOMER_BACKFILL", reason: "must be on or off".into() })
                }
            },
            dlq_url: req("WORKER_DLQ_URL")?,
            state_table: req("STATE_TABLE")?,
            token_table: req("TOKEN_TABLE")?,
            rate_limit_table: req("RATE_LIMIT_TABLE")?,
            event_bus: req("EVENT_BUS_NAME")?,
            max_attempts: num("MAX_ATTEMPTS", 5, 1, 100)? as u32,
            defer_min_s: num("DEFER_MIN_S", 1, 0, 900)? as u32,
            min_time_left_ms: num("MIN_TIME_LEFT_MS", 5_000, 0, 600_000)?,
            max_sleep_ms: num("WORKER_MAX_SLEEP_MS", 200, 0, 5_000)?,
            jobs_in_flight: num("JOBS_IN_FLIGHT", 2, 1, 8)? as usize,
            idempotency_ttl_ms: 24 * 3_600_000,
            keepalive_window_ms: num("KEEPALIVE_DAYS", 3, 1, 13)? * 86_400_000,
            limiter,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &[(&str, &str)] = &[
        ("WORK_QUEUE_URL", "http://x/work.fifo"),
        ("WORKER_DLQ_URL", "http://x/work-dlq.fifo"),
        ("STATE_TABLE", "state"),
        ("TOKEN_TABLE", "tokens"),
        ("RATE_LIMIT_TABLE", "rl"),
        ("EVENT_BUS_NAME", "bus"),
        ("INBOX_QUEUE_URL", "http://x/inbox.fifo"),
    ];

    fn cfg(pairs: &[(&str, &str)]) -> Result<WorkerConfig, ConfigError> {
        let owned: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        WorkerConfig::from_lookup(move |k| owned.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults_and_missing_variables() {
        let c = cfg(OK).unwrap();
        assert_eq!((c.max_attempts, c.defer_min_s, c.limiter.burst, c.jobs_in_flight), (5, 1, 40, 2));
        assert_eq!((c.reconcile_settle_ms, c.reconcile_lookback_ms), (300_000, 86_400_000));
        assert!(!c.customer_backfill, "personal data only when opted in");
        let mut on = OK.to_vec();
        on.push(("CUSTOMER_BACKFILL", "on"));
        assert!(cfg(&on).unwrap().customer_backfill);
        for k in [
            "WORK_QUEUE_URL",
            "WORKER_DLQ_URL",
            "STATE_TABLE",
            "TOKEN_TABLE",
            "RATE_LIMIT_TABLE",
            "EVENT_BUS_NAME",
            "INBOX_QUEUE_URL",
        ] {
            let p: Vec<_> = OK.iter().copied().filter(|(n, _)| *n != k).collect();
            assert_eq!(cfg(&p).unwrap_err(), ConfigError::Missing(k));
        }
    }

    #[test]
    fn malformed_values_are_refused_by_name() {
        for (k, v) in [
            ("MAX_ATTEMPTS", "0"),
            ("RECONCILE_SETTLE_S", "soon"),
            ("RECONCILE_LOOKBACK_HOURS", "0"),
            ("RECONCILE_LOOKBACK_HOURS", "99999"),
            ("MAX_ATTEMPTS", "many"),
            ("DEFER_MIN_S", "-1"),
            ("LIMITER_RATE_PER_SEC", "fast"),
            ("LIMITER_RATE_PER_SEC", "0"),
            ("LIMITER_BURST", "0"),
            ("KEEPALIVE_DAYS", "30"),
            ("WORKER_MAX_SLEEP_MS", "lots"),
            ("WORKER_MAX_SLEEP_MS", "60000"),
            ("JOBS_IN_FLIGHT", "0"),
            ("JOBS_IN_FLIGHT", "9"),
            ("JOBS_IN_FLIGHT", "four"),
            ("CUSTOMER_BACKFILL", "yes"),
            ("CUSTOMER_BACKFILL", "ON"),
        ] {
            let mut p: Vec<_> = OK.to_vec();
            p.push((k, v));
            assert!(matches!(cfg(&p), Err(ConfigError::Invalid { .. })), "{k}={v}");
        }
    }
}
