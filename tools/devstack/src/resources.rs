//! Local resources with the production attributes.
//!
//! The attribute values here are the ones `infra/` declares; keep them in step (issue: infra
//! drift test). Tests may shorten the visibility timeout to observe redelivery quickly.

use std::collections::HashMap;

use anyhow::{Context, Result};
use aws_sdk_sqs::types::QueueAttributeName as A;

/// One FIFO queue and its FIFO dead-letter queue.
#[derive(Clone, Debug)]
pub struct FifoPair {
    /// Main queue URL.
    pub url: String,
    /// Main queue ARN.
    pub arn: String,
    /// Dead-letter queue URL.
    pub dlq_url: String,
    /// Dead-letter queue ARN.
    pub dlq_arn: String,
}

/// Attributes of a FIFO queue pair.
#[derive(Clone, Debug)]
pub struct FifoSpec {
    /// Base name without `.fifo` (the DLQ is `<name>-dlq.fifo`).
    pub name: String,
    /// Visibility timeout, seconds (production: ≥ 6 × the consumer's function timeout).
    pub visibility_timeout_s: u32,
    /// Redrive `maxReceiveCount`.
    pub max_receive_count: u32,
}

/// Message retention of every queue: 14 days, the SQS maximum, so nothing accepted expires
/// before an operator can look at it.
pub const RETENTION_S: u32 = 1_209_600;

impl FifoSpec {
    /// The inbox: consumed by the dispatcher (function timeout 30 s → visibility 180 s).
    pub fn inbox(prefix: &str) -> Self {
        Self { name: format!("{prefix}inbox"), visibility_timeout_s: 180, max_receive_count: 1000 }
    }

    /// The command queue: the app sends commands, the dispatcher turns them into jobs
    /// (function timeout 30 s → visibility 180 s).
    pub fn commands(prefix: &str) -> Self {
        Self { name: format!("{prefix}commands"), visibility_timeout_s: 180, max_receive_count: 1000 }
    }

    /// The work queue: consumed by the worker (function timeout 60 s → visibility 360 s).
    /// `maxReceiveCount` is only a safety net: deferrals raise the receive count without an
    /// attempt, and the worker counts real attempts itself.
    pub fn work(prefix: &str) -> Self {
        Self { name: format!("{prefix}work"), visibility_timeout_s: 360, max_receive_count: 1000 }
    }
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String> {
    let out = sqs.get_queue_attributes().queue_url(url).attribute_names(A::QueueArn).send().await?;
    out.attributes().and_then(|a| a.get(&A::QueueArn)).cloned().context("queue has no QueueArn attribute")
}

/// `MaximumMessageSize` of every queue (SQS's 256 KiB; `infra/template.yaml` sets the same).
pub const MAX_MESSAGE_BYTES: u32 = 262_144;

fn fifo_attrs(visibility: u32) -> HashMap<A, String> {
    HashMap::from([
        (A::FifoQueue, "true".to_owned()),
        // Off everywhere: two different webhooks can have identical bodies.
        (A::ContentBasedDeduplication, "false".to_owned()),
        (A::MessageRetentionPeriod, RETENTION_S.to_string()),
        (A::VisibilityTimeout, visibility.to_string()),
        // AWS's limit, set as the template sets it (moto would default to 1 MiB and hide size bugs).
        (A::MaximumMessageSize, MAX_MESSAGE_BYTES.to_string()),
    ])
}

/// Creates (or finds, when it exists with the same attributes) a FIFO queue and its DLQ.
pub async fn create_fifo_pair(sqs: &aws_sdk_sqs::Client, spec: &FifoSpec) -> Result<FifoPair> {
    let dlq = sqs
        .create_queue()
        .queue_name(format!("{}-dlq.fifo", spec.name))
        .set_attributes(Some(fifo_attrs(spec.visibility_timeout_s)))
        .send()
        .await
        .context("creating DLQ")?;
    let dlq_url = dlq.queue_url().context("no DLQ url")?.to_owned();
    let dlq_arn = queue_arn(sqs, &dlq_url).await?;

    let mut attrs = fifo_attrs(spec.visibility_timeout_s);
    attrs.insert(
        A::RedrivePolicy,
        format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{}"}}"#, spec.max_receive_count),
    );
    let q = sqs
        .create_queue()
        .queue_name(format!("{}.fifo", spec.name))
        .set_attributes(Some(attrs))
        .send()
        .await
        .context("creating queue")?;
    let url = q.queue_url().context("no queue url")?.to_owned();
    let arn = queue_arn(sqs, &url).await?;
    Ok(FifoPair { url, arn, dlq_url, dlq_arn })
}

/// Creates a DynamoDB table with a string partition key `pk`, on-demand billing.
pub async fn create_pk_table(ddb: &aws_sdk_dynamodb::Client, name: &str) -> Result<()> {
    use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
    ddb.create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder().attribute_name("pk").attribute_type(ScalarAttributeType::S).build()?,
        )
        .key_schema(KeySchemaElement::builder().attribute_name("pk").key_type(KeyType::Hash).build()?)
        .send()
        .await
        .with_context(|| format!("creating table {name}"))?;
    Ok(())
}

/// Everything the pipeline needs so far.
#[derive(Clone, Debug)]
pub struct Stack {
    /// The inbox and its DLQ (the DLQ is also the parking place for unroutable webhooks).
    pub inbox: FifoPair,
    /// The rate limiter's table (one item per rate-limit key).
    pub rate_limit_table: String,
    /// OAuth tokens, one item per mall.
    pub token_table: String,
    /// The work queue and its DLQ.
    pub work: FifoPair,
    /// The worker's state: idempotency records, attempts, snapshots.
    pub state_table: String,
    /// The event bus the relay delivers to (a custom bus, as the template creates).
    pub event_bus: String,
    /// The queue the app sends commands to, and its DLQ.
    pub commands: FifoPair,
}

impl Stack {
    /// Creates the stack's resources under `prefix`.
    pub async fn create(clients: &relay_aws::Clients, prefix: &str) -> Result<Self> {
        let (sqs, ddb) = (&clients.sqs, &clients.ddb);
        let event_bus = format!("{prefix}events");
        clients.events.create_event_bus().name(&event_bus).send().await.context("create event bus")?;
        let rate_limit_table = format!("{prefix}rate-limits");
        create_pk_table(ddb, &rate_limit_table).await?;
        let token_table = format!("{prefix}tokens");
        create_pk_table(ddb, &token_table).await?;
        let state_table = format!("{prefix}state");
        create_pk_table(ddb, &state_table).await?;
        Ok(Self {
            inbox: create_fifo_pair(sqs, &FifoSpec::inbox(prefix)).await?,
            rate_limit_table,
            token_table,
            work: create_fifo_pair(sqs, &FifoSpec::work(prefix)).await?,
            state_table,
            event_bus,
            commands: create_fifo_pair(sqs, &FifoSpec::commands(prefix)).await?,
        })
    }

    /// The environment variables the functions read for these resources.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("INBOX_QUEUE_URL", self.inbox.url.clone()),
            ("PARKING_QUEUE_URL", self.inbox.dlq_url.clone()),
            ("RATE_LIMIT_TABLE", self.rate_limit_table.clone()),
            ("TOKEN_TABLE", self.token_table.clone()),
            ("WORK_QUEUE_URL", self.work.url.clone()),
            ("WORKER_DLQ_URL", self.work.dlq_url.clone()),
            ("STATE_TABLE", self.state_table.clone()),
            ("EVENT_BUS_NAME", self.event_bus.clone()),
            ("COMMAND_QUEUE_ARN", self.commands.arn.clone()),
        ]
    }
}

/// An application's subscription to the relay's bus, as a user sets one up: a standard SQS
/// queue and a rule on `bus` matching `source` = cafe24-relay that targets it. (moto needs no
/// queue policy; on AWS the queue must let `events.amazonaws.com` send, see
/// `examples/orders-consumer/template.yaml`.) Returns the queue URL.
pub async fn subscribe_queue(clients: &relay_aws::Clients, bus: &str, queue: &str) -> Result<String> {
    let url = clients
        .sqs
        .create_queue()
        .queue_name(queue)
        .send()
        .await
        .context("create subscriber queue")?
        .queue_url()
        .unwrap_or_default()
        .to_owned();
    let arn = queue_arn(&clients.sqs, &url).await?;
    let rule = format!("{queue}-rule");
    clients
        .events
        .put_rule()
        .name(&rule)
        .event_bus_name(bus)
        .event_pattern(format!(r#"{{"source":["{}"]}}"#, relay_domain::delivery::EVENT_SOURCE))
        .send()
        .await
        .context("put rule")?;
    let target = aws_sdk_eventbridge::types::Target::builder().id("app-queue").arn(arn).build().context("target")?;
    clients.events.put_targets().rule(&rule).event_bus_name(bus).targets(target).send().await.context("put targets")?;
    Ok(url)
}
