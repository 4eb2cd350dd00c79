//! Command jobs: the app's own request made once per key, under the mall's limiter and tokens,
//! with the invocation dying at each point (before the request leaves, while it is out, after
//! Cafe24 answered but before the record, after the record but before the event). The
//! simulator counts every write that took effect: a POST's count is exactly 1, or its result
//! is `uncertain` and the count is at most 1.

use cafe24_sim::state::FaultKind;
use relay_domain::command::{Command, Queued};
use relay_domain::jobs::JobKind;
use relay_domain::ports::CommandStore as _;
use serde_json::{json, Value};

use crate::common::*;

fn grant(key: &str) -> Value {
    json!({"v": 1, "key": key, "mall_id": "shop", "method": "POST", "path": "points",
        "body": {"shop_no": 1, "request": {"member_id": "m1", "amount": "100", "reason": key}}})
}

/// The job carrying the command `c`, as message `job_id` (one SQS message per job id).
fn body(fx: &Fx, job_id: &str, c: &Value) -> String {
    let q: Queued = match Command::parse(&c.to_string()) {
        Ok(cmd) => cmd.queued(),
        // A command the dispatcher would refuse, queued anyway: the worker validates again.
        Err(_) => serde_json::from_value(c.clone()).unwrap(),
    };
    fx.job(job_id, JobKind::Command(q)).to_body()
}

/// The writes that took effect whose body names `key`.
fn effects(fx: &Fx, key: &str) -> usize {
    fx.sim.stats("shop").effects.iter().filter(|e| e.body.to_string().contains(key)).count()
}

/// Every result event of the bus: (detail-type, detail).
fn results(fx: &Fx) -> Vec<(String, Value)> {
    fx.bus
        .events()
        .into_iter()
        .filter(|e| e.detail_type.starts_with("command."))
        .map(|e| (e.detail_type, serde_json::from_str(&e.detail).unwrap()))
        .collect()
}

#[tokio::test]
async fn a_post_is_made_once_and_the_same_key_sent_again_republishes_its_result() {
    let fx = Fx::new().await;
    let w = fx.worker();
    let r = run(&w, &body(&fx, "c-1", &grant("grant-1"))).await;
    assert!(!returned(&r));
    assert_eq!(effects(&fx, "grant-1"), 1);
    let first = results(&fx);
    assert_eq!(first.len(), 1);
    let (kind, d) = &first[0];
    assert_eq!(
        (kind.as_str(), d["status"].as_u64(), d["key"].as_str()),
        ("command.succeeded", Some(201), Some("grant-1"))
    );
    assert_eq!(d["body"]["point"]["member_id"], "m1", "Cafe24's answer is in the event");
    let calls = fx.calls();

    // The same key again, days later in another message: nothing is sent, the result is
    // published again under the same event id.
    let r = run(&w, &body(&fx, "c-1-again", &grant("grant-1"))).await;
    assert!(!returned(&r));
    assert_eq!((effects(&fx, "grant-1"), fx.calls()), (1, calls));
    let all = results(&fx);
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].1["event_id"], all[0].1["event_id"]);
    assert_eq!(all[1].0, "command.succeeded");
}

#[tokio::test]
async fn a_post_that_may_have_left_before_the_invocation_died_is_never_sent_again() {
    let fx = Fx::new().await;
    let w = fx.worker();
    // Killed after the note, before (or while) the request left: the record says `sending`.
    fx.state.note_sending(&fx.mall, "grant-2", "dead-run", true, 1, u64::MAX).await.unwrap();
    run(&w, &body(&fx, "c-2", &grant("grant-2"))).await;
    assert_eq!(effects(&fx, "grant-2"), 0);
    assert_eq!(fx.calls(), 0, "no second request");
    let r = results(&fx);
    assert_eq!((r[0].0.as_str(), r[0].1["reason"].as_str()), ("command.uncertain", Some("interrupted")));

    // A PUT in the same position is sent again: repeating it leaves the same state.
    let order = fx.order();
    let put = json!({"v": 1, "key": "ship-1", "mall_id": "shop", "method": "PUT", "path": format!("orders/{order}"),
        "body": {"request": {"shipping_status": "M", "note": "ship-1"}}});
    fx.state.note_sending(&fx.mall, "ship-1", "dead-run", false, 1, u64::MAX).await.unwrap();
    run(&w, &body(&fx, "c-3", &put)).await;
    assert_eq!(effects(&fx, "ship-1"), 1);
    assert_eq!(results(&fx)[1].0, "command.succeeded");
}

#[tokio::test]
async fn a_post_whose_answer_never_came_is_uncertain_and_made_at_most_once() {
    let fx = Fx::new().await;
    // Cafe24 applies it, then answers later than the client waits.
    let w = fx.worker_with_cafe24(|c| c.request_timeout = std::time::Duration::from_millis(300), |c| c);
    fx.fault("points", FaultKind::Latency { ms: 1_000 });
    let r = run(&w, &body(&fx, "c-4", &grant("grant-4"))).await;
    assert!(!returned(&r), "an uncertain command is finished, not retried");
    assert_eq!(effects(&fx, "grant-4"), 1);
    let res = results(&fx);
    assert_eq!((res[0].0.as_str(), res[0].1["reason"].as_str()), ("command.uncertain", Some("timeout")));
    // Its redelivery publishes the recorded outcome and sends nothing.
    let calls = fx.calls();
    run_receive(&w, &body(&fx, "c-4", &grant("grant-4")), 2).await;
    assert_eq!((effects(&fx, "grant-4"), fx.calls()), (1, calls));
    assert_eq!(results(&fx)[1].1["event_id"], res[0].1["event_id"]);

    // A 5xx without an answer body: the same for a POST; a GET is asked again.
    fx.fault("points", FaultKind::Status { status: 500 });
    run(&w, &body(&fx, "c-5", &grant("grant-5"))).await;
    assert_eq!((results(&fx)[2].0.as_str(), effects(&fx, "grant-5")), ("command.uncertain", 0));
}

/// A script tag for `src`, with a read that settles it: the mall's script tags name `src`.
fn tag(key: &str, src: &str) -> Value {
    json!({"v": 1, "key": key, "mall_id": "shop", "method": "POST", "path": "scripttags",
        "body": {"shop_no": 1, "request": {"src": src}},
        "settle": {"path": "scripttags", "contains": src}})
}

#[tokio::test]
async fn a_post_whose_answer_was_lost_is_settled_by_the_read_it_names() {
    let fx = Fx::new().await;
    let timeout = std::time::Duration::from_millis(300);
    let w = fx.worker_with_cafe24(|c| c.request_timeout = timeout, |c| c);
    let made = |src: &str| {
        let mut g = fx.sim.lock();
        fx.sim.mall(&mut g, "shop").data.scripttags.iter().filter(|t| t["src"] == src).count()
    };
    // Cafe24 applies it and answers after the client gave up: the read finds it.
    fx.fault("scripttags", FaultKind::Latency { ms: 1_000 });
    let r = run(&w, &body(&fx, "c-s1", &tag("tag-1", "https://app.example/1.js"))).await;
    assert!(!returned(&r));
    let res = results(&fx);
    assert_eq!(made("https://app.example/1.js"), 1, "made once");
    assert_eq!(
        (res[0].0.as_str(), res[0].1["settled"].as_bool(), res[0].1["status"].is_null()),
        ("command.succeeded", Some(true), true),
        "{res:?}"
    );
    assert_eq!(res[0].1["body"]["scripttags"][0]["src"], "https://app.example/1.js", "the read's answer");

    // Cafe24 failed before applying it (a 500): the read finds nothing, so it stays uncertain
    // (a read may come before Cafe24 finished; only a found effect settles).
    fx.fault("scripttags", FaultKind::Status { status: 500 });
    run(&w, &body(&fx, "c-s2", &tag("tag-2", "https://app.example/2.js"))).await;
    assert_eq!(made("https://app.example/2.js"), 0);
    assert_eq!(
        (results(&fx)[1].0.as_str(), results(&fx)[1].1["reason"].as_str()),
        ("command.uncertain", Some("server_error"))
    );

    // A run that died after its request left (an old note): settled by the read, nothing sent.
    {
        let mut g = fx.sim.lock();
        fx.sim.mall(&mut g, "shop").data.scripttags.push(json!({"src": "https://app.example/3.js"}));
    }
    fx.state.note_sending(&fx.mall, "tag-3", "dead-run", true, 1, u64::MAX).await.unwrap();
    let posts = fx.endpoint_calls("scripttags");
    run(&w, &body(&fx, "c-s3", &tag("tag-3", "https://app.example/3.js"))).await;
    assert_eq!(made("https://app.example/3.js"), 1, "not sent again");
    assert_eq!(fx.endpoint_calls("scripttags"), posts + 1, "one call: the read");
    assert_eq!(results(&fx)[2].1["settled"], true);
}

#[tokio::test]
async fn killed_after_cafe24_answered_or_after_the_record_the_post_still_counts_once() {
    let fx = Fx::new().await;
    let timeout = std::time::Duration::from_millis(300);
    let w = fx.worker_with_cafe24(|c| c.request_timeout = timeout, |c| c);
    // The outcome cannot be recorded (the store fails after the call): the job comes back.
    fx.state.set_failing_upserts(true);
    let r = run(&w, &body(&fx, "c-6", &grant("grant-6"))).await;
    assert!(returned(&r));
    assert_eq!((effects(&fx, "grant-6"), results(&fx).len()), (1, 0));
    fx.state.set_failing_upserts(false);
    // Back at once, its note may still belong to a run waiting for Cafe24 (the same key through
    // the call API): deferred, nothing sent.
    let r = run_receive(&w, &body(&fx, "c-6", &grant("grant-6")), 2).await;
    assert!(returned(&r), "deferred while the note is young");
    assert_eq!((effects(&fx, "grant-6"), results(&fx).len()), (1, 0));
    // Once the note is older than a request could be out, the run that wrote it is dead.
    tokio::time::sleep(timeout + std::time::Duration::from_millis(relay_cafe24::command::NOTE_MARGIN_MS + 50)).await;
    run_receive(&w, &body(&fx, "c-6", &grant("grant-6")), 3).await;
    assert_eq!(effects(&fx, "grant-6"), 1, "never sent a second time");
    assert_eq!(results(&fx)[0].0, "command.uncertain", "it may have taken effect: the app is told so");

    // Recorded, then the bus refuses the event: the redelivery publishes the record, no call.
    fx.bus.set_failing(true);
    let r = run(&w, &body(&fx, "c-7", &grant("grant-7"))).await;
    assert!(returned(&r));
    fx.bus.set_failing(false);
    let calls = fx.calls();
    run_receive(&w, &body(&fx, "c-7", &grant("grant-7")), 2).await;
    assert_eq!((effects(&fx, "grant-7"), fx.calls()), (1, calls));
    let res = results(&fx);
    assert_eq!((res[1].0.as_str(), res[1].1["status"].as_u64()), ("command.succeeded", Some(201)));
}

#[tokio::test]
async fn a_429_applied_nothing_so_the_post_is_sent_again_after_the_wait() {
    let fx = Fx::new().await;
    let w = fx.worker();
    fx.fault("points", FaultKind::RateLimit);
    let r = run(&w, &body(&fx, "c-8", &grant("grant-8"))).await;
    assert!(returned(&r), "deferred");
    assert_eq!((effects(&fx, "grant-8"), results(&fx).len()), (0, 0));
    run_receive(&w, &body(&fx, "c-8", &grant("grant-8")), 2).await;
    assert_eq!(effects(&fx, "grant-8"), 1);
    assert_eq!(results(&fx)[0].0, "command.succeeded");
}

#[tokio::test]
async fn refusals_end_as_failed_events_with_their_reason_and_no_call() {
    let fx = Fx::new().await;
    let w = fx.worker();
    let q = json!({"key": "bad-1", "method": "POST", "path": "../oauth/token"});
    run(&w, &body(&fx, "c-9", &q)).await;
    assert_eq!(fx.calls(), 0);
    let r = results(&fx);
    assert_eq!((r[0].0.as_str(), r[0].1["reason"].as_str()), ("command.failed", Some("bad_path")));

    // Cafe24's own refusal: a 422 with its error, and a missing scope.
    let mut missing = grant("grant-10");
    missing["body"]["request"]["amount"] = json!("0");
    run(&w, &body(&fx, "c-10", &missing)).await;
    let r = results(&fx);
    assert_eq!(
        (r[1].0.as_str(), r[1].1["reason"].as_str(), r[1].1["status"].as_u64()),
        ("command.failed", Some("cafe24_error"), Some(422))
    );
    let customer = json!({"v": 1, "key": "cust-1", "mall_id": "shop", "method": "PUT", "path": "boards/1/articles/2",
        "body": {"request": {"content": "x"}}});
    run(&w, &body(&fx, "c-11", &customer)).await;
    assert_eq!(results(&fx)[2].1["status"].as_u64(), Some(404));

    // A mall that must authorize again fails its commands at once.
    let now = fx.sim.clock.now_ms();
    use relay_domain::tokens::TokenStore as _;
    fx.tokens.set_status(&fx.mall, relay_domain::tokens::TokenStatus::NeedsReauth, now).await.unwrap();
    // (A process that read the record since: a warm one still uses its unexpired access token.)
    let fresh = fx.worker();
    let calls = fx.calls();
    run(&fresh, &body(&fx, "c-12", &grant("grant-12"))).await;
    assert_eq!(fx.calls(), calls);
    assert_eq!(results(&fx)[3].1["reason"], "needs_reauth");
}
