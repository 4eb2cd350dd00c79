//! `relay malls`, `relay mall status|reauth-url`.
//!
//! Status reads, never writes: the token item (status, expiries, refresh lease — never the token
//! values), the limiter item of the mall's rate-limit key, and the queue counts. SQS cannot count
//! one message group's messages without receiving them, so pending work is shown queue-wide.

use anyhow::{bail, Context, Result};
use relay_aws::tokens::{DynamoTokenStore, MallPage};
use relay_domain::ports::{ConfigFaultStore, ReconcileState, ReconcileStore};
use relay_domain::ratelimit::{KeyScope, LimiterConfig, LimiterState};
use relay_domain::tokens::{TokenRecord, TokenStatus, TokenStore};
use relay_domain::MallId;
use relay_lambda::clock::now_ms;

use crate::dlq;
use crate::target::Target;

/// Parses a mall id with the domain's rule.
pub fn parse_mall(raw: &str) -> Result<MallId> {
    MallId::parse(raw).map_err(|e| anyhow::anyhow!("{raw:?} is not a mall id: {e}"))
}

/// What to tell a mall that must (re-)authorize the app: the App URL (webhook-ingest's
/// `/install`) and how it is opened. `/install` accepts only Cafe24's signed launch, so the
/// merchant opens the app from the Cafe24 admin, which calls this URL with its signature; a bare
/// link would be refused. The first line is the URL alone.
pub fn reauth_url(ingest_url: &str, mall: &MallId) -> Result<String> {
    let base = ingest_url.trim().trim_end_matches('/');
    if !(base.starts_with("https://") || base.starts_with("http://127.0.0.1") || base.starts_with("http://localhost")) {
        bail!("INGEST_URL must be an https:// URL (plain http only for localhost): {base:?}");
    }
    Ok(format!(
        "{base}/install\nmall {}: the merchant opens the app from the Cafe24 admin (My Apps); Cafe24 then opens this App URL \
         with its signature (hmac, timestamp) and the OAuth consent follows. The URL alone, unsigned, is refused.",
        mall.as_str()
    ))
}

/// Everything `mall status` shows.
#[derive(Clone, Debug)]
pub struct Status {
    pub mall: MallId,
    /// Token record, if the mall was ever installed.
    pub token: Option<TokenRecord>,
    /// The rate-limit key and its stored state.
    pub limiter: (String, Option<LimiterState>),
    /// (queue name, visible, in flight).
    pub queues: Vec<(&'static str, u64, u64)>,
    /// What the last reconcile run saw (`None` without a `STATE_TABLE` in the target).
    pub reconcile: Option<ReconcileState>,
    /// The stack's last configuration fault (Cafe24 refusing the API version or the client
    /// secret, for every mall) and when a worker last met it.
    pub config_fault: Option<(String, u64)>,
}

/// A configuration fault met within this long is shown as current.
const FAULT_RECENT_MS: u64 = 15 * 60_000;

/// Reads a mall's status.
pub async fn status(target: &Target, sdk: &aws_config::SdkConfig, mall: &MallId) -> Result<Status> {
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let token = DynamoTokenStore::new(ddb.clone(), target.require("TOKEN_TABLE")?)
        .get(mall)
        .await
        .map_err(|e| anyhow::anyhow!("reading the token table: {e}"))?;
    let scope = match target.get("RATE_LIMIT_KEY") {
        Some(v) => KeyScope::parse(v)
            .with_context(|| format!("RATE_LIMIT_KEY {v:?} is not mall, app:<id> or global:<name>"))?,
        None => KeyScope::default(),
    };
    let key = scope.key(mall);
    let (reconcile, config_fault) = match target.get("STATE_TABLE") {
        Some(t) => {
            let state = relay_aws::state::DynamoState::new(ddb.clone(), t);
            let read = |e: relay_domain::ports::StoreError| anyhow::anyhow!("reading the state table: {e}");
            (Some(state.reconcile_state(mall).await.map_err(read)?), state.config_fault().await.map_err(read)?)
        }
        None => (None, None),
    };
    let limiter = relay_aws::limiter::DynamoLimiter::new(
        ddb,
        target.require("RATE_LIMIT_TABLE")?,
        LimiterConfig::default(),
        relay_lambda::clock::system_clock(),
    );
    let state = limiter.stored(key.as_str()).await.map_err(|e| anyhow::anyhow!("reading the rate-limit table: {e}"))?;
    let mut queues = Vec::new();
    for (name, k) in [
        ("inbox", "INBOX_QUEUE_URL"),
        ("inbox DLQ", "INBOX_DLQ_URL"),
        ("work", "WORK_QUEUE_URL"),
        ("work DLQ", "WORK_DLQ_URL"),
    ] {
        if let Some(url) = target.get(k) {
            let (v, f) = dlq::counts(&sqs, url).await?;
            queues.push((name, v, f));
        }
    }
    Ok(Status { mall: mall.clone(), token, limiter: (key.as_str().to_owned(), state), queues, reconcile, config_fault })
}

fn when(ms: u64, now: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let at = chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    let (d, sign) = if ms >= now { (ms - now, "in ") } else { (now - ms, "") };
    let s = d / 1000;
    let rel = if s >= 86_400 {
        format!("{}d {}h", s / 86_400, s % 86_400 / 3600)
    } else if s >= 3600 {
        format!("{}h {}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}m {}s", s / 60, s % 60)
    };
    let ago = if sign.is_empty() { " ago" } else { "" };
    format!("{at} ({sign}{rel}{ago})")
}

/// Renders a status for a terminal (`now_ms` makes it testable).
pub fn render(s: &Status, now: u64) -> String {
    let mut out = format!("mall {}\n", s.mall.as_str());
    if let Some((fault, at)) = s.config_fault.as_ref().filter(|(_, at)| now.saturating_sub(*at) < FAULT_RECENT_MS) {
        out.push_str(&format!(
            "  CAFE24 REFUSES THE RELAY'S CONFIGURATION ({fault}), last met {} — every mall waits; see Cafe24ConfigFaultAlarm in docs/operations.md\n",
            when(*at, now)
        ));
    }
    match &s.token {
        None => out.push_str("  token:    none (never installed here) — send the operator `relay mall reauth-url`\n"),
        Some(t) => {
            out.push_str(&format!("  token:    {}\n", t.status.as_str()));
            out.push_str(&format!("    access expires   {}\n", when(t.pair.access_expires_ms, now)));
            out.push_str(&format!("    refresh expires  {}\n", when(t.pair.refresh_expires_ms, now)));
            out.push_str(&format!("    scopes           {}\n", t.pair.scopes.join(",")));
            out.push_str(&format!("    last change      {}\n", when(t.updated_ms, now)));
            if t.lease_until_ms > now {
                out.push_str(&format!("    refresh lease    held until {}\n", when(t.lease_until_ms, now)));
            }
        }
    }
    let (key, state) = &s.limiter;
    match state {
        None => out.push_str(&format!("  limiter:  key {key}: no calls yet\n")),
        Some(l) => {
            let cfg = LimiterConfig::default();
            let ahead = l.tat_ms.saturating_sub(now);
            let used = ahead as f64 * cfg.rate_per_sec / 1000.0;
            out.push_str(&format!(
                "  limiter:  key {key}: ≈{used:.1} calls of bucket credit in use (drain {}/s), last call {}\n",
                cfg.rate_per_sec,
                when(l.last_ms, now)
            ));
            if l.not_before_ms > now {
                out.push_str(&format!(
                    "    blocked until    {} (Cafe24 asked us to wait)\n",
                    when(l.not_before_ms, now)
                ));
            }
        }
    }
    match &s.reconcile {
        None => {}
        Some(r) if r.last_run_ms == 0 => out.push_str("  webhooks: not reconciled yet\n"),
        Some(r) => {
            let reception = match r.reception_on {
                Some(true) => "on",
                Some(false) => "OFF at Cafe24 — no webhooks are sent; reconciliation recovers them from the logs",
                None => "unknown",
            };
            out.push_str(&format!("  webhooks: reception {reception}\n"));
            let last = if r.last_delivered_ms == 0 {
                "none in the logs read".to_owned()
            } else {
                when(r.last_delivered_ms, now)
            };
            out.push_str(&format!(
                "    last delivered   {last} (newest successful delivery in Cafe24's webhook log)\n"
            ));
            out.push_str(&format!(
                "    last reconciled  {} ({} failed deliveries in the logs, {} re-injected in all)\n",
                when(r.last_run_ms, now),
                r.failed_logs,
                r.reinjected_total
            ));
        }
    }
    out.push_str("  queues (all malls; SQS cannot count one group):\n");
    for (name, v, f) in &s.queues {
        out.push_str(&format!("    {name:<10} {v:>6} waiting {f:>6} in flight\n"));
    }
    out
}

/// `relay malls`: one page of the token table, rendered, and the command for the next page.
pub async fn list_text(
    target: &Target,
    sdk: &aws_config::SdkConfig,
    status: Option<TokenStatus>,
    after: Option<&MallId>,
    max: usize,
) -> Result<String> {
    if max == 0 {
        bail!("--max must be at least 1");
    }
    let store = DynamoTokenStore::new(aws_sdk_dynamodb::Client::new(sdk), target.require("TOKEN_TABLE")?);
    let page =
        store.list(status, after, max, 100).await.map_err(|e| anyhow::anyhow!("reading the token table: {e}"))?;
    Ok(render_list(&page, status, max, now_ms()))
}

/// Renders a listing page (`now` makes it testable).
pub fn render_list(page: &MallPage, status: Option<TokenStatus>, max: usize, now: u64) -> String {
    let mut out =
        format!("{:<20} {:<13} {:<36} {:<36} last change\n", "mall", "status", "refresh expires", "access expires");
    for r in &page.rows {
        out.push_str(&format!(
            "{:<20} {:<13} {:<36} {:<36} {}\n",
            r.mall.as_str(),
            r.status.as_str(),
            when(r.refresh_expires_ms, now),
            when(r.access_expires_ms, now),
            when(r.updated_ms, now)
        ));
    }
    let what = status.map(|s| format!(" {}", s.as_str())).unwrap_or_default();
    out.push_str(&format!("{}{what} mall(s)", page.rows.len()));
    match &page.next_after {
        Some(m) => {
            let filter = status.map(|s| format!(" --status {}", s.as_str())).unwrap_or_default();
            out.push_str(&format!("; more: relay malls{filter} --max {max} --after {}\n", m.as_str()));
        }
        None => out.push_str(", end of the table\n"),
    }
    out
}

/// `relay mall status` output for `mall`.
pub async fn status_text(target: &Target, sdk: &aws_config::SdkConfig, mall: &MallId) -> Result<String> {
    Ok(render(&status(target, sdk, mall).await?, now_ms()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_domain::tokens::{Secret, TokenPair, TokenStatus};

    #[test]
    fn reauth_links_point_at_install_and_refuse_bad_input() {
        let m = parse_mall("bigshop").unwrap();
        let text = reauth_url("https://x.lambda-url.on.aws/", &m).unwrap();
        assert_eq!(text.lines().next(), Some("https://x.lambda-url.on.aws/install"));
        assert!(text.contains("mall bigshop") && text.contains("Cafe24 admin"), "{text}");
        assert!(reauth_url("http://evil.example", &m).is_err());
        assert!(reauth_url("", &m).is_err());
        assert!(parse_mall("no spaces!").is_err());
    }

    #[test]
    fn status_shows_expiries_but_never_token_values() {
        let now = 1_800_000_000_000;
        let s = Status {
            mall: parse_mall("bigshop").unwrap(),
            token: Some(TokenRecord {
                mall_id: parse_mall("bigshop").unwrap(),
                pair: TokenPair {
                    access_token: Secret::new("ACCESS-VALUE"),
                    access_expires_ms: now + 3_600_000,
                    refresh_token: Secret::new("REFRESH-VALUE"),
                    refresh_expires_ms: now + 14 * 86_400_000,
                    scopes: vec!["mall.read_order".into()],
                },
                status: TokenStatus::Active,
                version: 3,
                lease_until_ms: 0,
                lease_owner: String::new(),
                updated_ms: now - 60_000,
            }),
            limiter: (
                "bigshop".into(),
                Some(LimiterState { tat_ms: now + 5_000, not_before_ms: now + 2_000, last_ms: now - 100 }),
            ),
            queues: vec![("work", 3, 1)],
            reconcile: Some(ReconcileState {
                checkpoint_ms: Some(now - 300_000),
                reception_on: Some(false),
                failed_logs: 4,
                reinjected_total: 9,
                last_run_ms: now - 120_000,
                last_delivered_ms: now - 7_200_000,
            }),
            config_fault: Some(("api_version_unavailable".into(), now - 30_000)),
        };
        let text = render(&s, now);
        assert!(text.contains("REFUSES THE RELAY'S CONFIGURATION (api_version_unavailable)"), "{text}");
        let old = Status { config_fault: Some(("client_rejected".into(), now - FAULT_RECENT_MS)), ..s.clone() };
        assert!(!render(&old, now).contains("REFUSES"), "an old fault is not shown as current");
        assert!(text.contains("reception OFF at Cafe24") && text.contains("4 failed deliveries"), "{text}");
        assert!(text.contains("last delivered") && text.contains("(2h 0m ago)"), "{text}");
        assert!(text.contains("active") && text.contains("in 1h 0m") && text.contains("in 14d 0h"), "{text}");
        assert!(text.contains("≈10.0 calls") && text.contains("blocked until"), "{text}");
        assert!(!text.contains("ACCESS-VALUE") && !text.contains("REFRESH-VALUE"));
    }
}
