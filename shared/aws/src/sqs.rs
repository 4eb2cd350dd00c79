//! SQS FIFO adapter for [`MessageQueue`].

use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::operation::send_message::SendMessageError;
use relay_domain::ports::{MessageQueue, OutboundMessage, QueueError};

/// One SQS FIFO queue, by URL.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    /// A queue handle sharing `client` (build the client once per cold start).
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self { client, url: url.into() }
    }

    /// The queue URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Maps an SDK error to the domain's two classes. Errors that name this queue or message as
/// wrong are `Rejected`; transport failures, throttling and anything unmodelled (5xx) are
/// `Unavailable`. Both mean "not stored".
fn classify(err: SdkError<SendMessageError>) -> QueueError {
    let rejected = matches!(
        &err,
        SdkError::ServiceError(se) if matches!(
            se.err(),
            SendMessageError::QueueDoesNotExist(_)
                | SendMessageError::InvalidAddress(_)
                | SendMessageError::InvalidMessageContents(_)
                | SendMessageError::InvalidSecurity(_)
                | SendMessageError::UnsupportedOperation(_)
                | SendMessageError::KmsAccessDenied(_)
                | SendMessageError::KmsDisabled(_)
                | SendMessageError::KmsNotFound(_)
        )
    );
    if rejected {
        QueueError::Rejected(Box::new(err))
    } else {
        QueueError::Unavailable(Box::new(err))
    }
}

impl MessageQueue for SqsQueue {
    async fn send(&self, msg: &OutboundMessage) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(&msg.body)
            .message_group_id(msg.group_id.as_str())
            .message_deduplication_id(msg.dedup_id.as_str())
            .send()
            .await
            .map(|_| ())
            .map_err(classify)
    }

    async fn send_batch(&self, msgs: &[OutboundMessage]) -> Result<Vec<usize>, QueueError> {
        use aws_sdk_sqs::types::SendMessageBatchRequestEntry as Entry;
        if msgs.is_empty() {
            return Ok(Vec::new());
        }
        let entries: Vec<Entry> = msgs
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                Entry::builder()
                    .id(i.to_string())
                    .message_body(&m.body)
                    .message_group_id(m.group_id.as_str())
                    .message_deduplication_id(m.dedup_id.as_str())
                    .build()
                    .ok()
            })
            .collect();
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| QueueError::Unavailable(Box::new(e)))?;
        let mut failed: Vec<usize> = out.failed().iter().filter_map(|f| f.id().parse().ok()).collect();
        // Entries neither reported successful nor failed count as failed (never assume stored).
        let ok: Vec<usize> = out.successful().iter().filter_map(|s| s.id().parse().ok()).collect();
        for i in 0..msgs.len() {
            if !ok.contains(&i) && !failed.contains(&i) {
                failed.push(i);
            }
        }
        failed.sort_unstable();
        Ok(failed)
    }
}

/// `ChangeMessageVisibilityBatch` on one queue (deferral without sleeping).
#[derive(Clone, Debug)]
pub struct SqsVisibility {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsVisibility {
    /// For the queue at `url`.
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self { client, url: url.into() }
    }
}

impl relay_domain::ports::VisibilityControl for SqsVisibility {
    /// Each chunk of ten in one `ChangeMessageVisibilityBatch`; what SQS refuses for its own
    /// reasons (throttling past the SDK's retries, a 5xx, an entry failed without the sender's
    /// fault) is asked again twice, after 100 and 400 ms. A visibility change that never lands
    /// leaves the message to the queue's default (minutes instead of the one second asked): under
    /// a FIFO queue's per-action quota that is the first request to be throttled in a backlog.
    async fn defer(&self, items: &[(String, u32)]) -> Result<usize, relay_domain::ports::StoreError> {
        use aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry as Entry;
        let mut failed = 0;
        let mut last_error = None;
        for chunk in items.chunks(10) {
            let mut pending: Vec<usize> = (0..chunk.len()).collect();
            for pause_ms in [0u64, 100, 400] {
                if pending.is_empty() {
                    break;
                }
                if pause_ms > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
                }
                let entries: Vec<Entry> = pending
                    .iter()
                    .filter_map(|&i| {
                        let (rh, d) = chunk.get(i)?;
                        Entry::builder()
                            .id(format!("e{i}"))
                            .receipt_handle(rh)
                            .visibility_timeout((*d).min(43_200) as i32)
                            .build()
                            .ok()
                    })
                    .collect();
                match self
                    .client
                    .change_message_visibility_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                {
                    Ok(out) => {
                        // Entries failed by the sender's fault (a stale receipt handle) stay failed.
                        let (retry, final_): (Vec<_>, Vec<_>) = out.failed().iter().partition(|f| !f.sender_fault());
                        failed += final_.len();
                        pending = retry
                            .iter()
                            .filter_map(|f| f.id().strip_prefix('e').and_then(|n| n.parse().ok()))
                            .collect();
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            failed += pending.len();
        }
        match last_error {
            Some(e) if failed == items.len() => Err(relay_domain::ports::StoreError(Box::new(e))),
            _ => Ok(failed),
        }
    }
}
