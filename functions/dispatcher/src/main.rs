//! dispatcher binary: SQS batches from the inbox, or an EventBridge schedule (keep-alive, or
//! reconciliation when the event's `source` is `cafe24-relay.reconcile`).

use dispatcher::{Dispatcher, DispatcherConfig};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use relay_lambda::telemetry::invocation_span;
use serde_json::Value;
use tracing::Instrument;

#[tokio::main]
async fn main() -> Result<(), Error> {
    relay_lambda::telemetry::init("dispatcher");
    let cfg = DispatcherConfig::from_lookup(|k| std::env::var(k).ok())?;
    let sdk = relay_aws::load_sdk_config().await;
    let d = Dispatcher::on_aws(&relay_aws::Clients::new(&sdk), cfg);
    let d = &d;
    run(service_fn(move |ev: LambdaEvent<Value>| {
        let span = invocation_span("dispatcher", &ev.context.request_id);
        handle(d, ev).instrument(span)
    }))
    .await
}

async fn handle<Q, S, V, B>(d: &Dispatcher<Q, S, Q, V, B>, ev: LambdaEvent<Value>) -> Result<Value, Error>
where
    Q: relay_domain::ports::MessageQueue,
    S: relay_domain::tokens::TokenStore + relay_domain::ports::ScheduleCursor,
    V: relay_domain::ports::VisibilityControl,
    B: relay_domain::ports::EventBus,
{
    if ev.payload.get("Records").is_some() {
        let sqs: aws_lambda_events::event::sqs::SqsEvent = serde_json::from_value(ev.payload)?;
        let deadline = ev.context.deadline();
        let left = move || deadline.duration_since(std::time::SystemTime::now()).unwrap_or_default();
        Ok::<Value, Error>(serde_json::to_value(d.handle_batch(sqs, left).await)?)
    } else {
        // An EventBridge schedule (or a manual invoke): reconciliation or the keep-alive.
        let now = relay_lambda::clock::now_ms();
        let deadline = ev.context.deadline();
        let left = move || deadline.duration_since(std::time::SystemTime::now()).unwrap_or_default();
        if ev.payload.get("source").and_then(Value::as_str) == Some(dispatcher::RECONCILE_SOURCE) {
            let jobs = d.reconcile_all(now, left).await?;
            return Ok(serde_json::json!({"reconcile_jobs": jobs}));
        }
        let (jobs, reauth) = d.keep_alive(now, left).await?;
        Ok(serde_json::json!({"keepalive_jobs": jobs, "needs_reauth": reauth}))
    }
}
