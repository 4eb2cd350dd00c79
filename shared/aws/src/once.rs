//! One-time ids (OAuth state nonces) in DynamoDB: a conditional put per id, with a TTL
//! attribute (`ttl`, epoch seconds) so the table cleans itself up. Expiry is also checked by the
//! caller (the signed state carries it); TTL is only cleanup.

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
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
        // `by` marks this consumption: a retry of an applied put finds its own mark and the
        // link still counts as used once, by this caller (not "already used").
        let by = crate::state::write_token();
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(format!("once#{id}")))
            .item("ttl", AttributeValue::N((expires_ms / 1000 + 86_400).to_string()))
            .item("by", AttributeValue::S(by.clone()))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(se)) if matches!(se.err(), PutItemError::ConditionalCheckFailedException(_)) => {
                let PutItemError::ConditionalCheckFailedException(c) = se.err() else { return Ok(false) };
                Ok(c.item().and_then(|i| i.get("by")).and_then(|v| v.as_s().ok()) == Some(&by))
            }
            Err(e) => Err(StoreError(Box::new(e))),
        }
    }
}
