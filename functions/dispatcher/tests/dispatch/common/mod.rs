//! The dispatcher on in-memory ports, and SQS records as Lambda delivers them (shared by the
//! tests in this directory).

#![allow(dead_code)]

use aws_lambda_events::event::sqs::SqsEvent;
use dispatcher::{Dispatcher, DispatcherConfig};
use relay_domain::ports::memory::{MemoryBus, MemoryQueue, MemoryTokens, MemoryVisibility};

/// The dispatcher on in-memory ports.
pub type D = Dispatcher<MemoryQueue, MemoryTokens, MemoryQueue, MemoryVisibility, MemoryBus>;

/// Its ports, to inspect and to switch to failing.
pub struct Ports {
    pub work: MemoryQueue,
    pub parking: MemoryQueue,
    pub bus: MemoryBus,
    pub visibility: MemoryVisibility,
}

/// A dispatcher with `ROUTING_OVERRIDES` = `overrides` (empty: the defaults).
pub fn dispatcher(overrides: &str) -> (D, Ports) {
    let overrides = overrides.to_owned();
    let cfg = DispatcherConfig::from_lookup(move |k| match k {
        "WORK_QUEUE_URL" => Some("https://sqs.example/1/work.fifo".into()),
        "INBOX_QUEUE_URL" => Some("https://sqs.example/1/inbox.fifo".into()),
        "PARKING_QUEUE_URL" => Some("https://sqs.example/1/inbox-dlq.fifo".into()),
        "TOKEN_TABLE" => Some("t".into()),
        "RATE_LIMIT_TABLE" => Some("rl".into()),
        "EVENT_BUS_NAME" => Some("bus".into()),
        "ROUTING_OVERRIDES" => Some(overrides.clone()),
        _ => None,
    })
    .unwrap();
    let p = Ports {
        work: MemoryQueue::default(),
        parking: MemoryQueue::default(),
        bus: MemoryBus::default(),
        visibility: MemoryVisibility::default(),
    };
    let d = Dispatcher::new(
        p.work.clone(),
        p.parking.clone(),
        MemoryTokens::default(),
        p.visibility.clone(),
        p.bus.clone(),
        cfg,
    );
    (d, p)
}

/// One batch of inbox records with these bodies (message ids `m0`, `m1`, …, group `shop`).
pub fn batch<S: AsRef<str>>(bodies: &[S]) -> SqsEvent {
    let records: Vec<serde_json::Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            serde_json::json!({"messageId": format!("m{i}"), "receiptHandle": format!("rh{i}"), "body": b.as_ref(),
                "attributes": {"MessageGroupId": "shop", "ApproximateReceiveCount": "1"}, "messageAttributes": {},
                "eventSource": "aws:sqs"})
        })
        .collect();
    serde_json::from_value(serde_json::json!({"Records": records})).unwrap()
}
