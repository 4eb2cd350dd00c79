//! Work items the worker performs: one Cafe24 read each, identified by a job id that is also the
//! work queue's `MessageDeduplicationId` and the idempotency key.

use serde::{Deserialize, Serialize};

use crate::ids::{DedupId, MallId, ShopNo, SnapshotKind, TraceId};
use crate::ratelimit::Class;

/// Current job format version.
pub const JOB_VERSION: u32 = 1;

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobKind {
    /// Fetch an order with its items and store the snapshot.
    SyncOrder {
        /// Order id.
        order_id: String,
    },
    /// Fetch a product and store the snapshot.
    SyncProduct {
        /// Product number.
        product_no: u64,
    },
    /// Fetch a customer's non-personal fields and store the snapshot.
    SyncCustomer {
        /// Member id.
        member_id: String,
    },
    /// Keep the mall's refresh token alive (scheduled).
    RefreshToken,
    /// Resync: read a list endpoint page by page (bulk class) and store every item as a
    /// snapshot straight from the page, resuming from the stored progress.
    Backfill {
        /// `orders` or `products`.
        resource: crate::backfill::Resource,
        /// Orders placed from, epoch ms (products: ignored).
        since_ms: u64,
        /// Orders placed until, epoch ms (inclusive).
        until_ms: u64,
        /// One shop only; absent: every shop of the mall, as Cafe24 lists them. (Not
        /// `shop_no`: the job's own field of that name sits beside the kind's in the message.)
        #[serde(default, skip_serializing_if = "Option::is_none")]
        only_shop: Option<ShopNo>,
    },
    /// Read the mall's webhook logs since its checkpoint and re-inject every delivery the
    /// relay never accepted; record the mall's reception status (scheduled, bulk class).
    Reconcile,
    /// The app's own request (`crate::command`): made once per key, its result published.
    Command(crate::command::Queued),
}

impl JobKind {
    /// Snapshot kind and target id, for jobs that produce a snapshot.
    pub fn target(&self) -> Option<(SnapshotKind, String)> {
        match self {
            Self::SyncOrder { order_id } => Some((SnapshotKind::Order, order_id.clone())),
            Self::SyncProduct { product_no } => Some((SnapshotKind::Product, product_no.to_string())),
            Self::SyncCustomer { member_id } => Some((SnapshotKind::Customer, member_id.clone())),
            Self::RefreshToken | Self::Reconcile | Self::Backfill { .. } | Self::Command(_) => None,
        }
    }

    /// Short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::SyncOrder { .. } => "sync_order",
            Self::SyncProduct { .. } => "sync_product",
            Self::SyncCustomer { .. } => "sync_customer",
            Self::RefreshToken => "refresh_token",
            Self::Reconcile => "reconcile",
            Self::Backfill { .. } => "backfill",
            Self::Command(_) => "command",
        }
    }
}

/// One job as queued.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Format version.
    pub v: u32,
    /// Unique id (= dedup id = idempotency key), valid as an SQS deduplication id.
    pub job_id: DedupId,
    /// Mall.
    pub mall_id: MallId,
    /// The shop the job's entity belongs to (its webhook's `event_shop_no`); every Admin API
    /// call of the job names it. Left out when it is shop 1, so such jobs read as before.
    #[serde(default, skip_serializing_if = "ShopNo::is_default")]
    pub shop_no: ShopNo,
    /// What to do.
    #[serde(flatten)]
    pub kind: JobKind,
    /// Priority class.
    #[serde(default = "live")]
    pub class: Class,
    /// Trace id of the webhook (or the schedule, or the request) that caused it. Jobs queued
    /// without one (or with `""`) read as `None`; a malformed one makes the message no job.
    #[serde(default, deserialize_with = "trace_or_none", skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<TraceId>,
    /// When the causing event was received, epoch ms (for coalescing).
    #[serde(default)]
    pub event_received_ms: u64,
}

fn live() -> Class {
    Class::Live
}

fn trace_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<TraceId>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => TraceId::try_from(s).map(Some).map_err(serde::de::Error::custom),
    }
}

/// Why a message is not a job.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Not JSON or not the job shape (serde's message quotes no input values).
    #[error("not a job: {0}")]
    Malformed(String),
    /// A version this worker does not know.
    #[error("unsupported job version {0}")]
    Version(u32),
    /// Empty or malformed target id, or a reversed period.
    #[error("job has an invalid {0}")]
    Invalid(&'static str),
}

impl Job {
    /// The queued message body. (Serializing a `Job` cannot fail: every field is a string, a
    /// number or an enum of those.)
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Snapshot kind and the entity's key (its id, told apart by shop: [`ShopNo::entity_key`]),
    /// for jobs that produce a snapshot.
    pub fn target(&self) -> Option<(SnapshotKind, String)> {
        self.kind.target().map(|(kind, id)| (kind, self.shop_no.entity_key(&id)))
    }

    /// The trace id as text for logs and events (`""` when the job has none).
    pub fn trace(&self) -> &str {
        self.trace_id.as_ref().map_or("", TraceId::as_str)
    }

    /// Parses and validates a queued job.
    pub fn parse(body: &str) -> Result<Self, JobError> {
        let j: Job = serde_json::from_str(body).map_err(|e| JobError::Malformed(e.to_string()))?;
        if j.v != JOB_VERSION {
            return Err(JobError::Version(j.v));
        }
        match &j.kind {
            JobKind::SyncOrder { order_id } if !crate::ids::is_resource_id(order_id) => {
                Err(JobError::Invalid("order_id"))
            }
            JobKind::SyncCustomer { member_id } if !crate::ids::is_resource_id(member_id) => {
                Err(JobError::Invalid("member_id"))
            }
            JobKind::Backfill { since_ms, until_ms, .. } if since_ms > until_ms => Err(JobError::Invalid("period")),
            _ => Ok(j),
        }
    }
}

/// Backoff before the next real attempt after `attempts` failures: 2, 4, 8 … s, capped at 5 min.
pub fn backoff_s(attempts: u32) -> u32 {
    2u32.saturating_pow(attempts.clamp(1, 16)).min(300)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip_and_garbage_is_refused() {
        let j = Job {
            v: 1,
            job_id: "j-1".parse().unwrap(),
            mall_id: MallId::parse("shop1").unwrap(),
            kind: JobKind::SyncOrder { order_id: "20200717-0029236".into() },
            class: Class::Live,
            trace_id: "t".to_owned().try_into().ok(),
            event_received_ms: 5,
            shop_no: ShopNo::DEFAULT,
        };
        let s = serde_json::to_string(&j).unwrap();
        assert!(s.contains(r#""kind":"sync_order""#), "{s}");
        assert!(!s.contains("shop_no"), "shop 1 is left out: {s}");
        assert_eq!(Job::parse(&s).unwrap(), j);
        let two = Job { shop_no: ShopNo::new(2).unwrap(), ..j.clone() };
        let s2 = serde_json::to_string(&two).unwrap();
        assert!(s2.contains(r#""shop_no":2"#), "{s2}");
        assert_eq!(Job::parse(&s2).unwrap(), two);
        assert_eq!(two.target(), Some((SnapshotKind::Order, "2/20200717-0029236".into())));
        assert_eq!(j.target(), Some((SnapshotKind::Order, "20200717-0029236".into())));
        let one_shop = Job {
            kind: JobKind::Backfill {
                resource: crate::backfill::Resource::Products,
                since_ms: 0,
                until_ms: 0,
                only_shop: ShopNo::new(3),
            },
            ..j.clone()
        };
        let s3 = serde_json::to_string(&one_shop).unwrap();
        assert_eq!(Job::parse(&s3).unwrap(), one_shop, "the kind's shop is not the job's: {s3}");
        for bad in [
            "",
            "{}",
            "[]",
            r#"{"v":1,"job_id":"x","mall_id":"shop1","kind":"launch_rocket"}"#,
            r#"{"v":2,"job_id":"x","mall_id":"shop1","kind":"refresh_token"}"#,
            r#"{"v":1,"job_id":"","mall_id":"shop1","kind":"refresh_token"}"#,
            r#"{"v":1,"job_id":"a b","mall_id":"shop1","kind":"refresh_token"}"#,
            r#"{"v":1,"job_id":7,"mall_id":"shop1","kind":"refresh_token"}"#,
            r#"{"v":1,"job_id":"x","mall_id":"shop1","kind":"refresh_token","trace_id":"a\nb"}"#,
            r#"{"v":1,"job_id":"x","mall_id":"shop1","kind":"refresh_token","trace_id":" t"}"#,
            r#"{"v":1,"job_id":"x","mall_id":"Bad Mall!","kind":"refresh_token"}"#,
            r#"{"v":1,"job_id":"x","mall_id":"shop1","kind":"sync_order","order_id":""}"#,
            r#"{"v":1,"job_id":"x","mall_id":"shop1","kind":"sync_order","order_id":".."}"#,
            r#"{"v":1,"job_id":"x","mall_id":"shop1","kind":"sync_customer","member_id":"."}"#,
            r#"{"v":1,"job_id":"x","mall_id":"shop1","kind":"sync_customer","member_id":"a/../b"}"#,
            r#"{"v":1,"job_id":"x","mall_id":"shop1","kind":"sync_product","product_no":-1}"#,
            r#"{"v":1,"job_id":"x","mall_id":"shop1","kind":"backfill","resource":"carts","since_ms":1,"until_ms":2}"#,
            r#"{"v":1,"job_id":"x","mall_id":"shop1","kind":"backfill","resource":"orders","since_ms":3,"until_ms":2}"#,
            r#"{"v":1,"job_id":"x","mall_id":"shop1","kind":"backfill","resource":"orders"}"#,
            r#"{"v":1,"job_id":"x","mall_id":"shop1","kind":"refresh_token","shop_no":0}"#,
            r#"{"v":1,"job_id":"x","mall_id":"shop1","kind":"refresh_token","shop_no":"2"}"#,
            r#"{"v":1,"job_id":"x","mall_id":"shop1","kind":"backfill","resource":"orders","since_ms":1,"until_ms":2,"shop_no":-3}"#,
        ] {
            assert!(Job::parse(bad).is_err(), "{bad}");
        }
        // Jobs queued without a trace id, or with an empty one, are jobs without one.
        for body in [
            r#"{"v":1,"job_id":"x","mall_id":"shop1","kind":"refresh_token"}"#,
            r#"{"v":1,"job_id":"x","mall_id":"shop1","kind":"refresh_token","trace_id":""}"#,
            r#"{"v":1,"job_id":"x","mall_id":"shop1","kind":"refresh_token","trace_id":null}"#,
        ] {
            assert_eq!(Job::parse(body).map(|j| j.trace_id), Ok(None), "{body}");
        }
        let long = format!(r#"{{"v":1,"job_id":"{}","mall_id":"shop1","kind":"refresh_token"}}"#, "j".repeat(129));
        assert!(matches!(Job::parse(&long), Err(JobError::Malformed(_))), "129 characters are no SQS dedup id");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!((backoff_s(0), backoff_s(1), backoff_s(3), backoff_s(30)), (2, 2, 8, 300));
    }
}
