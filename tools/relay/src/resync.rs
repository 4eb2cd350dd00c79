//! `relay resync`: start a backfill of a mall's orders or products (a `backfill` job on the work
//! queue, bulk group, run by the worker through the mall's limiter) and follow its stored
//! progress; `relay resync status` shows the progress of each resource.

use anyhow::{bail, Result};
use relay_domain::backfill::{Progress, Resource};
use relay_domain::jobs::Job;
use relay_domain::ports::{BackfillStore, OutboundMessage};
use relay_domain::ratelimit::KeyScope;
use relay_domain::tokens::parse_cafe24_token_time;
use relay_domain::MallId;

/// Parses `--kind`: `orders`, `products` or `customers` (by join date, through Cafe24's
/// personal-data list: the worker runs it only when the stack opted in, `CustomerBackfill`).
pub fn parse_kind(raw: &str) -> std::result::Result<Resource, String> {
    let raw = raw.trim();
    Resource::parse(raw).ok_or_else(|| format!("must be orders, products or customers, not {raw:?}"))
}

/// Parses `YYYY-MM-DD` (the start of that day in KST) or a full Cafe24 timestamp.
pub fn parse_time(raw: &str) -> Result<u64> {
    let s = raw.trim();
    let full = if s.len() == 10 { format!("{s}T00:00:00+09:00") } else { s.to_owned() };
    match parse_cafe24_token_time(&full) {
        Some(ms) => Ok(ms),
        None => bail!("{raw:?} is not a date (YYYY-MM-DD) or a timestamp (2025-01-31T09:00:00+09:00)"),
    }
}

/// The backfill job for a request made at `now_ms` and its work-queue message (see
/// [`relay_domain::backfill::request`]).
pub fn job(
    mall: &MallId,
    shop: Option<relay_domain::ShopNo>,
    resource: Resource,
    since_ms: u64,
    until_ms: u64,
    now_ms: u64,
    scope: &KeyScope,
) -> Result<(Job, OutboundMessage)> {
    relay_domain::backfill::request(mall, shop, resource, (since_ms, until_ms), now_ms, scope, "resync").map_err(|e| {
        match e {
            relay_domain::backfill::RequestError::Reversed => anyhow::anyhow!("--since is after --until"),
        }
    })
}

/// Share of the work done, 0..=1000 (orders by the window reached; products done or not).
pub fn permille(p: &Progress) -> u64 {
    if p.done {
        return 1000;
    }
    match p.resource {
        Resource::Orders => {
            let span = (p.until_ms - p.since_ms).max(1);
            (p.window_start_ms.saturating_sub(p.since_ms) * 1000 / span).min(999)
        }
        Resource::Products => 0,
        Resource::Customers => {
            let span = (p.until_ms - p.since_ms).max(1);
            (p.joined_from_ms.saturating_sub(p.since_ms) * 1000 / span).min(999)
        }
    }
}

/// One line per resource for `relay resync status`.
pub fn render(p: &Progress) -> String {
    let state = if p.done { "done".to_owned() } else { format!("{:.1}%", permille(p) as f64 / 10.0) };
    let reread = if p.pages_reread > 0 {
        format!(", {} pages read twice (window halved)", p.pages_reread)
    } else {
        String::new()
    };
    format!(
        "{:<9} {state:<7} {} pages, {} items seen, {} snapshots stored{reread} (job {})",
        p.resource.as_str(),
        p.pages,
        p.seen,
        p.stored,
        p.job_id
    )
}

/// The stored progress of each resource of `mall`.
pub async fn status(state: &impl BackfillStore, mall: &MallId) -> Result<Vec<Progress>> {
    let mut out = Vec::new();
    for r in [Resource::Orders, Resource::Products] {
        if let Some(p) = state.backfill_progress(mall, r).await.map_err(|e| anyhow::anyhow!("reading progress: {e}"))? {
            out.push(p);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_anything_else_is_refused() {
        assert_eq!(parse_kind("orders").unwrap(), Resource::Orders);
        assert_eq!(parse_kind(" products ").unwrap(), Resource::Products);
        assert_eq!(parse_kind("customers").unwrap(), Resource::Customers);
        for bad in ["", "order", "ORDERS", "orders,products", "members"] {
            assert!(parse_kind(bad).unwrap_err().contains("must be orders, products or customers"), "{bad:?}");
        }
    }

    #[test]
    fn dates_parse_as_kst_and_garbage_is_refused() {
        assert_eq!(parse_time("2025-01-01").unwrap(), 1_735_657_200_000);
        assert_eq!(parse_time("2025-01-01T09:00:00+09:00").unwrap(), 1_735_689_600_000);
        for bad in ["", "yesterday", "2025-13-01", "2025/01/01"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_reversed_period_is_refused_in_the_cli_s_words() {
        let m = MallId::parse("bigshop").unwrap();
        let e = job(&m, None, Resource::Orders, 3, 2, 0, &KeyScope::Mall).unwrap_err().to_string();
        assert!(e.contains("--since is after --until"), "{e}");
        assert_eq!(
            job(&m, None, Resource::Orders, 1, 2, 60_000, &KeyScope::Mall).unwrap().1.group_id.as_str(),
            "bigshop.bulk"
        );
    }

    #[test]
    fn progress_renders_a_share_and_never_claims_done_early() {
        let mut p = Progress::new("j", Resource::Orders, 0, 1000);
        p.window_start_ms = 500;
        assert_eq!(permille(&p), 500);
        p.window_start_ms = 5_000;
        assert_eq!(permille(&p), 999);
        p.done = true;
        assert!(render(&p).contains("done"));
    }
}
