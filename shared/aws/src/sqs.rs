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
}
