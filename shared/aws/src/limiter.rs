//! The per-mall rate limiter on DynamoDB: the pure GCRA core of `relay_domain::ratelimit`,
//! stored as one item per rate-limit key and moved with conditional writes.
//!
//! ## Item
//! `pk` (S, the rate-limit key), `tat`, `nb`, `last` (N, epoch ms — see `LimiterState`), `v` (N,
//! a version bumped by every write), `w` (S, a token of the write that set it: a retried write
//! that finds its own token was applied, and admits its call once), `off` (N, epoch ms: when an
//! uninstall of a mall under this key was applied — see [`fence`]).
//!
//! ## Fast path: one write per admitted call
//! The decision is made on the last state *this process* saw (no read), and persisted with one
//! `UpdateItem` conditioned on the version it was made from. When another process moved the
//! item first, the write fails with `ReturnValuesOnConditionCheckFailure = ALL_OLD`, which hands
//! back the current item: decide again on it, at most `max_retries` times, with a little jitter.
//! A `Wait` costs no write, and is remembered ("refused until") so asking again before then
//! costs nothing either. A stale cached state can only make a decision *more* permissive, and a
//! permissive decision is exactly what the version condition refuses — so the cache never lets
//! a call through that the stored state would refuse.
//!
//! ## One process, one writer per key
//! Concurrent acquisitions for the same key in one process (jobs of one mall overlapping,
//! `JOBS_IN_FLIGHT` > 1) take turns on an in-process lock, so each decides on the state the
//! previous one wrote instead of racing it to a conditional-write conflict (a billed write that
//! admits nothing). Other processes still meet the version condition.
//!
//! ## Fence: an uninstall reaches every warm process
//! The dispatcher, applying an uninstall, sets `off` and bumps `v` ([`fence`]). Every process
//! that acquires under the key next meets the version condition, reads the item back and
//! remembers `off` ([`DynamoLimiter::closed_since`]); the Cafe24 client then reads the mall's
//! token record again instead of calling with a token it cached before the uninstall. No read
//! and no write is added to a call.
//!
//! ## Feedback
//! [`DynamoLimiter::feedback`] applies Cafe24's headers (and 429s) with the same conditional
//! write, only when they actually move the state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use relay_domain::clock::Clock;
use relay_domain::ratelimit::{Class, Decision, Feedback, LimiterConfig, LimiterState};

pub use relay_domain::ratelimit::Acquire;
/// The limiter's store failed (not a refusal: a refusal is `Acquire::Wait`).
pub type LimiterError = relay_domain::ports::StoreError;

/// Counters for tests, benchmarks and metrics.
#[derive(Debug, Default)]
pub struct LimiterStats {
    pub admitted: AtomicU64,
    /// `UpdateItem` calls (each costs a WCU, even when its condition fails).
    pub writes: AtomicU64,
    /// Writes refused by the condition (contention).
    pub conflicts: AtomicU64,
    /// Waits decided on a state (no write).
    pub waits: AtomicU64,
    /// Feedback writes.
    pub feedback_writes: AtomicU64,
    /// Acquisitions given up after `max_retries` conflicts.
    pub exhausted: AtomicU64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Cached {
    state: LimiterState,
    /// 0 = no item known.
    version: u64,
    /// The item's `off` (0 = never fenced).
    closed_at: u64,
}

/// GCRA limiter on one DynamoDB table.
pub struct DynamoLimiter {
    client: aws_sdk_dynamodb::Client,
    table: String,
    cfg: LimiterConfig,
    clock: Clock,
    /// Retries after a conflict, per acquisition.
    pub max_retries: u32,
    cache: Mutex<HashMap<String, Cached>>,
    /// Per key, the turn of this process's acquisitions and feedback writes.
    turns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub stats: LimiterStats,
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn num(item: &HashMap<String, AttributeValue>, k: &str) -> u64 {
    item.get(k).and_then(|v| v.as_n().ok()).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

fn from_item(item: Option<&HashMap<String, AttributeValue>>) -> Cached {
    match item {
        Some(i) if !i.is_empty() => Cached {
            state: LimiterState { tat_ms: num(i, "tat"), not_before_ms: num(i, "nb"), last_ms: num(i, "last") },
            version: num(i, "v"),
            closed_at: num(i, "off"),
        },
        _ => Cached::default(),
    }
}

enum Write {
    Done,
    Conflict(Cached),
}

impl DynamoLimiter {
    /// A limiter on `table` with `cfg` (validated by the caller's config loading).
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>, cfg: LimiterConfig, clock: Clock) -> Self {
        Self {
            client,
            table: table.into(),
            cfg,
            clock,
            max_retries: 4,
            cache: Mutex::new(HashMap::new()),
            turns: Mutex::new(HashMap::new()),
            stats: LimiterStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LimiterConfig {
        &self.cfg
    }

    fn cached(&self, key: &str) -> Cached {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner).get(key).copied().unwrap_or_default()
    }

    /// This process's turn for `key` (held while deciding and writing).
    fn turn(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.turns.lock().unwrap_or_else(PoisonError::into_inner).entry(key.to_owned()).or_default().clone()
    }

    fn remember(&self, key: &str, c: Cached) {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner).insert(key.to_owned(), c);
    }

    async fn write(&self, key: &str, from: &Cached, to: &LimiterState) -> Result<Write, LimiterError> {
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        let tok = crate::state::write_token();
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.to_owned()))
            .update_expression("SET tat = :tat, nb = :nb, #last = :last, v = :nv, w = :w")
            .expression_attribute_names("#last", "last")
            .expression_attribute_values(":w", AttributeValue::S(tok.clone()))
            .expression_attribute_values(":tat", n(to.tat_ms))
            .expression_attribute_values(":nb", n(to.not_before_ms))
            .expression_attribute_values(":last", n(to.last_ms))
            .expression_attribute_values(":nv", n(from.version + 1))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        req = if from.version == 0 {
            req.condition_expression("attribute_not_exists(pk)")
        } else {
            req.condition_expression("v = :v").expression_attribute_values(":v", n(from.version))
        };
        match req.send().await {
            Ok(_) => Ok(Write::Done),
            Err(SdkError::ServiceError(se))
                if matches!(se.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
            {
                self.stats.conflicts.fetch_add(1, Ordering::Relaxed);
                let item = match se.err() {
                    UpdateItemError::ConditionalCheckFailedException(e) => e.item().cloned(),
                    _ => None,
                };
                // Our own token at the version we set: the SDK retried an applied write, and the
                // call is admitted once (deciding again would spend a second slot for it).
                if item.as_ref().and_then(|i| i.get("w")).and_then(|v| v.as_s().ok()) == Some(&tok) {
                    self.stats.conflicts.fetch_sub(1, Ordering::Relaxed);
                    return Ok(Write::Done);
                }
                Ok(Write::Conflict(from_item(item.as_ref())))
            }
            Err(e) => Err(relay_domain::ports::StoreError(Box::new(e))),
        }
    }

    async fn jitter(attempt: u32) {
        let ms = rand::random::<u64>() % (2 + u64::from(attempt) * 3);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    /// How long a call under `key` would wait now by the state this process last saw (no
    /// I/O): what `acquire` would answer at once from its cache, `None` when that is "admit".
    pub fn known_wait(&self, key: &str, class: Class) -> Option<u64> {
        let cur = self.cached(key);
        let now = (self.clock)();
        match self.cfg.decide(&cur.state, now, class) {
            Decision::Wait(d) => Some(d),
            Decision::Admit(_) => None,
        }
    }

    /// When an uninstall under `key` was last applied, as this process last read the item
    /// (`None`: never, or not seen yet). Learnt without a read: a fence bumps the version, so the
    /// next acquisition meets the condition and reads the item back.
    pub fn closed_since(&self, key: &str) -> Option<u64> {
        Some(self.cached(key).closed_at).filter(|&t| t > 0)
    }

    /// Asks to make one call under `key` now.
    pub async fn acquire(&self, key: &str, class: Class) -> Result<Acquire, LimiterError> {
        self.acquire_within(key, class, None).await
    }

    /// Asks to make one call under `key` now, to an endpoint whose own limit is `cap` calls
    /// (`LimiterConfig::decide_within`).
    pub async fn acquire_within(&self, key: &str, class: Class, cap: Option<u32>) -> Result<Acquire, LimiterError> {
        let turn = self.turn(key);
        let _turn = turn.lock().await;
        // A wait is decided on the state this process last saw, without I/O (the state only
        // moves forward): per class and cap, so a bulk job's longer wait never holds a live call.
        let mut cur = self.cached(key);
        for attempt in 0..=self.max_retries {
            let now = (self.clock)();
            match self.cfg.decide_within(&cur.state, now, class, cap) {
                Decision::Wait(d) => {
                    self.stats.waits.fetch_add(1, Ordering::Relaxed);
                    return Ok(Acquire::Wait(d));
                }
                Decision::Admit(next) => match self.write(key, &cur, &next).await? {
                    Write::Done => {
                        self.stats.admitted.fetch_add(1, Ordering::Relaxed);
                        self.remember(key, Cached { state: next, version: cur.version + 1, ..cur });
                        return Ok(Acquire::Admitted);
                    }
                    Write::Conflict(fresh) => {
                        cur = fresh;
                        self.remember(key, cur);
                        if attempt < self.max_retries {
                            Self::jitter(attempt).await;
                        }
                    }
                },
            }
        }
        self.stats.exhausted.fetch_add(1, Ordering::Relaxed);
        // Heavily contended: come back after a fraction of an interval.
        Ok(Acquire::Wait(1 + rand::random::<u64>() % (self.cfg.interval_ms() / 4 + 1)))
    }

    /// Applies Cafe24's response headers for `key` (writes only when the state moves).
    pub async fn feedback(&self, key: &str, fb: &Feedback) -> Result<(), LimiterError> {
        if !fb.is_informative() {
            return Ok(());
        }
        let turn = self.turn(key);
        let _turn = turn.lock().await;
        let mut cur = self.cached(key);
        for attempt in 0..=self.max_retries {
            let now = (self.clock)();
            let next = self.cfg.apply_feedback(&cur.state, fb, now);
            if next == cur.state {
                return Ok(());
            }
            self.stats.feedback_writes.fetch_add(1, Ordering::Relaxed);
            match self.write(key, &cur, &next).await? {
                Write::Done => {
                    self.remember(key, Cached { state: next, version: cur.version + 1, ..cur });
                    return Ok(());
                }
                Write::Conflict(fresh) => {
                    cur = fresh;
                    self.remember(key, cur);
                    if attempt < self.max_retries {
                        Self::jitter(attempt).await;
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads the stored state (for tests and the ops CLI; the fast path never reads).
    pub async fn stored(&self, key: &str) -> Result<Option<LimiterState>, LimiterError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| relay_domain::ports::StoreError(Box::new(e)))?;
        Ok(out.item().map(|i| from_item(Some(i)).state))
    }
}

/// Fences `key` on the limiter `table` at `at_ms` (see the module doc): `off` set, version
/// bumped. Repeating it is harmless (one more version, which costs the next acquisition of
/// each process one conflict).
pub async fn fence(client: &aws_sdk_dynamodb::Client, table: &str, key: &str, at_ms: u64) -> Result<(), LimiterError> {
    client
        .update_item()
        .table_name(table)
        .key("pk", AttributeValue::S(key.to_owned()))
        .update_expression("SET #off = :at ADD v :one")
        .expression_attribute_names("#off", "off")
        .expression_attribute_values(":at", n(at_ms))
        .expression_attribute_values(":one", n(1))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| relay_domain::ports::StoreError(Box::new(e)))
}

impl relay_domain::ports::RateGate for DynamoLimiter {
    async fn acquire_within(&self, key: &str, class: Class, cap: Option<u32>) -> Result<Acquire, LimiterError> {
        DynamoLimiter::acquire_within(self, key, class, cap).await
    }

    async fn feedback(&self, key: &str, fb: &Feedback) -> Result<(), LimiterError> {
        DynamoLimiter::feedback(self, key, fb).await
    }

    fn known_wait(&self, key: &str, class: Class) -> Option<u64> {
        DynamoLimiter::known_wait(self, key, class)
    }

    fn closed_since(&self, key: &str) -> Option<u64> {
        DynamoLimiter::closed_since(self, key)
    }
}
