//! The value types the ports carry — queue messages and their groups, the stores' results and
//! errors — below every other module: domain logic (routing, reconciliation, backfill, the
//! limiter) builds and reads them without depending on the port traits, and the traits
//! (`crate::ports`) and their in-memory fakes (`crate::ports::memory`) sit above both.

use std::error::Error as StdError;

use crate::ids::{DedupId, MallId};

/// An SQS FIFO `MessageGroupId`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupId(String);

impl GroupId {
    /// Group of everything about one mall.
    pub fn mall(m: &MallId) -> Self {
        Self(m.as_str().to_owned())
    }

    /// Group for parked envelopes, which have no usable mall.
    pub fn parked() -> Self {
        Self("_parked".to_owned())
    }

    /// Group for envelopes the dispatcher parks, carrying the reason (`_parked.<reason>`): the
    /// envelope itself is parked unchanged, so parking never makes a message larger than the
    /// one ingest accepted. `reason` is a short snake_case class.
    pub fn parked_for(reason: &str) -> Self {
        let r: String = reason.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(100).collect();
        Self(format!("_parked.{r}"))
    }

    /// The reason of a group made by [`GroupId::parked_for`].
    pub fn parked_reason(group: &str) -> Option<&str> {
        group.strip_prefix("_parked.")
    }

    /// Group for a rate-limit key (`KeyScope::key`): 1..=128 characters of SQS's allowed set.
    pub fn for_key(key: &str) -> Option<Self> {
        let ok = !key.is_empty()
            && key.len() <= 128
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c.is_ascii_punctuation());
        ok.then(|| Self(key.to_owned()))
    }

    /// The group of `key`'s jobs of `class` (see [`crate::ratelimit::RateKey::group`]); always
    /// valid by the key's construction.
    pub(crate) fn for_rate_key(key: &crate::ratelimit::RateKey, class: crate::ratelimit::Class) -> Self {
        match class {
            crate::ratelimit::Class::Live => Self(key.as_str().to_owned()),
            crate::ratelimit::Class::Bulk => Self(format!("{}.bulk", key.as_str())),
            // Interactive calls are made at once by the call API, never queued; a group is
            // named all the same, apart from the others.
            crate::ratelimit::Class::Interactive => Self(format!("{}.ui", key.as_str())),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One message to put on a FIFO queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundMessage {
    /// FIFO group: ordering and serialization unit.
    pub group_id: GroupId,
    /// Explicit deduplication id (content-based dedup is off everywhere).
    pub dedup_id: DedupId,
    /// Message body (JSON).
    pub body: String,
}

/// A queue send failed. Either way the message is *not* known to be stored.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Could not reach the queue service, or it failed (network, 5xx, throttling, timeout).
    #[error("queue unavailable")]
    Unavailable(#[source] Box<dyn StdError + Send + Sync>),
    /// The service refused this queue or message (queue missing, access denied, invalid).
    #[error("queue rejected the message")]
    Rejected(#[source] Box<dyn StdError + Send + Sync>),
}

impl QueueError {
    /// Short class name for logs and metrics.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "unavailable",
            Self::Rejected(_) => "rejected",
        }
    }
}

/// The source of a [`StoreError`] when a snapshot cannot be stored at any size the store
/// allows (even compressed): retrying cannot help.
#[derive(Debug, thiserror::Error)]
#[error("snapshot of {json_bytes} bytes is {stored_bytes} bytes compressed, over the {limit} bytes the store holds")]
pub struct SnapshotTooLarge {
    /// Length of the snapshot's JSON.
    pub json_bytes: usize,
    /// Length after compression.
    pub stored_bytes: usize,
    /// The store's limit.
    pub limit: usize,
}

impl StoreError {
    /// The [`SnapshotTooLarge`] behind this error, if that is what it is.
    pub fn too_large(&self) -> Option<&SnapshotTooLarge> {
        self.0.downcast_ref::<SnapshotTooLarge>()
    }
}

/// A store behind a port failed (network, throttling, 5xx). Not a refusal or a conflict: those
/// are results.
#[derive(Debug, thiserror::Error)]
#[error("store unavailable")]
pub struct StoreError(#[source] pub Box<dyn StdError + Send + Sync>);

/// Result of claiming a job for execution (the Powertools idempotency design).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This caller runs the job.
    Claimed,
    /// It already completed: do not run it again.
    Completed(String),
    /// Another invocation is running it until this instant (epoch ms).
    InProgress {
        /// When that claim expires.
        until_ms: u64,
    },
}

/// What the worker needs to know about a stored snapshot before a job runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotHead {
    /// When the stored version was fetched (epoch ms): its version.
    pub fetched_at_ms: u64,
    /// The job that stored it (the outbox: only that job's own later runs publish the version
    /// again, since only they can have stopped between storing and publishing).
    pub stored_by: String,
}

/// A stored snapshot: (version = fetched at, epoch ms; data, `None` for a tombstone).
pub type StoredSnapshot = (u64, Option<serde_json::Value>);

/// What an upsert did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upsert {
    /// A new version was stored: the storing job publishes it.
    Stored,
    /// The stored version has exactly this content: no new version, nothing to publish; the
    /// stored one was confirmed fresh at this fetch (its head reads the later instant).
    Unchanged,
    /// A version fetched at the same time or later is stored: its own job publishes it.
    Older,
}

/// Per-mall reconciliation state: how far the webhook logs were read, and what the last run
/// saw of the mall's webhook reception.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileState {
    /// Every log requested before this instant has been read (epoch ms, a whole second; `None`:
    /// never read, start at the look-back window). See `reconcile::LogWindow`.
    pub checkpoint_ms: Option<u64>,
    /// Cafe24's `reception_status` at the last run (`None`: not read yet).
    pub reception_on: Option<bool>,
    /// Failed deliveries the last run found in the logs.
    pub failed_logs: u64,
    /// Webhooks re-injected into the inbox, all runs.
    pub reinjected_total: u64,
    /// When the last run finished, epoch ms.
    pub last_run_ms: u64,
    /// The newest successful (non-test) delivery any run saw in the logs, epoch ms (0: none).
    pub last_delivered_ms: u64,
}

/// A command's record (`relay_domain::command`): whether a request for it may be out, and how
/// it ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CommandRecord {
    /// A request was about to leave at this instant and no outcome was recorded after it: it may
    /// have reached Cafe24.
    pub sending_since_ms: Option<u64>,
    /// Whose note that is (a token of the run that wrote it).
    pub sending_writer: Option<String>,
    /// The recorded outcome (`command::Outcome::to_record`).
    pub outcome: Option<serde_json::Value>,
}

/// What noting a command's request as leaving came to ([`crate::ports::CommandStore::note_sending`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Noted {
    /// Noted under the writer's token (or the note was the writer's already: a retried write).
    Yes,
    /// The command has an outcome: nothing may be sent.
    Recorded,
    /// An exclusive note was asked and another writer's request may be out since `since_ms`.
    Elsewhere {
        /// When the other writer noted its request.
        since_ms: u64,
    },
}
