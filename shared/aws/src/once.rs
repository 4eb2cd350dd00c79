//! One-time ids (OAuth state nonces) in DynamoDB: a conditional put per id, with a TTL
//! attribute (`ttl`, epoch seconds) so the table cleans itself up. Expiry is also checked by the
//! caller (the signed state carries it); TTL is only cleanup.

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use relay_domain::ports::{OnceStore, StoreError};

/// One-time ids stored in a table keyed by `pk` (shared with the tokens: `pk = once#<id>`).
#[derive(Clone, Debug)]
pub struct DynamoOnceStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoOnceStore {
    /// A store on `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

impl OnceStore for DynamoOnceStore {
    async fn consume(&self, id: &str, expires_ms: u64) -> Result<bool, StoreError> {
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(format!("once#{id}")))
            .item("ttl", AttributeValue::N((expires_ms / 1000 + 86_400).to_string()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(se)) if matches!(se.err(), PutItemError::ConditionalCheckFailedException(_)) => {
                Ok(false)
            }
            Err(e) => Err(StoreError(Box::new(e))),
        }
    }
}
