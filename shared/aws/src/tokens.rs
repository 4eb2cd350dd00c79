//! DynamoDB token store: one item per mall, `pk` = mall id.
//!
//! Attributes: `access`, `refresh` (S, the token values — DynamoDB encrypts at rest; they are
//! never logged), `access_exp`, `refresh_exp` (N, epoch ms), `scopes` (S, comma-joined),
//! `status` (S), `v` (N, bumped by every write), `lease_until` (N), `lease_owner` (S), `updated` (N),
//! `recon_at` (N) and `recon_busy` (BOOL): the mall's last reconcile run, read by the scheduled
//! reconciliation's scan (busy malls every period, quiet ones every `RECONCILE_QUIET_MINUTES`).
//! The refresh lease is a conditional write on `v` and `lease_until`, so exactly one caller
//! refreshes a mall at a time, and the new pair is written (conditioned on still holding the
//! lease) before anyone uses it. A retried write that finds its own applied first attempt (the
//! lease owner it wrote, or the pair it stored, at the version it set) reports success.
//!
//! An applied uninstall also fences the mall's limiter item when the store is built
//! [`DynamoTokenStore::fencing`] (the dispatcher's is): warm workers then stop using the tokens
//! they cached (`relay_aws::limiter::fence`).

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use relay_domain::ports::{ScheduleCursor, StoreError};
use relay_domain::tokens::{LeaseOutcome, Secret, TokenPair, TokenRecord, TokenStatus, TokenStore};
use relay_domain::MallId;

/// The token table.
#[derive(Clone, Debug)]
pub struct DynamoTokenStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    reads: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The limiter table and key scope an applied uninstall is fenced on.
    fence: Option<(String, relay_domain::ratelimit::KeyScope)>,
}

type Item = HashMap<String, AttributeValue>;

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_n(i: &Item, k: &str) -> u64 {
    i.get(k).and_then(|v| v.as_n().ok()).and_then(|x| x.parse().ok()).unwrap_or(0)
}

fn get_s<'a>(i: &'a Item, k: &str) -> &'a str {
    i.get(k).and_then(|v| v.as_s().ok()).map(String::as_str).unwrap_or("")
}

fn record(i: &Item) -> Option<TokenRecord> {
    let mall_id = MallId::parse(get_s(i, "pk")).ok()?;
    Some(TokenRecord {
        mall_id,
        pair: TokenPair {
            access_token: Secret::new(get_s(i, "access")),
            access_expires_ms: get_n(i, "access_exp"),
            refresh_token: Secret::new(get_s(i, "refresh")),
            refresh_expires_ms: get_n(i, "refresh_exp"),
            scopes: get_s(i, "scopes").split(',').filter(|x| !x.is_empty()).map(str::to_owned).collect(),
        },
        status: TokenStatus::parse(get_s(i, "status")),
        version: get_n(i, "v"),
        lease_until_ms: get_n(i, "lease_until"),
        lease_owner: get_s(i, "lease_owner").to_owned(),
        updated_ms: get_n(i, "updated"),
    })
}

fn err<E: std::error::Error + Send + Sync + 'static>(e: E) -> StoreError {
    StoreError(Box::new(e))
}

fn conflict_item(e: &SdkError<UpdateItemError>) -> Option<Option<Item>> {
    match e {
        SdkError::ServiceError(se) => match se.err() {
            UpdateItemError::ConditionalCheckFailedException(c) => Some(c.item().cloned()),
            _ => None,
        },
        _ => None,
    }
}

/// What [`DynamoTokenStore::import`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Imported {
    /// The pair is stored.
    Stored,
    /// The stored pair is newer: kept.
    Newer,
    /// A refresh of the stored pair is under way: kept.
    Leased,
}

impl DynamoTokenStore {
    /// The write of an install: the pair, status active, no lease, a new version.
    fn install_update(
        &self,
        mall: &MallId,
        pair: &TokenPair,
        now_ms: u64,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(mall.as_str()))
            .update_expression(
                "SET access = :a, access_exp = :ae, refresh = :r, refresh_exp = :re, scopes = :sc, #st = :active, \
                 lease_until = :zero, lease_owner = :none, updated = :now, installed = :now ADD v :one",
            )
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":a", s(pair.access_token.expose()))
            .expression_attribute_values(":ae", n(pair.access_expires_ms))
            .expression_attribute_values(":r", s(pair.refresh_token.expose()))
            .expression_attribute_values(":re", n(pair.refresh_expires_ms))
            .expression_attribute_values(":sc", s(&pair.scopes.join(",")))
            .expression_attribute_values(":active", s(TokenStatus::Active.as_str()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":none", s(""))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":one", n(1))
    }

    /// Stores `pair` for `mall` as the install callback would (active, no lease) — a pair
    /// taken over from another app (`relay mall import`) — unless the stored record is newer:
    /// a later refresh token expiry (the relay refreshed, or the merchant consented through it),
    /// or a refresh under way. Repeating it with the same pair stores it again.
    pub async fn import(&self, mall: &MallId, pair: &TokenPair, now_ms: u64) -> Result<Imported, StoreError> {
        let r = self
            .install_update(mall, pair, now_ms)
            .condition_expression("attribute_not_exists(pk) OR (refresh_exp <= :re AND lease_until <= :now)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match r {
            Ok(_) => Ok(Imported::Stored),
            Err(e) if conflict_item(&e).is_some() => {
                let newer = conflict_item(&e)
                    .flatten()
                    .and_then(|i| i.get("refresh_exp").and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<u64>().ok()))
                    .is_some_and(|exp| exp > pair.refresh_expires_ms);
                Ok(if newer { Imported::Newer } else { Imported::Leased })
            }
            Err(e) => Err(err(e)),
        }
    }

    /// A store on `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), reads: Default::default(), fence: None }
    }

    /// This store, fencing every applied uninstall on the limiter `table` under `scope`'s key.
    pub fn fencing(mut self, table: impl Into<String>, scope: relay_domain::ratelimit::KeyScope) -> Self {
        self.fence = Some((table.into(), scope));
        self
    }

    /// Record reads (`get`, consistent `GetItem`) sent so far by this store and its clones.
    pub fn reads(&self) -> u64 {
        self.reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn scan(&self, filter: &str, values: Vec<(&str, AttributeValue)>) -> Result<Vec<MallId>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut req = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression(filter)
                // Only the key comes back: the listing never reads a mall's tokens (the
                // template's IAM condition allows no other attribute).
                .projection_expression("pk")
                .expression_attribute_names("#st", "status")
                .set_exclusive_start_key(start.take());
            for (k, v) in &values {
                req = req.expression_attribute_values(*k, v.clone());
            }
            let page = req.send().await.map_err(err)?;
            out.extend(page.items().iter().filter_map(|i| MallId::parse(get_s(i, "pk")).ok()));
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        out.sort();
        Ok(out)
    }
}

/// One mall in a listing (`relay malls`): status and expiries, never the token values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MallRow {
    pub mall: MallId,
    /// Token status.
    pub status: TokenStatus,
    /// Access token expiry, epoch ms.
    pub access_expires_ms: u64,
    /// Refresh token expiry, epoch ms.
    pub refresh_expires_ms: u64,
    /// Last change of the item, epoch ms.
    pub updated_ms: u64,
}

/// One page of a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MallPage {
    /// Malls in table order.
    pub rows: Vec<MallRow>,
    /// Where the next page starts (`after` of the next call), if there is more.
    pub next_after: Option<MallId>,
    /// DynamoDB `Scan` calls made.
    pub scans: u32,
}

impl DynamoTokenStore {
    /// Up to `max` malls (optionally only those with `status`) after `after` in table order. Each
    /// `Scan` reads one page of at most `page` items and only the listing's attributes — the
    /// token values are never read. A page cut at `max` continues at its last row.
    pub async fn list(
        &self,
        status: Option<TokenStatus>,
        after: Option<&MallId>,
        max: usize,
        page: i32,
    ) -> Result<MallPage, StoreError> {
        let mut out = MallPage::default();
        let mut start: Option<Item> = after.map(|m| HashMap::from([("pk".to_owned(), s(m.as_str()))]));
        loop {
            let mut req = self
                .client
                .scan()
                .table_name(&self.table)
                .limit(page.max(1))
                .projection_expression("pk, #st, access_exp, refresh_exp, updated")
                .expression_attribute_names("#st", "status")
                .set_exclusive_start_key(start.take());
            if let Some(st) = status {
                req = req.filter_expression("#st = :s").expression_attribute_values(":s", s(st.as_str()));
            }
            let resp = req.send().await.map_err(err)?;
            out.scans += 1;
            let more_in_table = resp.last_evaluated_key().is_some_and(|k| !k.is_empty());
            for i in resp.items() {
                let Ok(mall) = MallId::parse(get_s(i, "pk")) else { continue };
                if out.rows.len() == max {
                    out.next_after = out.rows.last().map(|r| r.mall.clone());
                    return Ok(out);
                }
                out.rows.push(MallRow {
                    mall,
                    status: TokenStatus::parse(get_s(i, "status")),
                    access_expires_ms: get_n(i, "access_exp"),
                    refresh_expires_ms: get_n(i, "refresh_exp"),
                    updated_ms: get_n(i, "updated"),
                });
            }
            if !more_in_table {
                return Ok(out);
            }
            if out.rows.len() == max {
                out.next_after = out.rows.last().map(|r| r.mall.clone());
                return Ok(out);
            }
            start = resp.last_evaluated_key().cloned();
        }
    }
}

impl TokenStore for DynamoTokenStore {
    async fn get(&self, mall: &MallId) -> Result<Option<TokenRecord>, StoreError> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(mall.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(err)?;
        Ok(out.item().and_then(record))
    }

    async fn put_installed(&self, mall: &MallId, pair: &TokenPair, now_ms: u64) -> Result<(), StoreError> {
        self.install_update(mall, pair, now_ms).send().await.map_err(err)?;
        Ok(())
    }

    async fn try_lease(
        &self,
        mall: &MallId,
        seen_version: u64,
        owner: &str,
        now_ms: u64,
        until_ms: u64,
    ) -> Result<LeaseOutcome, StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(mall.as_str()))
            .update_expression("SET lease_until = :u, lease_owner = :o, v = :nv")
            .condition_expression("v = :v AND lease_until <= :now")
            .expression_attribute_values(":u", n(until_ms))
            .expression_attribute_values(":o", s(owner))
            .expression_attribute_values(":nv", n(seen_version + 1))
            .expression_attribute_values(":v", n(seen_version))
            .expression_attribute_values(":now", n(now_ms))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match r {
            Ok(out) => Ok(match out.attributes().and_then(record) {
                Some(rec) => LeaseOutcome::Acquired(rec),
                None => LeaseOutcome::Lost(None),
            }),
            Err(e) => match conflict_item(&e) {
                // `owner` names one lease attempt: finding it at the version this write sets
                // means the SDK retried our own applied write — the lease is ours.
                Some(Some(item)) if get_s(&item, "lease_owner") == owner && get_n(&item, "v") == seen_version + 1 => {
                    Ok(record(&item).map_or(LeaseOutcome::Lost(None), LeaseOutcome::Acquired))
                }
                Some(item) => Ok(LeaseOutcome::Lost(item.as_ref().and_then(record))),
                None => Err(err(e)),
            },
        }
    }

    async fn complete_refresh(
        &self,
        mall: &MallId,
        owner: &str,
        lease_version: u64,
        pair: &TokenPair,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(mall.as_str()))
            .update_expression(
                "SET access = :a, access_exp = :ae, refresh = :r, refresh_exp = :re, scopes = :sc, \
                 lease_until = :zero, lease_owner = :none, updated = :now, v = :nv",
            )
            .condition_expression("lease_owner = :o AND v = :lv")
            .expression_attribute_values(":a", s(pair.access_token.expose()))
            .expression_attribute_values(":ae", n(pair.access_expires_ms))
            .expression_attribute_values(":r", s(pair.refresh_token.expose()))
            .expression_attribute_values(":re", n(pair.refresh_expires_ms))
            .expression_attribute_values(":sc", s(&pair.scopes.join(",")))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":none", s(""))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":nv", n(lease_version + 1))
            .expression_attribute_values(":o", s(owner))
            .expression_attribute_values(":lv", n(lease_version))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) => match conflict_item(&e) {
                // The stored pair is the one this write carries, at the version it sets: the
                // SDK retried our own applied write (the pair was stored; nobody lost a lease).
                Some(Some(item)) => Ok(get_n(&item, "v") == lease_version + 1
                    && get_s(&item, "refresh") == pair.refresh_token.expose()
                    && get_s(&item, "access") == pair.access_token.expose()),
                Some(None) => Ok(false),
                None => Err(err(e)),
            },
        }
    }

    async fn set_status(&self, mall: &MallId, status: TokenStatus, now_ms: u64) -> Result<(), StoreError> {
        // `uninstalled` is final until a re-install (`put_installed`): a late `needs_reauth` (a
        // refresh refused because the app was just deleted) must not overwrite it.
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(mall.as_str()))
            .update_expression("SET #st = :s, updated = :now ADD v :one")
            .condition_expression("attribute_exists(pk) AND (#st <> :un OR :s = :un)")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":s", s(status.as_str()))
            .expression_attribute_values(":un", s(TokenStatus::Uninstalled.as_str()))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":one", n(1))
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if conflict_item(&e).is_some() => Ok(()), // no record: nothing to mark
            Err(e) => Err(err(e)),
        }
    }

    async fn mark_uninstalled(&self, mall: &MallId, deleted_at_ms: u64, now_ms: u64) -> Result<bool, StoreError> {
        // Only the installation the uninstall belongs to: one stored before the deletion (or
        // before `installed` was recorded). Idempotent: a retried write whose first attempt was
        // applied meets the same condition (the install time does not move) and applies again.
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(mall.as_str()))
            .update_expression("SET #st = :s, updated = :now, access = :none, refresh = :none, access_exp = :zero, refresh_exp = :zero ADD v :one")
            .condition_expression("attribute_not_exists(installed) OR installed <= :deleted")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":s", s(TokenStatus::Uninstalled.as_str()))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":none", s(""))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":deleted", n(deleted_at_ms))
            .send()
            .await;
        match out {
            Ok(_) => {}
            Err(e) if conflict_item(&e).is_some() => return Ok(false),
            Err(e) => return Err(err(e)),
        }
        // After the record: a process that sees the fence and reads the record finds it
        // uninstalled. A failure here fails the uninstall, whose retry applies both again.
        if let Some((table, scope)) = &self.fence {
            crate::limiter::fence(&self.client, table, scope.key(mall).as_str(), now_ms).await?;
        }
        Ok(true)
    }

    async fn expiring_before(&self, before_ms: u64) -> Result<Vec<MallId>, StoreError> {
        self.scan("#st = :active AND refresh_exp < :b", vec![(":active", s("active")), (":b", n(before_ms))]).await
    }

    async fn needing_reauth(&self) -> Result<Vec<MallId>, StoreError> {
        self.scan("#st = :s", vec![(":s", s(TokenStatus::NeedsReauth.as_str()))]).await
    }

    async fn note_reconciled(&self, mall: &MallId, at_ms: u64, busy: bool) -> Result<(), StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(mall.as_str()))
            .update_expression("SET recon_at = :at, recon_busy = :b")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":at", n(at_ms))
            .expression_attribute_values(":b", AttributeValue::Bool(busy))
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if conflict_item(&e).is_some() => Ok(()), // no record: nothing to note
            Err(e) => Err(err(e)),
        }
    }

    async fn due_for_reconcile(&self, quiet_before_ms: u64) -> Result<Vec<MallId>, StoreError> {
        self.scan(
            "#st = :active AND (attribute_not_exists(recon_at) OR recon_busy = :t OR recon_at <= :q)",
            vec![(":active", s("active")), (":t", AttributeValue::Bool(true)), (":q", n(quiet_before_ms))],
        )
        .await
    }
}

/// Scheduled fan-outs' cursors: item `sched#<name>` (`after`, a mall id) in the token table. No
/// mall id contains `#`, so the item is never read as a mall (and it has none of the attributes
/// the listings filter on). The dispatcher may read only `sched#` items (the template's
/// `dynamodb:LeadingKeys` condition): never a token.
impl ScheduleCursor for DynamoTokenStore {
    async fn cursor(&self, name: &str) -> Result<Option<MallId>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(&format!("sched#{name}")))
            .projection_expression("#after")
            .expression_attribute_names("#after", "after")
            .consistent_read(true)
            .send()
            .await
            .map_err(err)?;
        Ok(out.item().map(|i| get_s(i, "after")).and_then(|m| MallId::parse(m).ok()))
    }

    async fn save_cursor(&self, name: &str, after: Option<&MallId>) -> Result<(), StoreError> {
        let req = self.client.update_item().table_name(&self.table).key("pk", s(&format!("sched#{name}")));
        let req = match after {
            Some(m) => req.update_expression("SET #after = :a").expression_attribute_values(":a", s(m.as_str())),
            None => req.update_expression("REMOVE #after"),
        };
        req.expression_attribute_names("#after", "after").send().await.map_err(err)?;
        Ok(())
    }
}
