//! The backfill job: list pages (orders, products, customers; shop after shop) stored as
//! snapshots and published, the progress saved after each page (`relay_domain::backfill`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use relay_cafe24::Cafe24Error;
use relay_domain::backfill::{page_items, PageOutcome, Progress, Resource, Unpublished};
use relay_domain::delivery::snapshot_event;
use relay_domain::jobs::Job;
use relay_domain::ports::{BackfillStore, SnapshotStore, Upsert};
use relay_domain::ratelimit::Class;
use relay_domain::reconcile::has_next_page;
use relay_domain::{ShopNo, SnapshotKind};

use super::{JobOutcome, Worker};

impl<P: super::Ports> Worker<P> {
    /// A backfill job: list pages (bulk class, through the limiter) from the stored progress,
    /// every item stored as a snapshot straight from the page (versioned: a newer stored version
    /// is kept) and published like a live version; the progress is saved after each page, so a
    /// job cut off anywhere resumes at the next unread page. A slice of pages per invocation
    /// (at least one, at most 5 s of them), then the job returns (not an attempt) and the next
    /// delivery continues. A multi-shop mall is read shop after shop (`only`: one of them),
    /// the shops listed from Cafe24 before the first page.
    pub(super) async fn backfill(
        &self,
        job: &Job,
        resource: Resource,
        period: (u64, u64),
        only: Option<ShopNo>,
        budget: Duration,
        receipt: super::Receipt,
    ) -> JobOutcome {
        use futures::stream::{self, StreamExt as _};
        const PAGES_PER_RUN: usize = 20;
        /// A slice's length when the job has its batch to itself (beside other groups it runs
        /// one page: [`super::SHARED_BATCH_BUDGET`]).
        const SLICE: Duration = Duration::from_secs(5);
        let budget = budget.min(SLICE);
        /// Snapshot writes in flight at once (a page holds up to 1,000 items).
        const WRITES_IN_FLIGHT: usize = 16;
        let (since_ms, until_ms) = period;
        let started = std::time::Instant::now();
        let mall = &job.mall_id;
        let kind = resource.snapshot_kind();
        if resource == Resource::Customers && !self.cfg.customer_backfill {
            // Personal data: only when the stack opted in (and its installs asked for the scope).
            return JobOutcome::DeadLetter {
                reason: "customer backfill is off (template parameter CustomerBackfill, CUSTOMER_BACKFILL=on)".into(),
                class: "config",
            };
        }
        let mut p = match self.state.backfill_progress(mall, resource).await {
            Ok(Some(p)) if p.job_id == job.job_id.as_str() => p,
            Ok(_) => Progress::new(job.job_id.as_str(), resource, since_ms, until_ms),
            Err(e) => {
                tracing::warn!(error = %e, "backfill progress not readable");
                return JobOutcome::Retry("store");
            }
        };
        if p.shops.is_empty() {
            p.shops = match only {
                Some(shop) => vec![shop],
                None => match self.shops(job).await {
                    Ok(shops) => shops,
                    Err(outcome) => return outcome,
                },
            };
        }
        if !p.unpublished.is_empty() {
            if let Err(outcome) = self.publish_unpublished(job, kind, &mut p).await {
                return outcome;
            }
        }
        let mut saved_once = false;
        for page in 0..PAGES_PER_RUN {
            // At least one page per run, so a job always moves on.
            if page > 0 && started.elapsed() >= budget {
                break;
            }
            let Some(path) = p.next_path() else { break };
            let shop = p.shop();
            let fetched_at = self.now();
            let body = match self.cafe24.get_json(mall, &path, Class::Bulk).await {
                Ok(b) => b,
                Err(e) => return self.map_error(job, e).await,
            };
            let links_next = has_next_page(&body);
            let Some((mut items, returned)) = page_items(resource, body) else {
                return JobOutcome::DeadLetter {
                    reason: format!("{} page without a list", resource.as_str()),
                    class: "decode",
                };
            };
            // Members by join time; those already stored at the cursor's second, and those who
            // joined after the period, are not stored again.
            let members: Vec<(String, u64)> = items
                .iter()
                .filter_map(|(id, item)| {
                    let joined =
                        item.get("created_date")?.as_str().and_then(relay_domain::tokens::parse_cafe24_token_time)?;
                    Some((id.clone(), joined))
                })
                .collect();
            if resource == Resource::Customers
                && returned >= relay_domain::backfill::CUSTOMER_PAGE_LIMIT
                && members.first().zip(members.last()).is_some_and(|(a, z)| a.1 > z.1)
            {
                // The cursor pages oldest first; a full page newest first cannot be paged by it
                // and would end the listing early. Said, not guessed (docs/cafe24-conformance.md).
                return JobOutcome::DeadLetter {
                    reason: "customersprivacy answered newest join first: the created_start_date cursor cannot page it"
                        .into(),
                    class: "decode",
                };
            }
            if resource == Resource::Customers {
                items.retain(|(id, _)| p.is_new_member(id) && members.iter().any(|(m, t)| m == id && *t <= p.until_ms));
            }
            let mut stored = Vec::new();
            let upserts: Vec<_> = stream::iter(&items)
                .map(|(id, item)| async move {
                    let key = shop.entity_key(id);
                    (id, item, self.state.upsert(mall, kind, &key, fetched_at, Some(item), job.job_id.as_str()).await)
                })
                .buffered(WRITES_IN_FLIGHT)
                .collect()
                .await;
            for (id, item, result) in upserts {
                match result {
                    Ok(Upsert::Stored) => stored.push((id, item)),
                    // Unchanged content (a re-run, a resync of what is stored) or a newer version.
                    Ok(Upsert::Unchanged | Upsert::Older) => {}
                    Err(e) if e.too_large().is_some() => {
                        tracing::warn!(id = %id, error = %e, "backfilled item too large to store; skipped");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "backfilled snapshot not stored");
                        return JobOutcome::Retry("store");
                    }
                }
            }
            // Events are built and published ten at a time (one `PutEvents`), so a page's events
            // never sit in memory beside the page itself. What the bus still refuses is kept in
            // the progress and published from the store (same versions, same event ids) before
            // the next page: the page is not read again.
            p.unpublished.clear();
            for chunk in stored.chunks(10) {
                let events: Vec<_> = chunk
                    .iter()
                    .map(|(id, item)| snapshot_event(mall, shop, kind, id, fetched_at, job.trace(), Some(item)))
                    .collect();
                let refused = self.publish_retrying(&events).await;
                p.unpublished.extend(
                    refused.iter().filter_map(|&i| chunk.get(i)).map(|(id, _)| Unpublished { shop, id: (*id).clone() }),
                );
            }
            p.stored += stored.len() as u64;
            self.stats.backfilled.fetch_add(stored.len() as u64, Ordering::Relaxed);
            if resource == Resource::Customers {
                if p.advance_members(returned, &members) {
                    tracing::warn!(
                        outcome = "members_truncated",
                        "over a page of members joined in one second; the rest of it is skipped"
                    );
                }
            } else {
                let last_product_no = items.iter().filter_map(|(id, _)| id.parse::<u64>().ok()).max();
                p.advance(PageOutcome { items: returned, links_next, last_product_no });
            }
            if let Err(e) = self.state.save_backfill_progress(mall, &p).await {
                tracing::warn!(error = %e, "backfill progress not stored");
                return JobOutcome::Retry("store");
            }
            self.progressed(job, receipt, !saved_once).await;
            saved_once = true;
            if !p.unpublished.is_empty() {
                tracing::warn!(
                    unpublished = p.unpublished.len(),
                    outcome = "publish_failed",
                    "backfill events refused by the bus; kept for the next run"
                );
                return JobOutcome::PublishPending;
            }
        }
        tracing::info!(pages = p.pages, stored = p.stored, done = p.done, "backfill");
        if p.done {
            JobOutcome::Completed("backfilled")
        } else {
            JobOutcome::Defer(1)
        }
    }

    /// Publishes the events a run left unpublished, from the store: the version each item has
    /// there, if this job stored it (a newer version is its own job's to publish), under the
    /// event id that version always has. The progress is saved with what is still refused.
    async fn publish_unpublished(&self, job: &Job, kind: SnapshotKind, p: &mut Progress) -> Result<(), JobOutcome> {
        let mall = &job.mall_id;
        let mut events = Vec::new();
        let mut owners = Vec::new();
        for u in &p.unpublished {
            let key = u.shop.entity_key(&u.id);
            let head = self.state.head(mall, kind, &key).await;
            let stored = match head {
                Ok(Some(h)) if h.stored_by == job.job_id.as_str() => self.state.snapshot(mall, kind, &key).await,
                Ok(_) => continue,
                Err(e) => Err(e),
            };
            match stored {
                Ok(Some((version, data))) => {
                    events.push(snapshot_event(mall, u.shop, kind, &u.id, version, job.trace(), data.as_ref()));
                    owners.push(u.clone());
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "stored snapshot not readable for publishing");
                    return Err(JobOutcome::PublishPending);
                }
            }
        }
        let refused = self.publish_retrying(&events).await;
        p.unpublished = refused.iter().filter_map(|&i| owners.get(i).cloned()).collect();
        if let Err(e) = self.state.save_backfill_progress(mall, p).await {
            tracing::warn!(error = %e, "backfill progress not stored");
            return Err(JobOutcome::Retry("store"));
        }
        if p.unpublished.is_empty() {
            Ok(())
        } else {
            Err(JobOutcome::PublishPending)
        }
    }

    /// The mall's shops (`GET /shops`, bulk class). Without the `mall.read_store` scope (an
    /// install from before it was requested) or with an answer that lists none, the default
    /// shop alone, said in the log: other shops then need `relay resync --shop`.
    async fn shops(&self, job: &Job) -> Result<Vec<ShopNo>, JobOutcome> {
        match self.cafe24.get_json(&job.mall_id, "shops", Class::Bulk).await {
            Ok(body) => Ok(relay_domain::backfill::shops_from_body(&body).unwrap_or_else(|| {
                tracing::warn!(outcome = "shops_unlisted", "the shops answer lists none; backfilling shop 1");
                vec![ShopNo::DEFAULT]
            })),
            Err(Cafe24Error::Forbidden { .. }) => {
                tracing::warn!(
                    outcome = "shops_unlisted",
                    "shops not readable (scope mall.read_store?); backfilling shop 1"
                );
                Ok(vec![ShopNo::DEFAULT])
            }
            Err(e) => Err(self.map_error(job, e).await),
        }
    }
}
