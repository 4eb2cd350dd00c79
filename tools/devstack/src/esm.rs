//! A local SQS event source mapping, faithful to what Lambda does with a FIFO queue:
//!
//! 1. `ReceiveMessage` (≤ 10, all system attributes, long poll);
//! 2. build the SQS event JSON exactly as Lambda sends it (`Records[]` with `messageId`,
//!    `receiptHandle`, `body`, `attributes` {`ApproximateReceiveCount`, `SentTimestamp`,
//!    `SenderId`, `ApproximateFirstReceiveTimestamp`, `SequenceNumber`, `MessageGroupId`,
//!    `MessageDeduplicationId`}, `messageAttributes`, `md5OfBody`, `eventSource`,
//!    `eventSourceARN`, `awsRegion`);
//! 3. invoke the handler with that JSON;
//! 4. apply the response like `ReportBatchItemFailures`: delete every message not listed in
//!    `batchItemFailures`; a handler error, an unparseable response, or an empty/unknown
//!    `itemIdentifier` fails the whole batch (nothing deleted); failures are left in flight
//!    and reappear after their visibility timeout with a higher `ApproximateReceiveCount`.
//!
//! Up to `max_concurrency` pollers run at once, like `ScalingConfig.MaximumConcurrency`.
//! FIFO group locking is the queue's (moto's) job, as on AWS.
//!
//! As strict as Lambda where moto cannot be (set in [`EsmConfig`]):
//! - **timeout**: the handler future is dropped at the function's deadline, as Lambda stops the
//!   process — nothing after that point runs — and the batch counts as failed (its messages come
//!   back after their visibility timeout). Inside the invocation, [`time_left`] is the real time
//!   left, so handlers that take it get Lambda's `context.deadline`;
//! - **throttling**: invocations draw from a [`ConcurrencyPool`] shared by the functions of one
//!   "account" (or a function's reserved pool). A refused invocation leaves its received batch
//!   in flight until the visibility timeout expires — another receive on each message, as
//!   Lambda's SQS poller does when the function is throttled.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use serde_json::{json, Value};

/// Settings of one mapping.
#[derive(Clone, Debug)]
pub struct EsmConfig {
    /// Queue URL.
    pub queue_url: String,
    /// Queue ARN (appears in every record).
    pub queue_arn: String,
    /// Region (appears in every record).
    pub region: String,
    /// Messages per batch, 1..=10.
    pub batch_size: i32,
    /// Concurrent pollers/invocations.
    pub max_concurrency: usize,
    /// Long-poll wait, seconds.
    pub wait_time_seconds: i32,
    /// The function's timeout: the handler is dropped at this deadline. `None`: no deadline
    /// (and [`time_left`] answers [`NO_DEADLINE_LEFT`]).
    pub timeout: Option<std::time::Duration>,
    /// The concurrency the invocations draw from; `None`: unlimited.
    pub pool: Option<ConcurrencyPool>,
}

/// A concurrency pool: the account's unreserved concurrency, or a function's reserved
/// concurrency. Clones share the pool.
#[derive(Clone, Debug)]
pub struct ConcurrencyPool {
    slots: std::sync::Arc<tokio::sync::Semaphore>,
    throttled: std::sync::Arc<AtomicUsize>,
}

impl ConcurrencyPool {
    /// A pool of `n` concurrent invocations.
    pub fn new(n: usize) -> Self {
        Self { slots: std::sync::Arc::new(tokio::sync::Semaphore::new(n)), throttled: Default::default() }
    }

    /// One invocation's slot, or `None` (throttled, counted).
    pub fn try_invoke(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let p = self.slots.clone().try_acquire_owned().ok();
        if p.is_none() {
            self.throttled.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    /// Invocations refused so far.
    pub fn throttled(&self) -> usize {
        self.throttled.load(Ordering::Relaxed)
    }
}

/// What [`time_left`] answers outside an invocation with a deadline.
pub const NO_DEADLINE_LEFT: std::time::Duration = std::time::Duration::from_secs(900);

tokio::task_local! {
    static DEADLINE: std::time::Instant;
}

/// The running invocation's time left (Lambda's `context.deadline` − now); [`NO_DEADLINE_LEFT`]
/// when the mapping has no timeout or outside an invocation.
pub fn time_left() -> std::time::Duration {
    DEADLINE.try_with(|d| d.saturating_duration_since(std::time::Instant::now())).unwrap_or(NO_DEADLINE_LEFT)
}

impl EsmConfig {
    /// Lambda's FIFO defaults: batch 10, concurrency 2, 1 s long poll (short, for tests).
    pub fn new(queue_url: &str, queue_arn: &str) -> Self {
        Self {
            queue_url: queue_url.to_owned(),
            queue_arn: queue_arn.to_owned(),
            region: crate::LOCAL_REGION.to_owned(),
            batch_size: 10,
            max_concurrency: 2,
            wait_time_seconds: 1,
            timeout: None,
            pool: None,
        }
    }
}

/// What one or more polls did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EsmReport {
    /// Invocations made (non-empty batches).
    pub batches: usize,
    /// Messages delivered to the handler.
    pub received: usize,
    /// Messages deleted after success.
    pub deleted: usize,
    /// Messages left for redelivery (listed failures, or whole failed batches).
    pub returned: usize,
    /// Batches that failed as a whole.
    pub failed_batches: usize,
    /// Invocations killed at the function's timeout (also counted in `failed_batches`).
    pub timed_out: usize,
    /// Batches received while the pool was full: not invoked, left in flight.
    pub throttled: usize,
}

impl EsmReport {
    fn add(&mut self, o: EsmReport) {
        self.batches += o.batches;
        self.received += o.received;
        self.deleted += o.deleted;
        self.returned += o.returned;
        self.failed_batches += o.failed_batches;
        self.timed_out += o.timed_out;
        self.throttled += o.throttled;
    }
}

/// A local event source mapping over one queue.
pub struct LocalEsm {
    sqs: aws_sdk_sqs::Client,
    cfg: EsmConfig,
}

/// A fresh invocation id in Lambda's format (a UUID), for drivers that stand in for the runtime.
pub fn new_request_id() -> String {
    let (a, b, c, d, e): (u32, u16, u16, u16, u64) = rand::random();
    format!("{a:08x}-{b:04x}-{:04x}-{:04x}-{:012x}", (c & 0x0fff) | 0x4000, (d & 0x3fff) | 0x8000, e & 0xffff_ffff_ffff)
}

/// Invokes an SQS batch handler the way a function's `main` does: the event JSON parsed into
/// Lambda's `SqsEvent`, the call inside the invocation's log span with a fresh request id, the
/// batch response back as JSON. What a handler closure for [`LocalEsm::poll_once`] returns.
pub async fn invoke<F, Fut, R>(function: &'static str, event: Value, handle: F) -> Result<Value, String>
where
    F: FnOnce(aws_lambda_events::event::sqs::SqsEvent) -> Fut,
    Fut: Future<Output = R>,
    R: serde::Serialize,
{
    use tracing::Instrument;
    let ev = serde_json::from_value(event).map_err(|e| e.to_string())?;
    let span = relay_lambda::telemetry::invocation_span(function, &new_request_id());
    serde_json::to_value(handle(ev).instrument(span).await).map_err(|e| e.to_string())
}

/// Builds Lambda's JSON record for one received message.
pub fn record_json(m: &Message, cfg: &EsmConfig) -> Value {
    let attrs: serde_json::Map<String, Value> = m
        .attributes()
        .map(|a| a.iter().map(|(k, v)| (k.as_str().to_owned(), Value::String(v.clone()))).collect())
        .unwrap_or_default();
    let msg_attrs: serde_json::Map<String, Value> = m
        .message_attributes()
        .map(|a| {
            a.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        json!({
                            "stringValue": v.string_value(),
                            "binaryValue": v.binary_value().map(|b| base64_std(b.as_ref())),
                            "stringListValues": [],
                            "binaryListValues": [],
                            "dataType": v.data_type(),
                        }),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut r = json!({
        "messageId": m.message_id(),
        "receiptHandle": m.receipt_handle(),
        "body": m.body(),
        "attributes": attrs,
        "messageAttributes": msg_attrs,
        "md5OfBody": m.md5_of_body(),
        "eventSource": "aws:sqs",
        "eventSourceARN": cfg.queue_arn,
        "awsRegion": cfg.region,
    });
    if let (Some(md5), Some(obj)) = (m.md5_of_message_attributes(), r.as_object_mut()) {
        obj.insert("md5OfMessageAttributes".to_owned(), Value::String(md5.to_owned()));
    }
    r
}

fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Interprets a handler's response against the batch's message ids, as Lambda does.
/// `Some(set)` = the ids to leave for redelivery; `None` = the whole batch failed.
pub fn failed_ids(response: &Value, batch_ids: &HashSet<String>) -> Option<HashSet<String>> {
    let list = match response {
        Value::Null => return Some(HashSet::new()),
        Value::Object(o) => match o.get("batchItemFailures") {
            None | Some(Value::Null) => return Some(HashSet::new()),
            Some(Value::Array(a)) => a,
            Some(_) => return None,
        },
        _ => return None,
    };
    let mut out = HashSet::new();
    for item in list {
        let id = item.get("itemIdentifier").and_then(Value::as_str)?;
        if id.is_empty() || !batch_ids.contains(id) {
            return None;
        }
        out.insert(id.to_owned());
    }
    Some(out)
}

impl LocalEsm {
    /// A mapping over `cfg.queue_url`.
    pub fn new(sqs: aws_sdk_sqs::Client, cfg: EsmConfig) -> Self {
        Self { sqs, cfg }
    }

    /// One receive → invoke → apply cycle. `handler` gets the SQS event JSON and returns the
    /// function's JSON response, or an error (a function error: the whole batch fails).
    pub async fn poll_once<H, F, E>(&self, handler: &H) -> Result<EsmReport>
    where
        H: Fn(Value) -> F,
        F: Future<Output = Result<Value, E>>,
    {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.cfg.queue_url)
            .max_number_of_messages(self.cfg.batch_size.clamp(1, 10))
            .wait_time_seconds(self.cfg.wait_time_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .context("ReceiveMessage")?;
        let msgs = out.messages();
        if msgs.is_empty() {
            return Ok(EsmReport::default());
        }
        // Throttled: the poller holds the batch (in flight) and Lambda never runs the function;
        // the messages return after their visibility timeout, one more receive each.
        let _slot = match &self.cfg.pool {
            Some(pool) => match pool.try_invoke() {
                Some(p) => Some(p),
                None => {
                    return Ok(EsmReport {
                        received: msgs.len(),
                        returned: msgs.len(),
                        throttled: 1,
                        ..Default::default()
                    })
                }
            },
            None => None,
        };
        let event = json!({ "Records": msgs.iter().map(|m| record_json(m, &self.cfg)).collect::<Vec<_>>() });
        let ids: HashSet<String> = msgs.iter().filter_map(|m| m.message_id().map(str::to_owned)).collect();
        let mut report = EsmReport { batches: 1, received: msgs.len(), ..Default::default() };

        let outcome = match self.cfg.timeout {
            None => Some(handler(event).await),
            Some(t) => {
                let deadline = std::time::Instant::now() + t;
                // Dropping the future at the deadline is the process being stopped: no code of
                // the invocation runs after it.
                DEADLINE.scope(deadline, tokio::time::timeout(t, handler(event))).await.ok()
            }
        };
        let failed = match outcome {
            Some(Ok(resp)) => failed_ids(&resp, &ids),
            Some(Err(_)) => None,
            None => {
                report.timed_out = 1;
                None
            }
        };
        let Some(failed) = failed else {
            report.failed_batches = 1;
            report.returned = msgs.len();
            return Ok(report);
        };
        let handles: HashMap<&str, &str> =
            msgs.iter().filter_map(|m| Some((m.message_id()?, m.receipt_handle()?))).collect();
        let entries: Vec<DeleteMessageBatchRequestEntry> = handles
            .iter()
            .filter(|(id, _)| !failed.contains(**id))
            .enumerate()
            .filter_map(|(i, (_, rh))| {
                DeleteMessageBatchRequestEntry::builder().id(format!("m{i}")).receipt_handle(*rh).build().ok()
            })
            .collect();
        if !entries.is_empty() {
            let n = entries.len();
            let del = self
                .sqs
                .delete_message_batch()
                .queue_url(&self.cfg.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .context("DeleteMessageBatch")?;
            report.deleted = n - del.failed().len();
        }
        report.returned = failed.len();
        Ok(report)
    }

    /// Polls with up to `max_concurrency` concurrent pollers until each has seen `idle_polls`
    /// consecutive empty receives. Returns the summed report.
    pub async fn run_until_idle<H, F, E>(&self, handler: &H, idle_polls: u32) -> Result<EsmReport>
    where
        H: Fn(Value) -> F,
        F: Future<Output = Result<Value, E>>,
    {
        let in_flight = AtomicUsize::new(0);
        let pollers = (0..self.cfg.max_concurrency.max(1)).map(|_| async {
            let mut total = EsmReport::default();
            let mut idle = 0;
            while idle < idle_polls {
                in_flight.fetch_add(1, Ordering::SeqCst);
                let r = self.poll_once(handler).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                let r = r?;
                if r.received == 0 {
                    idle += 1;
                } else {
                    idle = 0;
                }
                total.add(r);
            }
            Ok::<_, anyhow::Error>(total)
        });
        let mut sum = EsmReport::default();
        for r in futures::future::join_all(pollers).await {
            sum.add(r?);
        }
        Ok(sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> HashSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn response_interpretation_follows_lambda() {
        let b = ids(&["a", "b"]);
        assert_eq!(failed_ids(&Value::Null, &b), Some(HashSet::new()));
        assert_eq!(failed_ids(&json!({"batchItemFailures": []}), &b), Some(HashSet::new()));
        assert_eq!(failed_ids(&json!({"batchItemFailures": [{"itemIdentifier": "b"}]}), &b), Some(ids(&["b"])));
        assert_eq!(failed_ids(&json!({"batchItemFailures": [{"itemIdentifier": ""}]}), &b), None);
        assert_eq!(failed_ids(&json!({"batchItemFailures": [{"itemIdentifier": "zzz"}]}), &b), None);
        assert_eq!(failed_ids(&json!({"batchItemFailures": "oops"}), &b), None);
        assert_eq!(failed_ids(&json!([1]), &b), None);
    }
}
