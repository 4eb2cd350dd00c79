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
    async fn defer(&self, items: &[(String, u32)]) -> Result<usize, relay_domain::ports::StoreError> {
        use aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry as Entry;
        let mut failed = 0;
        for chunk in items.chunks(10) {
            let entries: Vec<Entry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, (rh, d))| {
                    Entry::builder()
                        .id(format!("e{i}"))
                        .receipt_handle(rh)
                        .visibility_timeout((*d).min(43_200) as i32)
                        .build()
                        .ok()
                })
                .collect();
            let out = self
                .client
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| relay_domain::ports::StoreError(Box::new(e)))?;
            failed += out.failed().len();
        }
        Ok(failed)
    }
}
