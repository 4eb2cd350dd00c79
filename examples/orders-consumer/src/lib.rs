//! # orders-consumer — an app's side of cafe24-relay
//!
//! A Lambda function on an SQS queue that an EventBridge rule fills with the relay's
//! `order.synced` and `order.deleted` events. It keeps one item per order in the app's own
//! table, **newest wins**: an item is written only when the event's `version` (the relay's fetch
//! time) is higher than the stored one, with one conditional `PutItem`. That one condition makes
//! the consumer correct under everything EventBridge and SQS may do:
//! - a duplicate event (same `event_id`, same `version`) fails the condition and changes nothing;
//! - an older event arriving after a newer one fails it too;
//! - a batch retried after a crash re-applies the same writes with the same result.
//!
//! Table: `pk` = `<mall_id>#<order_id>`, `version` (N), `deleted` (BOOL), `event_id` (S), and
//! `data` (the order as JSON text) — or `data_omitted` (BOOL) when the relay left an oversized
//! order out of the event; read it then with `relay snapshot get` or from the relay's state table.
//!
//! A message that is not such an event is reported as a batch item failure, so the queue's
//! redrive policy moves it to the consumer's DLQ instead of dropping it.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

/// What one event did to the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Written: the newest version so far.
    Stored,
    /// A version at least as new is stored (a duplicate or an out-of-order event).
    Older,
    /// Not an order event (another detail-type): nothing to do.
    Skipped,
}

/// Why a message could not be applied.
#[derive(Debug)]
pub enum ConsumerError {
    /// The message is not a relay event of the expected shape (goes to the DLQ).
    Malformed(String),
    /// DynamoDB failed (the message is retried).
    Store(String),
}

/// The table key of an order: `<mall>#<id>`, or `<mall>#<shop>/<id>` in a multi-shop mall's
/// other shops (events carry `shop_no`; one without it is of shop 1, as before shops were read).
pub fn order_key(mall: &str, shop_no: Option<u64>, id: &str) -> String {
    match shop_no {
        Some(n) if n != 1 => format!("{mall}#{n}/{id}"),
        _ => format!("{mall}#{id}"),
    }
}

impl std::fmt::Display for ConsumerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed(m) => write!(f, "malformed event: {m}"),
            Self::Store(m) => write!(f, "orders table unavailable: {m}"),
        }
    }
}

/// The app's orders table.
#[derive(Clone, Debug)]
pub struct Orders {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

impl Orders {
    /// The table.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// Applies one EventBridge event (as the SQS target delivers it: the whole event as JSON).
    pub async fn apply(&self, event: &Value) -> Result<Applied, ConsumerError> {
        let bad = |what: &str| ConsumerError::Malformed(what.to_owned());
        let kind = event.get("detail-type").and_then(Value::as_str).ok_or_else(|| bad("no detail-type"))?;
        let deleted = match kind {
            "order.synced" => false,
            "order.deleted" => true,
            _ => return Ok(Applied::Skipped),
        };
        let d = event.get("detail").ok_or_else(|| bad("no detail"))?;
        if d.get("schema_version").and_then(Value::as_u64) != Some(1) {
            return Err(bad("unknown schema_version"));
        }
        let text = |k: &str| d.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
        let (Some(mall), Some(id), Some(event_id)) = (text("mall_id"), text("id"), text("event_id")) else {
            return Err(bad("mall_id, id and event_id are required"));
        };
        let version = d.get("version").and_then(Value::as_u64).ok_or_else(|| bad("no version"))?;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&order_key(mall, d.get("shop_no").and_then(Value::as_u64), id)))
            .item("version", AttributeValue::N(version.to_string()))
            .item("deleted", AttributeValue::Bool(deleted))
            .item("event_id", s(event_id))
            .condition_expression("attribute_not_exists(pk) OR version < :v")
            .expression_attribute_values(":v", AttributeValue::N(version.to_string()));
        if !deleted {
            match d.get("data") {
                Some(Value::Object(o)) => put = put.item("data", s(&Value::Object(o.clone()).to_string())),
                _ if d.get("data_omitted").is_some() => put = put.item("data_omitted", AttributeValue::Bool(true)),
                _ => return Err(bad("order.synced without data")),
            }
        }
        match put.send().await {
            Ok(_) => Ok(Applied::Stored),
            Err(SdkError::ServiceError(e)) if matches!(e.err(), PutItemError::ConditionalCheckFailedException(_)) => {
                Ok(Applied::Older)
            }
            Err(e) => Err(ConsumerError::Store(aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string())),
        }
    }

    async fn apply_message(&self, m: &SqsMessage) -> Result<Applied, ConsumerError> {
        let body = m.body.as_deref().unwrap_or("");
        let event: Value = serde_json::from_str(body).map_err(|e| ConsumerError::Malformed(e.to_string()))?;
        self.apply(&event).await
    }

    /// One SQS batch: every message applied; the ones that failed are returned (a malformed one
    /// ends in the queue's DLQ after its receives; a store failure is retried).
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let mut resp = SqsBatchResponse::default();
        for m in &event.records {
            match self.apply_message(m).await {
                Ok(applied) => tracing::info!(message_id = ?m.message_id, ?applied, "applied"),
                Err(e) => {
                    tracing::warn!(message_id = ?m.message_id, error = %e, "not applied");
                    let mut f = BatchItemFailure::default();
                    f.item_identifier = m.message_id.clone().unwrap_or_default();
                    resp.batch_item_failures.push(f);
                }
            }
        }
        resp
    }
}
