//! SQS quotas (issue 30, item 6): what a FIFO queue does when an action is over its quota —
//! it answers `RequestThrottled` — and what the relay does then. Faults injected by the local
//! endpoint (`scripts/moto_server.py`, "Injected faults").

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use relay_aws::sqs::SqsVisibility;
use relay_domain::ports::VisibilityControl;
use relay_tests::faults::{self, Fault, Rule};
use relay_tests::TestEnv;

/// A deferral whose visibility change is throttled beyond the SDK's own retries still takes
/// effect: the job is back after the second it asked for, not after the queue's default
/// visibility (180 s here, 360 s for the deployed work queue) — a backed-up mall would
/// otherwise stall for minutes exactly when its queue is busiest.
#[tokio::test]
async fn a_throttled_visibility_change_is_asked_again_and_the_job_returns_after_its_second() {
    let env = TestEnv::new("quota-vis").await.unwrap();
    let url = &env.stack.work.url;
    let queue = url.rsplit('/').next().unwrap().to_owned();
    env.sqs
        .send_message()
        .queue_url(url)
        .message_body("{}")
        .message_group_id("mall")
        .message_deduplication_id("d1")
        .send()
        .await
        .unwrap();
    let got = env.sqs.receive_message().queue_url(url).visibility_timeout(180).send().await.unwrap();
    let rh = got.messages()[0].receipt_handle().unwrap().to_owned();
    // Every attempt the SDK makes for the first request is throttled.
    env.inject(&Rule::once("ChangeMessageVisibilityBatch", &queue, Fault::Throttle).times(3)).await.unwrap();
    let vis = SqsVisibility::new(env.sqs.clone(), url.clone());
    let failed = vis.defer(&[(rh, 1)]).await.expect("the deferral was lost to throttling");
    assert_eq!(failed, 0);
    assert_eq!(faults::fired(&env.endpoint, &queue).await.unwrap(), [3], "the throttling was not injected");
    let started = Instant::now();
    let mut back = false;
    while started.elapsed() < Duration::from_secs(8) && !back {
        back = !env.sqs.receive_message().queue_url(url).send().await.unwrap().messages().is_empty();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(back, "the job did not come back after its 1 s deferral");
}
