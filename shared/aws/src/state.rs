//! The worker's DynamoDB state table (`pk` S, TTL attribute `ttl` in epoch seconds):
//! - `idem#<job id>`: idempotency record (`status` INPROGRESS/COMPLETED, `expiration` ms,
//!   `in_progress_expiration` ms, `outcome`) — the Powertools design: claim with one conditional
//!   `PutItem` returning `ALL_OLD` on conflict, complete with `UpdateItem`, release with
//!   `DeleteItem`. Expiry is checked in the condition; TTL only cleans up.
//! - `att#<job id>`: failed attempts since the job last made progress (`attempts`; deleted on
//!   progress), separate so a release never loses the count.
//!
//! **Every conditional write recognises its own earlier attempt.** The SDK retries an attempt
//! that timed out or was answered 500 although DynamoDB may have applied it; the retry then fails
//! its condition against the first attempt's write. Each write therefore leaves a mark that only
//! it could have left (a random `claimant`/`tok`, or the job and fetch time of a snapshot) and
//! asks for the old item on a failed condition (`ReturnValuesOnConditionCheckFailure = ALL_OLD`):
//! finding its own mark, it reports success instead of "someone else got there first". The
//! unconditional writes (`complete`, `release`, progress, checkpoint) are idempotent as they are.
//! Shown with faults injected under the SDK in `tests/tests/it/ambiguous.rs`.
//! - `snap#<mall>#<kind>#<id>` (`<shop>/<id>` for a multi-shop mall's other shops): snapshot (`data` as JSON text, or `data_z` zlib-compressed
//!   above [`COMPRESS_ABOVE_BYTES`]; `fetched_at` ms, `deleted`); written only when newer than
//!   what is stored and different (`digest` of the version `digest_v`, `relay_domain::delivery::content_digest`: an unchanged
//!   fetch only sets `confirmed` ms, and `head` reads the later of the two); `by_job` names the job that stored the version (the outbox: that job publishes
//!   the version's event after the write, and only its own later runs publish it again).
//!   `unpub`, the flag of earlier releases, is removed by the next write and otherwise ignored.
//! - `bf#<mall>#<resource>`: a backfill's progress (`progress`, JSON), saved after every page.
//! - `recon#<mall>`: reconciliation checkpoint (`checkpoint` ms, `reception` T/F, `last_delivered`, `failed_logs`,
//!   `reinjected`, `last_run`), written by the mall's reconcile job only (one at a time: its
//!   work-queue group serializes them).
//! - `cmd#<mall>#<key>`: a command's record (`relay_domain::command`): `sending` (ms, a request
//!   may be out; set before it leaves, removed when it certainly had no effect), `outcome` (JSON
//!   text, or `outcome_z` deflated above [`COMPRESS_ABOVE_BYTES`]; a body that does not fit even
//!   so is replaced by `{"body_omitted": {"bytes": n}}`), written once: the first outcome stays.
//! - `fault#cafe24`: the stack's last configuration fault (`fault`, `at` ms), noted by workers at
//!   most once a probe period each; read by `relay mall status`.

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use relay_domain::ports::{
    BackfillStore, Claim, CommandRecord, CommandStore, ConfigFaultStore, IdempotencyStore, Noted, ReconcileState,
    ReconcileStore, SnapshotHead, SnapshotStore, SnapshotTooLarge, StoreError, StoredSnapshot, Upsert,
};
use relay_domain::{MallId, SnapshotKind};

/// Snapshots whose JSON is longer than this are stored deflated (zlib) in the Binary attribute
/// `data_z` instead of the String `data`: a product with a long HTML description can exceed
/// DynamoDB's 400 KB item limit as text and fit easily compressed.
pub const COMPRESS_ABOVE_BYTES: usize = 64 * 1024;
/// Largest compressed snapshot stored: the item limit (400 KB) less room for the key and the
/// other attributes. Above it the upsert fails with [`SnapshotTooLarge`] (no retry helps).
pub const MAX_STORED_BYTES: usize = 390_000;

fn deflate(bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    use std::io::Write as _;
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).and_then(|()| e.finish()).map_err(|x| StoreError(Box::new(x)))
}

/// JSON text as an item attribute: the String itself, or deflated into a Binary above
/// [`COMPRESS_ABOVE_BYTES`] (`deflated`). `Err(stored_bytes)`: too large for an item even so.
struct Packed {
    value: AttributeValue,
    deflated: bool,
}

fn pack(text: &str) -> Result<Result<Packed, usize>, StoreError> {
    if text.len() <= COMPRESS_ABOVE_BYTES {
        return Ok(Ok(Packed { value: s(text), deflated: false }));
    }
    let z = deflate(text.as_bytes())?;
    if z.len() > MAX_STORED_BYTES {
        return Ok(Err(z.len()));
    }
    Ok(Ok(Packed { value: AttributeValue::B(Blob::new(z)), deflated: true }))
}

/// JSON stored by [`pack`] in `text_attr` or, deflated, in `z_attr`.
fn unpack(
    item: &std::collections::HashMap<String, AttributeValue>,
    text_attr: &str,
    z_attr: &str,
) -> Option<serde_json::Value> {
    match item.get(z_attr).and_then(|v| v.as_b().ok()) {
        Some(z) => inflate(z.as_ref()).and_then(|t| serde_json::from_slice(&t).ok()),
        None => item.get(text_attr).and_then(|v| v.as_s().ok()).and_then(|t| serde_json::from_str(t).ok()),
    }
}

fn inflate(z: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read as _;
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(z).read_to_end(&mut out).ok()?;
    Some(out)
}

/// The state table.
#[derive(Clone, Debug)]
pub struct DynamoState {
    client: aws_sdk_dynamodb::Client,
    table: String,
    writes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    reads: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// An update refused by its condition: the state it guards says no (not a failure).
fn condition_failed<R>(e: &SdkError<UpdateItemError, R>) -> bool {
    matches!(e, SdkError::ServiceError(se) if matches!(se.err(), UpdateItemError::ConditionalCheckFailedException(_)))
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn err<E: std::error::Error + Send + Sync + 'static>(e: E) -> StoreError {
    StoreError(Box::new(e))
}

fn ttl(expires_ms: u64) -> AttributeValue {
    n(expires_ms / 1000 + 1)
}

/// A mark only this write leaves: how a retried write tells its own applied first attempt from
/// another writer's item.
pub(crate) fn write_token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl DynamoState {
    /// The table.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), writes: Default::default(), reads: Default::default() }
    }

    /// Write requests sent so far (each costs a WCU even when its condition fails).
    pub fn writes(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Snapshot reads (consistent `GetItem`) sent so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count_write(&self) {
        self.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn snap_key(mall: &MallId, kind: SnapshotKind, id: &str) -> String {
        format!("snap#{}#{kind}#{id}", mall.as_str())
    }

    /// Notes that a fetch at `at_ms` found the stored content unchanged (`confirmed`, read by
    /// `head` as the version's freshness). Only forward; a retry or a later confirmation wins.
    async fn confirm(&self, mall: &MallId, kind: SnapshotKind, id: &str, at_ms: u64) -> Result<(), StoreError> {
        self.count_write();
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&Self::snap_key(mall, kind, id)))
            .update_expression("SET confirmed = :c")
            .condition_expression("attribute_exists(pk) AND (attribute_not_exists(confirmed) OR confirmed < :c)")
            .expression_attribute_values(":c", n(at_ms))
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    /// The snapshot item (consistent read), only `projection`'s attributes when given.
    async fn snap_item(
        &self,
        mall: &MallId,
        kind: SnapshotKind,
        id: &str,
        projection: Option<&str>,
    ) -> Result<Option<std::collections::HashMap<String, AttributeValue>>, StoreError> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(&Self::snap_key(mall, kind, id)))
            .set_projection_expression(projection.map(str::to_owned))
            .consistent_read(true)
            .send()
            .await
            .map_err(err)?;
        Ok(out.item)
    }
}

impl IdempotencyStore for DynamoState {
    async fn claim(
        &self,
        job_id: &str,
        now_ms: u64,
        in_progress_until_ms: u64,
        expires_ms: u64,
    ) -> Result<Claim, StoreError> {
        self.count_write();
        let claimant = write_token();
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&format!("idem#{job_id}")))
            .item("claimant", s(&claimant))
            .item("status", s("INPROGRESS"))
            .item("expiration", n(expires_ms))
            .item("in_progress_expiration", n(in_progress_until_ms))
            .item("ttl", ttl(expires_ms))
            .condition_expression(
                "attribute_not_exists(pk) OR expiration < :now OR (#st = :inprogress AND in_progress_expiration < :now)",
            )
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":inprogress", s("INPROGRESS"))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match r {
            Ok(_) => Ok(Claim::Claimed),
            Err(SdkError::ServiceError(se)) if matches!(se.err(), PutItemError::ConditionalCheckFailedException(_)) => {
                let item = match se.err() {
                    PutItemError::ConditionalCheckFailedException(c) => c.item().cloned().unwrap_or_default(),
                    _ => Default::default(),
                };
                let get = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                if get("claimant") == claimant && get("status") == "INPROGRESS" {
                    return Ok(Claim::Claimed); // this claim's own first attempt was applied
                }
                if get("status") == "COMPLETED" {
                    Ok(Claim::Completed(get("outcome")))
                } else {
                    let until = item
                        .get("in_progress_expiration")
                        .and_then(|v| v.as_n().ok())
                        .and_then(|x| x.parse().ok())
                        .unwrap_or(now_ms);
                    Ok(Claim::InProgress { until_ms: until })
                }
            }
            Err(e) => Err(err(e)),
        }
    }

    async fn complete(&self, job_id: &str, outcome: &str, now_ms: u64) -> Result<(), StoreError> {
        self.count_write();
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&format!("idem#{job_id}")))
            .update_expression("SET #st = :done, outcome = :o, completed_at = :now")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":done", s("COMPLETED"))
            .expression_attribute_values(":o", s(outcome))
            .expression_attribute_values(":now", n(now_ms))
            .send()
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn release(&self, job_id: &str) -> Result<(), StoreError> {
        self.count_write();
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(&format!("idem#{job_id}")))
            .send()
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn add_failure(&self, job_id: &str, expires_ms: u64) -> Result<u32, StoreError> {
        self.count_write();
        // Counted once per failure even when the SDK retries an applied increment: the write
        // leaves its token, and a retry that finds it reads the count it already made.
        let tok = write_token();
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&format!("att#{job_id}")))
            .update_expression("ADD attempts :one SET #ttl = :ttl, tok = :tok")
            .condition_expression("attribute_not_exists(tok) OR tok <> :tok")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":ttl", ttl(expires_ms))
            .expression_attribute_values(":tok", s(&tok))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let attempts = |a: Option<&std::collections::HashMap<String, AttributeValue>>| {
            a.and_then(|a| a.get("attempts")).and_then(|v| v.as_n().ok()).and_then(|x| x.parse().ok()).unwrap_or(1)
        };
        match out {
            Ok(out) => Ok(attempts(out.attributes())),
            Err(SdkError::ServiceError(se))
                if matches!(se.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
            {
                match se.err() {
                    UpdateItemError::ConditionalCheckFailedException(c) => Ok(attempts(c.item())),
                    _ => Ok(1),
                }
            }
            Err(e) => Err(err(e)),
        }
    }

    async fn clear_failures(&self, job_id: &str) -> Result<(), StoreError> {
        self.count_write();
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(&format!("att#{job_id}")))
            .send()
            .await
            .map_err(err)?;
        Ok(())
    }
}

/// The stack's last configuration fault: one item, `fault#cafe24` (`fault`, `at`).
fn command_pk(mall: &MallId, key: &str) -> AttributeValue {
    s(&format!("cmd#{}#{key}", mall.as_str()))
}

/// A stored outcome read back (`outcome` text or `outcome_z`).
fn stored_outcome(item: &std::collections::HashMap<String, AttributeValue>) -> Option<serde_json::Value> {
    unpack(item, "outcome", "outcome_z")
}

impl CommandStore for DynamoState {
    async fn command_record(&self, mall: &MallId, key: &str) -> Result<Option<CommandRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", command_pk(mall, key))
            .consistent_read(true)
            .send()
            .await
            .map_err(err)?;
        Ok(out.item().map(|i| CommandRecord {
            sending_since_ms: i.get("sending").and_then(|v| v.as_n().ok()).and_then(|x| x.parse().ok()),
            sending_writer: i.get("writer").and_then(|v| v.as_s().ok()).cloned(),
            outcome: stored_outcome(i),
        }))
    }

    async fn note_sending(
        &self,
        mall: &MallId,
        key: &str,
        writer: &str,
        exclusive: bool,
        now_ms: u64,
        expires_ms: u64,
    ) -> Result<Noted, StoreError> {
        self.count_write();
        // A retry of an applied attempt meets its own writer token: it passes again.
        let mut condition = "attribute_not_exists(outcome) AND attribute_not_exists(outcome_z)".to_owned();
        if exclusive {
            condition.push_str(" AND (attribute_not_exists(sending) OR writer = :w)");
        }
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", command_pk(mall, key))
            .update_expression("SET sending = :now, writer = :w, #ttl = :ttl")
            .condition_expression(condition)
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":w", s(writer))
            .expression_attribute_values(":ttl", ttl(expires_ms))
            .send()
            .await;
        match r {
            Ok(_) => Ok(Noted::Yes),
            Err(e) if condition_failed(&e) => {
                // Which part failed: read what stands (an outcome wins over a note).
                let now = self.command_record(mall, key).await?.unwrap_or_default();
                Ok(match (now.outcome, now.sending_since_ms) {
                    (Some(_), _) => Noted::Recorded,
                    (None, Some(since_ms)) => Noted::Elsewhere { since_ms },
                    // The other note was cleared in between: it is someone else's turn to
                    // decide; asking again finds the record as it is then.
                    (None, None) => Noted::Elsewhere { since_ms: now_ms },
                })
            }
            Err(e) => Err(err(e)),
        }
    }

    async fn clear_sending(&self, mall: &MallId, key: &str, writer: &str) -> Result<(), StoreError> {
        self.count_write();
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", command_pk(mall, key))
            .update_expression("REMOVE sending, writer")
            .condition_expression("writer = :w")
            .expression_attribute_values(":w", s(writer))
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            // Not this writer's note (or none): it stays.
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    async fn record_outcome(
        &self,
        mall: &MallId,
        key: &str,
        outcome: &serde_json::Value,
        _now_ms: u64,
        expires_ms: u64,
    ) -> Result<serde_json::Value, StoreError> {
        self.count_write();
        let mut kept = outcome.clone();
        let text = kept.to_string();
        let packed = match pack(&text)? {
            Ok(p) => p,
            // Even deflated it does not fit an item: the outcome is kept without its body.
            Err(_) => {
                if let Some(o) = kept.as_object_mut() {
                    o.insert("body".into(), serde_json::json!({"body_omitted": {"bytes": text.len()}}));
                }
                Packed { value: s(&kept.to_string()), deflated: false }
            }
        };
        let attr = if packed.deflated { "outcome_z" } else { "outcome" };
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", command_pk(mall, key))
            .update_expression("SET #o = :o, #ttl = :ttl REMOVE sending, writer")
            .condition_expression("attribute_not_exists(outcome) AND attribute_not_exists(outcome_z)")
            .expression_attribute_names("#o", attr)
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":o", packed.value)
            .expression_attribute_values(":ttl", ttl(expires_ms))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match r {
            Ok(_) => Ok(kept),
            // Recorded already — by this write's own first attempt or an earlier run: the
            // recorded outcome is the command's (the first one stays).
            Err(SdkError::ServiceError(se))
                if matches!(se.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
            {
                let item = match se.err() {
                    UpdateItemError::ConditionalCheckFailedException(c) => c.item().cloned().unwrap_or_default(),
                    _ => Default::default(),
                };
                stored_outcome(&item).ok_or_else(|| err(UnreadableOutcome))
            }
            Err(e) => Err(err(e)),
        }
    }
}

/// A command record's outcome that cannot be read back.
#[derive(Debug, thiserror::Error)]
#[error("a command's recorded outcome is unreadable")]
struct UnreadableOutcome;

impl ConfigFaultStore for DynamoState {
    async fn note_config_fault(&self, fault: &str, at_ms: u64) -> Result<(), StoreError> {
        self.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s("fault#cafe24"))
            .item("fault", s(fault))
            .item("at", n(at_ms))
            .send()
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn config_fault(&self) -> Result<Option<(String, u64)>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s("fault#cafe24"))
            .consistent_read(true)
            .send()
            .await
            .map_err(err)?;
        Ok(out.item.and_then(|i| {
            let fault = i.get("fault")?.as_s().ok()?.clone();
            let at = i.get("at")?.as_n().ok()?.parse().ok()?;
            Some((fault, at))
        }))
    }
}

impl BackfillStore for DynamoState {
    async fn backfill_progress(
        &self,
        mall: &MallId,
        resource: relay_domain::backfill::Resource,
    ) -> Result<Option<relay_domain::backfill::Progress>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(&format!("bf#{}#{}", mall.as_str(), resource.as_str())))
            .consistent_read(true)
            .send()
            .await
            .map_err(err)?;
        let Some(text) = out.item.as_ref().and_then(|i| i.get("progress")).and_then(|v| v.as_s().ok()) else {
            return Ok(None);
        };
        serde_json::from_str(text).map(Some).map_err(err)
    }

    async fn save_backfill_progress(
        &self,
        mall: &MallId,
        progress: &relay_domain::backfill::Progress,
    ) -> Result<(), StoreError> {
        self.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let text = serde_json::to_string(progress).map_err(err)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&format!("bf#{}#{}", mall.as_str(), progress.resource.as_str())))
            .item("progress", s(&text))
            .send()
            .await
            .map_err(err)?;
        Ok(())
    }
}

impl ReconcileStore for DynamoState {
    async fn reconcile_state(&self, mall: &MallId) -> Result<ReconcileState, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(&format!("recon#{}", mall.as_str())))
            .consistent_read(true)
            .send()
            .await
            .map_err(err)?;
        let Some(i) = out.item else { return Ok(ReconcileState::default()) };
        let num = |k: &str| i.get(k).and_then(|v| v.as_n().ok()).and_then(|x| x.parse().ok()).unwrap_or(0);
        Ok(ReconcileState {
            // An item written before checkpoints were times (a `since_log_id`) reads as never
            // reconciled: the look-back window is read again, which re-injects nothing twice.
            checkpoint_ms: i.get("checkpoint").and_then(|v| v.as_n().ok()).and_then(|x| x.parse().ok()),
            reception_on: i.get("reception").and_then(|v| v.as_s().ok()).map(|v| v == "T"),
            failed_logs: num("failed_logs"),
            reinjected_total: num("reinjected"),
            last_run_ms: num("last_run"),
            last_delivered_ms: num("last_delivered"),
        })
    }

    async fn save_reconcile_state(&self, mall: &MallId, st: &ReconcileState) -> Result<(), StoreError> {
        self.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(
                [
                    Some(("pk".to_owned(), s(&format!("recon#{}", mall.as_str())))),
                    st.checkpoint_ms.map(|v| ("checkpoint".to_owned(), n(v))),
                    st.reception_on.map(|on| ("reception".to_owned(), s(if on { "T" } else { "F" }))),
                    Some(("failed_logs".to_owned(), n(st.failed_logs))),
                    Some(("reinjected".to_owned(), n(st.reinjected_total))),
                    Some(("last_run".to_owned(), n(st.last_run_ms))),
                    Some(("last_delivered".to_owned(), n(st.last_delivered_ms))),
                ]
                .into_iter()
                .flatten()
                .collect(),
            ))
            .send()
            .await
            .map_err(err)?;
        Ok(())
    }
}

impl SnapshotStore for DynamoState {
    async fn head(&self, mall: &MallId, kind: SnapshotKind, id: &str) -> Result<Option<SnapshotHead>, StoreError> {
        let item = self.snap_item(mall, kind, id, Some("fetched_at, by_job, confirmed")).await?;
        Ok(item.as_ref().and_then(|i| {
            let num = |k: &str| i.get(k).and_then(|v| v.as_n().ok()).and_then(|x| x.parse::<u64>().ok());
            let fetched_at_ms = num("fetched_at")?.max(num("confirmed").unwrap_or(0));
            let stored_by = i.get("by_job").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            Some(SnapshotHead { fetched_at_ms, stored_by })
        }))
    }

    async fn upsert(
        &self,
        mall: &MallId,
        kind: SnapshotKind,
        id: &str,
        fetched_at_ms: u64,
        data: Option<&serde_json::Value>,
        by: &str,
    ) -> Result<Upsert, StoreError> {
        let body = data.map(|d| d.to_string()).unwrap_or_default();
        let digest = relay_domain::delivery::content_digest(data);
        let packed = match pack(&body)? {
            Ok(p) => p,
            Err(stored_bytes) => {
                return Err(StoreError(Box::new(SnapshotTooLarge {
                    json_bytes: body.len(),
                    stored_bytes,
                    limit: MAX_STORED_BYTES,
                })))
            }
        };
        let update = if packed.deflated {
            "SET data_z = :d, fetched_at = :f, deleted = :del, mall_id = :m, by_job = :by, digest = :dg, digest_v = :f REMOVE #data, unpub, confirmed"
        } else {
            "SET #data = :d, fetched_at = :f, deleted = :del, mall_id = :m, by_job = :by, digest = :dg, digest_v = :f REMOVE data_z, unpub, confirmed"
        };
        let value = packed.value;
        self.count_write();
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&Self::snap_key(mall, kind, id)))
            .update_expression(update)
            // A new version only for new content. The digest counts only for the version it was
            // computed for (`digest_v`): an item from before digests, or one a release without
            // them overwrote (a rollback), is compared by nothing and stored.
            .condition_expression(
                "attribute_not_exists(pk) OR (fetched_at < :f AND (attribute_not_exists(digest) OR digest <> :dg \
                 OR attribute_not_exists(digest_v) OR digest_v <> fetched_at))",
            )
            .expression_attribute_names("#data", "data")
            .expression_attribute_values(":dg", s(&digest))
            .expression_attribute_values(":d", value)
            .expression_attribute_values(":by", s(by))
            .expression_attribute_values(":f", n(fetched_at_ms))
            .expression_attribute_values(":del", AttributeValue::Bool(data.is_none()))
            .expression_attribute_values(":m", s(mall.as_str()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match r {
            Ok(_) => Ok(Upsert::Stored),
            Err(SdkError::ServiceError(se))
                if matches!(se.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
            {
                let UpdateItemError::ConditionalCheckFailedException(c) = se.err() else { return Ok(Upsert::Older) };
                let stored = c.item();
                let text = |k: &str| stored.and_then(|i| i.get(k)).and_then(|v| v.as_s().ok()).map(String::as_str);
                let fetched = stored
                    .and_then(|i| i.get("fetched_at"))
                    .and_then(|v| v.as_n().ok())
                    .and_then(|x| x.parse::<u64>().ok())
                    .unwrap_or(u64::MAX);
                if fetched == fetched_at_ms && text("by_job") == Some(by) {
                    // This job's own version is the stored one: a retry of an applied write.
                    return Ok(Upsert::Stored);
                }
                let digest_v = stored
                    .and_then(|i| i.get("digest_v"))
                    .and_then(|v| v.as_n().ok())
                    .and_then(|x| x.parse::<u64>().ok());
                if fetched < fetched_at_ms && text("digest") == Some(digest.as_str()) && digest_v == Some(fetched) {
                    self.confirm(mall, kind, id, fetched_at_ms).await?;
                    return Ok(Upsert::Unchanged);
                }
                Ok(Upsert::Older)
            }
            Err(e) => Err(err(e)),
        }
    }

    async fn snapshot(
        &self,
        mall: &MallId,
        kind: SnapshotKind,
        id: &str,
    ) -> Result<Option<StoredSnapshot>, StoreError> {
        let item = self.snap_item(mall, kind, id, None).await?;
        Ok(item.as_ref().map(|i| {
            let f = i.get("fetched_at").and_then(|v| v.as_n().ok()).and_then(|x| x.parse().ok()).unwrap_or(0);
            let deleted = i.get("deleted").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false);
            let data = if deleted { None } else { unpack(i, "data", "data_z") };
            (f, data)
        }))
    }
}
