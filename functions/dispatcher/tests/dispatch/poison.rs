//! Poison inbox messages, without moto (in-memory ports): whatever the dispatcher cannot read is
//! parked unchanged under `_parked.<reason>` and acknowledged, never retried hot or lost.

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;

#[tokio::test]
async fn unreadable_inbox_messages_are_parked_unchanged_and_acknowledged() {
    let (d, p) = crate::common::dispatcher("");
    let (work, parking) = (p.work, p.parking);
    let bodies = ["not json", "{\"v\":99,\"x\":1}", "[]", ""];
    let event = crate::common::batch(&bodies);
    let resp = d.handle_batch(event, || Duration::from_secs(30)).await;
    assert!(resp.batch_item_failures.is_empty(), "all acknowledged once parked");
    let parked = parking.messages();
    assert_eq!(parked.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), bodies, "parked as they were");
    assert!(parked.iter().all(|m| m.group_id.as_str() == "_parked.not_an_envelope"), "{parked:?}");
    assert!(work.messages().is_empty());

    // Parking refused: nothing acknowledged, nothing claimed as parked.
    parking.set_failing(true);
    let event: SqsEvent =
        serde_json::from_value(serde_json::json!({"Records": [{"messageId": "m9", "receiptHandle": "rh9",
        "body": "junk", "attributes": {"MessageGroupId": "shop"}, "messageAttributes": {}, "eventSource": "aws:sqs"}]}))
        .unwrap();
    let resp = d.handle_batch(event, || Duration::from_secs(30)).await;
    assert_eq!(resp.batch_item_failures.len(), 1, "returned to the inbox");
    assert_eq!(d.stats.parked.load(std::sync::atomic::Ordering::Relaxed), 4, "the failed park is not counted");
}
