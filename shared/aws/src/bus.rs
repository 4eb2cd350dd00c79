//! EventBridge adapter for [`EventBus`]: `PutEvents` on one bus, split into requests of at most
//! ten entries and 256 KB ([`relay_domain::delivery::put_chunks`]). A refused entry is reported
//! by index with its error code logged (never its detail: events carry customers' data).

use relay_domain::delivery::{put_chunks, BusEvent, EVENT_SOURCE};
use relay_domain::ports::{EventBus, StoreError};

/// One event bus, by name or ARN.
#[derive(Clone, Debug)]
pub struct EventBridgeBus {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventBridgeBus {
    /// A bus handle sharing `client` (build the client once per cold start).
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Self {
        Self { client, bus: bus.into() }
    }
}

impl EventBus for EventBridgeBus {
    async fn publish(&self, events: &[BusEvent]) -> Result<Vec<usize>, StoreError> {
        let mut failed = Vec::new();
        for range in put_chunks(events) {
            let start = range.start;
            let chunk = events.get(range.clone()).unwrap_or_default();
            let entries: Vec<_> = chunk
                .iter()
                .map(|e| {
                    aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                        .event_bus_name(&self.bus)
                        .source(EVENT_SOURCE)
                        .detail_type(&e.detail_type)
                        .detail(&e.detail)
                        .build()
                })
                .collect();
            match self.client.put_events().set_entries(Some(entries)).send().await {
                Ok(out) => {
                    // Results are positional: an entry with an error code was not accepted.
                    for (i, r) in out.entries().iter().enumerate() {
                        if let Some(code) = r.error_code() {
                            tracing::warn!(error_code = code, event_id = %chunk.get(i).map(|e| e.event_id.as_str()).unwrap_or(""), "event refused by the bus");
                            failed.push(start + i);
                        }
                    }
                    // Fewer results than entries: the missing ones are not known accepted.
                    failed.extend((start + out.entries().len())..range.end);
                }
                // The request as a whole failed (unreachable, throttled, bus missing, denied):
                // none of its entries is known accepted.
                Err(e) => {
                    tracing::warn!(error = %aws_sdk_eventbridge::error::DisplayErrorContext(&e), "PutEvents failed");
                    failed.extend(range);
                }
            }
        }
        Ok(failed)
    }
}
